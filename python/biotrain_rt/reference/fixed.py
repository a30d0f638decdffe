"""Integer NumPy reference of the fixed-point kernels, written from the rules
documented in ``csrc/include/biotrain/qmath.h``.

Number format: a tensor holds integers q with a per-tensor number of
fractional bits f; its value is q * 2**-f. Rounding: to nearest, ties to
even, on magnitudes (:func:`shift_round`, :func:`div_round`). Saturation:
clamp to the symmetric range of the type, counted in a :class:`Stats`.
Sums are exact integers (int64 here; the C code proves its int32
accumulators cannot wrap, so the order of summation does not matter).

Every function returns the integers the C kernel must produce bit for bit,
plus a :class:`Stats` where the kernel records one. Nothing here calls the C
core.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional, Tuple

import numpy as np

Q7_MAX = 127
Q15_MAX = 32767
Q31_MAX = 2 ** 31 - 1
FRAC_MIN, FRAC_MAX = -32, 48
BIG = 2 ** 62
PROB_FRAC = 14
LOSS_FRAC = 16
XF = 10   # groupnorm x_hat fractional bits
GF = 10   # groupnorm backward: gamma fractional bits
LOG2E_Q30 = 1549082005   # round(2^30 log2 e)
LN2_Q30 = 744261118      # round(2^30 ln 2)
# round(2^30 * 2^(-2^-k)) for k = 1..16
EXP2_NEG_Q30 = (759250125, 902905651, 984625594, 1028218693, 1050733751, 1062175491, 1067942999,
                1070838486, 1072289173, 1073015252, 1073378477, 1073560135, 1073650976, 1073696399,
                1073719111, 1073730468)


class FixedPointOverflow(ValueError):
    """The documented BT_ERR_OVERFLOW cases: an accumulator that could wrap."""


@dataclass
class Stats:
    saturated: int = 0
    absmax: int = 0

    def merge(self, other: "Stats") -> "Stats":
        self.saturated += other.saturated
        self.absmax = max(self.absmax, other.absmax)
        return self


def _i64(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)


def check_frac(*fracs):
    for f in fracs:
        if not (FRAC_MIN <= int(f) <= FRAC_MAX):
            raise ValueError(f"Q-format with {f} fractional bits is outside [{FRAC_MIN}, {FRAC_MAX}]")


# ------------------------------------------------------------------ rules
def shift_round(x, s: int) -> np.ndarray:
    """round(x * 2^-s), ties to even; for s < 0 a left shift saturating at +-2^62."""
    x = _i64(x)
    neg = x < 0
    mag = np.where(neg, -x, x).astype(np.uint64)
    s = int(s)
    if s <= 0:
        l = -s
        big = (mag != 0) if l >= 62 else (mag >= np.uint64(1 << (62 - l)))
        safe = np.where(big, np.uint64(0), mag)
        q = np.where(big, np.uint64(BIG), safe << np.uint64(l))
    elif s >= 64:
        q = np.zeros_like(mag)
    else:
        q = mag >> np.uint64(s)
        rem = mag & np.uint64((1 << s) - 1)
        half = np.uint64(1 << (s - 1))
        up = (rem > half) | ((rem == half) & ((q & np.uint64(1)) == np.uint64(1)))
        q = q + up.astype(np.uint64)
    q = q.astype(np.int64)
    return np.where(neg, -q, q)


def div_round(num, den) -> np.ndarray:
    """round(num / den), ties to even; den > 0."""
    num = _i64(num)
    den = _i64(den)
    neg = num < 0
    mag = np.where(neg, -num, num)
    q = mag // den
    r = mag - q * den
    up = (r > den - r) | ((r == den - r) & (q % 2 == 1))
    q = q + up
    return np.where(neg, -q, q)


def clamp(v, lim: int, st: Optional[Stats] = None) -> np.ndarray:
    v = _i64(v)
    if st is not None and v.size:
        st.absmax = max(st.absmax, min(int(np.max(np.abs(v))), 2 ** 32 - 1))
        st.saturated += int(np.count_nonzero(np.abs(v) > lim))
    return np.clip(v, -lim, lim)


def narrow7(x, s: int, st: Optional[Stats]) -> np.ndarray:
    return clamp(shift_round(x, s), Q7_MAX, st).astype(np.int8)


def acc32(acc, x, s: int, st: Optional[Stats]) -> np.ndarray:
    return clamp(_i64(acc) + shift_round(x, s), Q31_MAX, st).astype(np.int32)


def bitlen(v: int) -> int:
    return int(v).bit_length()


def exp_neg_q30(x, frac: int) -> np.ndarray:
    """exp(x 2^-frac) in Q30 for x <= 0 (x > 0 counts as 0)."""
    x = np.minimum(_i64(x), 0)
    t = shift_round(x * LOG2E_Q30, frac + 30 - 16)
    a = -t
    out = np.full(x.shape, 1 << 30, dtype=np.int64)
    for k in range(1, 17):
        bit = ((a >> (16 - k)) & 1) == 1
        if bit.any():
            out = np.where(bit, shift_round(out * EXP2_NEG_Q30[k - 1], 30), out)
    n = a >> 16
    res = np.zeros_like(out)
    for nv in np.unique(n):
        sel = n == nv
        if nv >= 40:
            continue
        res[sel] = shift_round(out[sel], int(nv))
    return res


def log2_q16(v: int, frac: int) -> int:
    """log2(v 2^-frac) in Q16 for 1 <= v < 2^62."""
    v = int(v)
    if v == 0:
        return 0
    L = v.bit_length()
    ip = L - 1 - frac
    m = v << (30 - (L - 1)) if L - 1 <= 30 else int(shift_round(v, L - 1 - 30))
    if m >= 1 << 31:
        m >>= 1
        ip += 1
    fp = 0
    for _ in range(16):
        m = int(shift_round(m * m, 30))
        fp <<= 1
        if m >= 1 << 31:
            fp |= 1
            m = int(shift_round(m, 1))
    return ip * 65536 + fp


def decode_f32(value) -> Tuple[int, int]:
    """A float32 as (mant, exp) with value = mant * 2^-exp exactly, |mant| < 2^24."""
    bits = int(np.asarray(value, dtype=np.float32).reshape(1).view(np.uint32)[0])
    e = (bits >> 23) & 0xFF
    if e == 0xFF:
        raise ValueError("non-finite value")
    m = bits & 0x7FFFFF
    if e == 0:
        e = 1
    else:
        m |= 0x800000
    if m == 0:
        return 0, 0
    return (-m if bits >> 31 else m), 150 - e


def frac_adapt(frac: int, absmax: int, top: int) -> int:
    f = frac + 4 if absmax == 0 else frac + top - bitlen(absmax)
    return min(max(f, FRAC_MIN), FRAC_MAX)


def to_fixed(x, frac: int, lim: int, st: Optional[Stats] = None) -> np.ndarray:
    """Float data into integers with `frac` fractional bits (round half to even,
    saturating): how values enter the fixed-point world, outside the C core."""
    v = np.rint(np.asarray(x, dtype=np.float64) * 2.0 ** frac)
    if st is not None and v.size:
        st.absmax = max(st.absmax, int(min(np.max(np.abs(v)), 2 ** 32 - 1)))
        st.saturated += int(np.count_nonzero(np.abs(v) > lim))
    return np.clip(v, -lim, lim).astype(np.int64)


# ------------------------------------------------------------ elementwise
def requant(x, in_frac: int, out_frac: int, st: Optional[Stats] = None) -> np.ndarray:
    check_frac(in_frac, out_frac)
    return narrow7(x, in_frac - out_frac, st)


def add_forward(a, a_frac, b, b_frac, out_frac, st=None):
    check_frac(a_frac, b_frac, out_frac)
    return clamp(shift_round(a, a_frac - out_frac) + shift_round(b, b_frac - out_frac), Q7_MAX, st).astype(np.int8)


def accumulate(acc, acc_frac, x, x_frac, st=None):
    check_frac(acc_frac, x_frac)
    return clamp(_i64(acc) + shift_round(x, x_frac - acc_frac), Q7_MAX, st).astype(np.int8)


# ----------------------------------------------------------------- conv2d
def _pair(v):
    if np.isscalar(v):
        return int(v), int(v)
    return int(v[0]), int(v[1])


def _conv_geom(x_shape, w_shape, stride, padding, dilation):
    (sh, sw), (ph, pw), (dh, dw) = _pair(stride), _pair(padding), _pair(dilation)
    _, _, h, w = x_shape
    _, _, kh, kw = w_shape
    ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
    wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
    return sh, sw, ph, pw, dh, dw, ho, wo


def _conv_sum(x, w, stride, padding, dilation, groups):
    """Exact int64 sum_{ci, kh, kw} w * xpad: [N, Cout, Ho, Wo]."""
    x, w = _i64(x), _i64(w)
    sh, sw, ph, pw, dh, dw, ho, wo = _conv_geom(x.shape, w.shape, stride, padding, dilation)
    n, cin = x.shape[:2]
    cout, cig, khn, kwn = w.shape
    g = groups
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    wg = w.reshape(g, cout // g, cig, khn, kwn)
    y = np.zeros((n, g, cout // g, ho, wo), dtype=np.int64)
    for kh in range(khn):
        for kw in range(kwn):
            t = xp[:, :, kh * dh:kh * dh + sh * (ho - 1) + 1:sh, kw * dw:kw * dw + sw * (wo - 1) + 1:sw]
            y += np.einsum("ngchw,goc->ngohw", t.reshape(n, g, cig, ho, wo), wg[:, :, :, kh, kw])
    return y.reshape(n, cout, ho, wo)


def conv2d_forward(x, x_frac, w, w_frac, bias, bias_frac, out_frac, stride=1, padding=0, dilation=1,
                   groups=1, st=None):
    """q7 conv: acc = round(bias 2^(x_frac+w_frac-bias_frac)) + sum x w, one rounding to out_frac."""
    check_frac(x_frac, w_frac, out_frac, *(() if bias is None else (bias_frac,)))
    cout, cig, kh, kw = np.shape(w)
    worst = cig * kh * kw * 128 * 128
    if worst > Q31_MAX:
        raise FixedPointOverflow("conv2d forward: the int32 accumulator could overflow")
    acc = _conv_sum(x, w, stride, padding, dilation, groups)
    if bias is not None:
        b = shift_round(bias, bias_frac - x_frac - w_frac)
        if np.any(np.abs(b) > Q31_MAX - worst):
            raise FixedPointOverflow("conv2d forward: the aligned bias could overflow the int32 accumulator")
        acc = acc + b[None, :, None, None]
    return narrow7(acc, x_frac + w_frac - out_frac, st)


def conv2d_backward_input(dy, dy_frac, w, w_frac, x_shape, dx_frac, stride=1, padding=0, dilation=1,
                          groups=1, st=None):
    check_frac(dy_frac, w_frac, dx_frac)
    dy, w = _i64(dy), _i64(w)
    cout, cig, khn, kwn = w.shape
    if (cout // groups) * khn * kwn * 128 * 128 > Q31_MAX:
        raise FixedPointOverflow("conv2d backward input: the int32 accumulator could overflow")
    sh, sw, ph, pw, dh, dw, ho, wo = _conv_geom(x_shape, w.shape, stride, padding, dilation)
    n, cin, h, wd = x_shape
    g = groups
    dxp = np.zeros((n, cin, h + 2 * ph, wd + 2 * pw), dtype=np.int64)
    dyg = dy.reshape(n, g, cout // g, ho, wo)
    wg = w.reshape(g, cout // g, cig, khn, kwn)
    for kh in range(khn):
        for kw in range(kwn):
            t = dxp[:, :, kh * dh:kh * dh + sh * (ho - 1) + 1:sh, kw * dw:kw * dw + sw * (wo - 1) + 1:sw]
            t += np.einsum("ngohw,goc->ngchw", dyg, wg[:, :, :, kh, kw]).reshape(n, cin, ho, wo)
    return narrow7(dxp[:, :, ph:ph + h, pw:pw + wd], dy_frac + w_frac - dx_frac, st)


def conv2d_backward_weight(dw_acc, dw_frac, db_acc, db_frac, dy, dy_frac, x, x_frac, w_shape, stride=1,
                           padding=0, dilation=1, groups=1, st=None):
    """d_weight += round(corr(x, dy) 2^(dw_frac - dy_frac - x_frac)); d_bias += round(sum dy ...)."""
    check_frac(dw_frac, dy_frac, x_frac, *(() if db_acc is None else (db_frac,)))
    x, dy = _i64(x), _i64(dy)
    cout, cig, khn, kwn = w_shape
    sh, sw, ph, pw, dh, dw, ho, wo = _conv_geom(x.shape, w_shape, stride, padding, dilation)
    n = x.shape[0]
    g = groups
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dyg = dy.reshape(n, g, cout // g, ho, wo)
    sums = np.zeros((g, cout // g, cig, khn, kwn), dtype=np.int64)
    for kh in range(khn):
        for kw in range(kwn):
            t = xp[:, :, kh * dh:kh * dh + sh * (ho - 1) + 1:sh, kw * dw:kw * dw + sw * (wo - 1) + 1:sw]
            sums[:, :, :, kh, kw] = np.einsum("ngohw,ngchw->goc", dyg, t.reshape(n, g, cig, ho, wo))
    # the C kernel updates weight by weight, then the bias, per output channel
    dw_new = acc32(dw_acc, sums.reshape(w_shape), dy_frac + x_frac - dw_frac, None)
    db_new = None
    if db_acc is not None:
        db_new = acc32(db_acc, dy.sum(axis=(0, 2, 3)), dy_frac - db_frac, None)
    if st is not None:
        _record_acc32(st, dw_acc, sums.reshape(w_shape), dy_frac + x_frac - dw_frac)
        if db_acc is not None:
            _record_acc32(st, db_acc, dy.sum(axis=(0, 2, 3)), dy_frac - db_frac)
    return dw_new, db_new


def _record_acc32(st, acc, x, s):
    clamp(_i64(acc) + shift_round(x, s), Q31_MAX, st)


# ----------------------------------------------------------------- linear
def linear_forward(x, x_frac, w, w_frac, bias, bias_frac, out_frac, st=None):
    check_frac(x_frac, w_frac, out_frac, *(() if bias is None else (bias_frac,)))
    x, w = _i64(x), _i64(w)
    worst = w.shape[1] * 128 * 128
    if worst > Q31_MAX:
        raise FixedPointOverflow("linear forward: the int32 accumulator could overflow")
    acc = x @ w.T
    if bias is not None:
        b = shift_round(bias, bias_frac - x_frac - w_frac)
        if np.any(np.abs(b) > Q31_MAX - worst):
            raise FixedPointOverflow("linear forward: the aligned bias could overflow the int32 accumulator")
        acc = acc + b[None, :]
    return narrow7(acc, x_frac + w_frac - out_frac, st)


def linear_backward_input(dy, dy_frac, w, w_frac, dx_frac, st=None):
    check_frac(dy_frac, w_frac, dx_frac)
    w = _i64(w)
    if w.shape[0] * 128 * 128 > Q31_MAX:
        raise FixedPointOverflow("linear backward input: the int32 accumulator could overflow")
    return narrow7(_i64(dy) @ w, dy_frac + w_frac - dx_frac, st)


def linear_backward_weight(dw_acc, dw_frac, db_acc, db_frac, dy, dy_frac, x, x_frac, st=None):
    check_frac(dw_frac, dy_frac, x_frac, *(() if db_acc is None else (db_frac,)))
    dy, x = _i64(dy), _i64(x)
    sums = dy.T @ x
    dw_new = acc32(dw_acc, sums, dy_frac + x_frac - dw_frac, None)
    db_new = acc32(db_acc, dy.sum(axis=0), dy_frac - db_frac, None) if db_acc is not None else None
    if st is not None:
        # the C kernel records weight row o, then bias o: the union is what matters
        _record_acc32(st, dw_acc, sums, dy_frac + x_frac - dw_frac)
        if db_acc is not None:
            _record_acc32(st, db_acc, dy.sum(axis=0), dy_frac - db_frac)
    return dw_new, db_new


# -------------------------------------------------------------- groupnorm
def _gn_stats(xb, eps_mant, eps_exp, x_frac):
    """Per block [B, M] of ints: S, r, u as the header defines them."""
    m = xb.shape[1]
    out = []
    for row in xb:
        s = int(row.sum())
        q = int((row * row).sum())
        d = m * q - s * s
        e = 0
        if eps_mant > 0:
            e1 = int(shift_round(eps_mant * m, eps_exp - 2 * x_frac))
            e = 2 ** 61 if e1 >= (2 ** 61) // m else e1 * m
        v = max(d + e, 1)
        u = (62 - v.bit_length()) // 2
        sroot = math.isqrt(v << (2 * u))
        r = int(div_round(1 << 54, sroot))
        out.append((s, r, u))
    return out


def _xhat(xb, m, s, r, u):
    return shift_round((m * _i64(xb) - s) * r, 54 - u - XF)


def groupnorm_forward(x, x_frac, gamma, g_frac, beta, b_frac, groups, out_frac, eps_mant, eps_exp, st=None):
    """x [N, C, HW] (int8) -> (y int8, mean int32 [N, G], rstd int32 [N, G])."""
    check_frac(x_frac, out_frac, *(() if gamma is None else (g_frac,)), *(() if beta is None else (b_frac,)))
    x = _i64(x)
    n, c, hw = x.shape
    cpg = c // groups
    m = cpg * hw
    if m > 2 ** 22:
        raise FixedPointOverflow("groupnorm: more than 2^22 values per group")
    gf = g_frac if gamma is not None else 0
    gq = _i64(gamma) if gamma is not None else np.ones(c, dtype=np.int64)
    bal = shift_round(beta, b_frac - gf - XF) if beta is not None else np.zeros(c, dtype=np.int64)
    if np.any(np.abs(bal) >= 2 ** 61):
        raise FixedPointOverflow("groupnorm: the aligned bias reaches 2^62")
    y = np.zeros_like(x)
    mean = np.zeros((n, groups), dtype=np.int32)
    rstd = np.zeros((n, groups), dtype=np.int32)
    xb = x.reshape(n, groups, m)
    for i in range(n):
        for gi, (s, r, u) in enumerate(_gn_stats(xb[i], eps_mant, eps_exp, x_frac)):
            mean[i, gi] = s
            rstd[i, gi] = r | (u << 25)
            xh = _xhat(xb[i, gi], m, s, r, u).reshape(cpg, hw)
            chans = slice(gi * cpg, (gi + 1) * cpg)
            y[i, chans] = gq[chans, None] * xh + bal[chans, None]
    return narrow7(y, gf + XF - out_frac, st), mean, rstd


def _unpack(word):
    w = int(np.uint32(np.int32(word)))
    return w & 0x1FFFFFF, w >> 25


def groupnorm_backward_input(dy, dy_frac, x, x_frac, mean, rstd, gamma, g_frac, groups, dx_frac, st=None):
    check_frac(dy_frac, x_frac, dx_frac, *(() if gamma is None else (g_frac,)))
    dy, x = _i64(dy), _i64(x)
    n, c, hw = x.shape
    cpg = c // groups
    m = cpg * hw
    if m > 2 ** 22:
        raise FixedPointOverflow("groupnorm: more than 2^22 values per group")
    g = shift_round(gamma, g_frac - GF) if gamma is not None else np.full(c, 1 << GF, dtype=np.int64)
    gmax = int(np.max(np.abs(g)))
    if gmax >= 2 ** 40:
        raise FixedPointOverflow("groupnorm backward: gamma too large")
    hmax = gmax * 128
    xmax = ((math.isqrt(m) + 1) << XF) + 1
    bm, bh, bx = bitlen(m), bitlen(hmax), bitlen(xmax)
    if bm + bh + XF + 2 > 62 or bx + bh + XF + 3 > 62 or bx + bh + 3 + 21 > 62:
        raise FixedPointOverflow("groupnorm backward: int64 sums could overflow for this group and gamma")
    dx = np.zeros_like(x)
    for i in range(n):
        for gi in range(groups):
            chans = slice(gi * cpg, (gi + 1) * cpg)
            s = int(mean[i, gi])
            r, u = _unpack(rstd[i, gi])
            xh = _xhat(x[i, chans], m, s, r, u)
            h = dy[i, chans] * g[chans, None]
            a = int(div_round(int(h.sum()), m))
            b = int(div_round(int((h * xh).sum()), m))
            k = m * r
            ke = max(0, k.bit_length() - 20)
            km = int(shift_round(k, ke))
            t = h - a - shift_round(xh * b, 2 * XF)
            dx[i, chans] = shift_round(t * km, 54 + dy_frac + GF - x_frac - dx_frac - u - ke)
    return clamp(dx, Q7_MAX, st).astype(np.int8)


def groupnorm_backward_weight(dg_acc, dg_frac, db_acc, db_frac, dy, dy_frac, x, x_frac, mean, rstd, groups,
                              st=None):
    check_frac(dy_frac, x_frac, *(() if dg_acc is None else (dg_frac,)), *(() if db_acc is None else (db_frac,)))
    dy, x = _i64(dy), _i64(x)
    n, c, hw = x.shape
    cpg = c // groups
    m = cpg * hw
    if m > 2 ** 22:
        raise FixedPointOverflow("groupnorm: more than 2^22 values per group")
    sg = np.zeros(c, dtype=np.int64)
    for i in range(n):
        for gi in range(groups):
            chans = slice(gi * cpg, (gi + 1) * cpg)
            r, u = _unpack(rstd[i, gi])
            xh = _xhat(x[i, chans], m, int(mean[i, gi]), r, u)
            sg[chans] += (dy[i, chans] * xh).sum(axis=1)
    sb = dy.sum(axis=(0, 2))
    dg_new = acc32(dg_acc, sg, dy_frac + XF - dg_frac, None) if dg_acc is not None else None
    db_new = acc32(db_acc, sb, dy_frac - db_frac, None) if db_acc is not None else None
    if st is not None:
        if dg_acc is not None:
            _record_acc32(st, dg_acc, sg, dy_frac + XF - dg_frac)
        if db_acc is not None:
            _record_acc32(st, db_acc, sb, dy_frac - db_frac)
    return dg_new, db_new


# ------------------------------------------------------------- activation
def relu_forward(x, x_frac, out_frac, st=None):
    check_frac(x_frac, out_frac)
    return narrow7(np.maximum(_i64(x), 0), x_frac - out_frac, st)


def relu_backward(dy, dy_frac, y, dx_frac, st=None):
    check_frac(dy_frac, dx_frac)
    pos = _i64(y) > 0
    v = shift_round(dy, dy_frac - dx_frac)
    if st is not None:
        clamp(v[pos], Q7_MAX, st)
    return np.where(pos, clamp(v, Q7_MAX), 0).astype(np.int8)


def relu_forward_mask(x, x_frac, out_frac, st=None):
    """(out, mask words): bit i%32 of word i/32 set where x[i] > 0."""
    x = _i64(x)
    flat = (x.reshape(-1) > 0).astype(np.uint64)
    pad = (-flat.size) % 32
    bits = np.concatenate([flat, np.zeros(pad, np.uint64)]).reshape(-1, 32)
    words = (bits << np.arange(32, dtype=np.uint64)).sum(axis=1).astype(np.uint32)
    return relu_forward(x, x_frac, out_frac, st), words


def relu_backward_mask(dy, dy_frac, mask, dx_frac, st=None):
    check_frac(dy_frac, dx_frac)
    dy = _i64(dy)
    idx = np.arange(dy.size)
    on = ((np.asarray(mask, dtype=np.uint64)[idx // 32] >> (idx % 32).astype(np.uint64)) & np.uint64(1)) == 1
    on = on.reshape(dy.shape)
    v = shift_round(dy, dy_frac - dx_frac)
    if st is not None:
        clamp(v[on], Q7_MAX, st)
    return np.where(on, clamp(v, Q7_MAX), 0).astype(np.int8)


def elu_forward(x, x_frac, out_frac, alpha_mant, alpha_exp, st=None):
    check_frac(x_frac, out_frac)
    x = _i64(x)
    e = exp_neg_q30(x, x_frac)
    pos = shift_round(x, x_frac - out_frac)
    neg = shift_round(alpha_mant * (e - (1 << 30)), 30 + alpha_exp - out_frac)
    return clamp(np.where(x > 0, pos, neg), Q7_MAX, st).astype(np.int8)


def elu_backward(dy, dy_frac, y, y_frac, dx_frac, alpha_mant, alpha_exp, st=None):
    check_frac(dy_frac, y_frac, dx_frac)
    dy, y = _i64(dy), _i64(y)
    alpha16 = int(shift_round(alpha_mant, alpha_exp - 16))
    slope = shift_round(y, y_frac - 16) + alpha16
    pos = shift_round(dy, dy_frac - dx_frac)
    neg = shift_round(dy * slope, dy_frac + 16 - dx_frac)
    return clamp(np.where(y > 0, pos, neg), Q7_MAX, st).astype(np.int8)


# ---------------------------------------------------------------- dropout
M64 = (1 << 64) - 1
RNG_STREAM = 0x62696F7472   # the executors' dropout stream


class Pcg32:
    """PCG32, XSH-RR output, seeded as the C core's bt_rng_seed."""

    MULT = 6364136223846793005

    def __init__(self, seed: int, stream: int = RNG_STREAM):
        self.state = 0
        self.inc = ((stream << 1) | 1) & M64
        self.next_u32()
        self.state = (self.state + seed) & M64
        self.next_u32()

    def next_u32(self) -> int:
        old = self.state
        self.state = (old * self.MULT + self.inc) & M64
        xorshifted = (((old >> 18) ^ old) >> 27) & 0xFFFFFFFF
        rot = old >> 59
        return ((xorshifted >> rot) | (xorshifted << ((32 - rot) & 31))) & 0xFFFFFFFF


