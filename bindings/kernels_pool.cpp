// Pooling float32 kernels. The user's dims go to C unchanged, so the C status
// decides what is a bad size; the binding only checks array ranks and dims
// that must agree between arrays, so that C never leaves a numpy buffer.
#include "bindings.h"
#include <pybind11/stl.h>
#include <array>
#include <climits>
#include <vector>
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

struct PoolArgs {
    pair_t k, stride, padding;
    std::string str() const {
        return "kernel_size=" + pair_str(k) + ", stride=" + pair_str(stride) +
               ", padding=" + pair_str(padding);
    }
};

// stride None means stride = kernel_size, as in PyTorch.
PoolArgs pool_args(const py::object &k, const py::object &stride, const py::object &padding,
                   const std::string &kernel) {
    PoolArgs a;
    a.k = pair_arg(k, kernel, "kernel_size");
    a.stride = stride.is_none() ? a.k : pair_arg(stride, kernel, "stride");
    a.padding = pair_arg(padding, kernel, "padding");
    return a;
}

bt_pool2d_shape make_shape(const std::array<int, 4> &x, const PoolArgs &a) {
    bt_pool2d_shape s;
    s.n = x[0];
    s.c = x[1];
    s.h_in = x[2];
    s.w_in = x[3];
    s.k_h = a.k[0];
    s.k_w = a.k[1];
    s.stride_h = a.stride[0];
    s.stride_w = a.stride[1];
    s.pad_h = a.padding[0];
    s.pad_w = a.padding[1];
    return s;
}

std::array<int, 4> shape4_arg(const std::vector<long long> &d, const std::string &kernel) {
    if (d.size() != 4)
        throw py::value_error(kernel + ": x_shape must have 4 entries, got " + dims_str(d));
    std::array<int, 4> r{};
    for (int i = 0; i < 4; ++i) r[i] = int_arg(d[i], kernel, "x_shape");
    return r;
}

// Checks dy against the output shape that C computed.
void need_out(const py::array &dy, const char *name, const bt_pool2d_shape &s, int ho, int wo,
              const std::string &k, const std::string &detail) {
    need(dy.ndim() == 4 && dy.shape(0) == s.n && dy.shape(1) == s.c && dy.shape(2) == ho &&
             dy.shape(3) == wo,
         k, std::string(name) + " must be (N, C, H_out, W_out) = " + dims_str({s.n, s.c, ho, wo}),
         detail);
}

py::array_t<float> new_array(const bt_pool2d_shape &s, int h, int w) {
    return py::array_t<float>({(py::ssize_t)s.n, (py::ssize_t)s.c, (py::ssize_t)h, (py::ssize_t)w});
}

py::array_t<float> avgpool2d_forward(const farray &x, const py::object &k,
                                     const py::object &stride, const py::object &padding) {
    const std::string kn = "avgpool2d_forward_f32";
    const PoolArgs a = pool_args(k, stride, padding, kn);
    const std::string detail = "x " + shape_str(x) + ", " + a.str();
    need(x.ndim() == 4, kn, "x must be 4-D (N, C, H, W)", detail);
    bt_pool2d_shape s = make_shape(dims4(x, kn, detail), a);
    int ho = 0, wo = 0;
    check(bt_pool2d_check(&s, &ho, &wo), kn, detail);
    py::array_t<float> y = new_array(s, ho, wo);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_avgpool2d_forward_f32(y.mutable_data(), x.data(), &s);
    }
    check(st, kn, detail);
    return y;
}

py::array_t<float> avgpool2d_backward(const farray &dy, const std::vector<long long> &x_shape,
                                      const py::object &k, const py::object &stride,
                                      const py::object &padding) {
    const std::string kn = "avgpool2d_backward_f32";
    const PoolArgs a = pool_args(k, stride, padding, kn);
    const std::string detail =
        "dy " + shape_str(dy) + ", x_shape " + dims_str(x_shape) + ", " + a.str();
    bt_pool2d_shape s = make_shape(shape4_arg(x_shape, kn), a);
    int ho = 0, wo = 0;
    check(bt_pool2d_check(&s, &ho, &wo), kn, detail);
    need_out(dy, "dy", s, ho, wo, kn, detail);
    py::array_t<float> dx = new_array(s, s.h_in, s.w_in);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_avgpool2d_backward_f32(dx.mutable_data(), dy.data(), &s);
    }
    check(st, kn, detail);
    return dx;
}

py::object maxpool2d_forward(const farray &x, const py::object &k, const py::object &stride,
                             const py::object &padding, bool return_argmax) {
    const std::string kn = "maxpool2d_forward_f32";
    const PoolArgs a = pool_args(k, stride, padding, kn);
    const std::string detail = "x " + shape_str(x) + ", " + a.str();
    need(x.ndim() == 4, kn, "x must be 4-D (N, C, H, W)", detail);
    bt_pool2d_shape s = make_shape(dims4(x, kn, detail), a);
    int ho = 0, wo = 0;
    check(bt_pool2d_check(&s, &ho, &wo), kn, detail);
    py::array_t<float> y = new_array(s, ho, wo);
    py::array_t<int32_t> arg;
    int32_t *argp = nullptr;
    if (return_argmax) {
        arg = py::array_t<int32_t>({(py::ssize_t)s.n, (py::ssize_t)s.c, (py::ssize_t)ho,
                                    (py::ssize_t)wo});
        argp = arg.mutable_data();
    }
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_maxpool2d_forward_f32(y.mutable_data(), argp, x.data(), &s);
    }
    check(st, kn, detail);
    if (return_argmax) return py::make_tuple(y, arg);
    return std::move(y);
}

