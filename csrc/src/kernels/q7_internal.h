/* Fixed point: helpers shared by the *_q7.c kernel files and qmath.c (internal, not
 * installed). */
#ifndef BIOTRAIN_Q7_INTERNAL_H
#define BIOTRAIN_Q7_INTERNAL_H

#include "biotrain/qmath.h"

/* Bounds use the largest int8 magnitude, 128: any int8 input is safe,
 * including -128, which the kernels never produce themselves. */
#define BT_Q7_ABS 128

#define LOG2E_Q30 1549082005LL /* round(2^30 * log2(e)) */
#define LN2_Q30 744261118LL    /* round(2^30 * ln(2)) */

static inline int bt_q_frac_ok(int f) { return f >= BT_Q_FRAC_MIN && f <= BT_Q_FRAC_MAX; }

/* The rounding and saturation rules (qmath.h), inline for the inner
 * loops; bt_q_shift_round, bt_q_div_round and bt_q_clamp are these. */
static inline uint64_t q_mag(int64_t x) { return x < 0 ? (uint64_t)(-(x + 1)) + 1u : (uint64_t)x; }

static inline int64_t q_shr(int64_t x, int shift)
{
    uint64_t mag = q_mag(x), q;
    if (shift <= 0) {
        const int l = -shift;
        if (mag == 0) return 0;
        if (l >= 62 || mag >= ((uint64_t)1 << (62 - l))) return x < 0 ? -BT_Q_BIG : BT_Q_BIG;
        q = mag << l;
    } else if (shift >= 64) {
        return 0; /* |x| / 2^64 < 1/2 */
    } else {
        /* round half to even without a branch: the odd bit of the truncated
         * quotient decides the tie (mag + 2^(shift-1) stays below 2^64) */
        const uint64_t half = ((uint64_t)1) << (shift - 1);
        q = (mag + (half - 1u) + ((mag >> shift) & 1u)) >> shift;
    }
    return x < 0 ? -(int64_t)q : (int64_t)q;
}

static inline int64_t q_div(int64_t num, int64_t den)
{
    const uint64_t mag = q_mag(num), d = (uint64_t)den;
    uint64_t q = mag / d;
    const uint64_t r = mag % d;
    if (r > d - r || (r == d - r && (q & 1u))) ++q; /* r > den/2 without overflow */
    return num < 0 ? -(int64_t)q : (int64_t)q;
}

static inline int64_t q_clamp(int64_t v, int64_t lim, bt_q_stats *st)
{
    const uint64_t mag = q_mag(v);
    if (st) {
        const uint32_t m = mag > 0xffffffffu ? 0xffffffffu : (uint32_t)mag;
        if (m > st->absmax) st->absmax = m;
    }
    if (mag > (uint64_t)lim) {
        if (st && st->saturated != 0xffffffffu) st->saturated++;
        return v < 0 ? -lim : lim;
    }
    return v;
}

/* clamp(round(x * 2^-shift)) to int8, recorded in st. */
static inline int8_t bt_q_narrow7(int64_t x, int shift, bt_q_stats *st)
{
    return (int8_t)q_clamp(q_shr(x, shift), BT_Q7_MAX, st);
}

/* Adds round(x * 2^-shift) to an int32 accumulator with saturation. */
static inline int32_t bt_q_acc32(int32_t acc, int64_t x, int shift, bt_q_stats *st)
{
    return (int32_t)q_clamp((int64_t)acc + q_shr(x, shift), BT_Q31_MAX, st);
}

#endif
