/* Portable elementary functions; see bt_math.h for why they exist.
 * Only IEEE-754 correctly rounded operations (+ - * / sqrt) on float32 and
 * integer bit manipulation are used, in a fixed order.
 * Measured against double precision over all 2^32 float32 inputs: bt_expf
 * within 1.23 ulp, bt_logf within 0.84 ulp, bt_tanhf within 1.50 ulp
 * (correct rounding would be 0.5); NaN, infinities, signed zeros and
 * subnormals are handled. bt_sincospif reduces its argument exactly and
 * stays within 2^-23 absolute (tests/test_bt_math.py). */
#include <math.h>
#include <string.h>
#include <stdint.h>
#include "biotrain/bt_math.h"

static uint32_t f2u(float f) { uint32_t u; memcpy(&u, &f, sizeof u); return u; }
static float u2f(uint32_t u) { float f; memcpy(&f, &u, sizeof f); return f; }

/* 2^e for e in [-126, 127], exact. */
static float pow2i(int e) { return u2f((uint32_t)(e + 127) << 23); }

int bt_isfinitef(float x) { return (f2u(x) & 0x7f800000u) != 0x7f800000u; }

float bt_expf(float x)
{
    const float log2e = 1.44269504088896341f;
    const float ln2_hi = 0.693145751953125f;      /* 12 significant bits: k*ln2_hi is exact */
    const float ln2_lo = 1.428606765330187e-06f;
    float t, r, p;
    int k;
    if (x != x) return x;
    if (x > 88.7228394f) return u2f(0x7f800000u);
    if (x < -103.972084f) return 0.0f;
    t = x * log2e;
    k = (int)(t >= 0.0f ? t + 0.5f : t - 0.5f);
    r = (x - (float)k * ln2_hi) - (float)k * ln2_lo;
    /* Taylor to degree 7 on |r| <= ln2/2: error below 2^-27. */
    p = 1.0f / 5040.0f;
    p = p * r + 1.0f / 720.0f;
    p = p * r + 1.0f / 120.0f;
    p = p * r + 1.0f / 24.0f;
    p = p * r + 1.0f / 6.0f;
    p = p * r + 0.5f;
    p = p * r + 1.0f;
    p = p * r + 1.0f;
    /* Scale by 2^k in two exact steps so that k outside [-126, 127] works. */
    if (k > 127) return p * pow2i(127) * pow2i(k - 127);
    if (k < -126) return p * pow2i(-126) * pow2i(k + 126);
    return p * pow2i(k);
}

float bt_logf(float x)
{
    const float ln2_hi = 0.693145751953125f;
    const float ln2_lo = 1.428606765330187e-06f;
    uint32_t u;
    int e;
    float m, f, s, z, r, hfsq, fe;
    if (x != x) return x;
    if (x < 0.0f) return u2f(0x7fc00000u);
    if (x == 0.0f) return u2f(0xff800000u);
    if (!bt_isfinitef(x)) return x;
    e = 0;
    if (x < 1.17549435e-38f) { x *= 16777216.0f; e = -24; } /* subnormal: scale by 2^24 */
    u = f2u(x);
    e += (int)((u >> 23) & 0xffu) - 127;
    m = u2f((u & 0x007fffffu) | 0x3f800000u); /* m in [1, 2) */
    if (m > 1.41421356f) { m *= 0.5f; e += 1; }
    /* log(m) = f - (f^2/2 - s (f^2/2 + R)), f = m - 1 (exact: Sterbenz),
     * s = f / (2 + f), R = 2 s^2/3 + 2 s^4/5 + ... (the 2 atanh(s) series
     * minus its first term). Keeping f as the leading term and adding only
     * small corrections to it keeps the error below one ulp. */
    f = m - 1.0f;
    s = f / (2.0f + f);
    z = s * s;
    r = 2.0f / 11.0f;
    r = r * z + 2.0f / 9.0f;
    r = r * z + 2.0f / 7.0f;
    r = r * z + 2.0f / 5.0f;
    r = r * z + 2.0f / 3.0f;
    r = r * z;
    hfsq = 0.5f * f * f;
    fe = (float)e;
    return fe * ln2_hi - ((hfsq - (s * (hfsq + r) + fe * ln2_lo)) - f);
}

