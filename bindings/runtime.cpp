// Graph, Plan and Session: thin wrappers over csrc/include/biotrain/{ops,graph,plan,exec}.h.
// One Session for both number formats (the plan's dtype decides); graph nodes
// are added by op name with their options by name, as the op table lists them.
#include "bindings.h"
#include <climits>
#include <cstring>
#include <memory>
extern "C" {
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/ops.h"
#include "biotrain/plan.h"
}

namespace bt {
namespace {

const char *dtype_name(bt_dtype d) { return d == BT_DTYPE_FIXED ? "fixed" : "float32"; }

bt_dtype dtype_of(const std::string &s, const std::string &where) {
    if (s == "float32") return BT_DTYPE_F32;
    if (s == "fixed") return BT_DTYPE_FIXED;
    throw py::value_error(where + ": dtype must be 'float32' or 'fixed', got '" + s + "'");
}

const char *optim_name(bt_optim_kind k) { return k == BT_OPTIM_ADAM ? "adam" : "sgd"; }

bt_optim_kind optim_kind(const std::string &s) {
    if (s == "sgd") return BT_OPTIM_SGD;
    if (s == "adam") return BT_OPTIM_ADAM;
    throw py::value_error("unknown optimizer '" + s + "': use 'sgd' or 'adam'");
}

const bt_op_desc *op_by_name(const std::string &kind, bt_op_kind *k) {
    bt_op_kind kk;
    if (bt_op_find(&kk, kind.c_str()) != BT_OK || kk == BT_OP_INPUT) {
        std::string names;
        for (int i = 1; i < BT_OP_COUNT_; ++i) names += std::string(i > 1 ? ", " : "") + bt_op_name((bt_op_kind)i);
        throw py::value_error("unknown op '" + kind + "'; the op table has: " + names);
    }
    if (k) *k = kk;
    return bt_op_get(kk);
}

py::dict op_info(bt_op_kind k) {
    const bt_op_desc *d = bt_op_get(k);
    py::dict out;
    out["name"] = d->name;
    out["n_inputs"] = d->n_inputs;
    py::list opts;
    for (int i = 0; i < d->n_opts; ++i)
        opts.append(py::make_tuple(d->opts[i].name, d->opts[i].type == BT_OPT_FLOAT ? "float" : "int",
                                   d->opts[i].path));
    out["options"] = opts;
    py::list formats;
    for (int f = 0; f < BT_DTYPE_COUNT_; ++f)
        if (d->kernels[f]) formats.append(dtype_name((bt_dtype)f));
    out["formats"] = formats;
    static const char *flag_names[] = {"view", "inplace", "din_over_dout", "bwd_reads_input", "wgrad_reads_input",
                                       "bwd_reads_output", "recompute_input", "batch_stats", "q_weight_copy"};
    py::list flags;
    for (unsigned b = 0; b < sizeof flag_names / sizeof flag_names[0]; ++b)
        if (d->flags & (1u << b)) flags.append(flag_names[b]);
    out["flags"] = flags;
    out["has_backward_weight"] = d->kernels[BT_DTYPE_F32] && d->kernels[BT_DTYPE_F32]->backward_weight != nullptr;
    return out;
}

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
    // A node of op `kind` reading `inputs`, with its options by the names the
    // op table gives them (missing ones are 0).
    int add(const std::string &kind, const std::vector<int> &inputs, const py::dict &opts, const std::string &name) {
        bt_op_kind k;
        const bt_op_desc *d = op_by_name(kind, &k);
        const std::string where = kind + " layer '" + name + "'";
        bt_node_opts o;
        std::memset(&o, 0, sizeof o);
        std::string given;
        for (auto item : opts) {
            const std::string key = py::str(item.first);
            const bt_opt_field *f = bt_op_option(d, key.c_str());
            if (!f) {
                std::string names;
                for (int i = 0; i < d->n_opts; ++i) names += std::string(i ? ", " : "") + d->opts[i].name;
                throw py::value_error(where + ": unknown option '" + key + "'; " + kind + " takes " +
                                      (names.empty() ? std::string("no options") : names));
            }
            unsigned char *at = reinterpret_cast<unsigned char *>(&o) + f->offset;
            if (f->type == BT_OPT_FLOAT) {
                float v = item.second.cast<float>();
                std::memcpy(at, &v, sizeof v);
            } else {
                long long v;
                try {
                    v = item.second.cast<long long>();
                } catch (const py::cast_error &) {
                    throw py::value_error(where + ": option '" + key + "' must be an integer");
                }
                if (v < INT_MIN || v > INT_MAX) throw py::value_error(where + ": option '" + key + "' out of range");
                int iv = (int)v;
                std::memcpy(at, &iv, sizeof iv);
            }
            given += (given.empty() ? "" : ", ") + key + "=" + std::string(py::str(item.second));
        }
        std::string ins;
        for (size_t i = 0; i < inputs.size(); ++i) ins += (i ? ", " : "") + in_desc(inputs[i]);
        if ((int)inputs.size() != d->n_inputs)
            throw py::value_error(where + ": takes " + std::to_string(d->n_inputs) + " input(s), got " +
                                  std::to_string(inputs.size()));
        int id = -1;
        bt_status st = bt_graph_add_node(&g, &id, k, inputs.data(), (int)inputs.size(), &o, name.c_str());
        check(st, where, ins + (given.empty() ? "" : ", " + given));
        return id;
    }
    void finish() { check(bt_graph_finish(&g), "Graph.finish", "every layer but the last must feed another"); }
    void set_trainable(int node, bool t) { check(bt_graph_set_trainable(&g, node, t ? 1 : 0), "set_trainable", ""); }
    void set_trainable_mask(int node, int mask) {
        check(bt_graph_set_trainable_mask(&g, node, mask), "set_trainable_mask",
              "a weight without an adapter trains or freezes with the node's other weights");
    }
    void add_lora(int node, int slot, int rank, float alpha) {
        check(bt_graph_add_lora(&g, node, slot, rank, alpha), "add_lora",
              "node " + std::to_string(node) + " slot " + std::to_string(slot) + " rank " + std::to_string(rank));
    }
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
        d["trainable_mask"] = nd.trainable;
        py::list lo;
        for (int k = 0; k < nd.n_lora; ++k)
            lo.append(py::make_tuple(nd.lora[k].slot, nd.lora[k].rank, nd.lora[k].alpha));
        d["lora"] = lo;
        py::list rows;
        for (int k = 0; k < bt_node_base_param_count(&g, i); ++k) rows.append(bt_node_lora_rows(&g, i, k));
        d["lora_rows"] = rows;
        py::list pn;
        for (int k = 0; k < bt_node_param_count(&g, i); ++k) pn.append(bt_node_param_numel(&g, i, k));
        d["param_numel"] = pn;
        d["trainable_params"] = bt_node_trainable_params(&g, i);
        return d;
    }
};

