// Miscellaneous: the seeded generator (PCG32), dropout (which draws from it),
// and the runtime's own elementary functions vectorised over arrays, so tests
// can compare them with an independent reference.
#include "bindings.h"
#include <climits>
#include <cstdint>
extern "C" {
#include "biotrain/bt_math.h"
#include "biotrain/kernels.h"
#include "biotrain/rng.h"
}

namespace bt {
namespace {

template <float (*F)(float)>
py::array_t<float> vectorised(const farray &x) {
    py::array_t<float> y = like(x);
    const float *px = x.data();
    float *py_ = y.mutable_data();
    for (py::ssize_t i = 0; i < x.size(); ++i) py_[i] = F(px[i]);
    return y;
}

py::array_t<uint32_t> next_u32(bt_rng &r, py::ssize_t n) {
    if (n < 0) throw py::value_error("Rng.next_u32: n must be >= 0, got " + std::to_string(n));
    py::array_t<uint32_t> out(n);
    uint32_t *p = out.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) p[i] = bt_rng_next_u32(&r);
    return out;
}

py::array_t<float> uniform_f32(bt_rng &r, py::ssize_t n) {
    if (n < 0) throw py::value_error("Rng.uniform_f32: n must be >= 0, got " + std::to_string(n));
    py::array_t<float> out(n);
    float *p = out.mutable_data();
    for (py::ssize_t i = 0; i < n; ++i) p[i] = bt_rng_uniform_f32(&r);
    return out;
}

py::tuple dropout_forward(const farray &x, float p, bt_rng &rng) {
    const std::string k = "dropout_forward_f32";
    const std::string detail = "x " + shape_str(x) + ", p=" + std::to_string(p);
    const int count = count_of(x, k, detail);
    py::array_t<float> y = like(x);
    py::array_t<uint8_t> mask(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_dropout_forward_f32(y.mutable_data(), mask.mutable_data(), x.data(), count, p, &rng);
    }
    check(st, k, detail);
    return py::make_tuple(y, mask);
}

py::array_t<float> dropout_backward(const farray &dy,
                                    const py::array_t<uint8_t, py::array::c_style | py::array::forcecast> &mask,
                                    float p) {
    const std::string k = "dropout_backward_f32";
    const std::string detail =
        "dy " + shape_str(dy) + ", mask " + shape_str(mask) + ", p=" + std::to_string(p);
    bool same = dy.ndim() == mask.ndim();
    for (py::ssize_t i = 0; same && i < dy.ndim(); ++i) same = dy.shape(i) == mask.shape(i);
    if (!same) check(BT_ERR_SHAPE_MISMATCH, k, "mask must have the shape of dy; " + detail);
    const int count = count_of(dy, k, detail);
    py::array_t<float> dx = like(dy);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_dropout_backward_f32(dx.mutable_data(), dy.data(), mask.data(), count, p);
    }
    check(st, k, detail);
    return dx;
}

}  // namespace

void bind_kernels_misc(py::module_ &m) {
    py::class_<bt_rng>(m, "Rng", "PCG32 (XSH-RR) generator of the C core.")
        .def(py::init([](uint64_t seed, uint64_t stream) {
                 bt_rng r;
                 bt_rng_seed(&r, seed, stream);
                 return r;
             }),
             py::arg("seed"), py::arg("stream") = 0)
        .def("next_u32", &next_u32, py::arg("n"), "The next n 32-bit outputs.")
        .def("uniform_f32", &uniform_f32, py::arg("n"), "The next n uniforms in [0, 1), 24 bits.")
        .def_readonly("state", &bt_rng::state)
        .def_readonly("inc", &bt_rng::inc);
    m.def(
        "rng_u32",
        [](uint64_t seed, uint64_t stream, py::ssize_t n) {
            bt_rng r;
            bt_rng_seed(&r, seed, stream);
            return next_u32(r, n);
        },
        py::arg("seed"), py::arg("stream"), py::arg("n"),
        "The first n outputs of the generator seeded with (seed, stream).");
    m.def("dropout_forward_f32", &dropout_forward, py::arg("x"), py::arg("p"), py::arg("rng"),
          "(y, mask uint8) of inverted dropout; draws x.size numbers from rng.");
    m.def("dropout_backward_f32", &dropout_backward, py::arg("dy"), py::arg("mask"), py::arg("p"),
          "dx = dy * mask / (1 - p).");
    m.def("bt_expf", &vectorised<bt_expf>, py::arg("x"), "The core's expf, elementwise.");
    m.def("bt_logf", &vectorised<bt_logf>, py::arg("x"), "The core's logf, elementwise.");
    m.def("bt_tanhf", &vectorised<bt_tanhf>, py::arg("x"), "The core's tanhf, elementwise.");
    m.def("bt_sqrtf", &vectorised<bt_sqrtf>, py::arg("x"), "The core's sqrtf, elementwise.");
    m.def(
        "bt_sincospif",
        [](const farray &x) {
            py::array_t<float> s = like(x), c = like(x);
            const float *px = x.data();
            float *ps = s.mutable_data(), *pc = c.mutable_data();
            for (py::ssize_t i = 0; i < x.size(); ++i) bt_sincospif(px[i], &ps[i], &pc[i]);
            return py::make_tuple(s, c);
        },
        py::arg("x"), "The core's (sin(pi x), cos(pi x)), elementwise.");
}

}  // namespace bt
