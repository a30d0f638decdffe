// Shared helpers of the pybind11 module: thin glue, no logic of its own, each
// helper defined here once. A bad C status becomes a Python exception whose
// message names the kernel or layer, the shapes, and the status.
#pragma once
#include <pybind11/pybind11.h>
#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <array>
#include <climits>
#include <cstdint>
#include <memory>
#include <sstream>
#include <string>
#include <vector>
extern "C" {
#include "biotrain/status.h"
#include "biotrain/types.h"
}

namespace py = pybind11;

namespace bt {

using farray = py::array_t<float, py::array::c_style | py::array::forcecast>;
using iarray = py::array_t<int32_t, py::array::c_style | py::array::forcecast>;
using pair_t = std::array<int, 2>;
using i8 = py::array_t<int8_t, py::array::c_style>;
using i16 = py::array_t<int16_t, py::array::c_style>;
using i32 = py::array_t<int32_t, py::array::c_style>;

inline std::string shape_str(const py::array &a) {
    std::ostringstream os;
    os << "(";
    for (py::ssize_t i = 0; i < a.ndim(); ++i) os << (i ? ", " : "") << a.shape(i);
    if (a.ndim() == 1) os << ",";
    os << ")";
    return os.str();
}

inline std::string pair_str(const pair_t &p) { return "(" + std::to_string(p[0]) + ", " + std::to_string(p[1]) + ")"; }

// Raises ValueError (RuntimeError for state errors) naming the kernel and the
// detail (shapes).
inline void check(bt_status s, const std::string &kernel, const std::string &detail) {
    if (s == BT_OK) return;
    std::string msg = kernel + ": " + bt_status_str(s) + " (status " + std::to_string((int)s) +
                      ")" + (detail.empty() ? "" : "; " + detail);
    if (s == BT_ERR_STATE) throw std::runtime_error(msg);
    throw py::value_error(msg);
}

// A shape condition the binding must hold so that C never leaves a numpy buffer.
inline void need(bool ok, const std::string &kernel, const std::string &what, const std::string &detail = "") {
    if (!ok) check(BT_ERR_SHAPE_MISMATCH, kernel, detail.empty() ? what : what + "; " + detail);
}

inline bool same_shape(const py::array &a, const py::array &b) {
    if (a.ndim() != b.ndim()) return false;
    for (py::ssize_t i = 0; i < a.ndim(); ++i)
        if (a.shape(i) != b.shape(i)) return false;
    return true;
}

inline std::vector<py::ssize_t> shape_of(const py::array &a) {
    return std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim());
}

// Element count of an array as a C int (BT_ERR_BAD_SIZE beyond INT_MAX).
inline int count_of(const py::array &a, const std::string &kernel, const std::string &detail = "") {
    if (a.size() > INT_MAX) check(BT_ERR_BAD_SIZE, kernel, detail);
    return (int)a.size();
}

// One dimension of an array as a C int.
inline int dim(const py::array &a, int i, const std::string &kernel, const std::string &detail = "") {
    if (a.shape(i) > INT_MAX) check(BT_ERR_BAD_SIZE, kernel, detail);
    return (int)a.shape(i);
}

inline int as_int(py::ssize_t v, const std::string &kernel) {
    if (v > INT_MAX || v < INT_MIN) check(BT_ERR_BAD_SIZE, kernel, "a dimension exceeds the int range");
    return (int)v;
}

inline std::array<int, 4> dims4(const py::array &a, const std::string &kernel, const std::string &detail = "") {
    need(a.ndim() == 4, kernel, "expected a 4-D array, got " + shape_str(a), detail);
    return {dim(a, 0, kernel, detail), dim(a, 1, kernel, detail), dim(a, 2, kernel, detail), dim(a, 3, kernel, detail)};
}

// A new float32 array of a's shape.
inline py::array_t<float> like(const py::array &a) { return py::array_t<float>(shape_of(a)); }

// An accumulator the kernel adds into, in place: it must already be float32,
// C-contiguous and writeable (a converted copy would silently lose the sum).
inline float *acc_ptr(py::array &a, const std::string &kernel, const char *name) {
    if (!a.dtype().is(py::dtype::of<float>()) || !(a.flags() & py::array::c_style) || !a.writeable())
        throw py::value_error(kernel + ": " + name + " must be a writeable C-contiguous float32 array");
    return static_cast<float *>(a.mutable_data());
}

// An integer array of exactly type T: refused, never cast (a cast could wrap).
template <typename T>
py::array_t<T, py::array::c_style> typed(const py::array &a, const std::string &where, const char *name,
                                         const char *tname) {
    if (!a.dtype().is(py::dtype::of<T>()))
        throw py::value_error(where + ": " + name + " must be a " + tname + " array, got dtype " +
                              std::string(py::str(a.dtype())) +
                              "; convert to fixed point first (out-of-range values saturate, never wrap)");
    return py::array_t<T, py::array::c_style>::ensure(a);
}

// A Python int or a pair of ints (stride, padding, dilation) as two C ints.
inline pair_t pair_arg(const py::handle &h, const std::string &kernel, const char *name) {
    auto one = [&](const py::handle &v) {
        long long x;
        try {
            x = v.cast<long long>();
        } catch (const py::cast_error &) {
            throw py::value_error(kernel + ": " + name + " must be an int or a pair of ints");
        }
        if (x < INT_MIN || x > INT_MAX) throw py::value_error(kernel + ": " + name + " out of the int range");
        return (int)x;
    };
    if (py::isinstance<py::int_>(h)) {
        int v = one(h);
        return {v, v};
    }
    if (py::isinstance<py::sequence>(h) && !py::isinstance<py::str>(h)) {
        py::sequence s = py::reinterpret_borrow<py::sequence>(h);
        if (s.size() == 2) return {one(s[0]), one(s[1])};
    }
    throw py::value_error(kernel + ": " + name + " must be an int or a pair of ints");
}

// A fixed-point kernel's statistics as {saturated, absmax}.
inline py::dict stats_dict(const bt_q_stats &s) {
    py::dict d;
    d["saturated"] = s.saturated;
    d["absmax"] = s.absmax;
    return d;
}

// Memory aligned as the C core asks (BT_ARENA_ALIGN), owned here.
class AlignedBuffer {
  public:
    void reset(size_t bytes, size_t align) {
        raw_.reset(new uint8_t[bytes + align]);
        const uintptr_t p = reinterpret_cast<uintptr_t>(raw_.get());
        data_ = raw_.get() + ((align - (p % align)) % align);
        size_ = bytes;
    }
    uint8_t *data() const { return data_; }
    size_t size() const { return size_; }

  private:
    std::unique_ptr<uint8_t[]> raw_;
    uint8_t *data_ = nullptr;
    size_t size_ = 0;
};

// Module sections, one per op family (bindings/kernels_<family>.cpp).
void bind_kernels_conv(py::module_ &m);
void bind_kernels_linear(py::module_ &m);
void bind_kernels_norm(py::module_ &m);
void bind_kernels_activation(py::module_ &m);
void bind_kernels_pool(py::module_ &m);
void bind_kernels_elementwise(py::module_ &m);
void bind_kernels_loss(py::module_ &m);
void bind_kernels_misc(py::module_ &m);   // rng, bt_math
void bind_kernels_fixed(py::module_ &m);  // fixed-point kernels (qmath.h and the families' q7 kernels)
void bind_runtime(py::module_ &m);        // op table, graph, plan, session (both formats)
void bind_op_call(py::module_ &m);        // one op's kernels on arrays: the op test's harness

}  // namespace bt
