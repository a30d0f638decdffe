// groupnorm and batchnorm float32 kernels. Arrays are (n, c, ...) with any
// ndim >= 2; the tail is flattened into hw. The binding checks ranks and the
// sizes that must agree between arrays (so C never leaves a numpy buffer);
// the sizes and parameters themselves go to C, whose status decides.
#include "bindings.h"
#include <algorithm>
#include <climits>
#include <optional>
#include <pybind11/stl.h>
extern "C" {
#include "biotrain/kernels.h"
}

namespace bt {
namespace {

struct NCHW {
    int n, c, hw;
};

// (n, c, prod(tail)) of an (n, c, ...) array; dims beyond the int range are
// BT_ERR_BAD_SIZE (an empty array may have huge dims).
NCHW nchw(const py::array &x, const std::string &kernel, const std::string &detail) {
    need(x.ndim() >= 2, kernel, "x must have at least 2 dims (n, c, ...)", detail);
    long long hw = 1;
    bool zero = false;
    for (py::ssize_t i = 0; i < x.ndim(); ++i) {
        if (x.shape(i) > INT_MAX) check(BT_ERR_BAD_SIZE, kernel, detail);
        if (x.shape(i) == 0) zero = true;
    }
    for (py::ssize_t i = 2; i < x.ndim() && !zero; ++i) {
        hw *= x.shape(i);
        if (hw > INT_MAX) check(BT_ERR_BAD_SIZE, kernel, detail);
    }
    return {(int)x.shape(0), (int)x.shape(1), zero && x.ndim() > 2 ? 0 : (int)hw};
}

int int_arg(long long v, const std::string &kernel, const char *name, const std::string &detail) {
    if (v < INT_MIN || v > INT_MAX)
        throw py::value_error(kernel + ": " + name + " out of the int range; " + detail);
    return (int)v;
}

std::string opt_shape(const char *name, const std::optional<farray> &a) {
    return std::string(", ") + name + " " + (a ? shape_str(*a) : std::string("None"));
}
std::string opt_shape(const char *name, const std::optional<py::array> &a) {
    return std::string(", ") + name + " " + (a ? shape_str(*a) : std::string("None"));
}

// A per-channel vector (weight, bias, running stats): 1-D with c entries.
void need_vec(const std::optional<farray> &a, int c, const char *name, const std::string &kernel,
              const std::string &detail) {
    need(!a || (a->ndim() == 1 && a->shape(0) == c), kernel,
         std::string(name) + " must be 1-D with c entries", detail);
}
void need_vec(const std::optional<py::array> &a, int c, const char *name,
              const std::string &kernel, const std::string &detail) {
    need(!a || (a->ndim() == 1 && a->shape(0) == c), kernel,
         std::string(name) + " must be 1-D with c entries", detail);
}

const float *opt_ptr(const std::optional<farray> &a) { return a ? a->data() : nullptr; }

// The result array of a backward_input: fresh, or `out` (which may be the
// very array passed as x or dy, to exercise the in-place contract).
float *result_ptr(std::optional<py::array> &out, py::array_t<float> &fresh, const py::array &x,
                  const std::string &kernel, const std::string &detail) {
    if (!out) {
        fresh = py::array_t<float>(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
        return fresh.mutable_data();
    }
    need(same_shape(*out, x), kernel, "out must have the shape of x", detail);
    return acc_ptr(*out, kernel, "out");
}

bool groups_ok(const NCHW &d, int groups) { return groups >= 1 && d.c > 0 && d.c % groups == 0; }

// ------------------------------------------------------------- groupnorm

py::tuple groupnorm_forward(const farray &x, std::optional<farray> weight,
                            std::optional<farray> bias, long long groups_, float eps) {
    const std::string k = "groupnorm_forward_f32";
    const std::string detail = "x " + shape_str(x) + opt_shape("weight", weight) +
                               opt_shape("bias", bias) + ", groups=" + std::to_string(groups_);
    const int groups = int_arg(groups_, k, "groups", detail);
    const NCHW d = nchw(x, k, detail);
    need_vec(weight, d.c, "weight", k, detail);
    need_vec(bias, d.c, "bias", k, detail);
    // Sized only for a valid groups; otherwise C refuses before writing.
    const py::ssize_t g = groups_ok(d, groups) ? groups : 0;
    py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    py::array_t<float> mean({(py::ssize_t)d.n, g}), rstd({(py::ssize_t)d.n, g});
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_groupnorm_forward_f32(y.mutable_data(), mean.mutable_data(), rstd.mutable_data(),
                                      x.data(), opt_ptr(weight), opt_ptr(bias), d.n, d.c, d.hw,
                                      groups, eps);
    }
    check(st, k, detail);
    return py::make_tuple(y, mean, rstd);
}

// mean, rstd hold n * groups values (any shape) when groups is valid.
void need_stats_dict(const farray &mean, const farray &rstd, py::ssize_t count, const std::string &k,
                const std::string &detail) {
    need(mean.size() == count && rstd.size() == count, k,
         "mean and rstd must hold " + std::to_string(count) + " values", detail);
}

py::array groupnorm_backward_input(const farray &dy, const farray &x, const farray &mean,
                                   const farray &rstd, std::optional<farray> weight,
                                   long long groups_, std::optional<py::array> out) {
    const std::string k = "groupnorm_backward_input_f32";
    const std::string detail = "dy " + shape_str(dy) + ", x " + shape_str(x) + ", mean " +
                               shape_str(mean) + ", rstd " + shape_str(rstd) +
                               opt_shape("weight", weight) + ", groups=" +
                               std::to_string(groups_);
    const int groups = int_arg(groups_, k, "groups", detail);
    const NCHW d = nchw(x, k, detail);
    need(same_shape(dy, x), k, "dy must have the shape of x", detail);
    need_vec(weight, d.c, "weight", k, detail);
    if (groups_ok(d, groups)) need_stats_dict(mean, rstd, (py::ssize_t)d.n * groups, k, detail);
    py::array_t<float> fresh;
    float *dx = result_ptr(out, fresh, x, k, detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_groupnorm_backward_input_f32(dx, dy.data(), x.data(), mean.data(), rstd.data(),
                                             opt_ptr(weight), d.n, d.c, d.hw, groups);
    }
    check(st, k, detail);
    return out ? *out : py::array(fresh);
}

void groupnorm_backward_weight_into(const std::string &k, float *dw, float *db, const farray &dy,
                                    const farray &x, const farray &mean, const farray &rstd,
                                    int groups, const NCHW &d, const std::string &detail) {
    need(same_shape(dy, x), k, "dy must have the shape of x", detail);
    if (groups_ok(d, groups)) need_stats_dict(mean, rstd, (py::ssize_t)d.n * groups, k, detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_groupnorm_backward_weight_f32(dw, db, dy.data(), x.data(), mean.data(),
                                              rstd.data(), d.n, d.c, d.hw, groups);
    }
    check(st, k, detail);
}

std::string stats_detail(const farray &dy, const farray &x, const farray &mean,
                         const farray &rstd) {
    return "dy " + shape_str(dy) + ", x " + shape_str(x) + ", mean " + shape_str(mean) +
           ", rstd " + shape_str(rstd);
}

// Fresh zero accumulators of c entries (or None), for the functional forms.
py::object zeros_or_none(bool want, int c, float *&ptr) {
    ptr = nullptr;
    if (!want) return py::none();
    py::array_t<float> a((py::ssize_t)std::max(c, 0));
    std::fill(a.mutable_data(), a.mutable_data() + a.size(), 0.0f);
    ptr = a.mutable_data();
    return a;
}

py::tuple groupnorm_backward_weight(const farray &dy, const farray &x, const farray &mean,
                                    const farray &rstd, long long groups_, bool has_weight,
                                    bool has_bias) {
    const std::string k = "groupnorm_backward_weight_f32";
    const std::string detail =
        stats_detail(dy, x, mean, rstd) + ", groups=" + std::to_string(groups_);
    const int groups = int_arg(groups_, k, "groups", detail);
    const NCHW d = nchw(x, k, detail);
    float *dw, *db;
    py::object dw_obj = zeros_or_none(has_weight, d.c, dw), db_obj = zeros_or_none(has_bias, d.c, db);
    groupnorm_backward_weight_into(k, dw, db, dy, x, mean, rstd, groups, d, detail);
    return py::make_tuple(dw_obj, db_obj);
}

void groupnorm_backward_weight_acc(std::optional<py::array> dw, std::optional<py::array> db,
                                   const farray &dy, const farray &x, const farray &mean,
                                   const farray &rstd, long long groups_) {
    const std::string k = "groupnorm_backward_weight_f32";
    const std::string detail = stats_detail(dy, x, mean, rstd) + opt_shape("dw", dw) +
                               opt_shape("db", db) + ", groups=" + std::to_string(groups_);
    const int groups = int_arg(groups_, k, "groups", detail);
    const NCHW d = nchw(x, k, detail);
    need_vec(dw, d.c, "dw", k, detail);
    need_vec(db, d.c, "db", k, detail);
    float *dwp = dw ? acc_ptr(*dw, k, "dw") : nullptr;
    float *dbp = db ? acc_ptr(*db, k, "db") : nullptr;
    groupnorm_backward_weight_into(k, dwp, dbp, dy, x, mean, rstd, groups, d, detail);
}

// ------------------------------------------------------------- batchnorm

py::tuple batchnorm_forward_train(const farray &x, std::optional<farray> weight,
                                  std::optional<farray> bias,
                                  std::optional<py::array> running_mean,
                                  std::optional<py::array> running_var, float momentum,
                                  float eps) {
    const std::string k = "batchnorm_forward_train_f32";
    const std::string detail = "x " + shape_str(x) + opt_shape("weight", weight) +
                               opt_shape("bias", bias) + opt_shape("running_mean", running_mean) +
                               opt_shape("running_var", running_var);
    const NCHW d = nchw(x, k, detail);
    need_vec(weight, d.c, "weight", k, detail);
    need_vec(bias, d.c, "bias", k, detail);
    need_vec(running_mean, d.c, "running_mean", k, detail);
    need_vec(running_var, d.c, "running_var", k, detail);
    float *rm = running_mean ? acc_ptr(*running_mean, k, "running_mean") : nullptr;
    float *rv = running_var ? acc_ptr(*running_var, k, "running_var") : nullptr;
    py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    py::array_t<float> mean((py::ssize_t)d.c), rstd((py::ssize_t)d.c);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_batchnorm_forward_train_f32(y.mutable_data(), mean.mutable_data(),
                                            rstd.mutable_data(), rm, rv, x.data(),
                                            opt_ptr(weight), opt_ptr(bias), d.n, d.c, d.hw,
                                            momentum, eps);
    }
    check(st, k, detail);
    return py::make_tuple(y, mean, rstd);
}

py::array_t<float> batchnorm_forward_eval(const farray &x, const farray &running_mean,
                                          const farray &running_var,
                                          std::optional<farray> weight,
                                          std::optional<farray> bias, float eps) {
    const std::string k = "batchnorm_forward_eval_f32";
    const std::string detail = "x " + shape_str(x) + ", running_mean " +
                               shape_str(running_mean) + ", running_var " +
                               shape_str(running_var) + opt_shape("weight", weight) +
                               opt_shape("bias", bias);
    const NCHW d = nchw(x, k, detail);
    need_vec(std::optional<farray>(running_mean), d.c, "running_mean", k, detail);
    need_vec(std::optional<farray>(running_var), d.c, "running_var", k, detail);
    need_vec(weight, d.c, "weight", k, detail);
    need_vec(bias, d.c, "bias", k, detail);
    py::array_t<float> y(std::vector<py::ssize_t>(x.shape(), x.shape() + x.ndim()));
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_batchnorm_forward_eval_f32(y.mutable_data(), x.data(), running_mean.data(),
                                           running_var.data(), opt_ptr(weight), opt_ptr(bias),
                                           d.n, d.c, d.hw, eps);
    }
    check(st, k, detail);
    return y;
}