py::array_t<float> maxpool2d_backward(const farray &dy, const iarray &argmax,
                                      const std::vector<long long> &x_shape, const py::object &k,
                                      const py::object &stride, const py::object &padding) {
    const std::string kn = "maxpool2d_backward_f32";
    const PoolArgs a = pool_args(k, stride, padding, kn);
    const std::string detail = "dy " + shape_str(dy) + ", argmax " + shape_str(argmax) +
                               ", x_shape " + dims_str(x_shape) + ", " + a.str();
    bt_pool2d_shape s = make_shape(shape4_arg(x_shape, kn), a);
    int ho = 0, wo = 0;
    check(bt_pool2d_check(&s, &ho, &wo), kn, detail);
    need_out(dy, "dy", s, ho, wo, kn, detail);
    need_out(argmax, "argmax", s, ho, wo, kn, detail);
    py::array_t<float> dx = new_array(s, s.h_in, s.w_in);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_maxpool2d_backward_f32(dx.mutable_data(), dy.data(), argmax.data(), &s);
    }
    check(st, kn, detail);
    return dx;
}

py::array_t<float> maxpool2d_backward_recompute(const farray &dy, const farray &x,
                                                const py::object &k, const py::object &stride,
                                                const py::object &padding) {
    const std::string kn = "maxpool2d_backward_recompute_f32";
    const PoolArgs a = pool_args(k, stride, padding, kn);
    const std::string detail = "dy " + shape_str(dy) + ", x " + shape_str(x) + ", " + a.str();
    need(x.ndim() == 4, kn, "x must be 4-D (N, C, H, W)", detail);
    bt_pool2d_shape s = make_shape(dims4(x, kn, detail), a);
    int ho = 0, wo = 0;
    check(bt_pool2d_check(&s, &ho, &wo), kn, detail);
    need_out(dy, "dy", s, ho, wo, kn, detail);
    py::array_t<float> dx = new_array(s, s.h_in, s.w_in);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_maxpool2d_backward_recompute_f32(dx.mutable_data(), dy.data(), x.data(), &s);
    }
    check(st, kn, detail);
    return dx;
}

// Number of spatial positions of a [N, C, *spatial] shape; a non-positive
// entry is passed on as is (C refuses it), a product above INT_MAX is refused.
int spatial_size(const std::vector<long long> &d, const std::string &kernel,
                 const std::string &detail) {
    long long hw = 1;
    for (size_t i = 2; i < d.size(); ++i) {
        if (d[i] <= 0) return int_arg(d[i], kernel, "x_shape");
        hw *= d[i];
        if (hw > INT_MAX) check(BT_ERR_BAD_SIZE, kernel, detail);
    }
    return (int)hw;
}

}  // namespace

void bind_kernels_pool(py::module_ &m) {
    const auto zero = py::make_tuple(0, 0);
    m.def("avgpool2d_forward_f32", &avgpool2d_forward, py::arg("x"), py::arg("kernel_size"),
          py::arg("stride") = py::none(), py::arg("padding") = zero,
          "Average pooling (count_include_pad=True, floor output size). kernel_size, stride, "
          "padding: int or (h, w); stride None = kernel_size.");
    m.def("avgpool2d_backward_f32", &avgpool2d_backward, py::arg("dy"), py::arg("x_shape"),
          py::arg("kernel_size"), py::arg("stride") = py::none(), py::arg("padding") = zero,
          "dx [x_shape] of average pooling.");
    m.def("maxpool2d_forward_f32", &maxpool2d_forward, py::arg("x"), py::arg("kernel_size"),
          py::arg("stride") = py::none(), py::arg("padding") = zero,
          py::arg("return_argmax") = true,
          "Max pooling (padding ignored, floor output size). Returns (y, argmax int32) or y; "
          "argmax holds ih * W + iw of each window's first maximum.");
    m.def("maxpool2d_backward_f32", &maxpool2d_backward, py::arg("dy"), py::arg("argmax"),
          py::arg("x_shape"), py::arg("kernel_size"), py::arg("stride") = py::none(),
          py::arg("padding") = zero, "dx [x_shape] of max pooling from the saved argmax.");
    m.def("maxpool2d_backward_recompute_f32", &maxpool2d_backward_recompute, py::arg("dy"),
          py::arg("x"), py::arg("kernel_size"), py::arg("stride") = py::none(),
          py::arg("padding") = zero, "dx of max pooling, recomputing the argmax from x.");
}

}  // namespace bt
