// linear float32 kernels. The binding checks array ranks and the dims that
// must agree between arrays (so C never leaves a numpy buffer); the sizes
// themselves go to C, whose status decides.
#include "bindings.h"
#include <pybind11/stl.h>
#include <algorithm>
#include <climits>
#include <optional>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

py::array_t<float> linear_forward(const farray &x, const farray &w, std::optional<farray> b) {
    const std::string k = "linear_forward_f32";
    const std::string detail =
        "x " + shape_str(x) + ", w " + shape_str(w) + (b ? ", b " + shape_str(*b) : "");
    need(x.ndim() == 2, k, "x must be 2-D (N, in)", detail);
    need(w.ndim() == 2, k, "w must be 2-D (out, in)", detail);
    need(!b || b->ndim() == 1, k, "b must be 1-D", detail);
    need(x.shape(1) == w.shape(1), k, "x.shape[1] != w.shape[1]", detail);
    need(!b || b->shape(0) == w.shape(0), k, "b must have w.shape[0] entries", detail);
    const int n = dim(x, 0, k, detail), in_f = dim(x, 1, k, detail), out_f = dim(w, 0, k, detail);
    py::array_t<float> y({(py::ssize_t)n, (py::ssize_t)out_f});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_linear_forward_f32(y.mutable_data(), x.data(), w.data(), b ? b->data() : nullptr, n,
                                   in_f, out_f);
    }
    check(st, k, detail);
    return y;
}

py::array_t<float> linear_backward_input(const farray &dy, const farray &w) {
    const std::string k = "linear_backward_input_f32";
    const std::string detail = "dy " + shape_str(dy) + ", w " + shape_str(w);
    need(dy.ndim() == 2, k, "dy must be 2-D (N, out)", detail);
    need(w.ndim() == 2, k, "w must be 2-D (out, in)", detail);
    need(dy.shape(1) == w.shape(0), k, "dy.shape[1] != w.shape[0]", detail);
    const int n = dim(dy, 0, k, detail), out_f = dim(w, 0, k, detail), in_f = dim(w, 1, k, detail);
    py::array_t<float> dx({(py::ssize_t)n, (py::ssize_t)in_f});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_linear_backward_input_f32(dx.mutable_data(), dy.data(), w.data(), n, in_f, out_f);
    }
    check(st, k, detail);
    return dx;
}

void linear_backward_weight_into(const std::string &k, float *dw, long long dw0, long long dw1,
                                 float *db, bool has_db, long long db_len, const farray &dy,
                                 const farray &x, const std::string &detail) {
    need(dy.ndim() == 2, k, "dy must be 2-D (N, out)", detail);
    need(x.ndim() == 2, k, "x must be 2-D (N, in)", detail);
    need(dy.shape(0) == x.shape(0), k, "dy.shape[0] != x.shape[0]", detail);
    need(dw0 == dy.shape(1) && dw1 == x.shape(1), k, "dw must be (dy.shape[1], x.shape[1])",
         detail);
    need(!has_db || db_len == dy.shape(1), k, "db must have dy.shape[1] entries", detail);
    const int n = dim(x, 0, k, detail), in_f = dim(x, 1, k, detail), out_f = dim(dy, 1, k, detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_linear_backward_weight_f32(dw, has_db ? db : nullptr, dy.data(), x.data(), n, in_f,
                                           out_f);
    }
    check(st, k, detail);
}

py::tuple linear_backward_weight(const farray &dy, const farray &x, bool has_bias) {
    const std::string k = "linear_backward_weight_f32";
    const std::string detail = "dy " + shape_str(dy) + ", x " + shape_str(x);
    need(dy.ndim() == 2, k, "dy must be 2-D (N, out)", detail);
    need(x.ndim() == 2, k, "x must be 2-D (N, in)", detail);
    py::array_t<float> dw({dy.shape(1), x.shape(1)});
    std::fill(dw.mutable_data(), dw.mutable_data() + dw.size(), 0.0f);
    py::object db_obj = py::none();
    float *db = nullptr;
    if (has_bias) {
        py::array_t<float> db_arr(dy.shape(1));
        std::fill(db_arr.mutable_data(), db_arr.mutable_data() + db_arr.size(), 0.0f);
        db = db_arr.mutable_data();
        db_obj = db_arr;
    }
    linear_backward_weight_into(k, dw.mutable_data(), dy.shape(1), x.shape(1), db, has_bias,
                                dy.shape(1), dy, x, detail);
    return py::make_tuple(dw, db_obj);
}

void linear_backward_weight_acc(py::array dw, std::optional<py::array> db, const farray &dy,
                                const farray &x) {
    const std::string k = "linear_backward_weight_f32";
    const std::string detail = "dw " + shape_str(dw) + (db ? ", db " + shape_str(*db) : "") +
                               ", dy " + shape_str(dy) + ", x " + shape_str(x);
    float *dwp = acc_ptr(dw, k, "dw");
    float *dbp = db ? acc_ptr(*db, k, "db") : nullptr;
    need(dw.ndim() == 2, k, "dw must be 2-D (out, in)", detail);
    need(!db || db->ndim() == 1, k, "db must be 1-D", detail);
    linear_backward_weight_into(k, dwp, dw.shape(0), dw.shape(1), dbp, (bool)db,
                                db ? (long long)db->shape(0) : 0, dy, x, detail);
}

}  // namespace

void bind_kernels_linear(py::module_ &m) {
    m.def("linear_forward_f32", &linear_forward, py::arg("x"), py::arg("w"), py::arg("b"),
          "y [N, out] = x [N, in] @ w[out, in].T + b [out] (b may be None).");
    m.def("linear_backward_input_f32", &linear_backward_input, py::arg("dy"), py::arg("w"),
          "dx [N, in] = dy [N, out] @ w [out, in].");
    m.def("linear_backward_weight_f32", &linear_backward_weight, py::arg("dy"), py::arg("x"),
          py::arg("has_bias"),
          "(dw [out, in], db [out] or None) accumulated into fresh zeros.");
    m.def("linear_backward_weight_acc_f32", &linear_backward_weight_acc, py::arg("dw"),
          py::arg("db"), py::arg("dy"), py::arg("x"),
          "dw += dy.T @ x, db += sum(dy, 0) (db may be None), in place. dw and db must be "
          "writeable C-contiguous float32 arrays.");
}

}  // namespace bt
