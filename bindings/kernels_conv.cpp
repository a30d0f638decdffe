// conv2d float32 kernels. The user's dims go to C unchanged, so the C status
// decides what is a bad size; the binding only checks what C cannot see
// (array ranks, dims that must agree between arrays) so that C never reads or
// writes outside a numpy buffer.
#include "bindings.h"
#include <pybind11/stl.h>
#include <algorithm>
#include <array>
#include <climits>
#include <optional>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

std::string dims_str(const std::vector<long long> &d) {
    std::ostringstream os;
    os << "(";
    for (size_t i = 0; i < d.size(); ++i) os << (i ? ", " : "") << d[i];
    if (d.size() == 1) os << ",";
    os << ")";
    return os.str();
}

int int_arg(long long v, const std::string &kernel, const char *name) {
    if (v < INT_MIN || v > INT_MAX)
        throw py::value_error(kernel + ": " + name + " out of the int range");
    return (int)v;
}

// A user-given shape (x_shape, w_shape) of exactly 4 ints.
std::array<int, 4> shape4_arg(const std::vector<long long> &d, const std::string &kernel,
                              const char *name) {
    if (d.size() != 4)
        throw py::value_error(kernel + ": " + name + " must have 4 entries, got " + dims_str(d));
    std::array<int, 4> r{};
    for (int i = 0; i < 4; ++i) r[i] = int_arg(d[i], kernel, name);
    return r;
}

struct ConvArgs {
    pair_t stride, padding, dilation;
    int groups;
    std::string str() const {
        return "stride=" + pair_str(stride) + ", padding=" + pair_str(padding) +
               ", dilation=" + pair_str(dilation) + ", groups=" + std::to_string(groups);
    }
};

ConvArgs conv_args(const py::object &stride, const py::object &padding, const py::object &dilation,
                   long long groups, const std::string &kernel) {
    return {pair_arg(stride, kernel, "stride"), pair_arg(padding, kernel, "padding"),
            pair_arg(dilation, kernel, "dilation"), int_arg(groups, kernel, "groups")};
}

bt_conv2d_shape make_shape(const std::array<int, 4> &x, int c_out, int k_h, int k_w,
                           const ConvArgs &a) {
    bt_conv2d_shape s;
    s.n = x[0];
    s.c_in = x[1];
    s.h_in = x[2];
    s.w_in = x[3];
    s.c_out = c_out;
    s.k_h = k_h;
    s.k_w = k_w;
    s.stride_h = a.stride[0];
    s.stride_w = a.stride[1];
    s.pad_h = a.padding[0];
    s.pad_w = a.padding[1];
    s.dil_h = a.dilation[0];
    s.dil_w = a.dilation[1];
    s.groups = a.groups;
    return s;
}

py::array_t<float> conv2d_forward(const farray &x, const farray &w, std::optional<farray> b,
                                  const py::object &stride, const py::object &padding,
                                  const py::object &dilation, long long groups) {
    const std::string k = "conv2d_forward_f32";
    const ConvArgs a = conv_args(stride, padding, dilation, groups, k);
    const std::string detail = "x " + shape_str(x) + ", w " + shape_str(w) +
                               (b ? ", b " + shape_str(*b) : std::string()) + ", " + a.str();
    need(x.ndim() == 4, k, "x must be 4-D (N, C, H, W)", detail);
    need(w.ndim() == 4, k, "w must be 4-D (C_out, C_in/groups, KH, KW)", detail);
    need(!b || b->ndim() == 1, k, "b must be 1-D", detail);
    bt_conv2d_shape s = make_shape(dims4(x, k, detail), dim(w, 0, k, detail), dim(w, 2, k, detail),
                                   dim(w, 3, k, detail), a);
    int ho = 0, wo = 0;
    check(bt_conv2d_check(&s, &ho, &wo), k, detail);
    need((long long)w.shape(1) * s.groups == s.c_in, k, "w.shape[1] * groups != C_in", detail);
    need(!b || b->shape(0) == s.c_out, k, "b must have C_out entries", detail);
    py::array_t<float> y({(py::ssize_t)s.n, (py::ssize_t)s.c_out, (py::ssize_t)ho, (py::ssize_t)wo});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_conv2d_forward_f32(y.mutable_data(), x.data(), w.data(), b ? b->data() : nullptr, &s);
    }
    check(st, k, detail);
    return y;
}

