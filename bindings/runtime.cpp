// Graph, Plan and Session: thin wrappers over csrc/include/biotrain/{graph,plan,exec}.h.
#include "bindings.h"
#include <cstring>
#include <memory>
extern "C" {
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"
}

namespace bt {
namespace {

struct Graph {
    bt_graph g;
    Graph(int c, int h, int w) { check(bt_graph_init(&g, c, h, w), "Graph", shape3(c, h, w)); }
    static std::string shape3(int c, int h, int w) {
        return "input (" + std::to_string(c) + ", " + std::to_string(h) + ", " + std::to_string(w) + ")";
    }
    std::string in_desc(int input) const {
        if (input < 0 || input >= g.n_nodes) return "input node " + std::to_string(input) + " (no such node)";
        const bt_node &nd = g.nodes[input];
        return "input '" + std::string(nd.name) + "' of shape (" + std::to_string(nd.c) + ", " +
               std::to_string(nd.h) + ", " + std::to_string(nd.w) + ")";
    }
    int done(bt_status s, int id, const std::string &op, const std::string &name, int input,
             const std::string &extra) {
        check(s, op + " layer '" + name + "'", in_desc(input) + (extra.empty() ? "" : ", " + extra));
        return id;
    }
    int conv2d(int input, int c_out, std::pair<int, int> k, std::pair<int, int> stride,
               std::pair<int, int> pad, std::pair<int, int> dil, int groups, bool bias,
               const std::string &name) {
        bt_conv2d_opts o{c_out, k.first, k.second, stride.first, stride.second, pad.first, pad.second,
                         dil.first, dil.second, groups, bias ? 1 : 0};
        int id = -1;
        std::string extra = "out_channels=" + std::to_string(c_out) + ", kernel=(" + std::to_string(k.first) +
                            ", " + std::to_string(k.second) + "), groups=" + std::to_string(groups);
        bt_status st_ = bt_graph_conv2d(&g, &id, input, &o, name.c_str());
        return done(st_, id, "conv2d", name, input, extra);
    }
    int linear(int input, int out_f, bool bias, const std::string &name) {
        bt_linear_opts o{out_f, bias ? 1 : 0};
        int id = -1;
        bt_status st_ = bt_graph_linear(&g, &id, input, &o, name.c_str());
        return done(st_, id, "linear", name, input,
                    "out_features=" + std::to_string(out_f));
    }
    int groupnorm(int input, int groups, bool affine, float eps, const std::string &name) {
        bt_norm_opts o{groups, affine ? 1 : 0, eps, 0.0f};
        int id = -1;
        bt_status st_ = bt_graph_groupnorm(&g, &id, input, &o, name.c_str());
        return done(st_, id, "groupnorm", name, input,
                    "groups=" + std::to_string(groups));
    }
    int batchnorm(int input, float momentum, float eps, const std::string &name) {
        bt_norm_opts o{0, 1, eps, momentum};
        int id = -1;
        bt_status st_ = bt_graph_batchnorm(&g, &id, input, &o, name.c_str());
        return done(st_, id, "batchnorm", name, input, "");
    }
    int relu(int input, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_relu(&g, &id, input, name.c_str());
        return done(st_, id, "relu", name, input, "");
    }
    int elu(int input, float alpha, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_elu(&g, &id, input, alpha, name.c_str());
        return done(st_, id, "elu", name, input, "");
    }
    int gelu(int input, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_gelu(&g, &id, input, name.c_str());
        return done(st_, id, "gelu", name, input, "");
    }
    int pool(int input, bool is_max, std::pair<int, int> k, std::pair<int, int> stride, std::pair<int, int> pad,
             const std::string &name) {
        bt_pool_opts o{k.first, k.second, stride.first, stride.second, pad.first, pad.second};
        int id = -1;
        bt_status s = is_max ? bt_graph_maxpool2d(&g, &id, input, &o, name.c_str())
                             : bt_graph_avgpool2d(&g, &id, input, &o, name.c_str());
        bt_status st_ = s;
        return done(st_, id, is_max ? "maxpool2d" : "avgpool2d", name, input,
                    "kernel=(" + std::to_string(k.first) + ", " + std::to_string(k.second) + ")");
    }
    int global_avgpool(int input, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_global_avgpool(&g, &id, input, name.c_str());
        return done(st_, id, "global_avgpool", name, input, "");
    }
    int add(int a, int b, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_add(&g, &id, a, b, name.c_str());
        return done(st_, id, "add", name, a, in_desc(b));
    }
    int flatten(int input, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_flatten(&g, &id, input, name.c_str());
        return done(st_, id, "flatten", name, input, "");
    }
    int dropout(int input, float p, const std::string &name) {
        int id = -1;
        bt_status st_ = bt_graph_dropout(&g, &id, input, p, name.c_str());
        return done(st_, id, "dropout", name, input,
                    "p=" + std::to_string(p));
    }
    void finish() { check(bt_graph_finish(&g), "Graph.finish", "every layer but the last must feed another"); }
    void set_trainable(int node, bool t) { check(bt_graph_set_trainable(&g, node, t ? 1 : 0), "set_trainable", ""); }
    py::dict node(int i) const {
        if (i < 0 || i >= g.n_nodes) throw py::index_error("node index out of range");
        const bt_node &nd = g.nodes[i];
        py::dict d;
        d["kind"] = bt_op_name(nd.kind);
        d["name"] = std::string(nd.name);
        d["shape"] = py::make_tuple(nd.c, nd.h, nd.w);
        py::list ins;
        for (int k = 0; k < nd.n_inputs; ++k) ins.append(nd.inputs[k]);
        d["inputs"] = ins;
        d["trainable"] = (bool)nd.trainable;
        py::list pn;
        for (int k = 0; k < bt_node_param_count(&g, i); ++k) pn.append(bt_node_param_numel(&g, i, k));
        d["param_numel"] = pn;
        return d;
    }
};

const char *optim_name(bt_optim_kind k) { return k == BT_OPTIM_ADAM ? "adam" : "sgd"; }

bt_optim_kind optim_kind(const std::string &s) {
    if (s == "sgd") return BT_OPTIM_SGD;
    if (s == "adam") return BT_OPTIM_ADAM;
    throw py::value_error("unknown optimizer '" + s + "': use 'sgd' or 'adam'");
}

struct Plan {
    std::shared_ptr<Graph> graph;
    std::unique_ptr<bt_plan> p{new bt_plan};
    Plan(std::shared_ptr<Graph> gr, int micro_batch, const std::string &optimizer, bool momentum, bool reuse,
         const std::string &dtype = "float32")
        : graph(std::move(gr)) {
        if (dtype != "float32" && dtype != "fixed")
            throw py::value_error("Plan: dtype must be 'float32' or 'fixed', got '" + dtype + "'");
        bt_plan_opts o{micro_batch, optim_kind(optimizer), momentum ? 1 : 0, reuse ? 1 : 0,
                       dtype == "fixed" ? BT_DTYPE_FIXED : BT_DTYPE_F32};
        check(bt_plan_build(p.get(), &graph->g, &o), "Plan",
              "micro_batch=" + std::to_string(micro_batch) + ", " + std::to_string(graph->g.n_nodes) + " nodes");
    }
    py::dict by_kind(const size_t *arr) const {
        py::dict d;
        for (int k = 0; k < BT_KIND_COUNT_; ++k) d[bt_kind_name((bt_tensor_kind)k)] = arr[k];
        return d;
    }
    py::list tensors() const {
        py::list out;
        for (int i = 0; i < p->n_tensors; ++i) {
            const bt_tensor &t = p->tensors[i];
            py::dict d;
            d["id"] = i;
            d["node"] = t.node;
            d["node_name"] = t.node >= 0 ? std::string(graph->g.nodes[t.node].name) : std::string("loss");
            d["role"] = bt_role_name(t.role);
            d["index"] = t.index;
            d["kind"] = bt_kind_name(t.kind);
            d["bytes"] = t.bytes;
            d["first"] = t.first;
            d["last"] = t.last;
            d["buffer"] = t.buffer;
            d["offset"] = bt_plan_offset(p.get(), i);
            out.append(d);
        }
        return out;
    }
    py::list buffers() const {
        py::list out;
        for (int i = 0; i < p->n_buffers; ++i) {
            const bt_buffer &b = p->buffers[i];
            out.append(py::make_tuple(b.offset, b.bytes, b.first, b.last));
        }
        return out;
    }
    py::list nodes() const {
        py::list out;
        for (int v = 0; v < graph->g.n_nodes; ++v) {
            const bt_plan_node &n = p->nodes[v];
            py::dict d;
            d["run_backward"] = (bool)n.run_backward;
            d["weight_grad"] = (bool)n.weight_grad;
            out.append(d);
        }
        return out;
    }
};

struct Session {
    std::shared_ptr<Plan> plan;
    std::unique_ptr<bt_session> s{new bt_session};
    std::unique_ptr<uint8_t[]> storage;
    uint8_t *arena = nullptr;
    size_t arena_bytes = 0;

