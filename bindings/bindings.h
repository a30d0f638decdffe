// Shared helpers of the pybind11 module: thin glue, no logic of its own.
// A bad C status becomes a Python exception whose message names the kernel,
// the shapes, and the status.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <sstream>
#include <string>
#include <vector>
extern "C" {
#include "biotrain/status.h"
}

namespace py = pybind11;

namespace bt {

using farray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using iarray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;

inline std::string shape_str(const py::array &a) {
    std::ostringstream os;
    os << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
    if (a.ndim() == 1) os << ",";
    os << ")";
    return os.str();
}

// Raises ValueError (or MemoryError for an arena too small, RuntimeError for
// state errors) naming the kernel and the detail (shapes).
inline void check(bt_status s, const std::string &kernel, const std::string &detail) {
    if (s == BT_OK) return;
    std::string msg = kernel + ": " + bt_status_str(s) + " (status " + std::to_string((int)s) +
                      ")" + (detail.empty() ? "" : "; " + detail);
    if (s == BT_ERR_STATE) throw std::runtime_error(msg);
    throw py::value_error(msg);
}

inline float *fptr(farray &a) { return a.mutable_data(); }
inline const float *cfptr(const farray &a) { return a.data(); }

// Module sections, one per op family (bindings/kernels_<family>.cpp).
void bind_kernels_conv(py::module_ &m);
void bind_kernels_linear(py::module_ &m);
void bind_kernels_norm(py::module_ &m);
void bind_kernels_activation(py::module_ &m);
void bind_kernels_pool(py::module_ &m);
void bind_kernels_elementwise(py::module_ &m);
void bind_kernels_loss(py::module_ &m);
void bind_kernels_misc(py::module_ &m);   // rng, bt_math
void bind_runtime(py::module_ &m);        // graph, plan, session, optimizer
void bind_kernels_fixed(py::module_ &m);   // fixed-point kernels (kernels_fixed.h)
void bind_runtime_fixed(py::module_ &m);   // fixed-point session (exec_fixed.h)

}  // namespace bt
