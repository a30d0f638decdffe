// Fixed-point kernels (qmath.h) for kernel-level tests. Arrays must
// already have the kernel's integer type: a float or wider array is refused,
// never cast (a cast could wrap). Each call returns its outputs and, where the
// kernel records one, its statistics as a dict {saturated, absmax}.
#include "bindings.h"
#include <pybind11/stl.h>
#include <array>
#include <climits>
#include <optional>
extern "C" {
#include "biotrain/kernels.h"
#include "biotrain/optim.h"
}

namespace bt {
namespace {

#define AS8(a, k) typed<int8_t>(a, k, #a, "int8")
#define AS16(a, k) typed<int16_t>(a, k, #a, "int16")
#define AS32(a, k) typed<int32_t>(a, k, #a, "int32")

bt_conv2d_shape conv_shape(const py::array &x, const py::array &w, pair_t stride, pair_t pad, pair_t dil,
                           int groups, const std::string &k) {
    need(x.ndim() == 4 && w.ndim() == 4, k, "x and weight must be 4-D, got x " + shape_str(x) + ", weight " +
                                                 shape_str(w));
    bt_conv2d_shape s;
    s.n = as_int(x.shape(0), k); s.c_in = as_int(x.shape(1), k); s.h_in = as_int(x.shape(2), k);
    s.w_in = as_int(x.shape(3), k);
    s.c_out = as_int(w.shape(0), k); s.k_h = as_int(w.shape(2), k); s.k_w = as_int(w.shape(3), k);
    s.stride_h = stride[0]; s.stride_w = stride[1]; s.pad_h = pad[0]; s.pad_w = pad[1];
    s.dil_h = dil[0]; s.dil_w = dil[1]; s.groups = groups;
    need(groups >= 1 && w.shape(1) * groups == x.shape(1), k,
         "weight " + shape_str(w) + " does not match x " + shape_str(x) + " with groups=" + std::to_string(groups));
    return s;
}

bt_conv2d_shape conv_shape_dims(const std::array<int, 4> &xs, const py::array &w, pair_t stride, pair_t pad,
                                pair_t dil, int groups, const std::string &k) {
    bt_conv2d_shape s;
    need(w.ndim() == 4, k, "weight must be 4-D, got " + shape_str(w));
    s.n = xs[0]; s.c_in = xs[1]; s.h_in = xs[2]; s.w_in = xs[3];
    s.c_out = as_int(w.shape(0), k); s.k_h = as_int(w.shape(2), k); s.k_w = as_int(w.shape(3), k);
    s.stride_h = stride[0]; s.stride_w = stride[1]; s.pad_h = pad[0]; s.pad_w = pad[1];
    s.dil_h = dil[0]; s.dil_w = dil[1]; s.groups = groups;
    need(groups >= 1 && w.shape(1) * groups == xs[1], k, "weight " + shape_str(w) + " does not match x_shape");
    return s;
}

bt_pool2d_shape pool_shape(const std::array<int, 4> &xs, pair_t k, pair_t stride, pair_t pad) {
    bt_pool2d_shape s;
    s.n = xs[0]; s.c = xs[1]; s.h_in = xs[2]; s.w_in = xs[3];
    s.k_h = k[0]; s.k_w = k[1]; s.stride_h = stride[0]; s.stride_w = stride[1];
    s.pad_h = pad[0]; s.pad_w = pad[1];
    return s;
}

template <typename T>
py::array_t<T> empty_like_dims(std::initializer_list<py::ssize_t> d) {
    return py::array_t<T>(std::vector<py::ssize_t>(d));
}

py::array_t<int8_t> out8(const std::vector<py::ssize_t> &d) { return py::array_t<int8_t>(d); }

}  // namespace

void bind_kernels_fixed(py::module_ &m) {
    // ---------------------------------------------------------------- rules
    m.def("q_shift_round", [](int64_t x, int shift) { return bt_q_shift_round(x, shift); });
    m.def("q_div_round", [](int64_t num, int64_t den) {
        if (den <= 0) throw py::value_error("q_div_round: den must be > 0");
        return bt_q_div_round(num, den);
    });
    m.def("q_isqrt64", [](uint64_t v) { return bt_q_isqrt64(v); });
    m.def("q_log2_q16", [](uint64_t v, int frac) {
        if (v == 0 || v >= (uint64_t(1) << 62)) throw py::value_error("q_log2_q16: v must be in [1, 2^62)");
        return bt_q_log2_q16(v, frac);
    });
    m.def("q_exp_neg_q30", [](const py::array &x, int frac) {
        auto a = AS32(x, "q_exp_neg_q30");
        i32 out(shape_of(a));
        for (py::ssize_t i = 0; i < a.size(); ++i) out.mutable_data()[i] = bt_q_exp_neg_q30(a.data()[i], frac);
        return out;
    });
    m.def("q_decode_f32", [](float v) {
        int32_t mant = 0;
        int e = 0;
        check(bt_q_decode_f32(&mant, &e, &v), "q_decode_f32", "value " + std::to_string(v));
        return py::make_tuple(mant, e);
    });
    m.def("q_frac_adapt", [](int frac, uint32_t absmax, int top) { return bt_q_frac_adapt(frac, absmax, top); });

    // ---------------------------------------------------------- elementwise
    m.def("requant_q7", [](const py::array &x, int in_frac, int out_frac) {
        const std::string k = "requant_q7";
        auto a = AS8(x, k);
        auto out = out8(shape_of(a));
        bt_q_stats st{0, 0};
        check(bt_requant_q7(out.mutable_data(), out_frac, &st, a.data(), in_frac, (int)a.size()), k,
              "x " + shape_str(a));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("requant_q15_to_q7", [](const py::array &x, int in_frac, int out_frac) {
        const std::string k = "requant_q15_to_q7";
        auto a = AS16(x, k);
        auto out = out8(shape_of(a));
        bt_q_stats st{0, 0};
        check(bt_requant_q15_to_q7(out.mutable_data(), out_frac, &st, a.data(), in_frac, (int)a.size()), k,
              "x " + shape_str(a));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("requant_q31_to_q7", [](const py::array &x, int in_frac, int out_frac) {
        const std::string k = "requant_q31_to_q7";
        auto a = AS32(x, k);
        auto out = out8(shape_of(a));
        bt_q_stats st{0, 0};
        check(bt_requant_q31_to_q7(out.mutable_data(), out_frac, &st, a.data(), in_frac, (int)a.size()), k,
              "x " + shape_str(a));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("add_forward_q7", [](const py::array &a_, int a_frac, const py::array &b_, int b_frac, int out_frac) {
        const std::string k = "add_forward_q7";
        auto a = AS8(a_, k);
        auto b = AS8(b_, k);
        need(a.size() == b.size(), k, "a " + shape_str(a) + " and b " + shape_str(b) + " differ in size");
        auto out = out8(shape_of(a));
        bt_q_stats st{0, 0};
        check(bt_add_forward_q7(out.mutable_data(), out_frac, &st, a.data(), a_frac, b.data(), b_frac,
                                (int)a.size()),
              k, "a " + shape_str(a));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("accumulate_q7", [](const py::array &acc_, int acc_frac, const py::array &x_, int x_frac) {
        const std::string k = "accumulate_q7";
        auto acc = AS8(acc_, k);
        auto x = AS8(x_, k);
        need(acc.size() == x.size(), k, "acc " + shape_str(acc) + " and x " + shape_str(x) + " differ in size");
        py::array_t<int8_t> out(shape_of(acc));
        std::copy(acc.data(), acc.data() + acc.size(), out.mutable_data());
        bt_q_stats st{0, 0};
        check(bt_accumulate_q7(out.mutable_data(), acc_frac, &st, x.data(), x_frac, (int)x.size()), k,
              "x " + shape_str(x));
        return py::make_tuple(out, stats_dict(st));
    });

    // --------------------------------------------------------------- conv2d
    m.def(
        "conv2d_forward_q7",
        [](const py::array &x_, int x_frac, const py::array &w_, int w_frac, std::optional<py::array> b_,
           int b_frac, int out_frac, pair_t stride, pair_t pad, pair_t dil, int groups) {
            const std::string k = "conv2d_forward_q7";
            auto x = AS8(x_, k);
            auto w = AS8(w_, k);
            std::optional<i32> b;
            if (b_) {
                b = AS32(*b_, k);
                need(b->ndim() == 1 && b->shape(0) == w.shape(0), k, "bias " + shape_str(*b) + " vs weight " + shape_str(w));
            }
            bt_conv2d_shape s = conv_shape(x, w, stride, pad, dil, groups, k);
            int ho = 0, wo = 0;
            check(bt_conv2d_check(&s, &ho, &wo), k, "x " + shape_str(x) + ", weight " + shape_str(w));
            auto out = out8({s.n, s.c_out, ho, wo});
            bt_q_stats st{0, 0};
            check(bt_conv2d_forward_q7(out.mutable_data(), out_frac, &st, x.data(), x_frac, w.data(), w_frac,
                                       b ? b->data() : nullptr, b_frac, &s),
                  k, "x " + shape_str(x) + ", weight " + shape_str(w));
            return py::make_tuple(out, stats_dict(st));
        },
        py::arg("x"), py::arg("x_frac"), py::arg("weight"), py::arg("w_frac"), py::arg("bias"),
        py::arg("bias_frac"), py::arg("out_frac"), py::arg("stride"), py::arg("padding"), py::arg("dilation"),
        py::arg("groups"));
    m.def(
        "conv2d_backward_input_q7",
        [](const py::array &dy_, int dy_frac, const py::array &w_, int w_frac, std::array<int, 4> x_shape,
           int dx_frac, pair_t stride, pair_t pad, pair_t dil, int groups) {
            const std::string k = "conv2d_backward_input_q7";
            auto dy = AS8(dy_, k);
            auto w = AS8(w_, k);
            bt_conv2d_shape s = conv_shape_dims(x_shape, w, stride, pad, dil, groups, k);
            int ho = 0, wo = 0;
            check(bt_conv2d_check(&s, &ho, &wo), k, "weight " + shape_str(w));
            need(dy.ndim() == 4 && dy.shape(0) == s.n && dy.shape(1) == s.c_out && dy.shape(2) == ho &&
                     dy.shape(3) == wo,
                 k, "d_out " + shape_str(dy) + " does not match the conv's output");
            auto out = out8({s.n, s.c_in, s.h_in, s.w_in});
            bt_q_stats st{0, 0};
            check(bt_conv2d_backward_input_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, w.data(),
                                              w_frac, &s),
                  k, "d_out " + shape_str(dy) + ", weight " + shape_str(w));
            return py::make_tuple(out, stats_dict(st));
        });
    m.def(
        "conv2d_backward_weight_q7",
        [](const py::array &dw_, int dw_frac, std::optional<py::array> db_, int db_frac, const py::array &dy_,
           int dy_frac, const py::array &x_, int x_frac, pair_t stride, pair_t pad, pair_t dil, int groups) {
            const std::string k = "conv2d_backward_weight_q7";
            auto dwa = AS32(dw_, k);
            auto dy = AS8(dy_, k);
            auto x = AS8(x_, k);
            bt_conv2d_shape s = conv_shape(x, dwa, stride, pad, dil, groups, k);
            int ho = 0, wo = 0;
            check(bt_conv2d_check(&s, &ho, &wo), k, "x " + shape_str(x));
            need(dy.ndim() == 4 && dy.shape(0) == s.n && dy.shape(1) == s.c_out && dy.shape(2) == ho &&
                     dy.shape(3) == wo,
                 k, "d_out " + shape_str(dy) + " does not match the conv's output");
            py::array_t<int32_t> dw(shape_of(dwa));
            std::copy(dwa.data(), dwa.data() + dwa.size(), dw.mutable_data());
            py::object db_out = py::none();
            int32_t *dbp = nullptr;
            if (db_) {
                auto dba = AS32(*db_, k);
                need(dba.ndim() == 1 && dba.shape(0) == s.c_out, k, "d_bias " + shape_str(dba));
                py::array_t<int32_t> db(shape_of(dba));
                std::copy(dba.data(), dba.data() + dba.size(), db.mutable_data());
                dbp = db.mutable_data();
                db_out = db;
            }
            bt_q_stats st{0, 0};
            check(bt_conv2d_backward_weight_q7(dw.mutable_data(), dw_frac, dbp, db_frac, &st, dy.data(), dy_frac,
                                               x.data(), x_frac, &s),
                  k, "d_out " + shape_str(dy) + ", x " + shape_str(x));
            return py::make_tuple(dw, db_out, stats_dict(st));
        });

    // --------------------------------------------------------------- linear
    m.def("linear_forward_q7", [](const py::array &x_, int x_frac, const py::array &w_, int w_frac,
                                  std::optional<py::array> b_, int b_frac, int out_frac) {
        const std::string k = "linear_forward_q7";
        auto x = AS8(x_, k);
        auto w = AS8(w_, k);
        need(x.ndim() == 2 && w.ndim() == 2 && x.shape(1) == w.shape(1), k,
             "x " + shape_str(x) + " vs weight " + shape_str(w));
        std::optional<i32> b;
        if (b_) {
            b = AS32(*b_, k);
            need(b->ndim() == 1 && b->shape(0) == w.shape(0), k, "bias " + shape_str(*b));
        }
        auto out = out8({x.shape(0), w.shape(0)});
        bt_q_stats st{0, 0};
        check(bt_linear_forward_q7(out.mutable_data(), out_frac, &st, x.data(), x_frac, w.data(), w_frac,
                                   b ? b->data() : nullptr, b_frac, as_int(x.shape(0), k), as_int(x.shape(1), k),
                                   as_int(w.shape(0), k)),
              k, "x " + shape_str(x) + ", weight " + shape_str(w));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("linear_backward_input_q7", [](const py::array &dy_, int dy_frac, const py::array &w_, int w_frac,
                                         int dx_frac) {
        const std::string k = "linear_backward_input_q7";
        auto dy = AS8(dy_, k);
        auto w = AS8(w_, k);
        need(dy.ndim() == 2 && w.ndim() == 2 && dy.shape(1) == w.shape(0), k,
             "d_out " + shape_str(dy) + " vs weight " + shape_str(w));
        auto out = out8({dy.shape(0), w.shape(1)});
        bt_q_stats st{0, 0};
        check(bt_linear_backward_input_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, w.data(), w_frac,
                                          as_int(dy.shape(0), k), as_int(w.shape(1), k), as_int(w.shape(0), k)),
              k, "d_out " + shape_str(dy) + ", weight " + shape_str(w));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("linear_backward_weight_q7", [](const py::array &dw_, int dw_frac, std::optional<py::array> db_,
                                          int db_frac, const py::array &dy_, int dy_frac, const py::array &x_,
                                          int x_frac) {
        const std::string k = "linear_backward_weight_q7";
        auto dwa = AS32(dw_, k);
        auto dy = AS8(dy_, k);
        auto x = AS8(x_, k);
        need(dwa.ndim() == 2 && dy.ndim() == 2 && x.ndim() == 2 && dy.shape(0) == x.shape(0) &&
                 dwa.shape(0) == dy.shape(1) && dwa.shape(1) == x.shape(1),
             k, "d_weight " + shape_str(dwa) + ", d_out " + shape_str(dy) + ", x " + shape_str(x));
        py::array_t<int32_t> dw(shape_of(dwa));
        std::copy(dwa.data(), dwa.data() + dwa.size(), dw.mutable_data());
        py::object db_out = py::none();
        int32_t *dbp = nullptr;
        if (db_) {
            auto dba = AS32(*db_, k);
            need(dba.ndim() == 1 && dba.shape(0) == dwa.shape(0), k, "d_bias " + shape_str(dba));
            py::array_t<int32_t> db(shape_of(dba));
            std::copy(dba.data(), dba.data() + dba.size(), db.mutable_data());
            dbp = db.mutable_data();
            db_out = db;
        }
        bt_q_stats st{0, 0};
        check(bt_linear_backward_weight_q7(dw.mutable_data(), dw_frac, dbp, db_frac, &st, dy.data(), dy_frac,
                                           x.data(), x_frac, as_int(x.shape(0), k), as_int(x.shape(1), k),
                                           as_int(dy.shape(1), k)),
              k, "d_out " + shape_str(dy) + ", x " + shape_str(x));
        return py::make_tuple(dw, db_out, stats_dict(st));
    });

    // ------------------------------------------------------------ groupnorm
    m.def("groupnorm_forward_q7", [](const py::array &x_, int x_frac, std::optional<py::array> g_, int g_frac,
                                     std::optional<py::array> b_, int b_frac, int groups, int out_frac,
                                     int32_t eps_mant, int eps_exp) {
        const std::string k = "groupnorm_forward_q7";
        auto x = AS8(x_, k);
        need(x.ndim() == 3, k, "x must be [n, c, hw], got " + shape_str(x));
        int n = as_int(x.shape(0), k), c = as_int(x.shape(1), k), hw = as_int(x.shape(2), k);
        std::optional<i32> g, b;
        if (g_) { g = AS32(*g_, k); need(g->ndim() == 1 && g->shape(0) == c, k, "weight " + shape_str(*g)); }
        if (b_) { b = AS32(*b_, k); need(b->ndim() == 1 && b->shape(0) == c, k, "bias " + shape_str(*b)); }
        need(groups >= 1, k, "groups must be >= 1");
        auto out = out8(shape_of(x));
        py::array_t<int32_t> mean({(py::ssize_t)n, (py::ssize_t)groups}), rstd({(py::ssize_t)n, (py::ssize_t)groups});
        bt_q_stats st{0, 0};
        check(bt_groupnorm_forward_q7(out.mutable_data(), out_frac, &st, mean.mutable_data(), rstd.mutable_data(),
                                      x.data(), x_frac, g ? g->data() : nullptr, g_frac, b ? b->data() : nullptr,
                                      b_frac, n, c, hw, groups, eps_mant, eps_exp),
              k, "x " + shape_str(x) + ", groups=" + std::to_string(groups));
        return py::make_tuple(out, mean, rstd, stats_dict(st));
    });
    m.def("groupnorm_backward_input_q7", [](const py::array &dy_, int dy_frac, const py::array &x_, int x_frac,
                                            const py::array &mean_, const py::array &rstd_,
                                            std::optional<py::array> g_, int g_frac, int groups, int dx_frac) {
        const std::string k = "groupnorm_backward_input_q7";
        auto dy = AS8(dy_, k);
        auto x = AS8(x_, k);
        auto mean = AS32(mean_, k);
        auto rstd = AS32(rstd_, k);
        need(x.ndim() == 3 && dy.ndim() == 3 && dy.shape(0) == x.shape(0) && dy.shape(1) == x.shape(1) &&
                 dy.shape(2) == x.shape(2),
             k, "d_out " + shape_str(dy) + " vs x " + shape_str(x));
        int n = as_int(x.shape(0), k), c = as_int(x.shape(1), k), hw = as_int(x.shape(2), k);
        need(groups >= 1 && mean.size() == (py::ssize_t)n * groups && rstd.size() == (py::ssize_t)n * groups, k,
             "mean/rstd must be [n, groups]");
        std::optional<i32> g;
        if (g_) { g = AS32(*g_, k); need(g->ndim() == 1 && g->shape(0) == c, k, "weight " + shape_str(*g)); }
        auto out = out8(shape_of(x));
        bt_q_stats st{0, 0};
        check(bt_groupnorm_backward_input_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, x.data(),
                                             x_frac, mean.data(), rstd.data(), g ? g->data() : nullptr, g_frac, n,
                                             c, hw, groups),
              k, "x " + shape_str(x) + ", groups=" + std::to_string(groups));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("groupnorm_backward_weight_q7", [](std::optional<py::array> dg_, int dg_frac,
                                             std::optional<py::array> db_, int db_frac, const py::array &dy_,
                                             int dy_frac, const py::array &x_, int x_frac, const py::array &mean_,
                                             const py::array &rstd_, int groups) {
        const std::string k = "groupnorm_backward_weight_q7";
        auto dy = AS8(dy_, k);
        auto x = AS8(x_, k);
        auto mean = AS32(mean_, k);
        auto rstd = AS32(rstd_, k);
        need(x.ndim() == 3 && dy.ndim() == 3 && dy.shape(0) == x.shape(0) && dy.shape(1) == x.shape(1) &&
                 dy.shape(2) == x.shape(2),
             k, "d_out " + shape_str(dy) + " vs x " + shape_str(x));
        int n = as_int(x.shape(0), k), c = as_int(x.shape(1), k), hw = as_int(x.shape(2), k);
        need(groups >= 1 && mean.size() == (py::ssize_t)n * groups && rstd.size() == (py::ssize_t)n * groups, k,
             "mean/rstd must be [n, groups]");
        py::object dg_out = py::none(), db_out = py::none();
        int32_t *dgp = nullptr, *dbp = nullptr;
        if (dg_) {
            auto a = AS32(*dg_, k);
            need(a.ndim() == 1 && a.shape(0) == c, k, "d_weight " + shape_str(a));
            py::array_t<int32_t> o(shape_of(a));
            std::copy(a.data(), a.data() + a.size(), o.mutable_data());
            dgp = o.mutable_data();
            dg_out = o;
        }
        if (db_) {
            auto a = AS32(*db_, k);
            need(a.ndim() == 1 && a.shape(0) == c, k, "d_bias " + shape_str(a));
            py::array_t<int32_t> o(shape_of(a));
            std::copy(a.data(), a.data() + a.size(), o.mutable_data());
            dbp = o.mutable_data();
            db_out = o;
        }
        bt_q_stats st{0, 0};
        check(bt_groupnorm_backward_weight_q7(dgp, dg_frac, dbp, db_frac, &st, dy.data(), dy_frac, x.data(), x_frac,
                                              mean.data(), rstd.data(), n, c, hw, groups),
              k, "x " + shape_str(x) + ", groups=" + std::to_string(groups));
        return py::make_tuple(dg_out, db_out, stats_dict(st));
    });

    // ----------------------------------------------------------- activation
    m.def("relu_forward_q7", [](const py::array &x_, int x_frac, int out_frac) {
        const std::string k = "relu_forward_q7";
        auto x = AS8(x_, k);
        auto out = out8(shape_of(x));
        bt_q_stats st{0, 0};
        check(bt_relu_forward_q7(out.mutable_data(), out_frac, &st, x.data(), x_frac, (int)x.size()), k,
              "x " + shape_str(x));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("relu_backward_q7", [](const py::array &dy_, int dy_frac, const py::array &y_, int dx_frac) {
        const std::string k = "relu_backward_q7";
        auto dy = AS8(dy_, k);
        auto y = AS8(y_, k);
        need(dy.size() == y.size(), k, "d_out " + shape_str(dy) + " vs out " + shape_str(y));
        auto out = out8(shape_of(dy));
        bt_q_stats st{0, 0};
        check(bt_relu_backward_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, y.data(), (int)dy.size()),
              k, "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("relu_forward_mask_q7", [](const py::array &x_, int x_frac, int out_frac) {
        const std::string k = "relu_forward_mask_q7";
        auto x = AS8(x_, k);
        auto out = out8(shape_of(x));
        py::array_t<uint32_t> mask((py::ssize_t)((x.size() + 31) / 32));
        bt_q_stats st{0, 0};
        check(bt_relu_forward_mask_q7(out.mutable_data(), out_frac, &st, mask.mutable_data(), x.data(), x_frac,
                                      (int)x.size()),
              k, "x " + shape_str(x));
        return py::make_tuple(out, mask, stats_dict(st));
    });
    m.def("relu_backward_mask_q7", [](const py::array &dy_, int dy_frac, const py::array &mask_, int dx_frac) {
        const std::string k = "relu_backward_mask_q7";
        auto dy = AS8(dy_, k);
        auto mask = typed<uint32_t>(mask_, k, "mask", "uint32");
        need(mask.size() == (dy.size() + 31) / 32, k, "mask " + shape_str(mask) + " for d_out " + shape_str(dy));
        auto out = out8(shape_of(dy));
        bt_q_stats st{0, 0};
        check(bt_relu_backward_mask_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, mask.data(),
                                       (int)dy.size()),
              k, "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("dropout_forward_q7", [](const py::array &x_, int x_frac, int out_frac, int32_t pm, int pe, bt_rng &rng) {
        const std::string k = "dropout_forward_q7";
        auto x = AS8(x_, k);
        auto out = out8(shape_of(x));
        py::array_t<uint8_t> mask(shape_of(x));
        bt_q_stats st{0, 0};
        check(bt_dropout_forward_q7(out.mutable_data(), out_frac, &st, mask.mutable_data(), x.data(), x_frac,
                                    (int)x.size(), pm, pe, &rng),
              k, "x " + shape_str(x));
        return py::make_tuple(out, mask, stats_dict(st));
    });
    m.def("dropout_backward_q7", [](const py::array &dy_, int dy_frac, const py::array &mask_, int dx_frac,
                                    int32_t pm, int pe) {
        const std::string k = "dropout_backward_q7";
        auto dy = AS8(dy_, k);
        auto mask = typed<uint8_t>(mask_, k, "mask", "uint8");
        need(mask.size() == dy.size(), k, "mask " + shape_str(mask) + " vs d_out " + shape_str(dy));
        auto out = out8(shape_of(dy));
        bt_q_stats st{0, 0};
        check(bt_dropout_backward_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, mask.data(),
                                     (int)dy.size(), pm, pe),
              k, "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("elu_forward_q7", [](const py::array &x_, int x_frac, int out_frac, int32_t am, int ae) {
        const std::string k = "elu_forward_q7";
        auto x = AS8(x_, k);
        auto out = out8(shape_of(x));
        bt_q_stats st{0, 0};
        check(bt_elu_forward_q7(out.mutable_data(), out_frac, &st, x.data(), x_frac, (int)x.size(), am, ae), k,
              "x " + shape_str(x));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("elu_backward_q7", [](const py::array &dy_, int dy_frac, const py::array &y_, int y_frac, int dx_frac,
                                int32_t am, int ae) {
        const std::string k = "elu_backward_q7";
        auto dy = AS8(dy_, k);
        auto y = AS8(y_, k);
        need(dy.size() == y.size(), k, "d_out " + shape_str(dy) + " vs out " + shape_str(y));
        auto out = out8(shape_of(dy));
        bt_q_stats st{0, 0};
        check(bt_elu_backward_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, y.data(), y_frac,
                                 (int)dy.size(), am, ae),
              k, "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });

    // ----------------------------------------------------------------- pool
    m.def("avgpool2d_forward_q7", [](const py::array &x_, int x_frac, int out_frac, pair_t kern, pair_t stride,
                                     pair_t pad) {
        const std::string k = "avgpool2d_forward_q7";
        auto x = AS8(x_, k);
        bt_pool2d_shape s = pool_shape(dims4(x, k), kern, stride, pad);
        int ho = 0, wo = 0;
        check(bt_pool2d_check(&s, &ho, &wo), k, "x " + shape_str(x));
        auto out = out8({s.n, s.c, ho, wo});
        bt_q_stats st{0, 0};
        check(bt_avgpool2d_forward_q7(out.mutable_data(), out_frac, &st, x.data(), x_frac, &s), k,
              "x " + shape_str(x));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("avgpool2d_backward_q7", [](const py::array &dy_, int dy_frac, std::array<int, 4> xs, int dx_frac,
                                      pair_t kern, pair_t stride, pair_t pad) {
        const std::string k = "avgpool2d_backward_q7";
        auto dy = AS8(dy_, k);
        bt_pool2d_shape s = pool_shape(xs, kern, stride, pad);
        int ho = 0, wo = 0;
        check(bt_pool2d_check(&s, &ho, &wo), k, "x_shape");
        need(dy.ndim() == 4 && dy.shape(0) == s.n && dy.shape(1) == s.c && dy.shape(2) == ho && dy.shape(3) == wo,
             k, "d_out " + shape_str(dy) + " does not match the pool's output");
        auto out = out8({s.n, s.c, s.h_in, s.w_in});
        bt_q_stats st{0, 0};
        check(bt_avgpool2d_backward_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, &s), k,
              "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });
    m.def("maxpool2d_forward_q7", [](const py::array &x_, int x_frac, int out_frac, pair_t kern, pair_t stride,
                                     pair_t pad) {
        const std::string k = "maxpool2d_forward_q7";
        auto x = AS8(x_, k);
        bt_pool2d_shape s = pool_shape(dims4(x, k), kern, stride, pad);
        int ho = 0, wo = 0;
        check(bt_pool2d_check(&s, &ho, &wo), k, "x " + shape_str(x));
        auto out = out8({s.n, s.c, ho, wo});
        py::array_t<int32_t> am(std::vector<py::ssize_t>{s.n, s.c, ho, wo});
        bt_q_stats st{0, 0};
        check(bt_maxpool2d_forward_q7(out.mutable_data(), out_frac, &st, am.mutable_data(), x.data(), x_frac, &s),
              k, "x " + shape_str(x));
        return py::make_tuple(out, am, stats_dict(st));
    });
    m.def("maxpool2d_backward_q7", [](const py::array &dy_, int dy_frac, const py::array &am_,
                                      std::array<int, 4> xs, int dx_frac, pair_t kern, pair_t stride, pair_t pad) {
        const std::string k = "maxpool2d_backward_q7";
        auto dy = AS8(dy_, k);
        auto am = AS32(am_, k);
        bt_pool2d_shape s = pool_shape(xs, kern, stride, pad);
        int ho = 0, wo = 0;
        check(bt_pool2d_check(&s, &ho, &wo), k, "x_shape");
        need(dy.ndim() == 4 && dy.shape(0) == s.n && dy.shape(1) == s.c && dy.shape(2) == ho &&
                 dy.shape(3) == wo && am.size() == dy.size(),
             k, "d_out " + shape_str(dy) + " / argmax " + shape_str(am) + " do not match the pool's output");
        auto out = out8({s.n, s.c, s.h_in, s.w_in});
        bt_q_stats st{0, 0};
        check(bt_maxpool2d_backward_q7(out.mutable_data(), dx_frac, &st, dy.data(), dy_frac, am.data(), &s), k,
              "d_out " + shape_str(dy));
        return py::make_tuple(out, stats_dict(st));
    });

    // ----------------------------------------------------------------- loss
    m.def("cross_entropy_forward_q7", [](const py::array &z_, int z_frac, const py::array &y_) {
        const std::string k = "cross_entropy_forward_q7";
        auto z = AS8(z_, k);
        auto y = AS32(y_, k);
        need(z.ndim() == 2 && y.ndim() == 1 && y.shape(0) == z.shape(0), k,
             "logits " + shape_str(z) + ", labels " + shape_str(y));
        py::array_t<int16_t> probs(shape_of(z));
        int32_t loss = 0;
        check(bt_cross_entropy_forward_q7(&loss, probs.mutable_data(), z.data(), z_frac, y.data(),
                                          as_int(z.shape(0), k), as_int(z.shape(1), k)),
              k, "logits " + shape_str(z));
        return py::make_tuple(loss, probs);
    });
    m.def("cross_entropy_backward_q7", [](const py::array &p_, const py::array &y_, int den, int d_frac) {
        const std::string k = "cross_entropy_backward_q7";
        auto p = AS16(p_, k);
        auto y = AS32(y_, k);
        need(p.ndim() == 2 && y.ndim() == 1 && y.shape(0) == p.shape(0), k,
             "probs " + shape_str(p) + ", labels " + shape_str(y));
        auto out = out8(shape_of(p));
        bt_q_stats st{0, 0};
        check(bt_cross_entropy_backward_q7(out.mutable_data(), d_frac, &st, p.data(), y.data(), den,
                                           as_int(p.shape(0), k), as_int(p.shape(1), k)),
              k, "probs " + shape_str(p) + ", den=" + std::to_string(den));
        return py::make_tuple(out, stats_dict(st));
    });

    // ------------------------------------------------------------ optimizer
    m.def("sgd_update_q31", [](const py::array &w_, int w_frac, std::optional<py::array> buf_, int buf_frac,
                               const py::array &g_, int g_frac, std::array<int32_t, 2> lr,
                               std::array<int32_t, 2> mom, std::array<int32_t, 2> wd) {
        const std::string k = "sgd_update_q31";
        auto wa = AS32(w_, k);
        auto g = AS32(g_, k);
        need(wa.size() == g.size(), k, "w " + shape_str(wa) + " vs g " + shape_str(g));
        py::array_t<int32_t> w(shape_of(wa));
        std::copy(wa.data(), wa.data() + wa.size(), w.mutable_data());
        py::object buf_out = py::none();
        int32_t *bp = nullptr;
        if (buf_) {
            auto b = AS32(*buf_, k);
            need(b.size() == wa.size(), k, "buf " + shape_str(b));
            py::array_t<int32_t> o(shape_of(b));
            std::copy(b.data(), b.data() + b.size(), o.mutable_data());
            bp = o.mutable_data();
            buf_out = o;
        }
        bt_q_sgd_cfg cfg{lr[0], lr[1], mom[0], mom[1], wd[0], wd[1]};
        bt_q_stats st{0, 0};
        check(bt_sgd_update_q31(w.mutable_data(), w_frac, bp, buf_frac, &st, g.data(), g_frac, (size_t)wa.size(),
                                &cfg),
              k, "w " + shape_str(wa));
        return py::make_tuple(w, buf_out, stats_dict(st));
    });
}

}  // namespace bt
