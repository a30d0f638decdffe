"""conv2d float32 kernels: C against the NumPy reference, the reference against
PyTorch (float64, autograd) and against central finite differences, the C
summation order against a float32 model of the documented order (bit-exact),
accumulation of the weight gradient, and bad input.

Tolerance of C vs reference: max|c - ref| / max|ref| <= 1e-5 over each output
array (a scale-aware relative error; the reference runs in float64 on the same
float32 inputs). The worst value per kernel is printed at the end of the module.
"""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from biotrain_rt import _core as core
from biotrain_rt.reference import conv as ref
from fma32 import fma32
from kernel_accuracy import TOL, check_close, numeric_grad, rel_err, worst_error_summary  # noqa: F401 (autouse fixture)

torch.set_num_threads(1)

CASES = [
    (1, 1, 1, 1, 1, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),          # tiny
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (0, 0), (1, 1), 1, True),
    (2, 3, 7, 9, 4, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),         # same padding
    (1, 4, 8, 11, 6, (3, 2), (2, 3), (1, 1), (1, 1), 2, True),         # stride, groups 2
    (2, 6, 9, 10, 6, (3, 3), (1, 2), (2, 1), (2, 3), 6, False),        # depthwise + dilation
    (2, 6, 9, 10, 12, (3, 3), (2, 1), (1, 0), (1, 1), 6, True),        # depthwise multiplier 2
    (2, 4, 5, 6, 8, (1, 1), (1, 1), (0, 0), (1, 1), 1, True),          # pointwise
    (1, 4, 5, 6, 8, (1, 1), (2, 2), (0, 0), (1, 1), 4, False),         # grouped pointwise, stride
    (3, 2, 1, 40, 4, (1, 7), (1, 3), (0, 3), (1, 2), 2, True),         # Conv1d (H = 1)
    (1, 1, 1, 33, 3, (1, 5), (1, 1), (0, 2), (1, 1), 1, False),        # Conv1d, batch 1
    (2, 1, 8, 30, 8, (8, 1), (1, 1), (0, 0), (1, 1), 1, False),        # spatial filter 8x1
    (2, 8, 1, 200, 8, (1, 64), (1, 1), (0, 32), (1, 1), 8, False),     # depthwise 1x64
    (2, 8, 1, 50, 8, (1, 16), (1, 1), (0, 8), (1, 1), 8, False),       # depthwise 1x16
    (2, 16, 1, 25, 16, (1, 1), (1, 1), (0, 0), (1, 1), 1, False),      # pointwise 16 -> 16
    (2, 16, 2, 31, 16, (2, 1), (1, 1), (0, 0), (1, 1), 1, True),       # 2x1 spatial
    (2, 3, 4, 4, 3, (1, 1), (1, 1), (3, 2), (1, 1), 3, True),          # padding wider than kernel
    (1, 2, 6, 6, 2, (3, 3), (5, 5), (1, 1), (1, 1), 1, True),          # stride > kernel
    (1, 2, 3, 3, 4, (3, 3), (1, 1), (0, 0), (1, 1), 2, True),          # output 1x1
    (2, 6, 7, 13, 9, (2, 4), (3, 2), (1, 2), (3, 2), 3, True),
    (4, 5, 6, 7, 10, (3, 3), (1, 1), (1, 1), (1, 1), 5, True),
    (1, 3, 32, 32, 8, (3, 3), (1, 1), (1, 1), (1, 1), 1, False),       # CCT tokenizer-like
    (2, 4, 11, 1, 4, (3, 1), (2, 1), (1, 0), (2, 1), 4, True),         # W = 1
]


