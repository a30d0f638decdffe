"""Fixed-point kernels: the C core against the integer NumPy reference
(reference/fixed.py, written from the rules in qmath.h), bit for bit
(np.array_equal, and the saturation statistics too), over many shapes and
random inputs that include the int8 limits; the documented bad inputs; and,
so that a rule shared by both sides cannot be wrong unnoticed, each kernel's
dequantised result against the float64 math within a few output units."""
import math
from fractions import Fraction

import numpy as np
import pytest

from biotrain_rt import _core as C
from biotrain_rt.reference import fixed as R

SEEDS = range(6)


def rand8(rng, shape, p_extreme=0.08):
    """int8 values over the whole range, with -128, -127, 127 and 0 over-represented."""
    x = rng.integers(-128, 128, size=shape)
    mask = rng.random(shape) < p_extreme
    x[mask] = rng.choice(np.array([-128, -127, 127, 0, 1, -1]), size=int(mask.sum()))
    return x.astype(np.int8)


def small8(rng, shape, scale):
    return np.clip(np.rint(rng.standard_normal(shape) * scale), -127, 127).astype(np.int8)


def same_stats(st, ref):
    assert (st["saturated"], st["absmax"]) == (ref.saturated, ref.absmax), (st, ref)


# ---------------------------------------------------------------- the rules
def exact_round(fr: Fraction) -> int:
    f = math.floor(fr)
    rem = fr - f
    if rem > Fraction(1, 2) or (rem == Fraction(1, 2) and f % 2 == 1):
        f += 1
    return f


def test_shift_round_is_round_half_even():
    rng = np.random.default_rng(0)
    xs = [0, 1, -1, 2, -2, 3, -3, 5, -5, 6, -6, 7, 2 ** 40 + 2 ** 9, -(2 ** 40 + 2 ** 9), 2 ** 61, -(2 ** 61)]
    xs += [int(v) for v in rng.integers(-2 ** 62, 2 ** 62, size=300)]
    for x in xs:
        for s in (1, 2, 3, 7, 10, 31, 40, 62, 63, 64, 70):
            want = exact_round(Fraction(x, 2 ** s))
            assert C.q_shift_round(x, s) == want == int(R.shift_round(x, s)), (x, s)
        for s in (0, -1, -5, -20):
            want = x * 2 ** -s
            want = max(min(want, 2 ** 62), -2 ** 62)
            assert C.q_shift_round(x, s) == want == int(R.shift_round(x, s)), (x, s)
    # ties go to even, symmetric in sign
    assert [C.q_shift_round(v, 1) for v in (1, 3, 5, -1, -3, -5)] == [0, 2, 2, 0, -2, -2]


def test_div_round_and_isqrt():
    rng = np.random.default_rng(1)
    for _ in range(400):
        num = int(rng.integers(-2 ** 62, 2 ** 62))
        den = int(rng.integers(1, 2 ** int(rng.integers(1, 40))))
        want = exact_round(Fraction(num, den))
        assert C.q_div_round(num, den) == want == int(R.div_round(num, den))
    for v in [0, 1, 2, 3, 4, 15, 16, 2 ** 62 - 1, 2 ** 62, 2 ** 64 - 1] + [int(v) for v in rng.integers(0, 2 ** 63, 200)]:
        assert C.q_isqrt64(v) == math.isqrt(v)
    with pytest.raises(ValueError):
        C.q_div_round(1, 0)


def test_exp_and_log2():
    for frac in (-2, 0, 3, 5, 7, 12):
        x = np.arange(-40000, 1, 37, dtype=np.int32) if frac >= 7 else np.arange(-300, 1, dtype=np.int32)
        got = C.q_exp_neg_q30(x, frac)
        assert np.array_equal(got, R.exp_neg_q30(x, frac))
        want = np.exp(x.astype(np.float64) * 2.0 ** -frac) * 2 ** 30
        # the exponent carries 16 fractional bits: relative error <= 2^-17 ln 2, plus a few Q30 units
        assert np.all(np.abs(got - want) <= 6e-6 * want + 8)
    assert C.q_exp_neg_q30(np.zeros(1, np.int32), 4)[0] == 2 ** 30
    rng = np.random.default_rng(2)
    for v in [1, 2, 3, 2 ** 30, 2 ** 31 - 1, 2 ** 61 + 12345] + [int(v) for v in rng.integers(1, 2 ** 62, 200)]:
        for frac in (0, 30):
            got = C.q_log2_q16(v, frac)
            assert got == R.log2_q16(v, frac)
            assert abs(got / 65536 - (math.log2(v) - frac)) < 3e-5