def _dropout_consts(p_mant, p_exp):
    if not (0 <= p_mant < 2 ** 24 and -100 <= p_exp <= 200):
        raise ValueError("dropout p out of range")
    den = (1 << 30) - int(shift_round(p_mant, p_exp - 30))
    if den < (1 << 10):
        raise ValueError("dropout p must be at most 1 - 2^-20")
    threshold = p_mant << (24 - p_exp) if p_exp <= 24 else (0 if p_exp - 24 >= 32 else p_mant >> (p_exp - 24))
    return threshold, int(div_round(1 << 60, den))


def dropout_forward(x, x_frac, out_frac, p_mant, p_exp, rng: Pcg32, st=None):
    """(out, mask uint8): keep iff (next_u32 >> 8) >= floor(p 2^24); kept values times 1/(1-p) in Q30."""
    check_frac(x_frac, out_frac)
    threshold, scale = _dropout_consts(p_mant, p_exp)
    x = _i64(x)
    keep = np.array([(rng.next_u32() >> 8) >= threshold for _ in range(x.size)], dtype=bool).reshape(x.shape)
    v = shift_round(x * scale, 30 + x_frac - out_frac)
    if st is not None:
        clamp(v[keep], Q7_MAX, st)
    return np.where(keep, clamp(v, Q7_MAX), 0).astype(np.int8), keep.astype(np.uint8)


