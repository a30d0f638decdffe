"""ReLU, ELU, GELU (tanh form) and softmax float32 kernels.

(a) C vs the float64 NumPy reference (python/biotrain_rt/reference/activation.py),
    rel_err <= 1e-5 (max abs difference / max |reference|, see kernel_accuracy);
(b) the reference vs PyTorch float64 (F.relu, F.elu, F.gelu(approximate='tanh'),
    torch.softmax), values and autograd gradients;
(c) the reference backward vs central finite differences in float64;
(d) bad input: ValueError naming the kernel and the shapes."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as C
from biotrain_rt.reference import activation as R
from kernel_accuracy import check_close, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

SHAPES = [(1,), (7,), (3, 5), (2, 3, 4, 5), (1, 8, 1, 1900), (33, 1)]
ALPHAS = [1.0, 0.5, 0.0, 2.3]


def make(rng, shape, scale=3.0):
    return (rng.standard_normal(shape) * scale).astype(np.float32)


def wide(rng):
    """Small, moderate, large and extreme values, both signs, plus exact 0."""
    mags = np.concatenate([10.0 ** rng.uniform(-30, -1, 50), rng.uniform(0, 10, 200),
                           10.0 ** rng.uniform(1, 30, 50), [0.0, 1e-45, 3.4e38]])
    x = mags * rng.choice([-1.0, 1.0], mags.size)
    return x.astype(np.float32)


def fd_grad(f, x, h=1e-6):
    g = np.zeros_like(x)
    for i in np.ndindex(x.shape):
        old = x[i]
        x[i] = old + h
        fp = f()
        x[i] = old - h
        fm = f()
        x[i] = old
        g[i] = (fp - fm) / (2 * h)
    return g


# ======================================================================= (a)

@pytest.mark.parametrize("shape", SHAPES)
def test_relu_c_vs_reference(shape, rng):
    x, dy = make(rng, shape), make(rng, shape, 1.0)
    y = C.relu_forward_f32(x)
    check_close("relu_forward", y, R.relu(x))
    dx = C.relu_backward_f32(dy, R.relu(x).astype(np.float32))
    check_close("relu_backward", dx, R.relu_backward(dy, x))


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("alpha", ALPHAS)
def test_elu_c_vs_reference(shape, alpha, rng):
    x, dy = make(rng, shape), make(rng, shape, 1.0)
    y = C.elu_forward_f32(x, alpha)
    check_close("elu_forward", y, R.elu(x, alpha))
    # The kernel takes the forward OUTPUT; the reference differentiates at x.
    dx = C.elu_backward_f32(dy, R.elu(x, alpha).astype(np.float32), alpha)
    check_close("elu_backward", dx, R.elu_backward(dy, x, alpha))


def test_elu_small_negative_keeps_relative_accuracy(rng):
    """alpha (e^x - 1) near 0 cancels in a naive exp(x) - 1: pointwise check."""
    x = -(10.0 ** rng.uniform(-8, 0.5, 2000)).astype(np.float32)
    y = C.elu_forward_f32(x, 1.0)
    ref = R.elu(x, 1.0)
    assert np.max(np.abs(y - ref) / np.abs(ref)) < 2.5e-7


@pytest.mark.parametrize("shape", SHAPES)
def test_gelu_c_vs_reference(shape, rng):
    x, dy = make(rng, shape), make(rng, shape, 1.0)
    check_close("gelu_forward", C.gelu_forward_f32(x), R.gelu_tanh(x))
    check_close("gelu_backward", C.gelu_backward_f32(dy, x), R.gelu_tanh_backward(dy, x))


def test_gelu_wide_range_and_pointwise(rng):
    x = wide(rng)
    dy = np.ones_like(x)
    y, dx = C.gelu_forward_f32(x), C.gelu_backward_f32(dy, x)
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    check_close("gelu_forward", y, R.gelu_tanh(x))
    check_close("gelu_backward", dx, R.gelu_tanh_backward(dy, x))
    # Pointwise on [-5, 5]: the sigmoid form keeps relative accuracy where
    # 0.5 x (1 + tanh(u)) would cancel (x < 0).
    x = np.linspace(-5, 5, 4001, dtype=np.float32)
    x = x[x != 0]
    ref = R.gelu_tanh(x)
    assert np.max(np.abs(C.gelu_forward_f32(x) - ref) / np.abs(ref)) < 2e-6
    d = R.gelu_tanh_backward(np.ones_like(x), x)
    np.testing.assert_allclose(C.gelu_backward_f32(np.ones_like(x), x), d, rtol=0, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 1), (3, 5), (4, 1), (2, 3, 7), (6, 11), (2, 200)])
def test_softmax_c_vs_reference(shape, rng):
    for scale in (1.0, 30.0):
        x, dy = make(rng, shape, scale), make(rng, shape, 1.0)
        y = C.softmax_forward_f32(x)
        ry = R.softmax(x)
        check_close("softmax_forward", y, ry)
        np.testing.assert_allclose(y.sum(axis=-1), 1.0, rtol=0, atol=1e-6)
        y32 = ry.astype(np.float32)
        dx = C.softmax_backward_f32(dy, y32)
        if scale == 1.0:
            check_close("softmax_backward", dx, R.softmax_backward(dy, y32))
        else:
            # Saturated rows (one probability ~1): y * (dy - sum(dy y)) cancels
            # to ~1e-14 by construction, so hold it to the scale of y * dy.
            check_close("softmax_backward(saturated, term scale)", dx, R.softmax_backward(dy, y32),
                        scale=np.abs(y32 * dy).max())


def test_softmax_extreme_logits():
    x = np.array([[1000.0, 0.0, -1000.0], [-1e30, -1e30, -1e30], [3.0, 3.0, 3.0]], np.float32)
    y = C.softmax_forward_f32(x)
    np.testing.assert_allclose(y, R.softmax(x), rtol=1e-6, atol=1e-30)


def test_nan_propagates():
    x = np.array([np.nan, 1.0, -1.0], np.float32)
    assert np.isnan(C.relu_forward_f32(x)[0])
    assert np.isnan(C.elu_forward_f32(x, 1.0)[0])
    assert np.isnan(C.gelu_forward_f32(x)[0])
    assert np.all(np.isnan(C.softmax_forward_f32(x)))


# ======================================================================= (b)

@pytest.mark.parametrize("shape", [(7,), (3, 5), (2, 3, 4)])
def test_reference_vs_torch(shape, rng):
    x = rng.standard_normal(shape) * 3
    dy = rng.standard_normal(shape)

    def torch_fn(fn):
        xt = torch.tensor(x, requires_grad=True)
        yt = fn(xt)
        yt.backward(torch.tensor(dy))
        return yt.detach().numpy(), xt.grad.numpy()

    y, g = torch_fn(F.relu)
    np.testing.assert_allclose(R.relu(x), y, rtol=1e-14)
    np.testing.assert_allclose(R.relu_backward(dy, x), g, rtol=1e-14)
    for alpha in ALPHAS:
        y, g = torch_fn(lambda t: F.elu(t, alpha))
        np.testing.assert_allclose(R.elu(x, alpha), y, rtol=1e-12, atol=1e-13)
        np.testing.assert_allclose(R.elu_backward(dy, x, alpha), g, rtol=1e-12, atol=1e-13)
    y, g = torch_fn(lambda t: F.gelu(t, approximate="tanh"))
    np.testing.assert_allclose(R.gelu_tanh(x), y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(R.gelu_tanh_backward(dy, x), g, rtol=1e-12, atol=1e-13)
    y, g = torch_fn(lambda t: torch.softmax(t, dim=-1))
    np.testing.assert_allclose(R.softmax(x), y, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(R.softmax_backward(dy, R.softmax(x)), g, rtol=1e-12, atol=1e-13)


# ======================================================================= (c)

def test_reference_backward_vs_finite_differences(rng):
    x = rng.standard_normal((3, 5)) * 2
    x[np.abs(x) < 1e-3] = 0.5  # keep away from ReLU's and ELU's kink
    r = rng.standard_normal(x.shape)
    cases = [
        (lambda: (R.relu(x) * r).sum(), lambda: R.relu_backward(r, x)),
        (lambda: (R.elu(x, 0.7) * r).sum(), lambda: R.elu_backward(r, x, 0.7)),
        (lambda: (R.gelu_tanh(x) * r).sum(), lambda: R.gelu_tanh_backward(r, x)),
        (lambda: (R.softmax(x) * r).sum(), lambda: R.softmax_backward(r, R.softmax(x))),
    ]
    for f, grad in cases:
        fd = fd_grad(f, x)
        np.testing.assert_allclose(grad(), fd, rtol=1e-6, atol=1e-8)


# ======================================================================= (d)

def raises(kernel, fn, *shapes, status=None):
    with pytest.raises(ValueError) as e:
        fn()
    msg = str(e.value)
    assert msg.startswith(kernel + ":"), msg
    for s in shapes:
        assert str(tuple(s)) in msg, (s, msg)
    if status:
        assert status in msg, msg


def test_bad_input():
    x = np.ones((2, 3), np.float32)
    empty = np.zeros((2, 0), np.float32)
    for name in ("relu_forward_f32", "gelu_forward_f32", "softmax_forward_f32"):
        raises(name, lambda: getattr(C, name)(empty), empty.shape, status="zero or negative size")
    raises("elu_forward_f32", lambda: C.elu_forward_f32(empty, 1.0), empty.shape, status="zero or negative size")
    for alpha in (-0.1, float("nan"), float("inf")):
        raises("elu_forward_f32", lambda: C.elu_forward_f32(x, alpha), x.shape, status="parameter out of range")
        raises("elu_backward_f32", lambda: C.elu_backward_f32(x, x, alpha), x.shape, status="parameter out of range")
    for name in ("relu_backward_f32", "gelu_backward_f32", "softmax_backward_f32"):
        raises(name, lambda: getattr(C, name)(x, x.T), x.shape, (3, 2), status="shape mismatch")
        raises(name, lambda: getattr(C, name)(empty, empty), empty.shape, status="zero or negative size")
    raises("elu_backward_f32", lambda: C.elu_backward_f32(x, x[:1], 1.0), x.shape, (1, 3), status="shape mismatch")
    scalar = np.float32(1.0)
    raises("softmax_forward_f32", lambda: C.softmax_forward_f32(scalar), status="shape mismatch")
    raises("softmax_forward_f32", lambda: C.softmax_forward_f32(np.zeros((0, 4), np.float32)), (0, 4),
           status="zero or negative size")
