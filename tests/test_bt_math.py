"""The core's own elementary functions (bt_expf, bt_logf, bt_tanhf, bt_sqrtf)
against NumPy float64, in ulps of the float32 result.

Inputs: every 4099th float32 bit pattern (about a million values over the
whole range, both signs, subnormals included), every float32 in a dense
stretch around the branch points, and the special values. The bounds asserted
here are the maxima of an exhaustive run over all 2^32 inputs (exp 1.22 ulp,
log 0.84 ulp, tanh 1.50 ulp), rounded up."""
from fractions import Fraction

import numpy as np

from biotrain_rt import _core as C

F32_MAX = float(np.finfo(np.float32).max)
BOUND = {"exp": 1.25, "log": 0.9, "tanh": 1.55}


def sample():
    bits = np.arange(0, 2**32, 4099, dtype=np.uint64).astype(np.uint32)
    strided = bits.view(np.float32)
    dense = np.concatenate([
        np.arange(-2.0, 2.0, 2.0**-14, dtype=np.float32),        # tanh/exp/log branch region
        np.float32(0.55) + np.arange(-2000, 2000, dtype=np.float32) * np.float32(2.0**-24),
        np.nextafter(np.float32(88.72283), np.float32(np.inf)) + np.arange(-50, 50, dtype=np.float32) * np.float32(2.0**-17),
        np.float32(-103.97) + np.arange(-200, 200, dtype=np.float32) * np.float32(2.0**-17),
    ]).astype(np.float32)
    x = np.concatenate([strided, dense])
    return x[np.isfinite(x)]


def ulp_err(got, exact):
    """|got - exact| in ulps of the float32 nearest to exact (2^-149 below the
    normal range); an exact value that rounds beyond FLT_MAX must give inf."""
    got = got.astype(np.float64)
    with np.errstate(over="ignore"):
        nearest = exact.astype(np.float32)
    err = np.zeros(exact.shape)
    over = np.isinf(nearest)
    assert np.all(got[over] == nearest[over].astype(np.float64)), "overflow to inf expected"
    fin = ~over
    _, e = np.frexp(np.abs(exact[fin]))
    ulp = np.ldexp(1.0, np.maximum(e - 24, -149))
    err[fin] = np.abs(got[fin] - exact[fin]) / ulp
    return err


def worst(name, x, got, exact):
    err = ulp_err(got, exact)
    i = int(np.argmax(err))
    print(f"{name}: max {err[i]:.3f} ulp at x = {x[i]!r}")
    return err[i]


def test_expf_ulp():
    x = sample()
    with np.errstate(over="ignore"):
        exact = np.exp(x.astype(np.float64))
    assert worst("exp", x, C.bt_expf(x), exact) <= BOUND["exp"]


def test_logf_ulp():
    x = sample()
    x = x[x > 0]
    assert worst("log", x, C.bt_logf(x), np.log(x.astype(np.float64))) <= BOUND["log"]


def test_tanhf_ulp():
    x = sample()
    assert worst("tanh", x, C.bt_tanhf(x), np.tanh(x.astype(np.float64))) <= BOUND["tanh"]


def test_sqrtf_is_correctly_rounded():
    x = sample()
    x = x[x >= 0]
    np.testing.assert_array_equal(C.bt_sqrtf(x), np.sqrt(x))  # IEEE: both correctly rounded


def f32(*v):
    return np.array(v, np.float32)


def test_special_values():
    inf, nan = np.float32(np.inf), np.float32(np.nan)
    sub = np.float32(1e-45)
    e = C.bt_expf(f32(0.0, -0.0, inf, -inf, nan, 88.7228, 89.0, -104.0, sub, -sub))
    assert e[0] == 1 and e[1] == 1 and e[2] == np.inf and e[3] == 0 and np.isnan(e[4])
    assert np.isfinite(e[5]) and e[6] == np.inf and e[7] == 0 and e[8] == 1 and e[9] == 1
    l = C.bt_logf(f32(0.0, -0.0, -1.0, -inf, inf, nan, 1.0, sub, 2.0**-126))
    assert l[0] == -np.inf and l[1] == -np.inf and np.isnan(l[2]) and np.isnan(l[3])
    assert l[4] == np.inf and np.isnan(l[5]) and l[6] == 0
    np.testing.assert_allclose(l[7:], np.log(np.array([1e-45, 2.0**-126], np.float32).astype(np.float64)), rtol=1e-7)
    t = C.bt_tanhf(f32(0.0, -0.0, inf, -inf, nan, sub, -sub, 20.0, -20.0))
    assert t[0] == 0 and not np.signbit(t[0]) and t[1] == 0 and np.signbit(t[1])
    assert t[2] == 1 and t[3] == -1 and np.isnan(t[4])
    assert t[5] == sub and t[6] == -sub and t[7] == 1 and t[8] == -1
    s = C.bt_sqrtf(f32(0.0, -0.0, inf, -1.0, nan))
    assert s[0] == 0 and s[1] == 0 and s[2] == np.inf and np.isnan(s[3]) and np.isnan(s[4])


