// Loss float32 kernels: softmax cross-entropy (int labels) and MSE. The
// binding checks shapes (so C never leaves a numpy buffer) and that labels are
// integers representable as int32 (a wider label would otherwise wrap into
// range on conversion); C checks the label range [0, classes).
#include "bindings.h"
#include <climits>
#include <cstdint>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

// labels [n] as int32; a non-integer dtype is refused, a value outside the
// int32 range is BT_ERR_LABEL (as C would say for any out-of-range label).
std::vector<int32_t> labels_arg(const py::array &labels, py::ssize_t n, const std::string &k,
                                const std::string &detail) {
    const char kind = labels.dtype().kind();
    if (kind != 'i' && kind != 'u')
        throw py::value_error(k + ": labels must be an integer array; " + detail);
    need(labels.ndim() == 1 && labels.shape(0) == n, k, "labels must be 1-D with n entries",
         detail);
    // A uint64 above LLONG_MAX wraps to a negative here: out of range either way.
    auto l64 = py::array_t<long long, py::array::c_style | py::array::forcecast>::ensure(labels);
    // At least one slot, so an empty batch reaches C as a size, not a NULL.
    std::vector<int32_t> out(n > 0 ? (size_t)n : 1u);
    for (py::ssize_t i = 0; i < n; ++i) {
        const long long v = l64.data()[i];
        if (v < INT32_MIN || v > INT32_MAX) check(BT_ERR_LABEL, k, detail);
        out[(size_t)i] = (int32_t)v;
    }
    return out;
}

void logits_dims(const farray &x, int &n, int &classes, const std::string &k,
                 const std::string &detail) {
    need(x.ndim() == 2, k, "logits must be 2-D (n, classes)", detail);
    if (x.shape(0) > INT_MAX || x.shape(1) > INT_MAX) check(BT_ERR_BAD_SIZE, k, detail);
    n = (int)x.shape(0);
    classes = (int)x.shape(1);
}

py::tuple cross_entropy_forward(const farray &logits, const py::array &labels) {
    const std::string k = "cross_entropy_forward_f32";
    const std::string detail = "logits " + shape_str(logits) + ", labels " + shape_str(labels);
    int n, classes;
    logits_dims(logits, n, classes, k, detail);
    const std::vector<int32_t> lab = labels_arg(labels, n, k, detail);
    py::array_t<float> probs({(py::ssize_t)n, (py::ssize_t)classes});
    float loss = 0.0f;
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_cross_entropy_forward_f32(&loss, probs.mutable_data(), logits.data(), lab.data(), n,
                                          classes);
    }
    check(st, k, detail);
    return py::make_tuple(loss, probs);
}

py::array_t<float> cross_entropy_backward(const farray &probs, const py::array &labels,
                                          float d_loss) {
    const std::string k = "cross_entropy_backward_f32";
    const std::string detail = "probs " + shape_str(probs) + ", labels " + shape_str(labels);
    int n, classes;
    logits_dims(probs, n, classes, k, detail);
    const std::vector<int32_t> lab = labels_arg(labels, n, k, detail);
    py::array_t<float> d({(py::ssize_t)n, (py::ssize_t)classes});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_cross_entropy_backward_f32(d.mutable_data(), probs.data(), lab.data(), d_loss, n,
                                           classes);
    }
    check(st, k, detail);
    return d;
}

float mse_forward(const farray &pred, const farray &target) {
    const std::string k = "mse_forward_f32";
    const std::string detail = "pred " + shape_str(pred) + ", target " + shape_str(target);
    need(same_shape(pred, target), k, "pred and target must have the same shape", detail);
    const int count = count_of(pred, k, detail);
    float loss = 0.0f;
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_mse_forward_f32(&loss, pred.data(), target.data(), count);
    }
    check(st, k, detail);
    return loss;
}

py::array_t<float> mse_backward(const farray &pred, const farray &target, float d_loss) {
    const std::string k = "mse_backward_f32";
    const std::string detail = "pred " + shape_str(pred) + ", target " + shape_str(target);
    need(same_shape(pred, target), k, "pred and target must have the same shape", detail);
    const int count = count_of(pred, k, detail);
    py::array_t<float> d(std::vector<py::ssize_t>(pred.shape(), pred.shape() + pred.ndim()));
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_mse_backward_f32(d.mutable_data(), pred.data(), target.data(), d_loss, count);
    }
    check(st, k, detail);
    return d;
}

}  // namespace

void bind_kernels_loss(py::module_ &m) {
    m.def("cross_entropy_forward_f32", &cross_entropy_forward, py::arg("logits"), py::arg("labels"),
          "(mean loss, probs [n, classes]) of softmax cross-entropy; labels int [n].");
    m.def("cross_entropy_backward_f32", &cross_entropy_backward, py::arg("probs"),
          py::arg("labels"), py::arg("d_loss") = 1.0f,
          "d_logits = d_loss * (probs - onehot(labels)) / n.");
    m.def("mse_forward_f32", &mse_forward, py::arg("pred"), py::arg("target"),
          "mean((pred - target)^2).");
    m.def("mse_backward_f32", &mse_backward, py::arg("pred"), py::arg("target"),
          py::arg("d_loss") = 1.0f, "d_pred = d_loss * 2 (pred - target) / count.");
}

}  // namespace bt