struct Plan {
    std::shared_ptr<Graph> graph;
    std::unique_ptr<bt_plan> p{new bt_plan};
    Plan(std::shared_ptr<Graph> gr, int micro_batch, const std::string &optimizer, bool momentum, bool reuse,
         const std::string &dtype)
        : graph(std::move(gr)) {
        bt_plan_opts o;
        std::memset(&o, 0, sizeof o);
        o.micro_batch = micro_batch;
        o.optimizer = optim_kind(optimizer);
        o.momentum = momentum ? 1 : 0;
        o.reuse = reuse ? 1 : 0;
        o.dtype = dtype_of(dtype, "Plan");
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
            d["role"] = bt_plan_tensor_role(p.get(), &graph->g, i);
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

bt_frac_kind frac_kind(const std::string &k) {
    static const char *names[] = {"out", "dout", "wq", "param", "grad", "mom"};
    for (int i = 0; i < BT_FRAC_COUNT_; ++i)
        if (k == names[i]) return (bt_frac_kind)i;
    throw py::value_error("unknown scale '" + k + "': use out, dout, wq, param, grad or mom");
}

struct Session {
    std::shared_ptr<Plan> plan;
    std::unique_ptr<bt_session> s{new bt_session};
    AlignedBuffer storage;

    Session(std::shared_ptr<Plan> pl, py::object arena_size, const std::string &optimizer, float lr, float momentum,
            float weight_decay, float beta1, float beta2, float eps, uint64_t seed)
        : plan(std::move(pl)) {
        size_t bytes = arena_size.is_none() ? plan->p->peak_bytes : arena_size.cast<size_t>();
        if (bytes < plan->p->peak_bytes)
            throw py::value_error("Session: arena of " + std::to_string(bytes) +
                                  " bytes is smaller than the plan's peak of " + std::to_string(plan->p->peak_bytes) +
                                  " bytes; give at least the peak");
        storage.reset(bytes, BT_ARENA_ALIGN);
        bt_optim_cfg cfg{optim_kind(optimizer), lr, momentum, weight_decay, beta1, beta2, eps};
        bt_status st = bt_session_init(s.get(), &g(), plan->p.get(), storage.data(), bytes, &cfg, seed);
        check(st, "Session", std::string("dtype=") + dtype_name(plan->p->opts.dtype) + ", optimizer=" + optimizer +
                                 ", lr=" + std::to_string(lr) + unsupported_hint(st));
    }
    std::string unsupported_hint(bt_status st) const {
        if (st != BT_ERR_UNSUPPORTED) return "";
        std::string ops;
        for (int v = 1; v < g().n_nodes; ++v)
            if (!bt_op_get(g().nodes[v].kind)->kernels[plan->p->opts.dtype])
                ops += (ops.empty() ? "" : ", ") + std::string(bt_op_name(g().nodes[v].kind)) + " layer '" +
                       g().nodes[v].name + "'";
        if (!ops.empty()) return std::string("; no ") + dtype_name(plan->p->opts.dtype) + " kernel for " + ops;
        return std::string("; the ") + dtype_name(plan->p->opts.dtype) + " format does not run this optimizer";
    }
    const bt_graph &g() const { return plan->graph->g; }
    bool fixed() const { return s->dtype == BT_DTYPE_FIXED; }
    std::string node_desc(int v) const {
        if (v < 0) return "";
        const bt_node &nd = g().nodes[v];
        return std::string(bt_op_name(nd.kind)) + " layer '" + nd.name + "' (output (" + std::to_string(nd.c) +
               ", " + std::to_string(nd.h) + ", " + std::to_string(nd.w) + ") per sample), ";
    }
    // A view of `numel` values of the session's parameter type at ptr.
    py::array view(void *ptr, size_t numel) {
        if (fixed())
            return py::array_t<int32_t>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(int32_t)},
                                        static_cast<int32_t *>(ptr), py::cast(this));
        return py::array_t<float>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(float)}, static_cast<float *>(ptr),
                                  py::cast(this));
    }
    // The whole arena as bytes (the planner's accounting is checked against the bytes actually touched).
    py::array arena() {
        return py::array_t<uint8_t>({(py::ssize_t)storage.size()}, {(py::ssize_t)1}, storage.data(), py::cast(this));
    }
    py::array param(int node, int which) {
        size_t numel = 0;
        void *ptr = bt_session_param(s.get(), node, which, &numel);
        if (!ptr) throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        return view(ptr, numel);
    }
    py::array grad(int node, int which) {
        size_t numel = 0;
        void *ptr = bt_session_grad(s.get(), node, which, &numel);
        if (!ptr)
            throw py::value_error("node " + std::to_string(node) + " has no trainable parameter " +
                                  std::to_string(which) + " in this plan");
        return view(ptr, numel);
    }
    py::object opt_state(int node, int which, int moment) {
        size_t numel = 0;
        void *ptr = bt_session_opt_state(s.get(), node, which, moment, &numel);
        if (!ptr) return py::none();
        return view(ptr, numel);
    }
    int frac(int node, const std::string &kind, int which) {
        return bt_session_frac(s.get(), node, frac_kind(kind), which);
    }
    void set_frac(int node, const std::string &kind, int which, int f) {
        check(bt_session_set_frac(s.get(), node, frac_kind(kind), which, f), "set_frac",
              "node " + std::to_string(node) + ", scale " + kind + "[" + std::to_string(which) + "] = " +
                  std::to_string(f) + " is outside the range [" + std::to_string(BT_Q_FRAC_MIN) + ", " +
                  std::to_string(BT_Q_FRAC_MAX) + "]; nothing changed");
    }
    py::dict stats(int node, const std::string &kind) {
        bt_q_stats q = bt_session_stats(s.get(), node, frac_kind(kind));
        py::dict d;
        d["saturated"] = q.saturated;
        d["absmax"] = q.absmax;
        return d;
    }
    void check_x(const py::array &x, int n) const {
        const bt_node &in = g().nodes[0];
        size_t per = (size_t)in.c * in.h * in.w;
        if (x.ndim() < 1 || x.shape(0) != n || (size_t)x.size() != (size_t)n * per)
            throw py::value_error("input x of shape " + shape_str(x) + " does not match the network input (batch, " +
                                  std::to_string(in.c) + ", " + std::to_string(in.h) + ", " + std::to_string(in.w) +
                                  ")");
    }
    // x as the format takes it: float32 (converted), or int16 as given (never cast: a cast could wrap).
    py::array input(const py::array &x, const char *what) const {
        if (fixed()) return typed<int16_t>(x, what, "x", "int16");
        return farray::ensure(x);
    }
    py::object loss_value(const bt_value &v) const {
        if (fixed()) return py::int_(v.q);
        return py::float_(v.f32);
    }
    py::object run(const py::array &x_, const py::array &y_, int x_frac, int mode, const char *what) {
        py::array x = input(x_, what);
        auto y = typed<int32_t>(y_, what, "labels", "int32");
        if (y.ndim() != 1) throw py::value_error(std::string(what) + ": labels must be 1-D, got shape " + shape_str(y));
        int n = (int)y.shape(0);
        check_x(x, n);
        bt_value loss{0.0f, 0, 0};
        bt_status st;
        {
            py::gil_scoped_release nogil;
            if (mode == 0) st = bt_train_step(s.get(), &loss, x.data(), x_frac, y.data(), n);
            else if (mode == 1) st = bt_grad_step(s.get(), &loss, x.data(), x_frac, y.data(), n);
            else st = bt_calibrate(s.get(), x.data(), x_frac, y.data(), n, mode - 1);
        }
        if (st == BT_ERR_SHAPE_MISMATCH && plan->p->has_batchnorm && n > plan->p->opts.micro_batch)
            throw py::value_error(std::string(what) + ": a batch of " + std::to_string(n) +
                                  " exceeds the plan's batch of " + std::to_string(plan->p->opts.micro_batch) +
                                  ": batchnorm needs the whole batch in one pass; plan for this batch size");
        check(st, what, node_desc(s->error_node) + "x " + shape_str(x) + ", labels " + shape_str(y) +
                            (fixed() ? ", x_frac=" + std::to_string(x_frac) : "") + "; parameters unchanged");
        return loss_value(loss);
    }
    py::object train_step(const py::array &x, const py::array &y, int x_frac) {
        return run(x, y, x_frac, 0, "train_step");
    }
    py::object grad_step(const py::array &x, const py::array &y, int x_frac) {
        return run(x, y, x_frac, 1, "grad_step");
    }
    void calibrate(const py::array &x, const py::array &y, int x_frac, int rounds) {
        if (rounds < 1) throw py::value_error("calibrate: rounds must be >= 1, got " + std::to_string(rounds));
        run(x, y, x_frac, 1 + rounds, "calibrate");
    }
    void apply_update() {
        check(bt_apply_update(s.get()), "apply_update", "a gradient is not finite; parameters unchanged");
    }
    py::object forward(const py::array &x_, int x_frac) {
        py::array x = input(x_, "forward");
        if (x.ndim() < 1) throw py::value_error("input x must have a batch axis, got shape " + shape_str(x));
        int n = (int)x.shape(0);
        check_x(x, n);
        std::vector<py::ssize_t> shape{(py::ssize_t)n, (py::ssize_t)g().classes};
        py::array out = fixed() ? py::array(py::array_t<int8_t>(shape)) : py::array(py::array_t<float>(shape));
        int frac = 0;
        bt_status st;
        void *o = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            st = bt_forward(s.get(), o, &frac, x.data(), x_frac, n);
        }
        check(st, "forward", node_desc(s->error_node) + "x " + shape_str(x));
        if (fixed()) return py::make_tuple(out, frac);
        return out;
    }
    py::bytes save_state() const {
        std::string buf(bt_session_state_bytes(s.get()), '\0');
        size_t len = 0;
        check(bt_session_save_state(s.get(), &buf[0], buf.size(), &len), "save_state", "");
        buf.resize(len);
        return py::bytes(buf);
    }
    void load_state(const py::bytes &b) {
        std::string buf = b;
        check(bt_session_load_state(s.get(), buf.data(), buf.size()), "load_state",
              std::to_string(buf.size()) + " bytes, this session's state has " +
                  std::to_string(bt_session_state_bytes(s.get())) + "; nothing changed");
    }
};

}  // namespace