py::array_t<float> conv2d_backward_input(const farray &dy, const farray &w,
                                         const std::vector<long long> &x_shape,
                                         const py::object &stride, const py::object &padding,
                                         const py::object &dilation, long long groups) {
    const std::string k = "conv2d_backward_input_f32";
    const ConvArgs a = conv_args(stride, padding, dilation, groups, k);
    const std::string detail = "dy " + shape_str(dy) + ", w " + shape_str(w) + ", x_shape " +
                               dims_str(x_shape) + ", " + a.str();
    const std::array<int, 4> xs = shape4_arg(x_shape, k, "x_shape");
    need(dy.ndim() == 4, k, "dy must be 4-D (N, C_out, H_out, W_out)", detail);
    need(w.ndim() == 4, k, "w must be 4-D (C_out, C_in/groups, KH, KW)", detail);
    bt_conv2d_shape s =
        make_shape(xs, dim(w, 0, k, detail), dim(w, 2, k, detail), dim(w, 3, k, detail), a);
    int ho = 0, wo = 0;
    check(bt_conv2d_check(&s, &ho, &wo), k, detail);
    need((long long)w.shape(1) * s.groups == s.c_in, k, "w.shape[1] * groups != C_in", detail);
    need(dy.shape(0) == s.n && dy.shape(1) == s.c_out && dy.shape(2) == ho && dy.shape(3) == wo, k,
         "dy must be (N, C_out, H_out, W_out) = " + dims_str({s.n, s.c_out, ho, wo}), detail);
    py::array_t<float> dx({(py::ssize_t)s.n, (py::ssize_t)s.c_in, (py::ssize_t)s.h_in,
                           (py::ssize_t)s.w_in});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_conv2d_backward_input_f32(dx.mutable_data(), dy.data(), w.data(), &s);
    }
    check(st, k, detail);
    return dx;
}

// Shared by the allocating and the accumulating form of backward_weight.
void conv2d_backward_weight_into(const std::string &k, float *dw, float *db, bool has_db,
                                 long long db_len, const farray &dy, const farray &x,
                                 const std::array<int, 4> &ws, const ConvArgs &a,
                                 const std::string &detail) {
    need(dy.ndim() == 4, k, "dy must be 4-D (N, C_out, H_out, W_out)", detail);
    need(x.ndim() == 4, k, "x must be 4-D (N, C, H, W)", detail);
    bt_conv2d_shape s = make_shape(dims4(x, k, detail), ws[0], ws[2], ws[3], a);
    int ho = 0, wo = 0;
    check(bt_conv2d_check(&s, &ho, &wo), k, detail);
    need((long long)ws[1] * s.groups == s.c_in, k, "w_shape[1] * groups != C_in", detail);
    need(!has_db || db_len == s.c_out, k, "db must have C_out entries", detail);
    need(dy.shape(0) == s.n && dy.shape(1) == s.c_out && dy.shape(2) == ho && dy.shape(3) == wo, k,
         "dy must be (N, C_out, H_out, W_out) = " + dims_str({s.n, s.c_out, ho, wo}), detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_conv2d_backward_weight_f32(dw, has_db ? db : nullptr, dy.data(), x.data(), &s);
    }
    check(st, k, detail);
}