def test_decode_f32_is_exact():
    vals = [0.0, 1.0, -1.0, 0.9, 1e-3, 3e-3, 0.05, 1e-5, 5e-4, 123.456, 1e-40, -2.5e-7]
    for v in vals:
        m, e = C.q_decode_f32(v)
        assert (m, e) == R.decode_f32(v)
        assert abs(m) < 2 ** 24
        assert Fraction(m) * Fraction(2) ** -e == Fraction(float(np.float32(v)))
    with pytest.raises(ValueError):
        C.q_decode_f32(float("nan"))


def test_frac_adapt():
    for frac in (-3, 0, 7, 20):
        for absmax in (0, 1, 63, 64, 127, 128, 200, 5000, 2 ** 31):
            for top in (7, 24):
                f = C.q_frac_adapt(frac, absmax, top)
                assert f == R.frac_adapt(frac, absmax, top)
                if absmax:
                    scaled = absmax * 2.0 ** (f - frac)
                    assert 2 ** (top - 1) <= scaled < 2 ** top or f in (R.FRAC_MIN, R.FRAC_MAX)


# -------------------------------------------------------------- elementwise
@pytest.mark.parametrize("seed", SEEDS)
def test_requant_add_accumulate(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 9, size=3))
    a, b = rand8(rng, shape), rand8(rng, shape)
    fa, fb, fo = (int(v) for v in rng.integers(-3, 9, size=3))
    out, st = C.requant_q7(a, fa, fo)
    ref = R.Stats()
    assert np.array_equal(out, R.requant(a, fa, fo, ref)) and out.dtype == np.int8
    same_stats(st, ref)
    out, st = C.add_forward_q7(a, fa, b, fb, fo)
    ref = R.Stats()
    assert np.array_equal(out, R.add_forward(a, fa, b, fb, fo, ref))
    same_stats(st, ref)
    out, st = C.accumulate_q7(a, fa, b, fb)
    ref = R.Stats()
    assert np.array_equal(out, R.accumulate(a, fa, b, fb, ref))
    same_stats(st, ref)
    x16 = rng.integers(-32768, 32768, size=shape).astype(np.int16)
    out, st = C.requant_q15_to_q7(x16, 12, fo)
    ref = R.Stats()
    assert np.array_equal(out, R.narrow7(x16, 12 - fo, ref))
    same_stats(st, ref)
    x32 = rng.integers(-2 ** 31 + 1, 2 ** 31, size=shape).astype(np.int32)
    out, st = C.requant_q31_to_q7(x32, 30, fo)
    ref = R.Stats()
    assert np.array_equal(out, R.narrow7(x32, 30 - fo, ref))
    same_stats(st, ref)


def test_saturation_is_counted_not_wrapped():
    x = np.array([127, -127, -128, 100, 64, 63, -64, -65], dtype=np.int8)
    out, st = C.requant_q7(x, 4, 5)  # x2: everything >= 64 in magnitude saturates
    assert out.tolist() == [127, -127, -127, 127, 127, 126, -127, -127]
    assert st == {"saturated": 7, "absmax": 256}
    x16 = np.array([32767, -32768, 300, -300], dtype=np.int16)
    out, st = C.requant_q15_to_q7(x16, 0, 0)
    assert out.tolist() == [127, -127, 127, -127] and st["saturated"] == 4 and st["absmax"] == 32768


# ------------------------------------------------------------------- conv2d
CONV_CASES = [
    # (n, cin, h, w, cout, kh, kw, stride, pad, dil, groups)
    (1, 1, 8, 40, 8, 8, 1, 1, 0, 1, 1),        # spatial
    (2, 8, 1, 60, 8, 1, 16, 1, 0, 1, 8),       # depthwise temporal
    (2, 8, 1, 20, 8, 1, 1, 1, 0, 1, 1),        # pointwise
    (1, 4, 5, 9, 6, 3, 3, 2, 1, 1, 2),         # strided, padded, grouped
    (2, 3, 6, 11, 3, 2, 3, 1, (0, 2), (1, 2), 3),  # dilated depthwise with padding
    (1, 2, 1, 50, 16, 1, 16, 1, 0, 1, 1),
    (1, 1, 1, 30, 8, 1, 64, 1, (0, 32), 1, 1),  # EEGNet temporal (padding wider than the input)
]