def test_tanh_is_odd():
    x = np.arange(-20.0, 20.0, 2.0**-10, dtype=np.float32)
    np.testing.assert_array_equal(C.bt_tanhf(x), -C.bt_tanhf(-x))


def _round_to_f32(r):
    """The float32 nearest the rational r, ties to even (candidates around the
    float64 approximation, which is off by at most one float32 step)."""
    f = np.float32(float(r))
    cands = [np.nextafter(f, np.float32(-np.inf)), f, np.nextafter(f, np.float32(np.inf))]
    best = min(cands, key=lambda c: (abs(Fraction(float(c)) - r), int(np.array(c).view(np.uint32)) & 1))
    return best


def test_fma32_model_is_correctly_rounded():
    """The NumPy fused multiply-add model the order tests use (tests/fma32.py)
    equals exact rational arithmetic rounded once, on random operands and on
    the hard cases: products exactly halfway between two floats with a tiny
    addend, cancellation and subnormal results."""
    from fma32 import fma32
    rng = np.random.default_rng(5)
    a, b, c = [], [], []
    for _ in range(1500):
        A, B = 2049 + 2 * int(rng.integers(1024)), 4097 + 2 * int(rng.integers(2048))
        if A * B < 2 ** 24:
            continue
        e = int(rng.integers(-30, 30))
        tiny = float(rng.uniform(1, 2)) * 2.0 ** (e - 30 - int(rng.integers(40)))
        a += [np.ldexp(A, e), -np.ldexp(A, e)]
        b += [np.ldexp(B, -12)] * 2
        c += [tiny, tiny]
    x = rng.standard_normal(1500).astype(np.float32) * np.float32(2.0) ** rng.integers(-20, 20, 1500)
    y = rng.standard_normal(1500).astype(np.float32)
    a += list(x) * 3
    b += list(y) * 3
    c += list(-(x * y)) + list(rng.standard_normal(1500) * 1e-30) + list(rng.standard_normal(1500) * 1e-41)
    a, b, c = (np.array(v, np.float32) for v in (a, b, c))
    got = fma32(a, b, c)
    want = np.array([_round_to_f32(Fraction(float(p)) * Fraction(float(q)) + Fraction(float(r)))
                     for p, q, r in zip(a, b, c)], np.float32)
    assert np.array_equal(got.view(np.uint32), want.view(np.uint32))
    # and the unfused float32 a * b + c differs on these cases, so the check has teeth
    assert not np.array_equal((a * b + c).view(np.uint32), want.view(np.uint32))


def test_sincospif_absolute_error():
    """sin(pi x), cos(pi x) against float64 (whose pi x is exact enough here:
    the float64 product's rounding is far below 2^-23 for |x| < 2^20), over a
    dense stretch, large arguments, the quadrant boundaries and a strided
    sweep of bit patterns; the reduction is exact, so the error stays flat."""
    rng = np.random.default_rng(7)
    x = np.concatenate([
        np.arange(-4.0, 4.0, 2.0**-12, dtype=np.float32),
        rng.uniform(-2.0**20, 2.0**20, 200000).astype(np.float32),
        (np.arange(-64, 65, dtype=np.float32) * np.float32(0.25))[:, None]
        + np.arange(-8, 9, dtype=np.float32)[None, :] * np.float32(2.0**-22),
    ], axis=None).astype(np.float32)
    bits = np.arange(0, 2**32, 40009, dtype=np.uint64).astype(np.uint32).view(np.float32)
    small = bits[np.isfinite(bits) & (np.abs(bits) < 2.0**20)]
    x = np.concatenate([x, small])
    s, c = C.bt_sincospif(x)
    # exact reduction of x modulo 2 in float64 (x is a float32: its value is exact), then pi * r
    r = np.fmod(x.astype(np.float64), 2.0)
    es, ec = np.sin(np.pi * r), np.cos(np.pi * r)
    err = max(np.abs(s - es).max(), np.abs(c - ec).max())
    print(f"sincospi: max abs error {err / 2.0**-24:.2f} x 2^-24")
    assert err <= 2.0**-23
    big = np.float32([2.0**24, -2.0**24, 3.0e38, -2.0**25])
    s, c = C.bt_sincospif(big)
    assert np.all(s == 0.0) and np.all(c == 1.0)
    s, c = C.bt_sincospif(np.float32([np.inf, -np.inf, np.nan]))
    assert np.all(np.isnan(s)) and np.all(np.isnan(c))
    s, c = C.bt_sincospif(np.float32([0.5, 1.0, 1.5, 2.0, -0.5]))
    np.testing.assert_array_equal(s, np.float32([1, 0, -1, 0, -1]))
    np.testing.assert_array_equal(c, np.float32([0, -1, 0, 1, 0]))