py::tuple conv2d_backward_weight(const farray &dy, const farray &x,
                                 const std::vector<long long> &w_shape, bool has_bias,
                                 const py::object &stride, const py::object &padding,
                                 const py::object &dilation, long long groups) {
    const std::string k = "conv2d_backward_weight_f32";
    const ConvArgs a = conv_args(stride, padding, dilation, groups, k);
    const std::string detail = "dy " + shape_str(dy) + ", x " + shape_str(x) + ", w_shape " +
                               dims_str(w_shape) + ", " + a.str();
    const std::array<int, 4> ws = shape4_arg(w_shape, k, "w_shape");
    // Validate before allocating: C decides on the sizes.
    need(x.ndim() == 4, k, "x must be 4-D (N, C, H, W)", detail);
    bt_conv2d_shape s = make_shape(dims4(x, k, detail), ws[0], ws[2], ws[3], a);
    check(bt_conv2d_check(&s, nullptr, nullptr), k, detail);
    need((long long)ws[1] * s.groups == s.c_in, k, "w_shape[1] * groups != C_in", detail);
    py::array_t<float> dw({(py::ssize_t)ws[0], (py::ssize_t)ws[1], (py::ssize_t)ws[2],
                           (py::ssize_t)ws[3]});
    std::fill(dw.mutable_data(), dw.mutable_data() + dw.size(), 0.0f);
    py::object db_obj = py::none();
    float *db = nullptr;
    if (has_bias) {
        py::array_t<float> db_arr((py::ssize_t)ws[0]);
        std::fill(db_arr.mutable_data(), db_arr.mutable_data() + db_arr.size(), 0.0f);
        db = db_arr.mutable_data();
        db_obj = db_arr;
    }
    conv2d_backward_weight_into(k, dw.mutable_data(), db, has_bias, ws[0], dy, x, ws, a, detail);
    return py::make_tuple(dw, db_obj);
}

void conv2d_backward_weight_acc(py::array dw, std::optional<py::array> db, const farray &dy,
                                const farray &x, const py::object &stride,
                                const py::object &padding, const py::object &dilation,
                                long long groups) {
    const std::string k = "conv2d_backward_weight_f32";
    const ConvArgs a = conv_args(stride, padding, dilation, groups, k);
    const std::string detail = "dw " + shape_str(dw) + (db ? ", db " + shape_str(*db) : "") +
                               ", dy " + shape_str(dy) + ", x " + shape_str(x) + ", " + a.str();
    float *dwp = acc_ptr(dw, k, "dw");
    float *dbp = db ? acc_ptr(*db, k, "db") : nullptr;
    need(dw.ndim() == 4, k, "dw must be 4-D (C_out, C_in/groups, KH, KW)", detail);
    need(!db || db->ndim() == 1, k, "db must be 1-D", detail);
    const std::array<int, 4> ws = dims4(dw, k, detail);
    conv2d_backward_weight_into(k, dwp, dbp, (bool)db, db ? (long long)db->shape(0) : 0, dy, x, ws,
                                a, detail);
}

}  // namespace

void bind_kernels_conv(py::module_ &m) {
    const auto one = py::make_tuple(1, 1), zero = py::make_tuple(0, 0);
    m.def("conv2d_forward_f32", &conv2d_forward, py::arg("x"), py::arg("w"), py::arg("b"),
          py::arg("stride") = one, py::arg("padding") = zero, py::arg("dilation") = one,
          py::arg("groups") = 1,
          "y [N, C_out, H_out, W_out] = conv2d(x [N, C_in, H, W], w [C_out, C_in/groups, KH, KW], "
          "b [C_out] or None). stride, padding, dilation: int or (h, w).");
    m.def("conv2d_backward_input_f32", &conv2d_backward_input, py::arg("dy"), py::arg("w"),
          py::arg("x_shape"), py::arg("stride") = one, py::arg("padding") = zero,
          py::arg("dilation") = one, py::arg("groups") = 1,
          "dx [x_shape] = gradient of sum(y * dy) w.r.t. the conv input.");
    m.def("conv2d_backward_weight_f32", &conv2d_backward_weight, py::arg("dy"), py::arg("x"),
          py::arg("w_shape"), py::arg("has_bias"), py::arg("stride") = one,
          py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = 1,
          "(dw, db or None): weight and bias gradients, accumulated into fresh zeros.");
    m.def("conv2d_backward_weight_acc_f32", &conv2d_backward_weight_acc, py::arg("dw"),
          py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("stride") = one,
          py::arg("padding") = zero, py::arg("dilation") = one, py::arg("groups") = 1,
          "dw += weight gradient, db += bias gradient (db may be None), in place. dw and db "
          "must be writeable C-contiguous float32 arrays.");
}

}  // namespace bt
