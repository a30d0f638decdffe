// Activation float32 kernels: relu, elu, gelu (tanh form), softmax over the
// last axis. Elementwise ones take any shape; the binding checks that paired
// arrays have the same shape (so C never leaves a numpy buffer) and C's status
// decides the rest.
#include "bindings.h"
#include <climits>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

template <bt_status (*F)(float *, const float *, int)>
py::array_t<float> unary(const farray &x, const char *name) {
    const std::string k = name, detail = "x " + shape_str(x);
    const int count = count_of(x, k, detail);
    py::array_t<float> y = like(x);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = F(y.mutable_data(), x.data(), count);
    }
    check(st, k, detail);
    return y;
}

// dx from dy and a saved array a (the forward output or input) of dy's shape.
template <bt_status (*F)(float *, const float *, const float *, int)>
py::array_t<float> unary_backward(const farray &dy, const farray &a, const char *name,
                                  const char *aname) {
    const std::string k = name, detail = "dy " + shape_str(dy) + ", " + aname + " " + shape_str(a);
    need(same_shape(dy, a), k, std::string("dy must have the shape of ") + aname, detail);
    const int count = count_of(dy, k, detail);
    py::array_t<float> dx = like(dy);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = F(dx.mutable_data(), dy.data(), a.data(), count);
    }
    check(st, k, detail);
    return dx;
}

py::array_t<float> elu_forward(const farray &x, float alpha) {
    const std::string k = "elu_forward_f32";
    const std::string detail = "x " + shape_str(x) + ", alpha=" + std::to_string(alpha);
    const int count = count_of(x, k, detail);
    py::array_t<float> y = like(x);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_elu_forward_f32(y.mutable_data(), x.data(), count, alpha);
    }
    check(st, k, detail);
    return y;
}

py::array_t<float> elu_backward(const farray &dy, const farray &y, float alpha) {
    const std::string k = "elu_backward_f32";
    const std::string detail =
        "dy " + shape_str(dy) + ", y " + shape_str(y) + ", alpha=" + std::to_string(alpha);
    need(same_shape(dy, y), k, "dy must have the shape of y", detail);
    const int count = count_of(dy, k, detail);
    py::array_t<float> dx = like(dy);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_elu_backward_f32(dx.mutable_data(), dy.data(), y.data(), count, alpha);
    }
    check(st, k, detail);
    return dx;
}

// (rows, cols) of an array whose last axis is the softmax axis.
void rows_cols(const py::array &a, int &rows, int &cols, const std::string &k,
               const std::string &detail) {
    need(a.ndim() >= 1, k, "softmax needs at least 1 dim", detail);
    const py::ssize_t c = a.shape(a.ndim() - 1);
    if (c > INT_MAX || a.size() > INT_MAX) check(BT_ERR_BAD_SIZE, k, detail);
    cols = (int)c;
    rows = c == 0 ? 1 : (int)(a.size() / c);  // cols == 0 already makes C refuse
}

py::array_t<float> softmax_forward(const farray &x) {
    const std::string k = "softmax_forward_f32", detail = "x " + shape_str(x);
    int rows, cols;
    rows_cols(x, rows, cols, k, detail);
    py::array_t<float> y = like(x);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_softmax_forward_f32(y.mutable_data(), x.data(), rows, cols);
    }
    check(st, k, detail);
    return y;
}

py::array_t<float> softmax_backward(const farray &dy, const farray &y) {
    const std::string k = "softmax_backward_f32";
    const std::string detail = "dy " + shape_str(dy) + ", y " + shape_str(y);
    need(same_shape(dy, y), k, "dy must have the shape of y", detail);
    int rows, cols;
    rows_cols(y, rows, cols, k, detail);
    py::array_t<float> dx = like(dy);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_softmax_backward_f32(dx.mutable_data(), dy.data(), y.data(), rows, cols);
    }
    check(st, k, detail);
    return dx;
}

}  // namespace

void bind_kernels_activation(py::module_ &m) {
    m.def(
        "relu_forward_f32",
        [](const farray &x) { return unary<bt_relu_forward_f32>(x, "relu_forward_f32"); },
        py::arg("x"), "max(x, 0), NaN passed through.");
    m.def(
        "relu_backward_f32",
        [](const farray &dy, const farray &y) {
            return unary_backward<bt_relu_backward_f32>(dy, y, "relu_backward_f32", "y");
        },
        py::arg("dy"), py::arg("y"), "dx = dy where y > 0, else 0 (from the forward OUTPUT).");
    m.def("elu_forward_f32", &elu_forward, py::arg("x"), py::arg("alpha") = 1.0f,
          "x for x > 0, alpha * (exp(x) - 1) otherwise.");
    m.def("elu_backward_f32", &elu_backward, py::arg("dy"), py::arg("y"), py::arg("alpha") = 1.0f,
          "dx from dy and the forward OUTPUT y.");
    m.def(
        "gelu_forward_f32",
        [](const farray &x) { return unary<bt_gelu_forward_f32>(x, "gelu_forward_f32"); },
        py::arg("x"), "0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).");
    m.def(
        "gelu_backward_f32",
        [](const farray &dy, const farray &x) {
            return unary_backward<bt_gelu_backward_f32>(dy, x, "gelu_backward_f32", "x");
        },
        py::arg("dy"), py::arg("x"), "dx from dy and the forward INPUT x.");
    m.def("softmax_forward_f32", &softmax_forward, py::arg("x"), "Softmax over the last axis.");
    m.def("softmax_backward_f32", &softmax_backward, py::arg("dy"), py::arg("y"),
          "dx = y * (dy - sum(dy * y, last axis)) from the forward OUTPUT y.");
}

}  // namespace bt