    Session(std::shared_ptr<Plan> pl, py::object arena_size, const std::string &optimizer, float lr, float momentum,
            float weight_decay, float beta1, float beta2, float eps, uint64_t seed)
        : plan(std::move(pl)) {
        arena_bytes = arena_size.is_none() ? plan->p->peak_bytes : arena_size.cast<size_t>();
        storage.reset(new uint8_t[arena_bytes + 64]);
        arena = storage.get() + ((64 - (reinterpret_cast<uintptr_t>(storage.get()) & 63)) & 63);
        bt_optim_cfg cfg{optim_kind(optimizer), lr, momentum, weight_decay, beta1, beta2, eps};
        bt_status st = bt_session_init(s.get(), &plan->graph->g, plan->p.get(), arena, arena_bytes, &cfg, seed);
        if (st == BT_ERR_ARENA_TOO_SMALL)
            throw py::value_error("Session: arena of " + std::to_string(arena_bytes) +
                                  " bytes is smaller than the plan's peak of " +
                                  std::to_string(plan->p->peak_bytes) + " bytes; give at least the peak");
        check(st, "Session", "optimizer=" + optimizer + ", lr=" + std::to_string(lr));
    }
    const bt_graph &g() const { return plan->graph->g; }
    std::string node_desc(int v) const {
        if (v < 0) return "";
        const bt_node &nd = g().nodes[v];
        return std::string(bt_op_name(nd.kind)) + " layer '" + nd.name + "' (output (" + std::to_string(nd.c) +
               ", " + std::to_string(nd.h) + ", " + std::to_string(nd.w) + ") per sample)";
    }
    py::array param(int node, int which) {
        size_t numel = 0;
        float *ptr = bt_session_param(s.get(), node, which, &numel);
        if (!ptr) throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        return py::array_t<float>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(float)}, ptr, py::cast(this));
    }
    py::array arena_view() {
        return py::array_t<uint8_t>({(py::ssize_t)arena_bytes}, {(py::ssize_t)1}, arena, py::cast(this));
    }
    void check_x(const farray &x, int n) const {
        const bt_node &in = g().nodes[0];
        size_t per = (size_t)in.c * in.h * in.w;
        if (x.ndim() < 1 || x.shape(0) != n || (size_t)x.size() != (size_t)n * per)
            throw py::value_error("input x of shape " + shape_str(x) + " does not match the network input (batch, " +
                                  std::to_string(in.c) + ", " + std::to_string(in.h) + ", " + std::to_string(in.w) +
                                  ")");
    }
    // train_step and grad_step share their checks and messages; `update` says which one runs.
    float run_step(const farray &x, const iarray &y, bool update, const char *what) {
        if (y.ndim() != 1) throw py::value_error("labels must be 1-D, got shape " + shape_str(y));
        int n = (int)y.shape(0);
        check_x(x, n);
        float loss = 0.0f;
        bt_status st;
        {
            py::gil_scoped_release nogil;
            st = update ? bt_train_step(s.get(), &loss, x.data(), y.data(), n)
                        : bt_grad_step(s.get(), &loss, x.data(), y.data(), n);
        }
        if (st == BT_ERR_SHAPE_MISMATCH && plan->p->has_batchnorm && n > plan->p->opts.micro_batch)
            throw py::value_error(std::string(what) + ": a batch of " + std::to_string(n) +
                                  " exceeds the plan's batch of " + std::to_string(plan->p->opts.micro_batch) +
                                  ": batchnorm needs the whole batch in one pass; plan for this batch size");
        check(st, what, node_desc(s->error_node) + (s->error_node >= 0 ? ", " : "") + "x " + shape_str(x) +
                            ", labels " + shape_str(y) + "; parameters unchanged");
        return loss;
    }
    float train_step(const farray &x, const iarray &y) { return run_step(x, y, true, "train_step"); }
    float grad_step(const farray &x, const iarray &y) { return run_step(x, y, false, "grad_step"); }
    void apply_update() {
        check(bt_apply_update(s.get()), "apply_update", "a gradient is not finite; parameters unchanged");
    }
    py::array grad(int node, int which) {
        size_t numel = 0;
        float *ptr = bt_session_grad(s.get(), node, which, &numel);
        if (!ptr)
            throw py::value_error("node " + std::to_string(node) + " has no trainable parameter " +
                                  std::to_string(which) + " in this plan");
        return py::array_t<float>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(float)}, ptr, py::cast(this));
    }
    farray forward(const farray &x) {
        if (x.ndim() < 1) throw py::value_error("input x must have a batch axis, got shape " + shape_str(x));
        int n = (int)x.shape(0);
        check_x(x, n);
        farray out({(py::ssize_t)n, (py::ssize_t)g().classes});
        bt_status st;
        float *o = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            st = bt_forward(s.get(), o, x.data(), n);
        }
        check(st, "forward", node_desc(s->error_node) + (s->error_node >= 0 ? ", " : "") + "x " + shape_str(x));
        return out;
    }
};

}  // namespace

