/* Portable elementary functions; see bt_math.h for why they exist.
 * Only IEEE-754 correctly rounded operations (+ - * / sqrt) on float32 and
 * integer bit manipulation are used, in a fixed order. */
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
    float m, s, s2, p, fe;
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
    /* log(m) = 2 atanh(s), s = (m - 1) / (m + 1), |s| <= 0.1716 */
    s = (m - 1.0f) / (m + 1.0f);
    s2 = s * s;
    p = 2.0f / 11.0f;
    p = p * s2 + 2.0f / 9.0f;
    p = p * s2 + 2.0f / 7.0f;
    p = p * s2 + 2.0f / 5.0f;
    p = p * s2 + 2.0f / 3.0f;
    p = p * s2 + 2.0f;
    fe = (float)e;
    return fe * ln2_hi + (s * p + fe * ln2_lo);
}

/* exp(y) - 1 without cancellation for small y >= 0. */
static float expm1_pos(float y)
{
    float p;
    if (y >= 0.5f) return bt_expf(y) - 1.0f;
    p = 1.0f + y / 9.0f;
    p = 1.0f + y / 8.0f * p;
    p = 1.0f + y / 7.0f * p;
    p = 1.0f + y / 6.0f * p;
    p = 1.0f + y / 5.0f * p;
    p = 1.0f + y / 4.0f * p;
    p = 1.0f + y / 3.0f * p;
    p = 1.0f + y / 2.0f * p;
    return y * p;
}

float bt_tanhf(float x)
{
    float a, em1, t;
    if (x != x) return x;
    a = x < 0.0f ? -x : x;
    if (a > 9.0f) return x < 0.0f ? -1.0f : 1.0f;
    em1 = expm1_pos(2.0f * a);
    t = em1 / (em1 + 2.0f);
    return x < 0.0f ? -t : t;
}

float bt_sqrtf(float x) { return sqrtf(x); }