def dropout_backward(dy, dy_frac, mask, dx_frac, p_mant, p_exp, st=None):
    check_frac(dy_frac, dx_frac)
    _, scale = _dropout_consts(p_mant, p_exp)
    keep = np.asarray(mask) != 0
    v = shift_round(_i64(dy) * scale, 30 + dy_frac - dx_frac)
    if st is not None:
        clamp(v[keep], Q7_MAX, st)
    return np.where(keep, clamp(v, Q7_MAX), 0).astype(np.int8)


# ------------------------------------------------------------------- pool
def _scaled_mean(s, shift, k):
    if shift >= 0:
        if bitlen(k) + shift > 61:
            raise FixedPointOverflow("average pool: divisor out of range for this change of scale")
        return div_round(s, k << shift)
    return div_round(shift_round(s, shift), k)


def _windows(x_shape, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = _pair(kernel), _pair(stride), _pair(padding)
    h, w = x_shape[2:]
    ho = (h + 2 * ph - kh) // sh + 1
    wo = (w + 2 * pw - kw) // sw + 1
    return kh, kw, sh, sw, ph, pw, ho, wo


def avgpool_forward(x, x_frac, out_frac, kernel, stride=None, padding=0, st=None):
    check_frac(x_frac, out_frac)
    stride = kernel if stride is None else stride
    kh, kw, sh, sw, ph, pw, ho, wo = _windows(np.shape(x), kernel, stride, padding)
    xp = np.pad(_i64(x), ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    s = np.zeros(np.shape(x)[:2] + (ho, wo), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            s += xp[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw]
    return clamp(_scaled_mean(s, x_frac - out_frac, kh * kw), Q7_MAX, st).astype(np.int8)


def avgpool_backward(dy, dy_frac, x_shape, dx_frac, kernel, stride=None, padding=0, st=None):
    check_frac(dy_frac, dx_frac)
    stride = kernel if stride is None else stride
    kh, kw, sh, sw, ph, pw, ho, wo = _windows(x_shape, kernel, stride, padding)
    n, c, h, w = x_shape
    acc = np.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            acc[:, :, a:a + sh * (ho - 1) + 1:sh, b:b + sw * (wo - 1) + 1:sw] += _i64(dy)
    s = acc[:, :, ph:ph + h, pw:pw + w]
    return clamp(_scaled_mean(s, dy_frac - dx_frac, kh * kw), Q7_MAX, st).astype(np.int8)


def maxpool_forward(x, x_frac, out_frac, kernel, stride=None, padding=0, st=None):
    """(out int8, argmax int32): the first maximum in row-major window order."""
    check_frac(x_frac, out_frac)
    stride = kernel if stride is None else stride
    kh, kw, sh, sw, ph, pw, ho, wo = _windows(np.shape(x), kernel, stride, padding)
    x = _i64(x)
    n, c, h, w = x.shape
    best = np.full((n, c, ho, wo), -10 ** 9, dtype=np.int64)
    arg = np.full((n, c, ho, wo), -1, dtype=np.int64)
    for a in range(kh):
        for b in range(kw):
            ih = np.arange(ho) * sh - ph + a
            iw = np.arange(wo) * sw - pw + b
            okh = (ih >= 0) & (ih < h)
            okw = (iw >= 0) & (iw < w)
            v = x[:, :, np.clip(ih, 0, h - 1)][:, :, :, np.clip(iw, 0, w - 1)]
            ok = okh[:, None] & okw[None, :]
            better = ok[None, None] & (v > best)
            best = np.where(better, v, best)
            arg = np.where(better, (ih[:, None] * w + iw[None, :])[None, None], arg)
    return narrow7(best, x_frac - out_frac, st), arg.astype(np.int32)


def maxpool_backward(dy, dy_frac, argmax, x_shape, dx_frac, st=None):
    check_frac(dy_frac, dx_frac)
    n, c, h, w = x_shape
    acc = np.zeros((n * c, h * w), dtype=np.int64)
    am = _i64(argmax).reshape(n * c, -1)
    g = _i64(dy).reshape(n * c, -1)
    for p in range(n * c):
        np.add.at(acc[p], am[p], g[p])
    return narrow7(acc.reshape(x_shape), dy_frac - dx_frac, st)


# ------------------------------------------------------------------- loss
def cross_entropy_forward(z, z_frac, labels):
    """(loss Q16 = mean over rows, probs int16 Q14)."""
    check_frac(z_frac)
    z = _i64(z)
    n, k = z.shape
    labels = np.asarray(labels)
    if np.any((labels < 0) | (labels >= k)):
        raise ValueError("label outside [0, classes)")
    m = z.max(axis=1, keepdims=True)
    e = exp_neg_q30(z - m, z_frac)
    s = e.sum(axis=1)
    probs = div_round(e << PROB_FRAC, s[:, None]).astype(np.int16)
    total = 0
    for r in range(n):
        ln = int(shift_round(log2_q16(int(s[r]), 30) * LN2_Q30, 30))
        dyv = int(shift_round(int(z[r, labels[r]] - m[r, 0]), z_frac - LOSS_FRAC))
        total += ln - dyv
    loss = int(np.clip(div_round(total, n), -Q31_MAX, Q31_MAX))
    return loss, probs


def cross_entropy_backward(probs, labels, den, d_frac, st=None):
    check_frac(d_frac)
    p = _i64(probs)
    n, k = p.shape
    num = p - (np.arange(k)[None, :] == np.asarray(labels)[:, None]) * (1 << PROB_FRAC)
    shift = PROB_FRAC - d_frac
    if shift >= 0:
        if bitlen(den) + shift > 61:
            raise FixedPointOverflow("cross-entropy backward: divisor out of range")
        v = div_round(num, den << shift)
    else:
        v = div_round(shift_round(num, shift), den)
    return clamp(v, Q7_MAX, st).astype(np.int8)


# -------------------------------------------------------------- optimizer
def sgd_update(w, w_frac, buf, buf_frac, g, g_frac, lr, momentum=(0, 0), weight_decay=(0, 0), st=None):
    """One SGD step on int32 masters. lr, momentum, weight_decay are (mant, exp)
    pairs (decode_f32). Returns (w, buf) with buf now at g_frac."""
    check_frac(w_frac, g_frac, *(() if buf is None else (buf_frac,)))
    (lm, le), (mm, me), (wm, we) = lr, momentum, weight_decay
    w, g = _i64(w), _i64(g)
    d = g.copy()
    if wm:
        d = d + shift_round(wm * w, we + w_frac - g_frac)
    new_buf = None
    if mm:
        d = clamp(shift_round(mm * _i64(buf), me + buf_frac - g_frac) + d, Q31_MAX, st)
        new_buf = d.astype(np.int32)
    else:
        d = clamp(d, Q31_MAX)
    w_new = clamp(w - shift_round(lm * d, le + g_frac - w_frac), Q31_MAX, st).astype(np.int32)
    return w_new, new_buf