void bind_runtime(py::module_ &m) {
    m.def("op_table", []() {
        py::list l;
        for (int k = 0; k < BT_OP_COUNT_; ++k) l.append(op_info((bt_op_kind)k));
        return l;
    }, "Every op of the C core's op table: name, inputs, options, formats, flags.");
    m.attr("ARENA_ALIGN") = BT_ARENA_ALIGN;
    m.attr("MAX_NODES") = BT_MAX_NODES;
    m.attr("MAX_PARAMS_PER_NODE") = BT_MAX_PARAMS_PER_NODE;
    m.attr("NAME_LEN") = BT_NAME_LEN;
    m.attr("Q_FRAC_MIN") = BT_Q_FRAC_MIN;
    m.attr("Q_FRAC_MAX") = BT_Q_FRAC_MAX;
    m.attr("Q_LOSS_FRAC") = BT_Q_LOSS_FRAC;

    py::class_<Graph, std::shared_ptr<Graph>>(m, "Graph")
        .def(py::init<int, int, int>(), py::arg("c"), py::arg("h"), py::arg("w"))
        .def("add", &Graph::add, py::arg("kind"), py::arg("inputs"), py::arg("opts"), py::arg("name"),
             "Appends a node of op `kind` reading `inputs`, options by name; returns its id.")
        .def("finish", &Graph::finish)
        .def("set_trainable", &Graph::set_trainable)
        .def("set_trainable_mask", &Graph::set_trainable_mask, py::arg("node"), py::arg("mask"))
        .def("add_lora", &Graph::add_lora, py::arg("node"), py::arg("slot"), py::arg("rank"), py::arg("alpha"),
             "A LoRA adapter on parameter `slot` of `node`: its A and B become the node's next two slots.")
        .def("node", &Graph::node)
        .def_property_readonly("n_nodes", [](const Graph &g) { return g.g.n_nodes; })
        .def_property_readonly("classes", [](const Graph &g) { return g.g.classes; });

    py::class_<Plan, std::shared_ptr<Plan>>(m, "Plan")
        .def(py::init<std::shared_ptr<Graph>, int, const std::string &, bool, bool, const std::string &>(),
             py::arg("graph"), py::arg("micro_batch"), py::arg("optimizer") = "sgd", py::arg("momentum") = false,
             py::arg("reuse") = true, py::arg("dtype") = "float32")
        .def_property_readonly("dtype", [](const Plan &p) { return dtype_name(p.p->opts.dtype); })
        .def_property_readonly("peak_bytes", [](const Plan &p) { return p.p->peak_bytes; })
        .def_property_readonly("live_peak_bytes", [](const Plan &p) { return p.p->live_peak_bytes; })
        .def_property_readonly("naive_bytes", [](const Plan &p) { return p.p->naive_bytes; })
        .def_property_readonly("peak_step", [](const Plan &p) { return p.p->peak_step; })
        .def_property_readonly("n_steps", [](const Plan &p) { return p.p->n_steps; })
        .def_property_readonly("micro_batch", [](const Plan &p) { return p.p->opts.micro_batch; })
        .def_property_readonly("momentum", [](const Plan &p) { return (bool)p.p->opts.momentum; })
        .def_property_readonly("reuse", [](const Plan &p) { return (bool)p.p->opts.reuse; })
        .def_property_readonly("has_batchnorm", [](const Plan &p) { return (bool)p.p->has_batchnorm; })
        .def_property_readonly("optimizer", [](const Plan &p) { return optim_name(p.p->opts.optimizer); })
        .def_property_readonly("live_by_kind", [](const Plan &p) { return p.by_kind(p.p->live_by_kind); })
        .def_property_readonly("total_by_kind", [](const Plan &p) { return p.by_kind(p.p->total_by_kind); })
        .def_property_readonly("graph", [](const Plan &p) { return p.graph; })
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
        .def_property_readonly("dtype", [](const Session &s) { return dtype_name(s.s->dtype); })
        .def("param", &Session::param, py::arg("node"), py::arg("which"))
        .def("grad", &Session::grad, py::arg("node"), py::arg("which"))
        .def("opt_state", &Session::opt_state, py::arg("node"), py::arg("which"), py::arg("moment") = 0,
             "Momentum / Adam's first moment (moment 0) or second moment (1) of a parameter, or None.")
        .def("frac", &Session::frac, py::arg("node"), py::arg("kind"), py::arg("which") = 0)
        .def("set_frac", &Session::set_frac, py::arg("node"), py::arg("kind"), py::arg("which"), py::arg("frac"))
        .def("stats", &Session::stats, py::arg("node"), py::arg("kind"))
        .def("arena", &Session::arena)
        .def_property_readonly("arena_bytes", [](const Session &s) { return s.storage.size(); })
        .def("set_lr", [](Session &s, float lr) {
            check(bt_session_set_lr(s.s.get(), lr), "set_lr", "lr=" + std::to_string(lr));
        })
        .def_property_readonly("lr", [](const Session &s) { return s.s->opt.lr; })
        .def_property_readonly("steps", [](const Session &s) { return s.s->opt_state.step; })
        .def("train_step", &Session::train_step, py::arg("x"), py::arg("y"), py::arg("x_frac") = 0)
        .def("grad_step", &Session::grad_step, py::arg("x"), py::arg("y"), py::arg("x_frac") = 0,
             "Forward and backward only: the batch's mean gradient, read through grad(), no update.")
        .def("apply_update", &Session::apply_update,
             "The optimizer step from the gradients grad() now holds (after grad_step, possibly edited).")
        .def("calibrate", &Session::calibrate, py::arg("x"), py::arg("y"), py::arg("x_frac"), py::arg("rounds") = 3)
        .def_property_readonly("n_trainable", [](const Session &s) { return bt_session_n_trainable(s.s.get()); })
        .def("forward", &Session::forward, py::arg("x"), py::arg("x_frac") = 0)
        .def("checksum", [](const Session &s) { return bt_session_checksum(s.s.get()); })
        .def("state_checksum", [](const Session &s) { return bt_session_state_checksum(s.s.get()); })
        .def("save_state", &Session::save_state)
        .def("load_state", &Session::load_state, py::arg("state"))
        .def_property("adapt", [](const Session &s) { return (bool)s.s->adapt; },
                      [](Session &s, bool a) { check(bt_session_set_adapt(s.s.get(), a ? 1 : 0), "adapt", ""); })
        .def_property_readonly("saturated_last", [](const Session &s) { return s.s->fx.saturated_last; })
        .def_property_readonly("saturated_total", [](const Session &s) { return s.s->fx.saturated_total; });
}

}  // namespace bt
