"""Pooling float32 kernels (average, max with saved or recomputed argmax,
global average): C against the NumPy reference, the reference against PyTorch
(float64, autograd) and against central finite differences, the C summation
order against a float32 model of the documented order (bit-exact), and bad input.

Tolerance of C vs reference: max|c - ref| / max|ref| <= 1e-5 over each output
array (scale-aware relative error; the reference runs in float64 on the same
float32 inputs). Max pooling forward and its argmax must match exactly. The
worst value per kernel is printed at the end of the module.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as core
from biotrain_rt.reference import pool as ref
from kernel_accuracy import TOL, WORST, check_close, numeric_grad, rel_err, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

CASES = [
    (1, 1, 1, 1, (1, 1), None, (0, 0)),           # tiny
    (2, 3, 8, 8, (2, 2), None, (0, 0)),
    (1, 2, 7, 9, (3, 3), (2, 2), (1, 1)),
    (2, 2, 7, 9, (3, 2), (1, 1), (1, 1)),         # overlapping windows
    (1, 8, 1, 100, (1, 8), None, (0, 0)),         # 1x8 on a sequence (EEG model)
    (3, 4, 1, 23, (1, 5), None, (0, 2)),          # 1x5, leftover samples dropped
    (2, 16, 1, 250, (1, 4), None, (0, 0)),        # 1x4 (EOG model)
    (1, 2, 5, 6, (4, 4), (3, 1), (2, 2)),         # even kernel, padding k/2
    (2, 1, 6, 5, (6, 5), (1, 1), (0, 0)),         # window = whole input
    (2, 3, 11, 13, (3, 3), (2, 3), (0, 1)),
    (1, 64, 16, 16, (3, 3), (2, 2), (1, 1)),      # CCT tokenizer maxpool
    (4, 5, 9, 7, (2, 3), (3, 2), (1, 0)),         # stride > kernel in h
    (2, 2, 1, 17, (1, 3), (1, 2), (0, 1)),        # 1-D with padding
]


def case_id(c):
    n, ch, h, w, k, s, p = c
    s = k if s is None else s
    return f"x{n}x{ch}x{h}x{w}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{p[0]}{p[1]}"


def make(case, rng, dtype=np.float32):
    n, c, h, w, k, s, p = case
    x = rng.standard_normal((n, c, h, w)).astype(dtype)
    ho, wo = ref.pool2d_output_size(x.shape, k, s, p)
    dy = rng.standard_normal((n, c, ho, wo)).astype(dtype)
    return x, dy, dict(kernel_size=k, stride=s, padding=p)


@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_c_matches_reference(case, rng):
    x, dy, kw = make(case, rng)
    check_close("avgpool2d_forward_f32", core.avgpool2d_forward_f32(x, **kw), ref.avgpool2d_forward(x, **kw))
    check_close("avgpool2d_backward_f32", core.avgpool2d_backward_f32(dy, x.shape, **kw),
                ref.avgpool2d_backward(dy, x.shape, **kw))
    y, arg = core.maxpool2d_forward_f32(x, **kw)
    ry, rarg = ref.maxpool2d_forward(x, **kw)
    assert arg.dtype == np.int32
    np.testing.assert_array_equal(y, ry)
    np.testing.assert_array_equal(arg, rarg)
    np.testing.assert_array_equal(core.maxpool2d_forward_f32(x, **kw, return_argmax=False), y)
    WORST["maxpool2d_forward_f32"] = max(WORST.get("maxpool2d_forward_f32", 0.0), rel_err(y, ry))
    dx = core.maxpool2d_backward_f32(dy, arg, x.shape, **kw)
    check_close("maxpool2d_backward_f32", dx, ref.maxpool2d_backward(dy, rarg, x.shape))
    dx2 = core.maxpool2d_backward_recompute_f32(dy, x, **kw)
    check_close("maxpool2d_backward_recompute_f32", dx2, ref.maxpool2d_backward(dy, rarg, x.shape))
    np.testing.assert_array_equal(dx2, dx)  # same windows, same order


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 3, 7), (4, 16, 1), (2, 8, 1, 26), (3, 5, 4, 6), (1, 2, 1000),
                                   (2, 3, 2, 3, 4)])
def test_global_avgpool_c_matches_reference(shape, rng):
    """Global average pooling is the op global_avgpool (the average-pool kernel over the whole plane)."""
    x = rng.standard_normal(shape).astype(np.float32)
    dy = rng.standard_normal(shape[:2]).astype(np.float32)
    check_close("global_avgpool forward", _gap(x), ref.global_avgpool_forward(x))
    check_close("global_avgpool backward", _gap_backward(dy, x), ref.global_avgpool_backward(dy, shape))


def _as4(x):
    return np.ascontiguousarray(x.reshape(x.shape[0], x.shape[1], 1, -1))


def _gap(x):
    return core.op_call("global_avgpool", [_as4(x)])["out"].reshape(x.shape[:2])


def _gap_backward(dy, x):
    d = core.op_call("global_avgpool", [_as4(x)], phase="backward_input",
                     dout=np.ascontiguousarray(dy.reshape(dy.shape + (1, 1))))["din"]
    return d.reshape(x.shape)


def test_ties_first_maximum_wins(rng):
    """Integer data has many ties: C, the reference and PyTorch all keep the first
    maximum in scan order."""
    x = rng.integers(0, 3, (2, 3, 9, 10)).astype(np.float32)
    for k, s, p in [((3, 3), (1, 1), (1, 1)), ((2, 2), None, (0, 0)), ((3, 2), (2, 1), (1, 1))]:
        y, arg = core.maxpool2d_forward_f32(x, k, s, p)
        ry, rarg = ref.maxpool2d_forward(x, k, s, p)
        ty, targ = F.max_pool2d(torch.tensor(x, dtype=torch.float64), k, s if s is not None else k, p,
                                return_indices=True)
        np.testing.assert_array_equal(arg, rarg)
        np.testing.assert_array_equal(arg, targ.numpy())
        np.testing.assert_array_equal(y, ry)
        np.testing.assert_array_equal(y, ty.numpy())


def test_maxpool_nan_propagates():
    x = np.arange(16, dtype=np.float32).reshape(1, 1, 4, 4)
    x[0, 0, 1, 0] = np.nan
    y, arg = core.maxpool2d_forward_f32(x, 2)
    ty = F.max_pool2d(torch.tensor(x), 2)
    np.testing.assert_array_equal(np.isnan(y), np.isnan(ty.numpy()))
    assert np.isnan(y[0, 0, 0, 0]) and arg[0, 0, 0, 0] == 4
    np.testing.assert_array_equal(y[0, 0, 1], ty.numpy()[0, 0, 1])


# ------------------------------------------- documented summation order, bit for bit
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_summation_order_is_the_documented_one(case, rng):
    """C equals, bit for bit, a float32 model of the order written in pool2d_f32.c."""
    x, dy, kw = make(case, rng)
    k, s, p = kw["kernel_size"], kw["stride"] or kw["kernel_size"], kw["padding"]
    n, c, h, w = x.shape
    ho, wo = dy.shape[2:]
    area = np.float32(k[0] * k[1])
    xp = np.pad(x, ((0, 0), (0, 0), (p[0],) * 2, (p[1],) * 2))
    acc = np.zeros(dy.shape, np.float32)
    dxp = np.zeros(xp.shape, np.float32)
    for kh in range(k[0]):
        for kw_ in range(k[1]):
            acc = acc + ref._tap(xp, kh, kw_, s[0], s[1], ho, wo)
            ref._tap(dxp, kh, kw_, s[0], s[1], ho, wo)[...] += dy
    np.testing.assert_array_equal(core.avgpool2d_forward_f32(x, **kw), acc / area)
    np.testing.assert_array_equal(core.avgpool2d_backward_f32(dy, x.shape, **kw),
                                  dxp[:, :, p[0]:p[0] + h, p[1]:p[1] + w] / area)
    _, arg = core.maxpool2d_forward_f32(x, **kw)
    dx = np.zeros((n * c, h * w), np.float32)
    rows = np.arange(n * c)
    for oh in range(ho):
        for ow in range(wo):
            dx[rows, arg[:, :, oh, ow].reshape(-1)] += dy[:, :, oh, ow].reshape(-1)
    np.testing.assert_array_equal(core.maxpool2d_backward_f32(dy, arg, x.shape, **kw), dx.reshape(x.shape))
    g = np.zeros((n, c), np.float32)
    xf = x.reshape(n, c, -1)
    for i in range(xf.shape[2]):
        g = g + xf[:, :, i]
    np.testing.assert_array_equal(_gap(x), g / np.float32(h * w))
    gy = dy[:, :, 0, 0].copy()
    np.testing.assert_array_equal(_gap_backward(gy, x),
                                  np.broadcast_to((gy / np.float32(h * w))[:, :, None, None], x.shape))


# --------------------------------------------------------- (b) reference vs PyTorch
@pytest.mark.parametrize("case", CASES, ids=case_id)
def test_reference_matches_torch(case, rng):
    x, dy, kw = make(case, rng, np.float64)
    k, s, p = kw["kernel_size"], kw["stride"] or kw["kernel_size"], kw["padding"]
    tx = torch.tensor(x, requires_grad=True)
    ty = F.avg_pool2d(tx, k, s, p, ceil_mode=False, count_include_pad=True)
    ty.backward(torch.tensor(dy))
    assert rel_err(ref.avgpool2d_forward(x, **kw), ty.detach().numpy()) < 1e-12
    assert rel_err(ref.avgpool2d_backward(dy, x.shape, **kw), tx.grad.numpy()) < 1e-12
    tx = torch.tensor(x, requires_grad=True)
    ty, targ = F.max_pool2d(tx, k, s, p, ceil_mode=False, return_indices=True)
    ty.backward(torch.tensor(dy))
    ry, rarg = ref.maxpool2d_forward(x, **kw)
    np.testing.assert_array_equal(ry, ty.detach().numpy())
    np.testing.assert_array_equal(rarg, targ.numpy())
    assert rel_err(ref.maxpool2d_backward(dy, rarg, x.shape), tx.grad.numpy()) < 1e-12
    tx = torch.tensor(x, requires_grad=True)
    ty = F.adaptive_avg_pool2d(tx, 1)[:, :, 0, 0]
    gy = dy[:, :, 0, 0]
    ty.backward(torch.tensor(gy))
    assert rel_err(ref.global_avgpool_forward(x), ty.detach().numpy()) < 1e-12
    assert rel_err(ref.global_avgpool_backward(gy, x.shape), tx.grad.numpy()) < 1e-12


# ---------------------------------------------- (c) reference vs finite differences
FD_CASES = [
    (1, 2, 5, 6, (3, 3), (2, 2), (1, 1)),
    (2, 1, 4, 7, (2, 3), (1, 2), (1, 1)),   # overlapping windows
    (1, 2, 1, 11, (1, 4), None, (0, 2)),
]


@pytest.mark.parametrize("case", FD_CASES, ids=case_id)
def test_reference_backward_matches_finite_differences(case, rng):
    x, dy, kw = make(case, rng, np.float64)
    g = numeric_grad(lambda: float((ref.avgpool2d_forward(x, **kw) * dy).sum()), x)
    assert rel_err(ref.avgpool2d_backward(dy, x.shape, **kw), g) < 1e-7
    # Random float64 data: no two values of a window within 1e-6, so max is
    # differentiable at x.
    g = numeric_grad(lambda: float((ref.maxpool2d_forward(x, **kw)[0] * dy).sum()), x)
    _, arg = ref.maxpool2d_forward(x, **kw)
    assert rel_err(ref.maxpool2d_backward(dy, arg, x.shape), g) < 1e-7
    gy = dy[:, :, 0, 0].copy()
    g = numeric_grad(lambda: float((ref.global_avgpool_forward(x) * gy).sum()), x)
    assert rel_err(ref.global_avgpool_backward(gy, x.shape), g) < 1e-7


# ------------------------------------------------------------------ (d) bad input
def _x(*s):
    return np.zeros(s, np.float32)


def _i(*s):
    return np.zeros(s, np.int32)


def _corrupt_argmax():
    x = np.arange(2 * 2 * 6 * 6, dtype=np.float32).reshape(2, 2, 6, 6)
    _, arg = core.maxpool2d_forward_f32(x, 2)
    arg = arg.copy()
    arg[1, 1, 2, 2] = 0  # (0, 0) is not in the bottom-right window
    return core.maxpool2d_backward_f32(_x(2, 2, 3, 3), arg, (2, 2, 6, 6), 2)


BAD = [
    ("avg: padding over half", lambda: core.avgpool2d_forward_f32(_x(1, 2, 6, 6), 3, 1, 2), 2,
     ["avgpool2d_forward_f32", "x (1, 2, 6, 6)", "padding=(2, 2)"]),
    ("avg: kernel larger than input", lambda: core.avgpool2d_forward_f32(_x(1, 2, 2, 6), 3), 2,
     ["avgpool2d_forward_f32"]),
    ("avg: stride zero", lambda: core.avgpool2d_forward_f32(_x(1, 2, 6, 6), 2, (0, 1)), 2,
     ["avgpool2d_forward_f32", "stride=(0, 1)"]),
    ("avg: negative padding", lambda: core.avgpool2d_forward_f32(_x(1, 2, 6, 6), 2, 1, -1), 2,
     ["avgpool2d_forward_f32"]),
    ("avg: zero kernel", lambda: core.avgpool2d_forward_f32(_x(1, 2, 6, 6), (0, 2)), 2, ["avgpool2d_forward_f32"]),
    ("avg: empty input", lambda: core.avgpool2d_forward_f32(_x(1, 0, 6, 6), 2), 2,
     ["avgpool2d_forward_f32", "x (1, 0, 6, 6)"]),
    ("avg: x not 4-D", lambda: core.avgpool2d_forward_f32(_x(2, 6, 6), 2), 3, ["avgpool2d_forward_f32"]),
    ("avg bwd: dy shape", lambda: core.avgpool2d_backward_f32(_x(1, 2, 3, 2), (1, 2, 6, 6), 2), 3,
     ["avgpool2d_backward_f32", "dy (1, 2, 3, 2)", "x_shape (1, 2, 6, 6)"]),
    ("avg bwd: negative x_shape", lambda: core.avgpool2d_backward_f32(_x(1, 2, 3, 3), (1, -2, 6, 6), 2), 2,
     ["avgpool2d_backward_f32"]),
    ("avg bwd: padding over half", lambda: core.avgpool2d_backward_f32(_x(1, 2, 3, 3), (1, 2, 6, 6), 2, 2, 2), 2,
     ["avgpool2d_backward_f32"]),
    ("max: padding over half", lambda: core.maxpool2d_forward_f32(_x(1, 2, 6, 6), 2, 1, (0, 2)), 2,
     ["maxpool2d_forward_f32"]),
    ("max: empty batch", lambda: core.maxpool2d_forward_f32(_x(0, 2, 6, 6), 2), 2, ["maxpool2d_forward_f32"]),
    ("max bwd: argmax shape", lambda: core.maxpool2d_backward_f32(_x(1, 2, 3, 3), _i(1, 2, 3, 2), (1, 2, 6, 6), 2), 3,
     ["maxpool2d_backward_f32", "argmax (1, 2, 3, 2)"]),
    ("max bwd: dy shape", lambda: core.maxpool2d_backward_f32(_x(1, 1, 3, 3), _i(1, 2, 3, 3), (1, 2, 6, 6), 2), 3,
     ["maxpool2d_backward_f32"]),
    ("max bwd: argmax out of its window", _corrupt_argmax, 10, ["maxpool2d_backward_f32"]),
    ("max bwd: argmax negative",
     lambda: core.maxpool2d_backward_f32(_x(1, 1, 1, 1), np.full((1, 1, 1, 1), -1, np.int32), (1, 1, 2, 2), 2), 10,
     ["maxpool2d_backward_f32"]),
    ("max bwd: stride zero", lambda: core.maxpool2d_backward_f32(_x(1, 2, 3, 3), _i(1, 2, 3, 3), (1, 2, 6, 6), 2, 0), 2,
     ["maxpool2d_backward_f32"]),
    ("max bwd recompute: dy shape", lambda: core.maxpool2d_backward_recompute_f32(_x(1, 2, 2, 3), _x(1, 2, 6, 6), 2), 3,
     ["maxpool2d_backward_recompute_f32", "dy (1, 2, 2, 3)"]),
    ("max bwd recompute: kernel", lambda: core.maxpool2d_backward_recompute_f32(_x(1, 2, 3, 3), _x(1, 2, 6, 6), 7), 2,
     ["maxpool2d_backward_recompute_f32"]),
]


@pytest.mark.parametrize("name,call,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error(name, call, status, words):
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert f"(status {status})" in msg, msg
    for word in words:
        assert word in msg, msg


def test_global_avgpool_op_refuses_bad_input():
    """Global average pooling runs through its op (op_call): a wrong gradient size is refused."""
    x = np.zeros((2, 3, 1, 4), np.float32)
    with pytest.raises(ValueError, match="dout"):
        core.op_call("global_avgpool", [x], phase="backward_input", dout=np.zeros((2, 4, 1, 1), np.float32))
    with pytest.raises(ValueError, match="inputs are"):
        core.op_call("global_avgpool", [np.zeros((2, 3, 4), np.float32)])


@pytest.mark.parametrize("call", [
    lambda: core.avgpool2d_backward_f32(_x(1, 2, 3, 3), (1, 2, 6), 2),
    lambda: core.avgpool2d_backward_f32(_x(1, 2, 3, 3), (1, 2, 6, 2**33), 2),
    lambda: core.avgpool2d_forward_f32(_x(1, 2, 6, 6), (2, 2, 2)),
    lambda: core.maxpool2d_forward_f32(_x(1, 2, 6, 6), "2"),
], ids=["x_shape length", "x_shape too large", "kernel triple", "kernel str"])
def test_bad_arguments_raise_value_error_naming_the_kernel(call):
    with pytest.raises(ValueError, match=r"^(avg|max)pool2d_\w+_f32: "):
        call()
