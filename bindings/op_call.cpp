// One op's kernels on arrays, through its op-table descriptor: the harness of
// the op test (tests/test_ops.py). It builds a one-op graph, fills a
// bt_op_ctx from the arrays given (as the executor fills it from the arena)
// and runs the descriptor's forward, backward_input or backward_weight in
// either number format. Nothing here knows any op by name.
#include "bindings.h"
#include <climits>
#include <cstring>
#include "biotrain/graph.h"
#include "biotrain/ops.h"
#include "biotrain/plan.h"
#include "biotrain/qmath.h"

namespace bt {
namespace {

// Values of one kind of tensor in a format: float32, or int8 activations / int32 parameters.
enum class Elem { act, param };

size_t elem_size(bt_dtype dt, Elem e) {
    if (dt == BT_DTYPE_F32) return sizeof(float);
    return e == Elem::act ? 1 : sizeof(int32_t);
}

py::array new_array(bt_dtype dt, Elem e, const std::vector<py::ssize_t> &shape) {
    if (dt == BT_DTYPE_F32) return py::array(py::array_t<float>(shape));
    if (e == Elem::act) return py::array(py::array_t<int8_t>(shape));
    return py::array(py::array_t<int32_t>(shape));
}

// An input array of the format's type, exactly (never cast: a cast could wrap), C-contiguous.
py::array take(const py::handle &h, bt_dtype dt, Elem e, size_t numel, const std::string &what) {
    py::array a = py::array::ensure(h);
    if (!a) throw py::value_error("op_call: " + what + " is not an array");
    const bool ok = dt == BT_DTYPE_F32 ? py::isinstance<py::array_t<float>>(a)
                                       : (e == Elem::act ? py::isinstance<py::array_t<int8_t>>(a)
                                                         : py::isinstance<py::array_t<int32_t>>(a));
    if (!ok)
        throw py::value_error("op_call: " + what + " must be " +
                              (dt == BT_DTYPE_F32 ? "float32" : (e == Elem::act ? "int8" : "int32")) + ", got " +
                              std::string(py::str(a.dtype())));
    if ((size_t)a.size() != numel)
        throw py::value_error("op_call: " + what + " holds " + std::to_string(a.size()) + " values, the op needs " +
                              std::to_string(numel));
    return py::array::ensure(a, py::array::c_style);
}

int frac_at(const py::dict &fr, const char *key, int k, int dflt) {
    if (!fr.contains(key)) return dflt;
    py::object v = fr[key];
    if (py::isinstance<py::sequence>(v)) {
        py::sequence s = v.cast<py::sequence>();
        return k < (int)s.size() ? s[k].cast<int>() : dflt;
    }
    return v.cast<int>();
}

py::dict stats(const bt_q_stats &q) {
    py::dict d;
    d["saturated"] = q.saturated;
    d["absmax"] = q.absmax;
    return d;
}

}  // namespace

void bind_op_call(py::module_ &m) {
    m.def(
        "op_call",
        [](const std::string &kind, const std::vector<py::array> &inputs, const py::dict &opts,
           const std::string &dtype, const std::string &phase, const py::list &params, bool train, py::object out_arr,
           py::object dout_arr, py::object saved_arr, py::object pgrad_arr, int slot, const py::dict &fracs,
           uint64_t seed) {
            bt_op_kind k;
            if (bt_op_find(&k, kind.c_str()) != BT_OK) throw py::value_error("op_call: unknown op '" + kind + "'");
            const bt_op_desc *d = bt_op_get(k);
            const bt_dtype dt = dtype == "fixed" ? BT_DTYPE_FIXED : BT_DTYPE_F32;
            if (dtype != "fixed" && dtype != "float32")
                throw py::value_error("op_call: dtype must be float32 or fixed, got '" + dtype + "'");
            const bt_op_kernels *kern = d->kernels[dt];
            if (!kern) throw py::value_error("op_call: " + kind + " has no " + dtype + " kernels");
            if ((int)inputs.size() != d->n_inputs || k == BT_OP_INPUT)
                throw py::value_error("op_call: " + kind + " takes " + std::to_string(d->n_inputs) + " input(s)");
            for (const auto &a : inputs)
                if (a.ndim() != 4) throw py::value_error("op_call: inputs are (rows, c, h, w) arrays");
            const int rows = (int)inputs[0].shape(0);
            // The graph: node 0 takes input 0's shape; a second input is a relu of it (same shape).
            bt_graph g;
            check(bt_graph_init(&g, (int)inputs[0].shape(1), (int)inputs[0].shape(2), (int)inputs[0].shape(3)),
                  "op_call", "input shape");
            int ins[BT_MAX_NODE_INPUTS] = {0, 0};
            for (int i = 1; i < d->n_inputs; ++i) {
                bt_node_opts none;
                std::memset(&none, 0, sizeof none);
                check(bt_graph_add_node(&g, &ins[i], BT_OP_RELU, ins, 1, &none, "in"), "op_call", "second input");
            }
            bt_node_opts o;
            std::memset(&o, 0, sizeof o);
            for (auto item : opts) {
                const std::string key = py::str(item.first);
                const bt_opt_field *f = bt_op_option(d, key.c_str());
                if (!f) throw py::value_error("op_call: " + kind + " has no option '" + key + "'");
                unsigned char *at = reinterpret_cast<unsigned char *>(&o) + f->offset;
                if (f->type == BT_OPT_FLOAT) {
                    float v = item.second.cast<float>();
                    std::memcpy(at, &v, sizeof v);
                } else {
                    int v = item.second.cast<int>();
                    std::memcpy(at, &v, sizeof v);
                }
            }
            int node = -1;
            check(bt_graph_add_node(&g, &node, k, ins, d->n_inputs, &o, "op"), "op_call", kind + " options");
            const bt_node &nd = g.nodes[node];
            for (int i = 0; i < d->n_inputs; ++i) {
                const bt_node &src = g.nodes[ins[i]];
                if (inputs[i].shape(0) != rows || inputs[i].shape(1) != src.c || inputs[i].shape(2) != src.h ||
                    inputs[i].shape(3) != src.w)
                    throw py::value_error("op_call: input " + std::to_string(i) + " has shape " + shape_str(inputs[i]) +
                                          ", the op's input " + std::to_string(i) + " is (rows, " +
                                          std::to_string(src.c) + ", " + std::to_string(src.h) + ", " +
                                          std::to_string(src.w) + ")");
            }
            const size_t out_numel = (size_t)rows * bt_node_numel(&nd);
            const std::vector<py::ssize_t> out_shape{rows, nd.c, nd.h, nd.w};

            bt_op_ctx c;
            std::memset(&c, 0, sizeof c);
            c.g = &g;
            c.node = node;
            c.rows = rows;
            c.train = train ? 1 : 0;
            c.dtype = dt;
            std::vector<py::array> keep;  // the arrays the context points into
            for (int i = 0; i < d->n_inputs; ++i) {
                keep.push_back(take(inputs[i], dt, Elem::act, (size_t)rows * bt_node_numel(&g.nodes[ins[i]]),
                                    "input " + std::to_string(i)));
                c.in[i] = keep.back().data();
                c.in_frac[i] = frac_at(fracs, "in", i, 0);
                c.din_frac[i] = frac_at(fracs, "din", i, 0);
            }
            const int n_par = d->param_count ? d->param_count(&nd) : 0;
            if ((int)params.size() != n_par)
                throw py::value_error("op_call: " + kind + " with these options has " + std::to_string(n_par) +
                                      " parameter tensor(s), got " + std::to_string(params.size()));
            for (int j = 0; j < n_par; ++j) {
                keep.push_back(take(params[j], dt, Elem::param, d->param_numel(&g, &nd, j),
                                    "parameter " + std::to_string(j)));
                c.param[j] = const_cast<void *>(keep.back().data());
                c.param_frac[j] = frac_at(fracs, "param", j, 0);
                c.grad_frac[j] = frac_at(fracs, "grad", j, 0);
            }
            if (dt == BT_DTYPE_FIXED && (d->flags & BT_OPF_Q_WEIGHT_COPY)) {
                if (!fracs.contains("wq_values"))
                    throw py::value_error("op_call: fixed-point " + kind + " reads an int8 weight copy: pass "
                                          "fracs['wq_values'] (int8) and fracs['wq']");
                keep.push_back(take(fracs["wq_values"], dt, Elem::act, d->param_numel(&g, &nd, 0), "wq_values"));
                c.wq = static_cast<const int8_t *>(keep.back().data());
                c.wq_frac = frac_at(fracs, "wq", 0, 0);
            }
            c.out_frac = frac_at(fracs, "out", 0, 0);
            c.dout_frac = frac_at(fracs, "dout", 0, 0);
            if (dt == BT_DTYPE_FIXED && d->qopt >= 0) {
                float v;
                std::memcpy(&v, reinterpret_cast<const unsigned char *>(&nd.o) + d->opts[d->qopt].offset, sizeof v);
                check(bt_q_decode_f32(&c.qopt_mant, &c.qopt_exp, &v), "op_call", "float option");
            }
            bt_rng rng;
            bt_rng_seed(&rng, seed, 0x62696f7472u);
            c.rng = &rng;
            bt_q_stats out_st{0, 0}, din_st[BT_MAX_NODE_INPUTS] = {{0, 0}, {0, 0}};
            bt_q_stats grad_st[BT_MAX_PARAMS_PER_NODE] = {{0, 0}, {0, 0}, {0, 0}, {0, 0}};
            c.out_st = &out_st;
            for (int i = 0; i < BT_MAX_NODE_INPUTS; ++i) c.din_st[i] = &din_st[i];
            c.grad_st = grad_st;

            // What the op saves for its backward: fresh (forward) or as the forward returned it (backward).
            bt_saved_spec specs[BT_MAX_SAVED];
            std::memset(specs, 0, sizeof specs);
            const int n_saved = d->saved ? d->saved(&g, &nd, rows, dt, specs) : 0;
            std::vector<AlignedBuffer> saved(n_saved);
            for (int j = 0; j < n_saved; ++j) {
                saved[j].reset(specs[j].bytes ? specs[j].bytes : 1, BT_ARENA_ALIGN);
                std::memset(saved[j].data(), 0, specs[j].bytes);
                if (phase != "forward") {
                    if (saved_arr.is_none()) throw py::value_error("op_call: the backward needs the forward's saved");
                    py::list sl = saved_arr.cast<py::list>();
                    if ((int)sl.size() != n_saved) throw py::value_error("op_call: saved holds the wrong count");
                    auto b = py::array_t<uint8_t, py::array::c_style | py::array::forcecast>::ensure(sl[j]);
                    if (!b || (size_t)b.size() != specs[j].bytes)
                        throw py::value_error("op_call: saved[" + std::to_string(j) + "] must hold " +
                                              std::to_string(specs[j].bytes) + " bytes");
                    std::memcpy(saved[j].data(), b.data(), specs[j].bytes);
                }
                c.saved[j] = saved[j].data();
            }
            py::dict res;
            bt_status st;
            if (phase == "forward") {
                py::array out = new_array(dt, Elem::act, out_shape);
                c.out = out.mutable_data();
                st = kern->forward(&c);
                check(st, "op_call " + kind + " forward", "");
                py::list sv;
                for (int j = 0; j < n_saved; ++j) {
                    py::array_t<uint8_t> b((py::ssize_t)specs[j].bytes);
                    std::memcpy(b.mutable_data(), saved[j].data(), specs[j].bytes);
                    sv.append(b);
                }
                res["out"] = out;
                res["saved"] = sv;
                res["out_stats"] = stats(out_st);
                return res;
            }
            if (dout_arr.is_none()) throw py::value_error("op_call: the backward needs dout");
            py::array dout = take(dout_arr, dt, Elem::act, out_numel, "dout");
            c.dout = dout.data();
            py::array outv;
            if (!out_arr.is_none()) {
                outv = take(out_arr, dt, Elem::act, out_numel, "out");
                c.out = const_cast<void *>(outv.data());
            }
            if (phase == "backward_input") {
                if (slot < 0 || slot >= d->n_inputs) throw py::value_error("op_call: no input slot " + std::to_string(slot));
                const bt_node &src = g.nodes[ins[slot]];
                py::array din = new_array(dt, Elem::act, {rows, src.c, src.h, src.w});
                std::memset(din.mutable_data(), 0, din.nbytes());
                c.din[slot] = din.mutable_data();
                st = kern->backward_input(&c, slot);
                check(st, "op_call " + kind + " backward_input", "");
                res["din"] = din;
                res["din_stats"] = stats(din_st[slot]);
                return res;
            }
            if (phase == "backward_weight") {
                if (!kern->backward_weight) throw py::value_error("op_call: " + kind + " has no weight gradient");
                py::list pg = pgrad_arr.is_none() ? py::list() : pgrad_arr.cast<py::list>();
                py::list outs;
                const int n_tr = d->trainable_count ? d->trainable_count(&nd) : n_par;
                for (int j = 0; j < n_tr; ++j) {
                    py::array a = new_array(dt, Elem::param, {(py::ssize_t)d->param_numel(&g, &nd, j)});
                    if (j < (int)pg.size()) {
                        py::array init = take(pg[j], dt, Elem::param, (size_t)a.size(), "pgrad " + std::to_string(j));
                        std::memcpy(a.mutable_data(), init.data(), a.nbytes());
                    } else {
                        std::memset(a.mutable_data(), 0, a.nbytes());
                    }
                    c.pgrad[j] = a.mutable_data();
                    outs.append(a);
                }
                st = kern->backward_weight(&c);
                check(st, "op_call " + kind + " backward_weight", "");
                py::list gs;
                for (int j = 0; j < n_tr; ++j) gs.append(stats(grad_st[j]));
                res["pgrad"] = outs;
                res["grad_stats"] = gs;
                return res;
            }
            throw py::value_error("op_call: phase must be forward, backward_input or backward_weight");
        },
        py::arg("kind"), py::arg("inputs"), py::arg("opts") = py::dict(), py::arg("dtype") = "float32",
        py::arg("phase") = "forward", py::arg("params") = py::list(), py::arg("train") = true,
        py::arg("out") = py::none(), py::arg("dout") = py::none(), py::arg("saved") = py::none(),
        py::arg("pgrad") = py::none(), py::arg("slot") = 0, py::arg("fracs") = py::dict(), py::arg("seed") = 0,
        "Runs one phase of one op's kernels (its op-table descriptor) on arrays; the op test's harness.");
}

}  // namespace bt
