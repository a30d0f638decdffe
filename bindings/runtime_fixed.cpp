// FixedSession: a thin wrapper over csrc/include/biotrain/exec_fixed.h. It runs
// the graph and plan of a _core.Plan built with dtype="fixed"; data arrive as
// int16 with their number of fractional bits, labels as int32, the loss leaves
// as Q16 (the Python side turns floats into these and back).
#include "bindings.h"
#include <pybind11/stl.h>
#include <array>
#include <cstring>
#include <memory>
extern "C" {
#include "biotrain/exec_fixed.h"
}

namespace bt {
namespace {

using i16 = py::array_t<int16_t, py::array::c_style>;
using i32 = py::array_t<int32_t, py::array::c_style>;

template <typename T>
py::array_t<T, py::array::c_style> typed(const py::array &a, const std::string &where, const char *name,
                                         const char *tname) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::value_error(where + ": " + name + " must be a " + tname + " array, got dtype " +
                              std::string(py::str(a.dtype())));
    return py::array_t<T, py::array::c_style>::ensure(a);
}

py::dict stats_dict(const bt_q_stats &s) {
    py::dict d;
    d["saturated"] = s.saturated;
    d["absmax"] = s.absmax;
    return d;
}

struct FixedSession {
    py::object plan_obj;  // keeps the _core.Plan (and its graph) alive
    const bt_plan *p = nullptr;
    const bt_graph *g = nullptr;
    std::unique_ptr<bt_fixed_session> s{new bt_fixed_session};
    std::unique_ptr<uint8_t[]> storage;
    uint8_t *arena = nullptr;
    size_t arena_bytes = 0;