float bt_tanhf(float x)
{
    float a, z, q, em1, t;
    if (x != x || x == 0.0f) return x; /* NaN; keeps the sign of zero */
    a = x < 0.0f ? -x : x;
    if (a > 9.0f) return x < 0.0f ? -1.0f : 1.0f;
    if (a < 0.55f) {
        /* Taylor series a + a z q(z), z = a^2, to a^19 (truncation below
         * 2^-30 relative). The correction a z q is under a tenth of a, so its
         * rounding errors barely reach the result: about half an ulp. The
         * em1 form below would lose up to 2.5 ulp here, in em1 + 2. */
        z = a * a;
        q = -443861162.0f / 1856156927625.0f;
        q = q * z + 6404582.0f / 10854718875.0f;
        q = q * z - 929569.0f / 638512875.0f;
        q = q * z + 21844.0f / 6081075.0f;
        q = q * z - 1382.0f / 155925.0f;
        q = q * z + 62.0f / 2835.0f;
        q = q * z - 17.0f / 315.0f;
        q = q * z + 2.0f / 15.0f;
        q = q * z - 1.0f / 3.0f;
        t = a + a * (z * q);
    } else if (a < 4.0f) {
        /* tanh(a) = em1 / (em1 + 2), em1 = e^(2a) - 1 (no cancellation for
         * 2a >= 1.1): the relative error of em1 is damped by 2 / (em1 + 2)
         * in the quotient. */
        em1 = bt_expf(2.0f * a) - 1.0f;
        t = em1 / (em1 + 2.0f);
    } else {
        /* tanh(a) = 1 - 2 / (e^(2a) + 1): the subtracted term is below 7e-4,
         * so its error vanishes in the final rounding (about half an ulp,
         * where the quotient above wobbles between 1 - 2^-24 and 1). */
        t = 1.0f - 2.0f / (bt_expf(2.0f * a) + 1.0f);
    }
    return x < 0.0f ? -t : t;
}

float bt_sqrtf(float x) { return sqrtf(x); }

float bt_erff(float x)
{
    float a, t, z, r;
    if (x != x || x == 0.0f) return x;
    a = x < 0.0f ? -x : x;
    if (a > 4.0f) return x < 0.0f ? -1.0f : 1.0f; /* 1 - erf(4) < 2e-8 */
    if (a < 0.5f) {
        /* 2/sqrt(pi) (x - x^3/3 + x^5/10 - x^7/42 + x^9/216 - x^11/1320): truncation below 2e-9 */
        z = x * x;
        r = -1.0f / 1320.0f;
        r = r * z + 1.0f / 216.0f;
        r = r * z - 1.0f / 42.0f;
        r = r * z + 1.0f / 10.0f;
        r = r * z - 1.0f / 3.0f;
        r = r * z + 1.0f;
        return 1.12837916709551257f * (x * r);
    }
    /* erfc(a) = t exp(-a^2 + P(t)), t = 1 / (1 + a/2): fractional error below 1.2e-7
     * (Press et al., Numerical Recipes, erfcc). */
    t = 1.0f / (1.0f + 0.5f * a);
    r = 0.17087277f;
    r = r * t - 0.82215223f;
    r = r * t + 1.48851587f;
    r = r * t - 1.13520398f;
    r = r * t + 0.27886807f;
    r = r * t - 0.18628806f;
    r = r * t + 0.09678418f;
    r = r * t + 0.37409196f;
    r = r * t + 1.00002368f;
    r = r * t - 1.26551223f;
    z = t * bt_expf(r - a * a);
    return x < 0.0f ? z - 1.0f : 1.0f - z;
}

void bt_sincospif(float x, float *s, float *c)
{
    const float pio2 = 1.57079632679489662f;
    float y, f, u, v, r, z, sr, cr, t;
    int m, q;
    if (!bt_isfinitef(x)) { *s = *c = u2f(0x7fc00000u); return; }
    /* Every float of magnitude >= 2^24 is an even integer: sin 0, cos 1 (of
     * the right sign of zero). */
    if (x >= 16777216.0f || x <= -16777216.0f) { *s = x > 0.0f ? 0.0f : -0.0f; *c = 1.0f; return; }
    /* x = 2 m + 2 f with f in [-1/2, 1/2]: y - m is exact (Sterbenz), and so
     * is each step of 1 below. */
    y = x * 0.5f;
    m = (int)y;
    f = y - (float)m;
    if (f > 0.5f) f -= 1.0f;
    else if (f < -0.5f) f += 1.0f;
    /* pi x = 2 pi (m + f) = pi/2 (q + v), q = round(4 f) in -2..2, v in [-1/2, 1/2] */
    u = 4.0f * f;
    q = (int)(u >= 0.0f ? u + 0.5f : u - 0.5f);
    v = u - (float)q;
    r = v * pio2;          /* |r| <= pi/4: the only rounding of the reduction */
    z = r * r;
    /* Taylor series to r^11 and r^12: truncation below 2^-30 on |r| <= pi/4 */
    t = -1.0f / 39916800.0f;
    t = t * z + 1.0f / 362880.0f;
    t = t * z - 1.0f / 5040.0f;
    t = t * z + 1.0f / 120.0f;
    t = t * z - 1.0f / 6.0f;
    sr = r + r * (z * t);
    t = 1.0f / 479001600.0f;
    t = t * z - 1.0f / 3628800.0f;
    t = t * z + 1.0f / 40320.0f;
    t = t * z - 1.0f / 720.0f;
    t = t * z + 1.0f / 24.0f;
    cr = 1.0f - 0.5f * z + z * (z * t);
    switch (q & 3) {
    case 0: *s = sr; *c = cr; break;
    case 1: *s = cr; *c = -sr; break;
    case 2: *s = -sr; *c = -cr; break;
    default: *s = -cr; *c = sr; break;
    }
}