def random_cases(count, seed):
    """Random but valid configurations: odd sizes, strides, dilations, groups."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < count:
        g = int(rng.choice([1, 1, 2, 3, 4]))
        c_in = g * int(rng.integers(1, 4))
        c_out = g * int(rng.integers(1, 4))
        n = int(rng.integers(1, 4))
        h, w = int(rng.integers(1, 12)), int(rng.integers(1, 14))
        k = (int(rng.integers(1, 5)), int(rng.integers(1, 5)))
        s = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        p = (int(rng.integers(0, 3)), int(rng.integers(0, 3)))
        d = (int(rng.integers(1, 4)), int(rng.integers(1, 4)))
        if h + 2 * p[0] - d[0] * (k[0] - 1) - 1 < 0 or w + 2 * p[1] - d[1] * (k[1] - 1) - 1 < 0:
            continue
        out.append((n, c_in, h, w, c_out, k, s, p, d, g, bool(rng.integers(0, 2))))
    return out


ALL_CASES = CASES + random_cases(60, 7)


def case_id(c):
    n, ci, h, w, co, k, s, p, d, g, b = c
    return f"x{n}x{ci}x{h}x{w}-co{co}-k{k[0]}x{k[1]}-s{s[0]}{s[1]}-p{p[0]}{p[1]}-d{d[0]}{d[1]}-g{g}-{'b' if b else 'nb'}"


def make(case, rng, dtype=np.float32):
    n, c_in, h, w, c_out, k, s, p, d, g, has_b = case
    x = rng.standard_normal((n, c_in, h, w)).astype(dtype)
    wt = rng.standard_normal((c_out, c_in // g) + tuple(k)).astype(dtype)
    b = rng.standard_normal(c_out).astype(dtype) if has_b else None
    ho, wo = ref.conv2d_output_size(x.shape, wt.shape, s, p, d)
    dy = rng.standard_normal((n, c_out, ho, wo)).astype(dtype)
    return x, wt, b, dy, dict(stride=s, padding=p, dilation=d, groups=g)


# ------------------------------------------------------------------ (a) C vs reference
@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_c_matches_reference(case, rng):
    x, w, b, dy, kw = make(case, rng)
    y = core.conv2d_forward_f32(x, w, b, **kw)
    assert y.dtype == np.float32
    check_close("conv2d_forward_f32", y, ref.conv2d_forward(x, w, b, **kw))
    dx = core.conv2d_backward_input_f32(dy, w, x.shape, **kw)
    check_close("conv2d_backward_input_f32", dx, ref.conv2d_backward_input(dy, w, x.shape, **kw))
    dw, db = core.conv2d_backward_weight_f32(dy, x, w.shape, b is not None, **kw)
    rdw, rdb = ref.conv2d_backward_weight(dy, x, w.shape, **kw)
    check_close("conv2d_backward_weight_f32 (dw)", dw, rdw)
    if b is None:
        assert db is None
    else:
        check_close("conv2d_backward_weight_f32 (db)", db, rdb)


def test_long_sequence_depthwise(rng):
    """An EEG-sized depthwise conv (8 channels x 1900 samples, 1x64 kernel): the
    weight gradient sums ~3800 products per value in float32."""
    case = (2, 8, 1, 1900, 8, (1, 64), (1, 1), (0, 32), (1, 1), 8, False)
    x, w, b, dy, kw = make(case, rng)
    check_close("conv2d_forward_f32", core.conv2d_forward_f32(x, w, b, **kw),
                ref.conv2d_forward(x, w, b, **kw))
    check_close("conv2d_backward_input_f32", core.conv2d_backward_input_f32(dy, w, x.shape, **kw),
                ref.conv2d_backward_input(dy, w, x.shape, **kw))
    check_close("conv2d_backward_weight_f32 (dw)",
                core.conv2d_backward_weight_f32(dy, x, w.shape, False, **kw)[0],
                ref.conv2d_backward_weight(dy, x, w.shape, **kw)[0])


def test_int_arguments_and_noncontiguous_input(rng):
    """stride/padding/dilation accept an int; a non-contiguous or float64 input is
    converted (same result as the contiguous float32 array)."""
    x, w, b, dy, _ = make((2, 4, 9, 8, 4, (3, 3), (2, 2), (1, 1), (2, 2), 2, True), rng)
    y1 = core.conv2d_forward_f32(x, w, b, stride=(2, 2), padding=(1, 1), dilation=(2, 2), groups=2)
    y2 = core.conv2d_forward_f32(x, w, b, stride=2, padding=1, dilation=2, groups=2)
    np.testing.assert_array_equal(y1, y2)
    xt = np.ascontiguousarray(x.transpose(0, 1, 3, 2)).transpose(0, 1, 3, 2)
    assert not xt.flags.c_contiguous
    np.testing.assert_array_equal(core.conv2d_forward_f32(xt, w, b, stride=2, padding=1, dilation=2, groups=2), y1)
    np.testing.assert_array_equal(
        core.conv2d_forward_f32(x.astype(np.float64), w, b, stride=2, padding=1, dilation=2, groups=2), y1)


# ---------------------------------------------------------- weight-gradient accumulation
@pytest.mark.parametrize("case", CASES[1:8] + CASES[18:20], ids=case_id)
def test_weight_gradient_accumulates(case, rng):
    """dw += ...: starting from non-zero arrays gives start + gradient, and one call
    per sample gives the same bits as one call over the batch."""
    x, w, b, dy, kw = make(case, rng)
    dw0 = rng.standard_normal(w.shape).astype(np.float32)
    db0 = rng.standard_normal(w.shape[0]).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    assert core.conv2d_backward_weight_acc_f32(dw, db, dy, x, **kw) is None
    rdw, rdb = ref.conv2d_backward_weight(dy, x, w.shape, **kw)
    check_close("conv2d_backward_weight_f32 (dw)", dw, dw0.astype(np.float64) + rdw)
    check_close("conv2d_backward_weight_f32 (db)", db, db0.astype(np.float64) + rdb)
    dw_mb, db_mb = dw0.copy(), db0.copy()
    for i in range(x.shape[0]):
        core.conv2d_backward_weight_acc_f32(dw_mb, db_mb, dy[i:i + 1], x[i:i + 1], **kw)
    np.testing.assert_array_equal(dw_mb, dw)
    np.testing.assert_array_equal(db_mb, db)
    # Accumulating onto zeros is what the allocating form returns.
    dwz, dbz = np.zeros_like(dw0), None
    core.conv2d_backward_weight_acc_f32(dwz, dbz, dy, x, **kw)
    np.testing.assert_array_equal(dwz, core.conv2d_backward_weight_f32(dy, x, w.shape, False, **kw)[0])


# ------------------------------------------- documented summation order, bit for bit
def _taps_f32(xp, k, s, d, ho, wo):
    kh_n, kw_n = k
    return {(kh, kw): ref._tap(xp, kh, kw, d[0], d[1], s[0], s[1], ho, wo)
            for kh in range(kh_n) for kw in range(kw_n)}


def model_forward_f32(x, w, b, stride, padding, dilation, groups):
    """float32 model of the C forward: out = bias, then out = fma(w, in, out) over (ci, kh, kw)."""
    n, c_in, _, _ = x.shape
    c_out, cig = w.shape[:2]
    cog = c_out // groups
    ho, wo = ref.conv2d_output_size(x.shape, w.shape, stride, padding, dilation)
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    taps = _taps_f32(xp, w.shape[2:], stride, dilation, ho, wo)
    y = np.zeros((n, c_out, ho, wo), np.float32)
    if b is not None:
        y += b[None, :, None, None]
    src = (np.arange(c_out) // cog) * cig
    for cl in range(cig):
        for (kh, kw), t in taps.items():
            y = fma32(w[None, :, cl, kh, kw, None, None], t[:, src + cl], y)
    return y


def model_backward_input_f32(dy, w, x_shape, stride, padding, dilation, groups):
    """float32 model: d_in = 0, then d_in = fma(d_out, w, d_in) over (co within the group, kh, kw)."""
    n, c_in, h, wd = x_shape
    c_out, cig = w.shape[:2]
    cog = c_out // groups
    ho, wo = dy.shape[2:]
    ph, pw = padding
    dxp = np.zeros((n, c_in, h + 2 * ph, wd + 2 * pw), np.float32)
    ci = np.arange(c_in)
    for col in range(cog):
        co = (ci // cig) * cog + col
        for kh in range(w.shape[2]):
            for kw in range(w.shape[3]):
                t = ref._tap(dxp, kh, kw, dilation[0], dilation[1], stride[0], stride[1], ho, wo)
                t[...] = fma32(dy[:, co], w[co, ci % cig, kh, kw][None, :, None, None], t)
    return dxp[:, :, ph:ph + h, pw:pw + wd]


def model_backward_weight_f32(dw, db, dy, x, stride, padding, dilation, groups):
    """float32 model: dw = fma(d_out, in, dw) over (n, oh, ow), straight into dw."""
    n = x.shape[0]
    c_out, cig, kh_n, kw_n = dw.shape
    cog = c_out // groups
    ho, wo = dy.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    taps = _taps_f32(xp, (kh_n, kw_n), stride, dilation, ho, wo)
    patches = np.stack([np.stack([taps[(kh, kw)] for kw in range(kw_n)], 2) for kh in range(kh_n)], 2)
    cidx = (np.arange(c_out) // cog)[:, None] * cig + np.arange(cig)[None, :]
    dw, db = dw.copy(), None if db is None else db.copy()
    for i in range(n):
        for oh in range(ho):
            for ow in range(wo):
                g = dy[i, :, oh, ow]
                dw = fma32(g[:, None, None, None], patches[i, :, :, :, oh, ow][cidx], dw)
                if db is not None:
                    db = db + g
    return dw, db


@pytest.mark.parametrize("case", CASES[:9] + CASES[15:20] + CASES[21:], ids=case_id)
def test_summation_order_is_the_documented_one(case, rng):
    """The C results equal, bit for bit, a float32 NumPy model of the order written
    in conv2d_f32.c (this pins it: host and MCU must reproduce it)."""
    x, w, b, dy, kw = make(case, rng)
    args = dict(stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"], groups=kw["groups"])
    np.testing.assert_array_equal(core.conv2d_forward_f32(x, w, b, **kw), model_forward_f32(x, w, b, **args))
    np.testing.assert_array_equal(core.conv2d_backward_input_f32(dy, w, x.shape, **kw),
                                  model_backward_input_f32(dy, w, x.shape, **args))
    dw0 = rng.standard_normal(w.shape).astype(np.float32)
    db0 = rng.standard_normal(w.shape[0]).astype(np.float32)
    dw, db = dw0.copy(), db0.copy()
    core.conv2d_backward_weight_acc_f32(dw, db, dy, x, **kw)
    mdw, mdb = model_backward_weight_f32(dw0, db0, dy, x, **args)
    np.testing.assert_array_equal(dw, mdw)
    np.testing.assert_array_equal(db, mdb)


# --------------------------------------------------------- (b) reference vs PyTorch
@pytest.mark.parametrize("case", ALL_CASES, ids=case_id)
def test_reference_matches_torch(case, rng):
    x, w, b, dy, kw = make(case, rng, np.float64)
    tx = torch.tensor(x, requires_grad=True)
    tw = torch.tensor(w, requires_grad=True)
    tb = torch.tensor(b, requires_grad=True) if b is not None else None
    ty = F.conv2d(tx, tw, tb, stride=kw["stride"], padding=kw["padding"], dilation=kw["dilation"],
                  groups=kw["groups"])
    ty.backward(torch.tensor(dy))
    assert rel_err(ref.conv2d_forward(x, w, b, **kw), ty.detach().numpy()) < 1e-12
    assert rel_err(ref.conv2d_backward_input(dy, w, x.shape, **kw), tx.grad.numpy()) < 1e-12
    rdw, rdb = ref.conv2d_backward_weight(dy, x, w.shape, **kw)
    assert rel_err(rdw, tw.grad.numpy()) < 1e-12
    if b is not None:
        assert rel_err(rdb, tb.grad.numpy()) < 1e-12


# ---------------------------------------------- (c) reference vs finite differences
FD_CASES = [
    (1, 2, 4, 5, 2, (3, 3), (1, 1), (1, 1), (1, 1), 1, True),
    (2, 2, 5, 6, 4, (2, 3), (2, 1), (1, 0), (1, 2), 2, True),
    (1, 3, 5, 5, 3, (3, 3), (2, 2), (2, 2), (2, 1), 3, False),
    (2, 2, 1, 9, 2, (1, 4), (1, 2), (0, 2), (1, 1), 1, True),
]


@pytest.mark.parametrize("case", FD_CASES, ids=case_id)
def test_reference_backward_matches_finite_differences(case, rng):
    x, w, b, dy, kw = make(case, rng, np.float64)
    if b is None:
        b_arr = np.zeros(w.shape[0])
    else:
        b_arr = b

    def loss():
        return float((ref.conv2d_forward(x, w, b_arr, **kw) * dy).sum())

    gx, gw, gb = numeric_grad(loss, x), numeric_grad(loss, w), numeric_grad(loss, b_arr)
    assert rel_err(ref.conv2d_backward_input(dy, w, x.shape, **kw), gx) < 1e-7
    rdw, rdb = ref.conv2d_backward_weight(dy, x, w.shape, **kw)
    assert rel_err(rdw, gw) < 1e-7
    assert rel_err(rdb, gb) < 1e-7


# ------------------------------------------------------------------ (d) bad input
def _x(*s):
    return np.zeros(s, np.float32)


BAD = [
    # (name, call, status, words that the message must contain)
    ("groups not dividing", lambda: core.conv2d_forward_f32(_x(2, 6, 5, 9), _x(4, 3, 3, 3), None, groups=4),
     4, ["conv2d_forward_f32", "x (2, 6, 5, 9)", "w (4, 3, 3, 3)", "groups=4"]),
    ("groups zero", lambda: core.conv2d_forward_f32(_x(2, 6, 5, 9), _x(4, 3, 3, 3), None, groups=0),
     4, ["conv2d_forward_f32"]),
    ("groups not dividing c_out", lambda: core.conv2d_forward_f32(_x(1, 4, 5, 5), _x(6, 1, 3, 3), None, groups=4),
     4, ["conv2d_forward_f32"]),
    ("stride zero", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, stride=(0, 1)),
     2, ["conv2d_forward_f32", "stride=(0, 1)"]),
    ("negative padding", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, padding=-1),
     2, ["conv2d_forward_f32", "padding=(-1, -1)"]),
    ("dilation zero", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, dilation=(1, 0)),
     2, ["conv2d_forward_f32"]),
    ("kernel larger than input", lambda: core.conv2d_forward_f32(_x(1, 2, 2, 5), _x(2, 2, 3, 3), None),
     2, ["conv2d_forward_f32", "x (1, 2, 2, 5)"]),
    ("dilated kernel larger than input", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, dilation=3),
     2, ["conv2d_forward_f32"]),
    ("empty batch", lambda: core.conv2d_forward_f32(_x(0, 2, 5, 5), _x(2, 2, 3, 3), None),
     2, ["conv2d_forward_f32", "x (0, 2, 5, 5)"]),
    ("zero output channels", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(0, 2, 3, 3), None),
     2, ["conv2d_forward_f32"]),
    ("weight channels mismatch", lambda: core.conv2d_forward_f32(_x(1, 4, 5, 5), _x(2, 3, 3, 3), None),
     3, ["conv2d_forward_f32", "w.shape[1]"]),
    ("bias length", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(3, 2, 3, 3), _x(2)),
     3, ["conv2d_forward_f32", "b (2,)"]),
    ("x not 4-D", lambda: core.conv2d_forward_f32(_x(2, 5, 5), _x(2, 2, 3, 3), None),
     3, ["conv2d_forward_f32", "x (2, 5, 5)"]),
    ("w not 4-D", lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3), None),
     3, ["conv2d_forward_f32"]),
    # backward input
    ("bwd input: negative x_shape", lambda: core.conv2d_backward_input_f32(_x(1, 2, 3, 3), _x(2, 2, 3, 3), (1, 2, -5, 5)),
     2, ["conv2d_backward_input_f32", "x_shape (1, 2, -5, 5)"]),
    ("bwd input: groups", lambda: core.conv2d_backward_input_f32(_x(1, 2, 3, 3), _x(2, 1, 3, 3), (1, 3, 5, 5), groups=2),
     4, ["conv2d_backward_input_f32"]),
    ("bwd input: dy shape", lambda: core.conv2d_backward_input_f32(_x(1, 2, 4, 3), _x(2, 2, 3, 3), (1, 2, 5, 5)),
     3, ["conv2d_backward_input_f32", "dy (1, 2, 4, 3)"]),
    ("bwd input: empty output", lambda: core.conv2d_backward_input_f32(_x(1, 2, 1, 1), _x(2, 2, 3, 3), (1, 2, 2, 2)),
     2, ["conv2d_backward_input_f32"]),
    # backward weight
    ("bwd weight: zero kernel", lambda: core.conv2d_backward_weight_f32(_x(1, 2, 3, 3), _x(1, 2, 5, 5), (2, 2, 0, 3), True),
     2, ["conv2d_backward_weight_f32", "w_shape (2, 2, 0, 3)"]),
    ("bwd weight: groups", lambda: core.conv2d_backward_weight_f32(_x(1, 2, 3, 3), _x(1, 3, 5, 5), (2, 1, 3, 3), True, groups=2),
     4, ["conv2d_backward_weight_f32"]),
    ("bwd weight: w_shape channels", lambda: core.conv2d_backward_weight_f32(_x(1, 2, 3, 3), _x(1, 2, 5, 5), (2, 1, 3, 3), True),
     3, ["conv2d_backward_weight_f32"]),
    ("bwd weight: dy shape", lambda: core.conv2d_backward_weight_f32(_x(2, 2, 3, 3), _x(1, 2, 5, 5), (2, 2, 3, 3), False),
     3, ["conv2d_backward_weight_f32", "dy (2, 2, 3, 3)"]),
    ("bwd weight acc: stride", lambda: core.conv2d_backward_weight_acc_f32(_x(2, 2, 3, 3), None, _x(1, 2, 3, 3), _x(1, 2, 5, 5), stride=0),
     2, ["conv2d_backward_weight_f32"]),
    ("bwd weight acc: groups", lambda: core.conv2d_backward_weight_acc_f32(_x(2, 1, 3, 3), None, _x(1, 2, 3, 3), _x(1, 3, 5, 5), groups=2),
     4, ["conv2d_backward_weight_f32"]),
    ("bwd weight acc: db length", lambda: core.conv2d_backward_weight_acc_f32(_x(2, 2, 3, 3), _x(3), _x(1, 2, 3, 3), _x(1, 2, 5, 5)),
     3, ["conv2d_backward_weight_f32", "db (3,)"]),
]


@pytest.mark.parametrize("name,call,status,words", BAD, ids=[b[0] for b in BAD])
def test_bad_input_raises_value_error(name, call, status, words):
    with pytest.raises(ValueError) as e:
        call()
    msg = str(e.value)
    assert f"(status {status})" in msg, msg
    for word in words:
        assert word in msg, msg


@pytest.mark.parametrize("call", [
    lambda: core.conv2d_backward_input_f32(_x(1, 2, 3, 3), _x(2, 2, 3, 3), (1, 2, 5)),
    lambda: core.conv2d_backward_input_f32(_x(1, 2, 3, 3), _x(2, 2, 3, 3), (1, 2, 5, 2**40)),
    lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, stride="ab"),
    lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, stride=(1, 2, 3)),
    lambda: core.conv2d_forward_f32(_x(1, 2, 5, 5), _x(2, 2, 3, 3), None, groups=2**40),
    lambda: core.conv2d_backward_weight_f32(_x(1, 2, 3, 3), _x(1, 2, 5, 5), (2, 2, 3), True),
    # accumulation targets that a conversion would silently copy
    lambda: core.conv2d_backward_weight_acc_f32(np.zeros((2, 2, 3, 3)), None, _x(1, 2, 3, 3), _x(1, 2, 5, 5)),
    lambda: core.conv2d_backward_weight_acc_f32(_x(2, 2, 3, 6)[..., ::2], None, _x(1, 2, 3, 3), _x(1, 2, 5, 5)),
    lambda: core.conv2d_backward_weight_acc_f32(np.zeros((2, 2, 3, 3), np.float32), np.zeros(2), _x(1, 2, 3, 3), _x(1, 2, 5, 5)),
], ids=["x_shape length", "x_shape too large", "stride str", "stride triple", "groups too large",
        "w_shape length", "dw float64", "dw strided", "db float64"])
def test_bad_arguments_raise_value_error_naming_the_kernel(call):
    with pytest.raises(ValueError, match="conv2d_"):
        call()


def test_read_only_accumulator_is_refused():
    dw = np.zeros((2, 2, 3, 3), np.float32)
    dw.setflags(write=False)
    with pytest.raises(ValueError, match="conv2d_backward_weight_f32: dw must be a writeable"):
        core.conv2d_backward_weight_acc_f32(dw, None, _x(1, 2, 3, 3), _x(1, 2, 5, 5))


def test_failed_accumulation_leaves_arrays_untouched(rng):
    dw = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    db = rng.standard_normal(2).astype(np.float32)
    dw0, db0 = dw.copy(), db.copy()
    with pytest.raises(ValueError):
        core.conv2d_backward_weight_acc_f32(dw, db, _x(1, 2, 3, 3), _x(1, 2, 5, 5), dilation=0)
    with pytest.raises(ValueError):
        core.conv2d_backward_weight_acc_f32(dw, db, _x(1, 2, 4, 3), _x(1, 2, 5, 5))
    np.testing.assert_array_equal(dw, dw0)
    np.testing.assert_array_equal(db, db0)