    FixedSession(py::object plan, py::object arena_size, std::array<int32_t, 2> lr, std::array<int32_t, 2> momentum,
                 std::array<int32_t, 2> weight_decay, uint64_t seed)
        : plan_obj(std::move(plan)) {
        if (plan_obj.attr("dtype").cast<std::string>() != "fixed")
            throw py::value_error("FixedSession: the plan was built for dtype '" +
                                  plan_obj.attr("dtype").cast<std::string>() + "'; build it with dtype='fixed'");
        p = reinterpret_cast<const bt_plan *>(plan_obj.attr("_address").cast<uintptr_t>());
        g = reinterpret_cast<const bt_graph *>(plan_obj.attr("_graph_address").cast<uintptr_t>());
        arena_bytes = arena_size.is_none() ? p->peak_bytes : arena_size.cast<size_t>();
        storage.reset(new uint8_t[arena_bytes + 64]);
        arena = storage.get() + ((64 - (reinterpret_cast<uintptr_t>(storage.get()) & 63)) & 63);
        bt_q_sgd_cfg cfg{lr[0], lr[1], momentum[0], momentum[1], weight_decay[0], weight_decay[1]};
        bt_status st = bt_fixed_session_init(s.get(), g, p, arena, arena_bytes, &cfg, seed);
        if (st == BT_ERR_ARENA_TOO_SMALL)
            throw py::value_error("FixedSession: arena of " + std::to_string(arena_bytes) +
                                  " bytes is smaller than the plan's peak of " + std::to_string(p->peak_bytes) + " bytes");
        check(st, "FixedSession", "lr=(" + std::to_string(lr[0]) + ", " + std::to_string(lr[1]) + ")" +
                                      (st == BT_ERR_UNSUPPORTED ? "; the fixed-point path runs conv2d, linear, groupnorm, "
                                                                  "relu, elu, avg/max/global pooling, add, flatten and "
                                                                  "dropout, with SGD"
                                                                : ""));
    }
    std::string node_desc(int v) const {
        if (v < 0) return "";
        const bt_node &nd = g->nodes[v];
        return std::string(bt_op_name(nd.kind)) + " layer '" + nd.name + "' (output (" + std::to_string(nd.c) + ", " +
               std::to_string(nd.h) + ", " + std::to_string(nd.w) + ") per sample), ";
    }
    void check_x(const py::array &x, int n) const {
        const bt_node &in = g->nodes[0];
        size_t per = (size_t)in.c * in.h * in.w;
        if (x.ndim() < 1 || x.shape(0) != n || (size_t)x.size() != (size_t)n * per)
            throw py::value_error("input x of shape " + shape_str(x) + " does not match the network input (batch, " +
                                  std::to_string(in.c) + ", " + std::to_string(in.h) + ", " + std::to_string(in.w) + ")");
    }
    py::array param(int node, int which) {
        size_t numel = 0;
        int *frac = nullptr;
        int32_t *ptr = bt_fixed_session_param(s.get(), node, which, &numel, &frac);
        if (!ptr) throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        return py::array_t<int32_t>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(int32_t)}, ptr, py::cast(this));
    }
    int param_frac(int node, int which) {
        int *frac = nullptr;
        if (!bt_fixed_session_param(s.get(), node, which, nullptr, &frac))
            throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        return *frac;
    }
    void set_param_frac(int node, int which, int f) {
        int *frac = nullptr;
        if (!bt_fixed_session_param(s.get(), node, which, nullptr, &frac))
            throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        if (f < BT_Q_FRAC_MIN || f > BT_Q_FRAC_MAX)
            throw py::value_error("set_param_frac: " + std::to_string(f) + " fractional bits is outside [" +
                                  std::to_string(BT_Q_FRAC_MIN) + ", " + std::to_string(BT_Q_FRAC_MAX) + "]");
        *frac = f;
    }
    void calibrate(const py::array &x_, int x_frac, const py::array &y_, int rounds) {
        auto x = typed<int16_t>(x_, "calibrate", "x", "int16");
        auto y = typed<int32_t>(y_, "calibrate", "labels", "int32");
        if (y.ndim() != 1) throw py::value_error("labels must be 1-D, got shape " + shape_str(y));
        int n = (int)y.shape(0);
        check_x(x, n);
        bt_status st;
        {
            py::gil_scoped_release nogil;
            st = bt_fixed_calibrate(s.get(), x.data(), x_frac, y.data(), n, rounds);
        }
        check(st, "calibrate", node_desc(s->error_node) + "x " + shape_str(x) + ", x_frac=" + std::to_string(x_frac));
    }
    int32_t train_step(const py::array &x_, int x_frac, const py::array &y_) {
        auto x = typed<int16_t>(x_, "train_step", "x", "int16");
        auto y = typed<int32_t>(y_, "train_step", "labels", "int32");
        if (y.ndim() != 1) throw py::value_error("labels must be 1-D, got shape " + shape_str(y));
        int n = (int)y.shape(0);
        check_x(x, n);
        int32_t loss = 0;
        bt_status st;
        {
            py::gil_scoped_release nogil;
            st = bt_fixed_train_step(s.get(), &loss, x.data(), x_frac, y.data(), n);
        }
        check(st, "train_step", node_desc(s->error_node) + "x " + shape_str(x) + ", labels " + shape_str(y) +
                                    "; parameters unchanged");
        return loss;
    }
    py::tuple forward(const py::array &x_, int x_frac) {
        auto x = typed<int16_t>(x_, "forward", "x", "int16");
        if (x.ndim() < 1) throw py::value_error("input x must have a batch axis, got shape " + shape_str(x));
        int n = (int)x.shape(0);
        check_x(x, n);
        py::array_t<int8_t> out(std::vector<py::ssize_t>{(py::ssize_t)n, (py::ssize_t)g->classes});
        int frac = 0;
        bt_status st;
        int8_t *o = out.mutable_data();
        {
            py::gil_scoped_release nogil;
            st = bt_fixed_forward(s.get(), o, &frac, x.data(), x_frac, n);
        }
        check(st, "forward", node_desc(s->error_node) + "x " + shape_str(x));
        return py::make_tuple(out, frac);
    }
    py::dict scales() const {
        int n = g->n_nodes;
        py::array_t<int32_t> out(n), dout(n), wq(n), par({n, BT_MAX_PARAMS_PER_NODE}), grad({n, BT_MAX_PARAMS_PER_NODE}),
            mom({n, BT_MAX_PARAMS_PER_NODE});
        for (int v = 0; v < n; ++v) {
            out.mutable_data()[v] = s->out_frac[v];
            dout.mutable_data()[v] = s->dout_frac[v];
            wq.mutable_data()[v] = s->wq_frac[v];
            for (int k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
                par.mutable_data()[v * BT_MAX_PARAMS_PER_NODE + k] = s->param_frac[v][k];
                grad.mutable_data()[v * BT_MAX_PARAMS_PER_NODE + k] = s->grad_frac[v][k];
                mom.mutable_data()[v * BT_MAX_PARAMS_PER_NODE + k] = s->mom_frac[v][k];
            }
        }
        py::dict d;
        d["out"] = out; d["dout"] = dout; d["wq"] = wq; d["param"] = par; d["grad"] = grad; d["mom"] = mom;
        return d;
    }
    py::list node_stats() const {
        py::list l;
        for (int v = 0; v < g->n_nodes; ++v) {
            py::dict d;
            d["out"] = stats_dict(s->out_st[v]);
            d["dout"] = stats_dict(s->dout_st[v]);
            d["grad"] = stats_dict(s->grad_st[v][0]);
            l.append(d);
        }
        return l;
    }
    // The rest of what the next step reads (exec_fixed.h), so that a session
    // can be exported and continued elsewhere with the same bits: the
    // adaptation windows, the dropout generator, the optimizer's integer
    // settings. scales() holds the fractional bits.
    py::dict adapt_state() const {
        int n = g->n_nodes;
        py::array_t<uint32_t> ow(n), dw(n);
        py::array_t<int32_t> on(n), dn(n);
        for (int v = 0; v < n; ++v) {
            ow.mutable_data()[v] = s->out_win[v];
            dw.mutable_data()[v] = s->dout_win[v];
            on.mutable_data()[v] = s->out_win_n[v];
            dn.mutable_data()[v] = s->dout_win_n[v];
        }
        py::dict d;
        d["out_win"] = ow; d["dout_win"] = dw; d["out_win_n"] = on; d["dout_win_n"] = dn;
        d["rng_state"] = s->rng.state; d["rng_inc"] = s->rng.inc; d["steps"] = s->steps;
        d["opt"] = py::make_tuple(s->opt.lr_mant, s->opt.lr_exp, s->opt.mom_mant, s->opt.mom_exp, s->opt.wd_mant,
                                  s->opt.wd_exp);
        return d;
    }
    // Writes the state scales() and adapt_state() read (all keys of both but
    // "param" and "opt": masters and their scales go through param/set_param_frac).
    void load_state(const py::dict &d) {
        int n = g->n_nodes;
        auto vec = [&](const char *k, int cols, int64_t lo, int64_t hi) {
            if (!d.contains(k)) throw py::value_error(std::string("load_state: missing '") + k + "'");
            auto a = py::array_t<int64_t, py::array::c_style | py::array::forcecast>::ensure(d[k]);
            if (!a || a.size() != (py::ssize_t)n * cols)
                throw py::value_error(std::string("load_state: '") + k + "' must hold " + std::to_string(n * cols) +
                                      " values");
            for (py::ssize_t i = 0; i < a.size(); ++i)
                if (a.data()[i] < lo || a.data()[i] > hi)
                    throw py::value_error(std::string("load_state: '") + k + "' value " + std::to_string(a.data()[i]) +
                                          " is outside [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
            return a;
        };
        const int P = BT_MAX_PARAMS_PER_NODE;
        auto out = vec("out", 1, BT_Q_FRAC_MIN, BT_Q_FRAC_MAX), dout = vec("dout", 1, BT_Q_FRAC_MIN, BT_Q_FRAC_MAX);
        auto wqf = vec("wq", 1, BT_Q_FRAC_MIN, BT_Q_FRAC_MAX), grad = vec("grad", P, BT_Q_FRAC_MIN, BT_Q_FRAC_MAX);
        auto mom = vec("mom", P, BT_Q_FRAC_MIN, BT_Q_FRAC_MAX), ow = vec("out_win", 1, 0, UINT32_MAX);
        auto dw = vec("dout_win", 1, 0, UINT32_MAX), on = vec("out_win_n", 1, 0, 255), dn = vec("dout_win_n", 1, 0, 255);
        if (!d.contains("rng_state") || !d.contains("rng_inc") || !d.contains("steps"))
            throw py::value_error("load_state: missing 'rng_state', 'rng_inc' or 'steps'");
        uint64_t rs = d["rng_state"].cast<uint64_t>(), ri = d["rng_inc"].cast<uint64_t>();
        unsigned long steps = d["steps"].cast<unsigned long>();
        for (int v = 0; v < n; ++v) {
            s->out_frac[v] = (int)out.data()[v]; s->dout_frac[v] = (int)dout.data()[v]; s->wq_frac[v] = (int)wqf.data()[v];
            s->out_win[v] = (uint32_t)ow.data()[v]; s->dout_win[v] = (uint32_t)dw.data()[v];
            s->out_win_n[v] = (uint8_t)on.data()[v]; s->dout_win_n[v] = (uint8_t)dn.data()[v];
            for (int k = 0; k < P; ++k) {
                s->grad_frac[v][k] = (int)grad.data()[v * P + k];
                s->mom_frac[v][k] = (int)mom.data()[v * P + k];
            }
        }
        s->rng.state = rs; s->rng.inc = ri; s->steps = steps;
    }
    // The int32 momentum buffer of a node's parameter (a view), None without momentum.
    py::object momentum(int node, int which) {
        if (node < 0 || node >= g->n_nodes || which < 0 || which >= BT_MAX_PARAMS_PER_NODE)
            throw py::value_error("node " + std::to_string(node) + " has no parameter " + std::to_string(which));
        int t = p->nodes[node].opt_m[which];
        if (t < 0) return py::none();
        size_t numel = bt_node_param_numel(g, node, which);
        int32_t *ptr = reinterpret_cast<int32_t *>(arena + bt_plan_offset(p, t));
        return py::array_t<int32_t>({(py::ssize_t)numel}, {(py::ssize_t)sizeof(int32_t)}, ptr, py::cast(this));
    }
};

}  // namespace

