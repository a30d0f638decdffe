/* The runtime's own elementary functions.
 * libm's expf/logf/tanhf differ in their last bits between C libraries
 * (glibc, picolibc, newlib), which would break bit-exact agreement between the
 * host and the MCU. These use only +, -, *, / and integer bit manipulation on
 * float32, each correctly rounded by IEEE 754, so with -ffp-contract=off they
 * give the same bits on every platform. Accuracy: a few ulp. bt_fmaf, the
 * kernels' multiply-accumulate, is correctly rounded too. */
#ifndef BIOTRAIN_BT_MATH_H
#define BIOTRAIN_BT_MATH_H

#include <math.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

float bt_expf(float x);
float bt_logf(float x);
float bt_tanhf(float x);
/* erf: absolute error below 2e-7 (Taylor series near 0, a Chebyshev fit of erfc beyond). */
float bt_erff(float x);
/* sin(pi x) and cos(pi x), both at once (rotary position embeddings). The
 * argument is reduced modulo 2 exactly (no pi in it), so any finite x works:
 * within 2^-23 absolute of the exact values. NaN and infinities give NaN. */
void bt_sincospif(float x, float *s, float *c);
/* IEEE 754 requires sqrt to be correctly rounded, so this is portable. */
float bt_sqrtf(float x);
int bt_isfinitef(float x);

/* Fused multiply-add: a * b + c with one rounding, as IEEE 754 defines it.
 * Every multiply-accumulate of the conv and linear kernels is one of these:
 * a single instruction on cores that have it (RISC-V F, x86 FMA, Arm VFPv4),
 * and, being correctly rounded, the same bits on every platform. Where the
 * compiler reports no fast fmaf (__FP_FAST_FMAF), bt_fmaf_soft computes it
 * exactly instead of trusting the C library's fmaf. */
static inline float bt_fmaf_soft(float a, float b, float c)
{
    /* The product of two floats is exact in a double (24 + 24 bits); the sum
     * is rounded to odd (TwoSum gives its exact error, and an inexact sum
     * with an even last bit moves one ulp towards the exact value). A double
     * rounded to odd and then to float is the correctly rounded result, as
     * 53 >= 24 + 2; that includes float subnormals, whose grid is coarser. */
    const double p = (double)a * (double)b, cd = (double)c;
    const double s = p + cd;
    const double bv = s - p;
    const double err = (p - (s - bv)) + (cd - bv);
    union { double d; uint64_t u; } v;
    v.d = s;
    if (err == err && s - s == 0.0 && err != 0.0 && (v.u & 1u) == 0) {
        if ((err > 0.0) == (s > 0.0)) v.u += 1u; else v.u -= 1u;
    }
    return (float)v.d;
}

#if defined(__FP_FAST_FMAF)
#define bt_fmaf(a, b, c) fmaf((a), (b), (c))
#else
#define bt_fmaf(a, b, c) bt_fmaf_soft((a), (b), (c))
#endif

#ifdef __cplusplus
}
#endif
#endif
