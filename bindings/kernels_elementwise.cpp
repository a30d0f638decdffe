// Elementwise float32 kernels: residual add (forward, backward) and gradient
// accumulation. Paired arrays must have the same shape (checked here, so C
// never leaves a numpy buffer); C's status decides the rest.
#include "bindings.h"
#include <climits>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

py::array_t<float> add_forward(const farray &a, const farray &b) {
    const std::string k = "add_forward_f32", detail = "a " + shape_str(a) + ", b " + shape_str(b);
    need(same_shape(a, b), k, "a and b must have the same shape", detail);
    const int count = count_of(a, k, detail);
    py::array_t<float> out = like(a);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_add_forward_f32(out.mutable_data(), a.data(), b.data(), count);
    }
    check(st, k, detail);
    return out;
}

py::tuple add_backward(const farray &dy, bool need_a, bool need_b) {
    const std::string k = "add_backward_f32", detail = "dy " + shape_str(dy);
    const int count = count_of(dy, k, detail);
    py::array_t<float> da = need_a ? like(dy) : py::array_t<float>(0);
    py::array_t<float> db = need_b ? like(dy) : py::array_t<float>(0);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_add_backward_f32(need_a ? da.mutable_data() : nullptr,
                                 need_b ? db.mutable_data() : nullptr, dy.data(), count);
    }
    check(st, k, detail);
    return py::make_tuple(need_a ? py::object(da) : py::none(), need_b ? py::object(db) : py::none());
}

void accumulate(py::array acc, const farray &x) {
    const std::string k = "accumulate_f32", detail = "acc " + shape_str(acc) + ", x " + shape_str(x);
    if (!acc.dtype().is(py::dtype::of<float>()) || !(acc.flags() & py::array::c_style) ||
        !acc.writeable())
        throw py::value_error(k + ": acc must be a writeable C-contiguous float32 array; " + detail);
    need(same_shape(acc, x), k, "acc and x must have the same shape", detail);
    const int count = count_of(x, k, detail);
    float *p = static_cast<float *>(acc.mutable_data());
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_accumulate_f32(p, x.data(), count);
    }
    check(st, k, detail);
}

}  // namespace

void bind_kernels_elementwise(py::module_ &m) {
    m.def("add_forward_f32", &add_forward, py::arg("a"), py::arg("b"), "a + b (same shapes).");
    m.def("add_backward_f32", &add_backward, py::arg("dy"), py::arg("need_a") = true,
          py::arg("need_b") = true, "(da or None, db or None), each a copy of dy.");
    m.def("accumulate_f32", &accumulate, py::arg("acc"), py::arg("x"),
          "acc += x in place (acc: writeable C-contiguous float32 of x's shape).");
}

}  // namespace bt