void bind_runtime_fixed(py::module_ &m) {
    py::class_<FixedSession, std::shared_ptr<FixedSession>>(m, "FixedSession")
        .def(py::init<py::object, py::object, std::array<int32_t, 2>, std::array<int32_t, 2>, std::array<int32_t, 2>,
                      uint64_t>(),
             py::arg("plan"), py::arg("arena_bytes") = py::none(), py::arg("lr"), py::arg("momentum"),
             py::arg("weight_decay"), py::arg("seed") = 0)
        .def("param", &FixedSession::param, py::arg("node"), py::arg("which"))
        .def("param_frac", &FixedSession::param_frac, py::arg("node"), py::arg("which"))
        .def("set_param_frac", &FixedSession::set_param_frac, py::arg("node"), py::arg("which"), py::arg("frac"))
        .def("set_lr", [](FixedSession &f, std::array<int32_t, 2> lr) {
            check(bt_fixed_session_set_lr(f.s.get(), lr[0], lr[1]), "set_lr",
                  "(" + std::to_string(lr[0]) + ", " + std::to_string(lr[1]) + ")");
        })
        .def("calibrate", &FixedSession::calibrate, py::arg("x"), py::arg("x_frac"), py::arg("y"), py::arg("rounds") = 3)
        .def("train_step", &FixedSession::train_step, py::arg("x"), py::arg("x_frac"), py::arg("y"))
        .def("forward", &FixedSession::forward, py::arg("x"), py::arg("x_frac"))
        .def("checksum", [](const FixedSession &f) { return bt_fixed_session_checksum(f.s.get()); })
        .def("scales", &FixedSession::scales)
        .def("node_stats", &FixedSession::node_stats)
        .def("adapt_state", &FixedSession::adapt_state)
        .def("load_state", &FixedSession::load_state, py::arg("state"))
        .def("momentum", &FixedSession::momentum, py::arg("node"), py::arg("which"))
        .def_property("adapt", [](const FixedSession &f) { return (bool)f.s->adapt; },
                      [](FixedSession &f, bool a) { f.s->adapt = a ? 1 : 0; })
        .def_property_readonly("steps", [](const FixedSession &f) { return f.s->steps; })
        .def_property_readonly("arena_bytes", [](const FixedSession &f) { return f.arena_bytes; })
        .def_property_readonly("saturated_last", [](const FixedSession &f) { return f.s->saturated_last; })
        .def_property_readonly("saturated_total", [](const FixedSession &f) { return f.s->saturated_total; })
        .def_property_readonly("input_saturated", [](const FixedSession &f) { return f.s->out_st[0].saturated; })
        .def_property_readonly("lr", [](const FixedSession &f) { return py::make_tuple(f.s->opt.lr_mant, f.s->opt.lr_exp); });
}

}  // namespace bt