py::array batchnorm_backward_input(const farray &dy, const farray &x, const farray &mean,
                                   const farray &rstd, std::optional<farray> weight,
                                   std::optional<py::array> out) {
    const std::string k = "batchnorm_backward_input_f32";
    const std::string detail = stats_detail(dy, x, mean, rstd) + opt_shape("weight", weight);
    const NCHW d = nchw(x, k, detail);
    need(same_shape(dy, x), k, "dy must have the shape of x", detail);
    need_vec(weight, d.c, "weight", k, detail);
    need_stats_dict(mean, rstd, d.c, k, detail);
    py::array_t<float> fresh;
    float *dx = result_ptr(out, fresh, x, k, detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_batchnorm_backward_input_f32(dx, dy.data(), x.data(), mean.data(), rstd.data(),
                                             opt_ptr(weight), d.n, d.c, d.hw);
    }
    check(st, k, detail);
    return out ? *out : py::array(fresh);
}

void batchnorm_backward_weight_into(const std::string &k, float *dw, float *db, const farray &dy,
                                    const farray &x, const farray &mean, const farray &rstd,
                                    const NCHW &d, const std::string &detail) {
    need(same_shape(dy, x), k, "dy must have the shape of x", detail);
    need_stats_dict(mean, rstd, d.c, k, detail);
    bt_status st;
    {
        py::gil_scoped_release nogil;
        st = bt_batchnorm_backward_weight_f32(dw, db, dy.data(), x.data(), mean.data(),
                                              rstd.data(), d.n, d.c, d.hw);
    }
    check(st, k, detail);
}

