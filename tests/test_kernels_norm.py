"""GroupNorm and BatchNorm float32 kernels.

(a) C vs the float64 NumPy reference (python/biotrain_rt/reference/norm.py),
    rel_err <= 1e-5 (max abs difference / max |reference|, see kernel_accuracy);
(b) the reference vs PyTorch float64 (F.group_norm, F.batch_norm with
    training=True and running statistics), values and autograd gradients;
(c) the reference backward vs central finite differences in float64;
(d) bad input: each status reachable from Python is a ValueError naming the
    kernel and the shapes, and nothing is written."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as C
from biotrain_rt.reference import norm as R
from kernel_accuracy import check_close, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

# (shape, offset): odd sizes, 2-D and 4-D, batch 1 and > 1, and a mean far
# from zero (which a one-pass E[x^2] - E[x]^2 variance would not survive).
SHAPES = [
    ((1, 3, 7), 0.0),
    ((2, 6, 5), 0.0),
    ((3, 4, 2, 3), 2.0),
    ((2, 8, 1, 19), 0.0),
    ((4, 5), 0.0),
    ((1, 12, 33), 50.0),
    ((2, 1, 1), 0.0),
    ((5, 9, 4), -3.0),
]
AFFINE = [(True, True), (False, False), (True, False), (False, True)]
EPS = 1e-5


def divisors(c):
    return [g for g in range(1, c + 1) if c % g == 0]


GN_CASES = [(shape, off, g) for shape, off in SHAPES for g in divisors(shape[1])]


def make(rng, shape, off=0.0):
    return (rng.standard_normal(shape) * rng.uniform(0.5, 2.0) + off).astype(np.float32)


def params(rng, c, has_w, has_b):
    w = rng.uniform(0.5, 1.5, c).astype(np.float32) if has_w else None
    b = rng.standard_normal(c).astype(np.float32) if has_b else None
    return w, b


def t64(a, grad=False):
    return None if a is None else torch.tensor(np.asarray(a, np.float64), requires_grad=grad)


# ================================================================= groupnorm

@pytest.mark.parametrize("shape,off,groups", GN_CASES)
def test_groupnorm_c_vs_reference(shape, off, groups, rng):
    x = make(rng, shape, off)
    dy = make(rng, shape)
    for has_w, has_b in AFFINE:
        w, b = params(rng, shape[1], has_w, has_b)
        y, mean, rstd = C.groupnorm_forward_f32(x, w, b, groups, EPS)
        ry, rmean, rrstd = R.groupnorm_forward(x, w, b, groups, EPS)
        assert y.shape == x.shape and mean.shape == (shape[0], groups) == rstd.shape
        check_close("groupnorm_forward.y", y, ry)
        check_close("groupnorm_forward.mean", mean, rmean)
        check_close("groupnorm_forward.rstd", rstd, rrstd)

        # Both sides get the same saved statistics (the reference's, in float32).
        m32, r32 = rmean.astype(np.float32), rrstd.astype(np.float32)
        rdx, rdw, rdb = R.groupnorm_backward(dy, x, m32, r32, w, groups)
        dx = C.groupnorm_backward_input_f32(dy, x, m32, r32, w, groups)
        check_close("groupnorm_backward_input.dx", dx, rdx)
        dw, db = C.groupnorm_backward_weight_f32(dy, x, m32, r32, groups, True, True)
        check_close("groupnorm_backward_weight.dw", dw, rdw)
        check_close("groupnorm_backward_weight.db", db, rdb)


def test_groupnorm_long_rows(rng):
    """A LayerNorm over 8 x 1900 values (the EEG model's size) with a large
    mean: the blocked sums keep the statistics within tolerance."""
    x = make(rng, (2, 8, 1, 1900), 100.0)
    dy = make(rng, x.shape)
    w, b = params(rng, 8, True, True)
    y, mean, rstd = C.groupnorm_forward_f32(x, w, b, 1, EPS)
    ry, rmean, rrstd = R.groupnorm_forward(x, w, b, 1, EPS)
    check_close("groupnorm_forward.y", y, ry)
    check_close("groupnorm_forward.rstd", rstd, rrstd)
    m32, r32 = rmean.astype(np.float32), rrstd.astype(np.float32)
    rdx, rdw, rdb = R.groupnorm_backward(dy, x, m32, r32, w, 1)
    check_close("groupnorm_backward_input.dx", C.groupnorm_backward_input_f32(dy, x, m32, r32, w, 1), rdx)
    dw, db = C.groupnorm_backward_weight_f32(dy, x, m32, r32, 1)
    check_close("groupnorm_backward_weight.dw", dw, rdw)
    check_close("groupnorm_backward_weight.db", db, rdb)


def test_groupnorm_in_place_and_accumulate(rng):
    """d_in may be x or dy itself (bit-identical result); the weight gradient
    adds to what is already there."""
    shape, groups = (3, 6, 2, 5), 3
    x, dy = make(rng, shape, 1.0), make(rng, shape)
    w, b = params(rng, 6, True, True)
    _, mean, rstd = C.groupnorm_forward_f32(x, w, b, groups, EPS)
    ref = C.groupnorm_backward_input_f32(dy, x, mean, rstd, w, groups)
    for alias in ("x", "dy"):
        xs, dys = x.copy(), dy.copy()
        out = xs if alias == "x" else dys
        got = C.groupnorm_backward_input_f32(dys, xs, mean, rstd, w, groups, out=out)
        assert got is out
        np.testing.assert_array_equal(out, ref)
    # forward in place would be y = out, checked in the C program.
    dw0 = rng.standard_normal(6).astype(np.float32)
    db0 = rng.standard_normal(6).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    C.groupnorm_backward_weight_acc_f32(dw, db, dy, x, mean, rstd, groups)
    _, rdw, rdb = R.groupnorm_backward(dy, x, mean, rstd, w, groups)
    check_close("groupnorm_backward_weight.dw", dw, dw0 + rdw)
    check_close("groupnorm_backward_weight.db", db, db0 + rdb)
    dw2 = dw0.copy()
    C.groupnorm_backward_weight_acc_f32(dw2, None, dy, x, mean, rstd, groups)
    np.testing.assert_array_equal(dw2, dw)
    dwn, dbn = C.groupnorm_backward_weight_f32(dy, x, mean, rstd, groups, False, True)
    assert dwn is None and dbn.shape == (6,)


@pytest.mark.parametrize("shape,off,groups", [c for c in GN_CASES if c[2] in (1, c[0][1]) or c[2] == 2])
def test_groupnorm_reference_vs_torch(shape, off, groups, rng):
    x = make(rng, shape, off).astype(np.float64)
    dy = rng.standard_normal(shape)
    for has_w, has_b in AFFINE:
        w, b = params(rng, shape[1], has_w, has_b)
        xt, wt, bt = t64(x, True), t64(w, True), t64(b, True)
        if wt is None and bt is not None:
            # torch 2.13's native group_norm backward fails for weight=None with
            # a bias ("tensor does not have a device"): add the bias outside.
            yt = F.group_norm(xt, groups, None, None, EPS) + bt.reshape((1, -1) + (1,) * (x.ndim - 2))
        else:
            yt = F.group_norm(xt, groups, wt, bt, EPS)
        yt.backward(torch.tensor(dy))
        y, mean, rstd = R.groupnorm_forward(x, w, b, groups, EPS)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        dx, dw, db = R.groupnorm_backward(dy, x, mean, rstd, w, groups)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)
        if has_w:
            np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-9, atol=1e-9)
        if has_b:
            np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-9, atol=1e-9)


def fd_grad(f, a, h=1e-6):
    """Central differences of the scalar f at a (float64), element by element."""
    g = np.zeros_like(a)
    for i in np.ndindex(a.shape):
        old = a[i]
        a[i] = old + h
        fp = f()
        a[i] = old - h
        fm = f()
        a[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


@pytest.mark.parametrize("shape,groups", [((2, 4, 3), 2), ((1, 3, 5), 1), ((2, 3, 2, 2), 3), ((3, 4), 1)])
def test_groupnorm_reference_backward_vs_finite_differences(shape, groups, rng):
    x = rng.standard_normal(shape) + 0.5
    w = rng.uniform(0.5, 1.5, shape[1])
    b = rng.standard_normal(shape[1])
    r = rng.standard_normal(shape)  # L = sum(y * r), so dL/dy = r

    def loss():
        return float((R.groupnorm_forward(x, w, b, groups, EPS)[0] * r).sum())

    _, mean, rstd = R.groupnorm_forward(x, w, b, groups, EPS)
    dx, dw, db = R.groupnorm_backward(r, x, mean, rstd, w, groups)
    for got, arr in ((dx, x), (dw, w), (db, b)):
        fd = fd_grad(loss, arr)
        # atol: the rounding floor of the differences, about 1e-16 |L| / h.
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8 + 1e-6 * np.abs(fd).max())


# ================================================================= batchnorm

BN_SHAPES = [((2, 3, 5), 0.0), ((1, 4, 7), 1.0), ((5, 3), 0.0), ((3, 2, 4, 4), -2.0),
             ((8, 16, 1, 25), 0.0), ((2, 1), 0.0), ((4, 7, 3), 30.0)]
MOMENTA = [0.1, 0.0, 1.0]


@pytest.mark.parametrize("shape,off", BN_SHAPES)
def test_batchnorm_c_vs_reference(shape, off, rng):
    c = shape[1]
    x, dy = make(rng, shape, off), make(rng, shape)
    for (has_w, has_b), mom in zip(AFFINE, MOMENTA * 2):
        w, b = params(rng, c, has_w, has_b)
        rm0 = rng.standard_normal(c).astype(np.float32)
        rv0 = rng.uniform(0.5, 2.0, c).astype(np.float32)
        rm, rv = rm0.copy(), rv0.copy()
        y, mean, rstd = C.batchnorm_forward_train_f32(x, w, b, rm, rv, mom, EPS)
        ry, rmean, rrstd, rrm, rrv = R.batchnorm_forward_train(x, w, b, rm0, rv0, mom, EPS)
        check_close("batchnorm_forward_train.y", y, ry)
        check_close("batchnorm_forward_train.mean", mean, rmean)
        check_close("batchnorm_forward_train.rstd", rstd, rrstd)
        check_close("batchnorm_forward_train.running_mean", rm, rrm)
        check_close("batchnorm_forward_train.running_var", rv, rrv)

        ye = C.batchnorm_forward_eval_f32(x, rm0, rv0, w, b, EPS)
        check_close("batchnorm_forward_eval.y", ye, R.batchnorm_forward_eval(x, rm0, rv0, w, b, EPS))

        m32, r32 = rmean.astype(np.float32), rrstd.astype(np.float32)
        rdx, rdw, rdb = R.batchnorm_backward(dy, x, m32, r32, w)
        dx = C.batchnorm_backward_input_f32(dy, x, m32, r32, w)
        if x.size // c == 2:
            # Two values per channel: the exact dx is O(eps / var) times the
            # terms g * rstd it is the difference of, so float32 can only be
            # held to the scale of those terms.
            g = np.abs(dy * (1.0 if w is None else w.reshape(1, -1))).max()
            check_close("batchnorm_backward_input.dx(m=2, term scale)", dx, rdx, scale=g * r32.max())
        else:
            check_close("batchnorm_backward_input.dx", dx, rdx)
        dw, db = C.batchnorm_backward_weight_f32(dy, x, m32, r32)
        check_close("batchnorm_backward_weight.dw", dw, rdw)
        check_close("batchnorm_backward_weight.db", db, rdb)


def test_batchnorm_running_stats_optional_and_in_place(rng):
    shape = (4, 3, 6)
    x, dy = make(rng, shape, 1.0), make(rng, shape)
    w, b = params(rng, 3, True, True)
    rm = np.zeros(3, np.float32)
    y1, m1, r1 = C.batchnorm_forward_train_f32(x, w, b, None, None, 0.1, EPS)
    y2, m2, r2 = C.batchnorm_forward_train_f32(x, w, b, rm, None, 0.1, EPS)
    np.testing.assert_array_equal(y1, y2)
    assert np.any(rm != 0)
    ref = C.batchnorm_backward_input_f32(dy, x, m1, r1, w)
    for alias in ("x", "dy"):
        xs, dys = x.copy(), dy.copy()
        out = xs if alias == "x" else dys
        C.batchnorm_backward_input_f32(dys, xs, m1, r1, w, out=out)
        np.testing.assert_array_equal(out, ref)
    dw0 = np.ones(3, np.float32)
    C.batchnorm_backward_weight_acc_f32(dw0, None, dy, x, m1, r1)
    _, rdw, _ = R.batchnorm_backward(dy, x, m1, r1, w)
    check_close("batchnorm_backward_weight.dw", dw0, 1.0 + rdw)


@pytest.mark.parametrize("shape,off", BN_SHAPES)
def test_batchnorm_reference_vs_torch(shape, off, rng):
    c = shape[1]
    x = make(rng, shape, off).astype(np.float64)
    dy = rng.standard_normal(shape)
    for (has_w, has_b), mom in zip(AFFINE, MOMENTA * 2):
        w, b = params(rng, c, has_w, has_b)
        rm0, rv0 = rng.standard_normal(c), rng.uniform(0.5, 2.0, c)
        rmt, rvt = torch.tensor(rm0), torch.tensor(rv0)
        xt, wt, bt = t64(x, True), t64(w, True), t64(b, True)
        yt = F.batch_norm(xt, rmt, rvt, wt, bt, training=True, momentum=mom, eps=EPS)
        yt.backward(torch.tensor(dy))
        y, mean, rstd, rm, rv = R.batchnorm_forward_train(x, w, b, rm0, rv0, mom, EPS)
        np.testing.assert_allclose(y, yt.detach().numpy(), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(rm, rmt.numpy(), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(rv, rvt.numpy(), rtol=1e-12, atol=1e-12)
        dx, dw, db = R.batchnorm_backward(dy, x, mean, rstd, w)
        np.testing.assert_allclose(dx, xt.grad.numpy(), rtol=1e-9, atol=1e-9)
        if has_w:
            np.testing.assert_allclose(dw, wt.grad.numpy(), rtol=1e-9, atol=1e-9)
        if has_b:
            np.testing.assert_allclose(db, bt.grad.numpy(), rtol=1e-9, atol=1e-9)
        ye = F.batch_norm(t64(x), torch.tensor(rm0), torch.tensor(rv0), t64(w), t64(b), training=False, eps=EPS)
        np.testing.assert_allclose(R.batchnorm_forward_eval(x, rm0, rv0, w, b, EPS), ye.numpy(),
                                   rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("shape", [(3, 2, 2), (2, 3), (1, 2, 3, 2)])
def test_batchnorm_reference_backward_vs_finite_differences(shape, rng):
    x = rng.standard_normal(shape) - 0.3
    w = rng.uniform(0.5, 1.5, shape[1])
    b = rng.standard_normal(shape[1])
    r = rng.standard_normal(shape)

    def loss():
        return float((R.batchnorm_forward_train(x, w, b, None, None, 0.1, EPS)[0] * r).sum())

    _, mean, rstd, _, _ = R.batchnorm_forward_train(x, w, b, None, None, 0.1, EPS)
    dx, dw, db = R.batchnorm_backward(r, x, mean, rstd, w)
    for got, arr in ((dx, x), (dw, w), (db, b)):
        fd = fd_grad(loss, arr)
        # atol: the rounding floor of the differences, about 1e-16 |L| / h.
        np.testing.assert_allclose(got, fd, rtol=1e-6, atol=1e-8 + 1e-6 * np.abs(fd).max())


# ================================================================ bad input

def raises(kernel, fn, *shapes, status=None):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith(kernel + ":"), msg
    for s in shapes:
        assert str(tuple(s)) in msg, (s, msg)
    if status:
        assert status in msg, msg
    return msg


def test_groupnorm_bad_input(rng):
    x = make(rng, (2, 6, 4))
    w, b = params(rng, 6, True, True)
    _, mean, rstd = C.groupnorm_forward_f32(x, w, b, 2, EPS)
    k = "groupnorm_forward_f32"
    for g in (0, -1, 4, 7):
        raises(k, lambda: C.groupnorm_forward_f32(x, w, b, g, EPS), x.shape, status="groups do not divide")
    for eps in (0.0, -1e-5, float("nan"), float("inf"), 1e-60):
        raises(k, lambda: C.groupnorm_forward_f32(x, w, b, 2, eps), x.shape, status="parameter out of range")
    for empty in (np.zeros((0, 6, 4), np.float32), np.zeros((2, 0, 4), np.float32), np.zeros((2, 6, 0), np.float32)):
        raises(k, lambda: C.groupnorm_forward_f32(empty, None, None, 2, EPS), empty.shape, status="zero or negative size")
    raises(k, lambda: C.groupnorm_forward_f32(np.zeros(6, np.float32), None, None, 1, EPS), (6,), status="shape mismatch")
    raises(k, lambda: C.groupnorm_forward_f32(x, w[:5], b, 2, EPS), x.shape, (5,), status="shape mismatch")
    raises(k, lambda: C.groupnorm_forward_f32(x, w, b.reshape(2, 3), 2, EPS), (2, 3), status="shape mismatch")
    raises(k, lambda: C.groupnorm_forward_f32(x, w, b, 2**40, EPS), x.shape, status="out of the int range")

    k = "groupnorm_backward_input_f32"
    dy = make(rng, x.shape)
    raises(k, lambda: C.groupnorm_backward_input_f32(dy[:1], x, mean, rstd, w, 2), (1, 6, 4), x.shape)
    raises(k, lambda: C.groupnorm_backward_input_f32(dy, x, mean[:1], rstd, w, 2), (1, 2), status="shape mismatch")
    raises(k, lambda: C.groupnorm_backward_input_f32(dy, x, mean, rstd, w, 5), x.shape, status="groups do not divide")
    raises(k, lambda: C.groupnorm_backward_input_f32(dy, x, mean, rstd, w, 2, out=np.zeros(x.shape)),
           status="writeable C-contiguous float32")
    k = "groupnorm_backward_weight_f32"
    raises(k, lambda: C.groupnorm_backward_weight_f32(dy, x, mean, rstd, 2, False, False), x.shape, status="null pointer")
    raises(k, lambda: C.groupnorm_backward_weight_f32(dy, x, mean, rstd, 0), x.shape, status="groups do not divide")
    dw = np.full(6, 7.0, np.float32)
    raises(k, lambda: C.groupnorm_backward_weight_acc_f32(dw, None, dy, x, mean, rstd, 4), status="groups")
    raises(k, lambda: C.groupnorm_backward_weight_acc_f32(dw.astype(np.float64), None, dy, x, mean, rstd, 2),
           status="writeable C-contiguous float32")
    assert np.all(dw == 7.0)  # nothing written on a bad status


def test_batchnorm_bad_input(rng):
    x = make(rng, (3, 4, 5))
    w, b = params(rng, 4, True, True)
    rm, rv = np.zeros(4, np.float32), np.ones(4, np.float32)
    k = "batchnorm_forward_train_f32"
    for mom in (-0.1, 1.5, float("nan")):
        raises(k, lambda: C.batchnorm_forward_train_f32(x, w, b, rm, rv, mom, EPS), x.shape, status="parameter out of range")
    for eps in (0.0, -1.0, float("nan")):
        raises(k, lambda: C.batchnorm_forward_train_f32(x, w, b, rm, rv, 0.1, eps), x.shape, status="parameter out of range")
    one = np.ones((1, 4, 1), np.float32)  # one value per channel: no unbiased variance
    raises(k, lambda: C.batchnorm_forward_train_f32(one, w, b, rm, rv, 0.1, EPS), one.shape, status="zero or negative size")
    empty = np.zeros((0, 4, 5), np.float32)
    raises(k, lambda: C.batchnorm_forward_train_f32(empty, w, b, rm, rv, 0.1, EPS), empty.shape, status="zero or negative size")
    raises(k, lambda: C.batchnorm_forward_train_f32(x, w, b, rm[:3], rv, 0.1, EPS), (3,), status="shape mismatch")
    raises(k, lambda: C.batchnorm_forward_train_f32(x, w, b, rm.astype(np.float64), rv, 0.1, EPS),
           status="writeable C-contiguous float32")
    assert np.all(rm == 0) and np.all(rv == 1)  # nothing written on a bad status

    k = "batchnorm_forward_eval_f32"
    bad_rv = np.array([1, 1, -1, 1], np.float32)
    raises(k, lambda: C.batchnorm_forward_eval_f32(x, rm, bad_rv, w, b, EPS), x.shape, status="parameter out of range")
    raises(k, lambda: C.batchnorm_forward_eval_f32(x, rm, rv, w, b, 0.0), x.shape, status="parameter out of range")
    raises(k, lambda: C.batchnorm_forward_eval_f32(x, rm, rv[:2], w, b, EPS), (2,), status="shape mismatch")

    _, mean, rstd = C.batchnorm_forward_train_f32(x, w, b, None, None, 0.1, EPS)
    dy = make(rng, x.shape)
    k = "batchnorm_backward_input_f32"
    raises(k, lambda: C.batchnorm_backward_input_f32(dy, x, mean[:2], rstd, w), (2,), status="shape mismatch")
    raises(k, lambda: C.batchnorm_backward_input_f32(dy.reshape(3, 20), x, mean, rstd, w), (3, 20), status="shape mismatch")
    k = "batchnorm_backward_weight_f32"
    raises(k, lambda: C.batchnorm_backward_weight_f32(dy, x, mean, rstd, False, False), x.shape, status="null pointer")
    raises(k, lambda: C.batchnorm_backward_weight_f32(empty, empty, np.zeros(4, np.float32), np.zeros(4, np.float32)),
           empty.shape, status="zero or negative size")


def test_constant_input_is_finite(rng):
    """A constant block has zero variance: rstd = 1/sqrt(eps), y = bias, and
    rounding in the statistics must not make the variance negative (NaN)."""
    for v in (3.7, -1234.567, 1e-20):
        x = np.full((2, 4, 37), v, np.float32)
        w, b = params(rng, 4, True, True)
        for eps in (1e-5, 1e-12):
            y, mean, rstd = C.groupnorm_forward_f32(x, w, b, 2, eps)
            ry, rmean, rrstd = R.groupnorm_forward(x, w, b, 2, eps)
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(rstd))
            check_close("groupnorm_forward.y", y, ry)
            check_close("groupnorm_forward.rstd", rstd, rrstd)
            y, mean, rstd = C.batchnorm_forward_train_f32(x, w, b, None, None, 0.1, eps)
            ry, _, rrstd, _, _ = R.batchnorm_forward_train(x, w, b, None, None, 0.1, eps)
            assert np.all(np.isfinite(y)) and np.all(np.isfinite(rstd))
            check_close("batchnorm_forward_train.y", y, ry)
            check_close("batchnorm_forward_train.rstd", rstd, rrstd)