@pytest.mark.parametrize("case", CONV_CASES)
@pytest.mark.parametrize("seed", range(3))
def test_conv2d_bit_exact(case, seed):
    n, cin, h, w, cout, kh, kw, stride, pad, dil, g = case
    rng = np.random.default_rng(seed)
    x = rand8(rng, (n, cin, h, w))
    wt = rand8(rng, (cout, cin // g, kh, kw))
    bias = rng.integers(-2 ** 20, 2 ** 20, size=cout).astype(np.int32) if seed == 1 else None
    xf, wf, bf = int(rng.integers(0, 6)), int(rng.integers(4, 9)), 16
    kw_args = dict(stride=stride, padding=pad, dilation=dil, groups=g)
    for of in (xf + wf - 12, xf + wf - 9, xf + wf - 6):  # heavy, some and no saturation
        y, st = C.conv2d_forward_q7(x, xf, wt, wf, bias, bf, of, C_pair(stride), C_pair(pad), C_pair(dil), g)
        ref = R.Stats()
        assert np.array_equal(y, R.conv2d_forward(x, xf, wt, wf, bias, bf, of, st=ref, **kw_args))
        same_stats(st, ref)
    dy = rand8(rng, y.shape)
    for df in (3, 6, 9):
        dx, st = C.conv2d_backward_input_q7(dy, 7, wt, wf, list(x.shape), df, C_pair(stride), C_pair(pad),
                                            C_pair(dil), g)
        ref = R.Stats()
        assert np.array_equal(dx, R.conv2d_backward_input(dy, 7, wt, wf, x.shape, df, st=ref, **kw_args))
        same_stats(st, ref)
    acc = rng.integers(-2 ** 30, 2 ** 30, size=wt.shape).astype(np.int32)
    bacc = rng.integers(-2 ** 30, 2 ** 30, size=cout).astype(np.int32)
    for gf in (10, 18, 26):
        dw, db, st = C.conv2d_backward_weight_q7(acc, gf, bacc, gf, dy, 7, x, xf, C_pair(stride), C_pair(pad),
                                                 C_pair(dil), g)
        ref = R.Stats()
        rdw, rdb = R.conv2d_backward_weight(acc, gf, bacc, gf, dy, 7, x, xf, wt.shape, st=ref, **kw_args)
        assert np.array_equal(dw, rdw) and np.array_equal(db, rdb)
        same_stats(st, ref)


def C_pair(v):
    return (v, v) if np.isscalar(v) else tuple(v)


def test_conv2d_tracks_float():
    """Dequantised, the q7 conv is the float conv rounded once."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(5)
    x = small8(rng, (2, 4, 3, 30), 40)
    w = small8(rng, (8, 2, 2, 5), 50)
    y, _ = C.conv2d_forward_q7(x, 5, w, 7, None, 0, 3, (1, 1), (0, 2), (1, 1), 2)
    yf = torch.nn.functional.conv2d(torch.from_numpy(x / 32.0), torch.from_numpy(w / 128.0), padding=(0, 2),
                                    groups=2).numpy()
    inside = np.abs(yf) < 126 / 8
    assert np.max(np.abs(y / 8.0 - yf)[inside]) <= 0.5 / 8 + 1e-12


# ------------------------------------------------------------------- linear
@pytest.mark.parametrize("seed", SEEDS)
def test_linear_bit_exact(seed):
    rng = np.random.default_rng(seed)
    n, i, o = int(rng.integers(1, 6)), int(rng.integers(1, 300)), int(rng.integers(1, 12))
    x, w = rand8(rng, (n, i)), rand8(rng, (o, i))
    b = rng.integers(-2 ** 24, 2 ** 24, size=o).astype(np.int32)
    for bias in (None, b):
        for of in (0, 3, 6):
            y, st = C.linear_forward_q7(x, 4, w, 7, bias, 20, of)
            ref = R.Stats()
            assert np.array_equal(y, R.linear_forward(x, 4, w, 7, bias, 20, of, ref))
            same_stats(st, ref)
    dy = rand8(rng, (n, o))
    dx, st = C.linear_backward_input_q7(dy, 8, w, 7, 9)
    ref = R.Stats()
    assert np.array_equal(dx, R.linear_backward_input(dy, 8, w, 7, 9, ref))
    same_stats(st, ref)
    acc = rng.integers(-2 ** 31 + 1, 2 ** 31, size=w.shape).astype(np.int32)
    bacc = rng.integers(-2 ** 31 + 1, 2 ** 31, size=o).astype(np.int32)
    dw, db, st = C.linear_backward_weight_q7(acc, 20, bacc, 22, dy, 8, x, 4)
    ref = R.Stats()
    rdw, rdb = R.linear_backward_weight(acc, 20, bacc, 22, dy, 8, x, 4, ref)
    assert np.array_equal(dw, rdw) and np.array_equal(db, rdb)
    same_stats(st, ref)


def test_weight_gradient_saturates_instead_of_wrapping():
    x = np.full((4, 3), 127, np.int8)
    dy = np.full((4, 2), 127, np.int8)
    acc = np.full((2, 3), 2 ** 31 - 100, np.int32)
    dw, _, st = C.linear_backward_weight_q7(acc, 10, None, 0, dy, 0, x, 0)
    assert np.all(dw == 2 ** 31 - 1) and st["saturated"] == 6


# ---------------------------------------------------------------- groupnorm
GN_CASES = [(1, 8, 40, 1), (2, 8, 17, 1), (2, 16, 9, 4), (1, 6, 25, 3), (3, 4, 1, 2), (1, 2, 3, 2)]


@pytest.mark.parametrize("case", GN_CASES)
@pytest.mark.parametrize("seed", range(4))
def test_groupnorm_bit_exact(case, seed):
    n, c, hw, groups = case
    rng = np.random.default_rng(seed)
    x = rand8(rng, (n, c, hw)) if seed % 2 == 0 else small8(rng, (n, c, hw), 6)
    if seed == 3:
        x[0, : c // groups] = 5  # a constant group: the variance is eps alone
    gamma = rng.integers(2 ** 23, 2 ** 25, size=c).astype(np.int32)  # ~0.5..2 at 24 bits
    gamma[0] = -gamma[0]
    beta = rng.integers(-2 ** 24, 2 ** 24, size=c).astype(np.int32)
    eps = R.decode_f32(1e-5)
    xf = int(rng.integers(0, 7))
    for g, b, of in ((gamma, beta, 5), (None, None, 4), (gamma, None, 6)):
        y, mean, rstd, st = C.groupnorm_forward_q7(x, xf, g, 24, b, 24, groups, of, *eps)
        ref = R.Stats()
        ry, rmean, rrstd = R.groupnorm_forward(x, xf, g, 24, b, 24, groups, of, *eps, st=ref)
        assert np.array_equal(y, ry) and np.array_equal(mean, rmean) and np.array_equal(rstd, rrstd)
        same_stats(st, ref)
        dy = rand8(rng, x.shape)
        for df in (2, 5):
            dx, st = C.groupnorm_backward_input_q7(dy, 9, x, xf, mean, rstd, g, 24, groups, df)
            ref = R.Stats()
            assert np.array_equal(dx, R.groupnorm_backward_input(dy, 9, x, xf, mean, rstd, g, 24, groups, df, ref))
            same_stats(st, ref)
        acc = rng.integers(-2 ** 28, 2 ** 28, size=c).astype(np.int32)
        dg, db, st = C.groupnorm_backward_weight_q7(acc, 20, acc, 18, dy, 9, x, xf, mean, rstd, groups)
        ref = R.Stats()
        rdg, rdb = R.groupnorm_backward_weight(acc, 20, acc, 18, dy, 9, x, xf, mean, rstd, groups, ref)
        assert np.array_equal(dg, rdg) and np.array_equal(db, rdb)
        same_stats(st, ref)


def test_groupnorm_tracks_float():
    """x_hat, gamma, the backward: against float64 GroupNorm within an output unit or two."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    n, c, hw, groups = 2, 8, 200, 2
    x = small8(rng, (n, c, hw), 25)
    gamma = (rng.uniform(0.5, 1.5, c) * 2 ** 24).astype(np.int32)
    beta = (rng.uniform(-0.5, 0.5, c) * 2 ** 24).astype(np.int32)
    xf, of = 3, 5
    eps = R.decode_f32(1e-5)
    y, mean, rstd, _ = C.groupnorm_forward_q7(x, xf, gamma, 24, beta, 24, groups, of, *eps)
    xt = torch.tensor(x / 2.0 ** xf, requires_grad=True)
    gt = torch.tensor(gamma / 2.0 ** 24, requires_grad=True)
    bt_ = torch.tensor(beta / 2.0 ** 24, requires_grad=True)
    yt = torch.nn.functional.group_norm(xt[..., None], groups, gt, bt_, 1e-5)[..., 0]
    inside = np.abs(yt.detach().numpy()) < 3.9
    assert np.max(np.abs(y / 2.0 ** of - yt.detach().numpy())[inside]) <= 0.75 / 2 ** of
    dy = small8(rng, x.shape, 30)
    yt.backward(torch.tensor(dy / 2.0 ** 9))
    dx, _ = C.groupnorm_backward_input_q7(dy, 9, x, xf, mean, rstd, gamma, 24, groups, 9)
    want = xt.grad.numpy()
    assert np.max(np.abs(dx / 2.0 ** 9 - want)) <= 0.6 / 2 ** 9  # one rounding, nothing saturates here
    dg, db, _ = C.groupnorm_backward_weight_q7(np.zeros(c, np.int32), 20, np.zeros(c, np.int32), 20, dy, 9, x, xf,
                                               mean, rstd, groups)
    assert np.allclose(dg / 2.0 ** 20, gt.grad.numpy(), atol=2e-3 * np.max(np.abs(gt.grad.numpy())) + 1e-5)
    assert np.allclose(db / 2.0 ** 20, bt_.grad.numpy(), atol=1e-5)


# --------------------------------------------------------------- activation
@pytest.mark.parametrize("seed", SEEDS)
def test_activations_bit_exact(seed):
    rng = np.random.default_rng(seed)
    shape = tuple(rng.integers(1, 12, size=3))
    x, dy = rand8(rng, shape), rand8(rng, shape)
    for xf, of in ((4, 4), (5, 3), (2, 6)):
        y, st = C.relu_forward_q7(x, xf, of)
        ref = R.Stats()
        assert np.array_equal(y, R.relu_forward(x, xf, of, ref))
        same_stats(st, ref)
        dx, st = C.relu_backward_q7(dy, 7, y, 6)
        ref = R.Stats()
        assert np.array_equal(dx, R.relu_backward(dy, 7, y, 6, ref))
        same_stats(st, ref)
        y, mask, st = C.relu_forward_mask_q7(x, xf, of)
        ref = R.Stats()
        ry, rmask = R.relu_forward_mask(x, xf, of, ref)
        assert np.array_equal(y, ry) and np.array_equal(mask, rmask) and mask.dtype == np.uint32
        same_stats(st, ref)
        dx, st = C.relu_backward_mask_q7(dy, 7, mask, 6)
        ref = R.Stats()
        assert np.array_equal(dx, R.relu_backward_mask(dy, 7, mask, 6, ref))
        same_stats(st, ref)
        for alpha in (1.0, 0.5, 0.1):
            am, ae = R.decode_f32(alpha)
            y, st = C.elu_forward_q7(x, xf, of, am, ae)
            ref = R.Stats()
            assert np.array_equal(y, R.elu_forward(x, xf, of, am, ae, ref))
            same_stats(st, ref)
            dx, st = C.elu_backward_q7(dy, 7, y, of, 8, am, ae)
            ref = R.Stats()
            assert np.array_equal(dx, R.elu_backward(dy, 7, y, of, 8, am, ae, ref))
            same_stats(st, ref)


@pytest.mark.parametrize("p", [0.25, 0.5, 0.1, 0.0])
def test_dropout_bit_exact_with_the_float_mask(p):
    rng = np.random.default_rng(int(p * 100))
    x = rand8(rng, (3, 5, 37))
    pm, pe = R.decode_f32(p)
    y, mask, st = C.dropout_forward_q7(x, 4, 5, pm, pe, C.Rng(11, R.RNG_STREAM))
    ref = R.Stats()
    ry, rmask = R.dropout_forward(x, 4, 5, pm, pe, R.Pcg32(11), ref)
    assert np.array_equal(y, ry) and np.array_equal(mask, rmask)
    same_stats(st, ref)
    _, fmask = C.dropout_forward_f32(x.astype(np.float32), p, C.Rng(11, R.RNG_STREAM))
    assert np.array_equal(mask, fmask)  # the same mask as the float path
    want = x / 16.0 / (1 - p)
    kept = (mask == 1) & (np.abs(want) < 127 / 32)
    assert np.all(np.abs(y[kept] / 32.0 - want[kept]) <= 0.5 / 32 + 1e-9)  # one rounding
    dy = rand8(rng, x.shape)
    dx, st = C.dropout_backward_q7(dy, 6, mask, 6, pm, pe)
    ref = R.Stats()
    assert np.array_equal(dx, R.dropout_backward(dy, 6, mask, 6, pm, pe, ref))
    same_stats(st, ref)
    with pytest.raises(ValueError, match="parameter out of range"):
        C.dropout_forward_q7(x, 4, 5, *R.decode_f32(1.0), C.Rng(1, 1))


def test_elu_tracks_float():
    x = np.arange(-128, 128, dtype=np.int8)
    y, _ = C.elu_forward_q7(x, 4, 6, *R.decode_f32(1.0))
    xf = x / 16.0
    want = np.where(xf > 0, xf, np.expm1(xf))
    inside = np.abs(want) < 127 / 64
    assert np.max(np.abs(y / 64.0 - want)[inside]) <= 0.5 / 64 + 1e-9


# --------------------------------------------------------------------- pool
POOL_CASES = [((1, 8, 1, 64), (1, 8), None, 0), ((2, 3, 1, 50), (1, 5), None, 0), ((1, 2, 7, 9), (3, 3), (2, 2), (1, 1)),
              ((2, 2, 6, 6), (2, 3), (1, 2), (1, 0)), ((1, 16, 1, 7), (1, 7), None, 0)]


@pytest.mark.parametrize("case", POOL_CASES)
@pytest.mark.parametrize("seed", range(3))
def test_pools_bit_exact(case, seed):
    shape, k, s, p = case
    s = k if s is None else s
    rng = np.random.default_rng(seed)
    x = rand8(rng, shape)
    for xf, of in ((4, 4), (4, 7), (5, 2)):
        y, st = C.avgpool2d_forward_q7(x, xf, of, C_pair(k), C_pair(s), C_pair(p))
        ref = R.Stats()
        assert np.array_equal(y, R.avgpool_forward(x, xf, of, k, s, p, ref))
        same_stats(st, ref)
        dy = rand8(rng, y.shape)
        dx, st = C.avgpool2d_backward_q7(dy, 7, list(shape), of + 2, C_pair(k), C_pair(s), C_pair(p))
        ref = R.Stats()
        assert np.array_equal(dx, R.avgpool_backward(dy, 7, shape, of + 2, k, s, p, ref))
        same_stats(st, ref)
        y, am, st = C.maxpool2d_forward_q7(x, xf, of, C_pair(k), C_pair(s), C_pair(p))
        ref = R.Stats()
        ry, ram = R.maxpool_forward(x, xf, of, k, s, p, ref)
        assert np.array_equal(y, ry) and np.array_equal(am, ram)
        same_stats(st, ref)
        dx, st = C.maxpool2d_backward_q7(dy, 7, am, list(shape), 5, C_pair(k), C_pair(s), C_pair(p))
        ref = R.Stats()
        assert np.array_equal(dx, R.maxpool_backward(dy, 7, am, shape, 5, ref))
        same_stats(st, ref)


def test_avgpool_divides_in_one_rounding():
    x = np.array([[[[1, 1, 1, 1, 3, -1, -1, -1, -1, -3]]]], dtype=np.int8)
    y, _ = C.avgpool2d_forward_q7(x, 0, 0, (1, 5), (1, 5), (0, 0))
    assert y.ravel().tolist() == [1, -1]     # 7/5 = 1.4
    y, _ = C.avgpool2d_forward_q7(x, 0, 1, (1, 5), (1, 5), (0, 0))
    assert y.ravel().tolist() == [3, -3]     # 14/5 = 2.8
    x = np.array([[[[4, 0, 0, 0, 0, 0, 0, 0, 12, 0, 0, 0, 0, 0, 0, 0, -4, 0, 0, 0, 0, 0, 0, 0]]]], dtype=np.int8)
    y, _ = C.avgpool2d_forward_q7(x, 0, 0, (1, 8), (1, 8), (0, 0))
    assert y.ravel().tolist() == [0, 2, 0]   # ties to even: 0.5 -> 0, 1.5 -> 2, -0.5 -> 0


# --------------------------------------------------------------------- loss
@pytest.mark.parametrize("seed", SEEDS)
def test_cross_entropy_bit_exact(seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(1, 9)), int(rng.integers(2, 12))
    z = rand8(rng, (n, k))
    y = rng.integers(0, k, size=n).astype(np.int32)
    for zf in (-1, 2, 4, 7):
        loss, probs = C.cross_entropy_forward_q7(z, zf, y)
        rloss, rprobs = R.cross_entropy_forward(z, zf, y)
        assert loss == rloss and np.array_equal(probs, rprobs) and probs.dtype == np.int16
        zr = z.astype(np.float64) / 2 ** zf
        lse = np.log(np.exp(zr - zr.max(1, keepdims=True)).sum(1)) + zr.max(1)
        want = np.mean(lse - zr[np.arange(n), y])
        assert abs(loss / 2 ** 16 - want) < 2e-4 * max(1.0, want)
        p = np.exp(zr - lse[:, None])
        assert np.max(np.abs(probs / 2 ** 14 - p)) <= 1.0 / 2 ** 14
        for den, df in ((n, 7), (8, 9), (3, 4)):
            d, st = C.cross_entropy_backward_q7(probs, y, den, df)
            ref = R.Stats()
            assert np.array_equal(d, R.cross_entropy_backward(probs, y, den, df, ref))
            same_stats(st, ref)


# ---------------------------------------------------------------- optimizer
@pytest.mark.parametrize("seed", SEEDS)
def test_sgd_momentum_bit_exact(seed):
    rng = np.random.default_rng(seed)
    cnt = int(rng.integers(1, 200))
    w = rng.integers(-2 ** 31 + 1, 2 ** 31, size=cnt).astype(np.int32)
    w[:3] = [2 ** 31 - 1, -(2 ** 31 - 1), 0][: min(3, cnt)]
    g = rng.integers(-2 ** 28, 2 ** 28, size=cnt).astype(np.int32)
    buf = rng.integers(-2 ** 30, 2 ** 30, size=cnt).astype(np.int32)
    lr, mom, wd = R.decode_f32(0.05), R.decode_f32(0.9), R.decode_f32(1e-3)
    for mo, b in ((mom, buf), ((0, 0), None)):
        for wf, gf, bf in ((24, 20, 20), (24, 22, 19), (20, 30, 31)):
            nw, nb, st = C.sgd_update_q31(w, wf, b, bf, g, gf, lr, mo, wd)
            ref = R.Stats()
            rw, rb = R.sgd_update(w, wf, b, bf, g, gf, lr, mo, wd, st=ref)
            assert np.array_equal(nw, rw) and (nb is None and rb is None or np.array_equal(nb, rb))
            same_stats(st, ref)


def test_sgd_matches_torch_semantics():
    """Master weights with 24 fractional bits follow torch.optim.SGD to ~2^-24."""
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    w0 = rng.uniform(-1, 1, 50)
    wq = np.rint(w0 * 2 ** 24).astype(np.int32)
    wt = torch.tensor(wq / 2 ** 24, requires_grad=True)
    opt = torch.optim.SGD([wt], lr=0.01, momentum=0.9, weight_decay=1e-3)
    buf = np.zeros(50, np.int32)
    for step in range(10):
        g = rng.uniform(-1, 1, 50)
        gq = np.rint(g * 2 ** 26).astype(np.int32)
        wt.grad = torch.tensor(gq / 2 ** 26)
        opt.step()
        wq, buf, _ = C.sgd_update_q31(wq, 24, buf, 26, gq, 26, R.decode_f32(0.01), R.decode_f32(0.9),
                                      R.decode_f32(1e-3))
    assert np.max(np.abs(wq / 2 ** 24 - wt.detach().numpy())) < 1e-6


def test_small_updates_are_not_lost():
    """An update far below the int8 copy's resolution still moves the master."""
    w = np.array([1 << 24], np.int32)       # 1.0 with 24 fractional bits
    g = np.array([1 << 10], np.int32)       # 2^-10 with 20 fractional bits
    nw, _, _ = C.sgd_update_q31(w, 24, None, 0, g, 20, R.decode_f32(1e-3), (0, 0), (0, 0))
    assert nw[0] < w[0] and abs((w[0] - nw[0]) / 2 ** 24 - 1e-3 * 2 ** -10) < 2 ** -24


# ---------------------------------------------------------------- bad input
def test_reduction_too_long_for_int32_is_refused():
    """131072 int8 x int8 products could exceed int32: BT_ERR_OVERFLOW, nothing written."""
    x = np.ones((1, 131072), np.int8)
    w = np.ones((1, 131072), np.int8)
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.linear_forward_q7(x, 0, w, 0, None, 0, 0)
    with pytest.raises(R.FixedPointOverflow):
        R.linear_forward(x, 0, w, 0, None, 0, 0)
    y, _ = C.linear_forward_q7(x[:, :131071], 0, w[:, :131071], 0, None, 0, -20)  # one fewer fits
    assert y[0, 0] == R.linear_forward(x[:, :131071], 0, w[:, :131071], 0, None, 0, -20)[0, 0]
    wt = np.ones((1, 2048, 8, 8), np.int8)  # K = 131072 in a conv
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.conv2d_forward_q7(np.ones((1, 2048, 8, 8), np.int8), 0, wt, 0, None, 0, 0, (1, 1), (0, 0), (1, 1), 1)
    dy = np.ones((1, 131072), np.int8)
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.linear_backward_input_q7(dy, 0, np.ones((131072, 1), np.int8), 0, 0)


def test_bias_scale_that_overflows_the_accumulator_is_refused():
    """A bias whose alignment to the accumulator scale (in + w fractional bits)
    would not fit in int32 next to the products."""
    x = np.ones((1, 4), np.int8)
    w = np.ones((2, 4), np.int8)
    bias = np.array([1, 1 << 20], np.int32)
    y, _ = C.linear_forward_q7(x, 4, w, 6, bias, 20, 8)  # bias shifted right: fine
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.linear_forward_q7(x, 20, w, 20, bias, 0, 8)      # bias << 40 cannot fit
    with pytest.raises(R.FixedPointOverflow):
        R.linear_forward(x, 20, w, 20, bias, 0, 8)
    gamma = np.ones(4, np.int32)
    beta = np.array([0, 0, 0, 1 << 30], np.int32)
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.groupnorm_forward_q7(np.ones((1, 4, 3), np.int8), 4, gamma, 40, beta, -20, 1, 4, 0, 0)


def test_groupnorm_too_large_for_its_sums_is_refused():
    x = np.zeros((1, 1, (1 << 22) + 1), np.int8)
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.groupnorm_forward_q7(x, 4, None, 0, None, 0, 1, 4, 0, 0)
    # a huge gamma makes the backward's int64 sums unsafe: refused, not wrapped
    x = np.ones((1, 8, 1000), np.int8)
    y, mean, rstd, _ = C.groupnorm_forward_q7(x, 4, None, 0, None, 0, 1, 4, 1, 10)
    gamma = np.full(8, 2 ** 31 - 1, np.int32)
    with pytest.raises(ValueError, match="fixed-point overflow"):
        C.groupnorm_backward_input_q7(x, 4, x, 4, mean, rstd, gamma, -20, 1, 4)


def test_scales_outside_the_range_are_refused():
    x = np.ones((2, 3), np.int8)
    for bad in (R.FRAC_MIN - 1, R.FRAC_MAX + 1):
        with pytest.raises(ValueError, match="parameter out of range"):
            C.requant_q7(x, bad, 0)
        with pytest.raises(ValueError, match="parameter out of range"):
            C.linear_forward_q7(x, 0, x, bad, None, 0, 0)
        with pytest.raises(ValueError):
            R.requant(x, bad, 0)


def test_wrong_types_are_refused_not_cast():
    with pytest.raises(ValueError, match="int8"):
        C.requant_q7(np.array([300, 1]), 0, 0)     # int64: a cast would wrap 300 to 44
    with pytest.raises(ValueError, match="int8"):
        C.relu_forward_q7(np.array([0.5]), 0, 0)
    with pytest.raises(ValueError, match="label out of range"):
        C.cross_entropy_forward_q7(np.zeros((2, 3), np.int8), 4, np.array([0, 3], np.int32))


def test_inputs_outside_the_range_saturate_and_are_counted():
    """Float data entering fixed point (R.to_fixed, what the trainer uses) and
    int16 data entering q7 (the executor's first op) saturate and count."""
    st = R.Stats()
    q = R.to_fixed(np.array([0.5, 3.0, -9.0, 1e9, -1e9]), 12, R.Q15_MAX, st)
    assert q.tolist() == [2048, 12288, -32767, 32767, -32767] and st.saturated == 3
    out, st = C.requant_q15_to_q7(q.astype(np.int16), 12, 4)
    assert out.tolist() == [8, 48, -127, 127, -127] and st["saturated"] == 3