py::tuple batchnorm_backward_weight(const farray &dy, const farray &x, const farray &mean,
                                    const farray &rstd, bool has_weight, bool has_bias) {
    const std::string k = "batchnorm_backward_weight_f32";
    const std::string detail = stats_detail(dy, x, mean, rstd);
    const NCHW d = nchw(x, k, detail);
    float *dw, *db;
    py::object dw_obj = zeros_or_none(has_weight, d.c, dw), db_obj = zeros_or_none(has_bias, d.c, db);
    batchnorm_backward_weight_into(k, dw, db, dy, x, mean, rstd, d, detail);
    return py::make_tuple(dw_obj, db_obj);
}

void batchnorm_backward_weight_acc(std::optional<py::array> dw, std::optional<py::array> db,
                                   const farray &dy, const farray &x, const farray &mean,
                                   const farray &rstd) {
    const std::string k = "batchnorm_backward_weight_f32";
    const std::string detail =
        stats_detail(dy, x, mean, rstd) + opt_shape("dw", dw) + opt_shape("db", db);
    const NCHW d = nchw(x, k, detail);
    need_vec(dw, d.c, "dw", k, detail);
    need_vec(db, d.c, "db", k, detail);
    float *dwp = dw ? acc_ptr(*dw, k, "dw") : nullptr;
    float *dbp = db ? acc_ptr(*db, k, "db") : nullptr;
    batchnorm_backward_weight_into(k, dwp, dbp, dy, x, mean, rstd, d, detail);
}

}  // namespace