void bind_runtime(py::module_ &m) {
    py::class_<Graph, std::shared_ptr<Graph>>(m, "Graph")
        .def(py::init<int, int, int>(), py::arg("c"), py::arg("h"), py::arg("w"))
        .def("conv2d", &Graph::conv2d, py::arg("input"), py::arg("out_channels"), py::arg("kernel"),
             py::arg("stride"), py::arg("padding"), py::arg("dilation"), py::arg("groups"), py::arg("bias"),
             py::arg("name"))
        .def("linear", &Graph::linear, py::arg("input"), py::arg("out_features"), py::arg("bias"), py::arg("name"))
        .def("groupnorm", &Graph::groupnorm, py::arg("input"), py::arg("groups"), py::arg("affine"), py::arg("eps"),
             py::arg("name"))
        .def("batchnorm", &Graph::batchnorm, py::arg("input"), py::arg("momentum"), py::arg("eps"), py::arg("name"))
        .def("relu", &Graph::relu, py::arg("input"), py::arg("name"))
        .def("elu", &Graph::elu, py::arg("input"), py::arg("alpha"), py::arg("name"))
        .def("gelu", &Graph::gelu, py::arg("input"), py::arg("name"))
        .def("pool", &Graph::pool, py::arg("input"), py::arg("is_max"), py::arg("kernel"), py::arg("stride"),
             py::arg("padding"), py::arg("name"))
        .def("global_avgpool", &Graph::global_avgpool, py::arg("input"), py::arg("name"))
        .def("add", &Graph::add, py::arg("a"), py::arg("b"), py::arg("name"))
        .def("flatten", &Graph::flatten, py::arg("input"), py::arg("name"))
        .def("dropout", &Graph::dropout, py::arg("input"), py::arg("p"), py::arg("name"))
        .def("finish", &Graph::finish)
        .def("set_trainable", &Graph::set_trainable)
        .def("node", &Graph::node)
        .def_property_readonly("n_nodes", [](const Graph &g) { return g.g.n_nodes; })
        .def_property_readonly("classes", [](const Graph &g) { return g.g.classes; });

    py::class_<Plan, std::shared_ptr<Plan>>(m, "Plan")
        .def(py::init<std::shared_ptr<Graph>, int, const std::string &, bool, bool, const std::string &>(),
             py::arg("graph"), py::arg("micro_batch"), py::arg("optimizer") = "sgd", py::arg("momentum") = false,
             py::arg("reuse") = true, py::arg("dtype") = "float32")
        .def_property_readonly("dtype", [](const Plan &p) { return p.p->opts.dtype == BT_DTYPE_FIXED ? "fixed" : "float32"; })
        // raw addresses of the C plan and graph, for the fixed-point session (runtime_fixed.cpp)
        .def_property_readonly("_address", [](const Plan &p) { return reinterpret_cast<uintptr_t>(p.p.get()); })
        .def_property_readonly("_graph_address", [](const Plan &p) { return reinterpret_cast<uintptr_t>(&p.graph->g); })
        .def_property_readonly("peak_bytes", [](const Plan &p) { return p.p->peak_bytes; })
        .def_property_readonly("live_peak_bytes", [](const Plan &p) { return p.p->live_peak_bytes; })
        .def_property_readonly("naive_bytes", [](const Plan &p) { return p.p->naive_bytes; })
        .def_property_readonly("peak_step", [](const Plan &p) { return p.p->peak_step; })
        .def_property_readonly("n_steps", [](const Plan &p) { return p.p->n_steps; })
        .def_property_readonly("micro_batch", [](const Plan &p) { return p.p->opts.micro_batch; })
        .def_property_readonly("has_batchnorm", [](const Plan &p) { return (bool)p.p->has_batchnorm; })
        .def_property_readonly("optimizer", [](const Plan &p) { return optim_name(p.p->opts.optimizer); })
        .def_property_readonly("live_by_kind", [](const Plan &p) { return p.by_kind(p.p->live_by_kind); })
        .def_property_readonly("total_by_kind", [](const Plan &p) { return p.by_kind(p.p->total_by_kind); })
        .def("tensors", &Plan::tensors)
        .def("buffers", &Plan::buffers)
        .def("nodes", &Plan::nodes)
        .def("live_bytes", [](const Plan &p, int step) { return bt_plan_live_bytes(p.p.get(), step); });

    py::class_<Session, std::shared_ptr<Session>>(m, "Session")
        .def(py::init<std::shared_ptr<Plan>, py::object, const std::string &, float, float, float, float, float,
                      float, uint64_t>(),
             py::arg("plan"), py::arg("arena_bytes") = py::none(), py::arg("optimizer") = "sgd",
             py::arg("lr") = 1e-3f, py::arg("momentum") = 0.0f, py::arg("weight_decay") = 0.0f,
             py::arg("beta1") = 0.9f, py::arg("beta2") = 0.999f, py::arg("eps") = 1e-8f, py::arg("seed") = 0)
        .def("param", &Session::param, py::arg("node"), py::arg("which"))
        .def("arena", &Session::arena_view)
        .def_property_readonly("arena_bytes", [](const Session &s) { return s.arena_bytes; })
        .def("set_lr", [](Session &s, float lr) { check(bt_session_set_lr(s.s.get(), lr), "set_lr", "lr=" + std::to_string(lr)); })
        .def_property_readonly("lr", [](const Session &s) { return s.s->opt.lr; })
        .def_property_readonly("steps", [](const Session &s) { return s.s->opt_state.step; })
        .def("train_step", &Session::train_step, py::arg("x"), py::arg("y"))
        .def("grad_step", &Session::grad_step, py::arg("x"), py::arg("y"),
             "Forward and backward only: the batch's mean gradient, read through grad(), no update.")
        .def("apply_update", &Session::apply_update,
             "The optimizer step from the gradients grad() now holds (after grad_step, possibly edited).")
        .def("grad", &Session::grad, py::arg("node"), py::arg("which"))
        .def_property_readonly("n_trainable", [](const Session &s) { return bt_session_n_trainable(s.s.get()); })
        .def("forward", &Session::forward, py::arg("x"))
        .def("checksum", [](const Session &s) { return bt_session_param_checksum(s.s.get()); });
}

}  // namespace bt