void bind_kernels_norm(py::module_ &m) {
    m.def("groupnorm_forward_f32", &groupnorm_forward, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("groups"), py::arg("eps"),
          "(y, mean [n, groups], rstd [n, groups]) of GroupNorm over x (n, c, ...); weight, "
          "bias [c] may be None. LayerNorm is groups=1, InstanceNorm groups=c.");
    m.def("groupnorm_backward_input_f32", &groupnorm_backward_input, py::arg("dy"), py::arg("x"),
          py::arg("mean"), py::arg("rstd"), py::arg("weight"), py::arg("groups"),
          py::arg("out") = py::none(),
          "dx of GroupNorm. `out` (writeable float32, shape of x) receives dx if given and may be "
          "x or dy itself.");
    m.def("groupnorm_backward_weight_f32", &groupnorm_backward_weight, py::arg("dy"), py::arg("x"),
          py::arg("mean"), py::arg("rstd"), py::arg("groups"), py::arg("has_weight") = true,
          py::arg("has_bias") = true, "(dweight [c] or None, dbias [c] or None) from zeros.");
    m.def("groupnorm_backward_weight_acc_f32", &groupnorm_backward_weight_acc, py::arg("dw"),
          py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("rstd"),
          py::arg("groups"),
          "dw += sum(dy * xhat), db += sum(dy) per channel, in place (either may be None).");
    m.def("batchnorm_forward_train_f32", &batchnorm_forward_train, py::arg("x"), py::arg("weight"),
          py::arg("bias"), py::arg("running_mean"), py::arg("running_var"), py::arg("momentum"),
          py::arg("eps"),
          "(y, mean [c], rstd [c]) with batch statistics; running_mean/running_var (writeable "
          "float32 [c], or None) are updated in place, the variance unbiased.");
    m.def("batchnorm_forward_eval_f32", &batchnorm_forward_eval, py::arg("x"),
          py::arg("running_mean"), py::arg("running_var"), py::arg("weight"), py::arg("bias"),
          py::arg("eps"), "y normalised with the running statistics.");
    m.def("batchnorm_backward_input_f32", &batchnorm_backward_input, py::arg("dy"), py::arg("x"),
          py::arg("mean"), py::arg("rstd"), py::arg("weight"), py::arg("out") = py::none(),
          "dx of training-mode BatchNorm; `out` as for groupnorm_backward_input_f32.");
    m.def("batchnorm_backward_weight_f32", &batchnorm_backward_weight, py::arg("dy"), py::arg("x"),
          py::arg("mean"), py::arg("rstd"), py::arg("has_weight") = true,
          py::arg("has_bias") = true, "(dweight [c] or None, dbias [c] or None) from zeros.");
    m.def("batchnorm_backward_weight_acc_f32", &batchnorm_backward_weight_acc, py::arg("dw"),
          py::arg("db"), py::arg("dy"), py::arg("x"), py::arg("mean"), py::arg("rstd"),
          "dw += sum(dy * xhat), db += sum(dy) per channel, in place (either may be None).");
}

}  // namespace bt
