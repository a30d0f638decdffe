/* Fixed-point forward and backward kernels: integer arithmetic only.
 *
 * Number format. A tensor holds integers q with a power-of-two scale given by
 * its number of fractional bits f (its Q-format): the value is q * 2^-f. The
 * scale belongs to the whole tensor and is passed next to its pointer
 * (`*_frac`); f may be negative (large values) and must lie in
 * [BT_Q_FRAC_MIN, BT_Q_FRAC_MAX] (BT_ERR_BAD_PARAM otherwise).
 *
 * Element types (what the fixed-point plan sizes, plan.h BT_DTYPE_FIXED):
 *   activations and activation gradients   int8  (q7)
 *   weights as the conv/linear kernels read them   int8 (q7, one scale per tensor)
 *   master weights, weight gradients, momentum     int32 (q31)
 *   softmax probabilities                  int16 with BT_Q_PROB_FRAC bits
 *   groupnorm statistics                   int32 (see the groupnorm section)
 *   loss                                   int32 with BT_Q_LOSS_FRAC bits
 * Gradients are int8 like the activations: with the planner's lifetimes a few
 * activation and gradient buffers are alive together at the peak, and int8
 * for both is what takes MI-BMInet 8x1900 under 0.12 MB; int32 weight-gradient
 * accumulators and a scale per tensor adapted every step keep the loss curve
 * on float32's (tests/test_fixed_training.py). Weights take one scale per
 * tensor, not per output channel: the input-gradient sums run over output
 * channels, which per-channel scales would have to realign term by term.
 *
 * One rounding rule: every change of scale and every division rounds to the
 * nearest integer, ties to even (bt_q_shift_round, bt_q_div_round). It works
 * on magnitudes, so it is symmetric in sign and needs no right shift of a
 * negative number (implementation-defined in C). The only other roundings
 * are the integer square root inside the groupnorm statistics (the floor) and
 * the dropout threshold (truncated exactly as the float path's).
 *
 * One saturation rule: a result that does not fit its type is clamped to the
 * symmetric range [-(2^(b-1) - 1), 2^(b-1) - 1] (int8 [-127, 127], int16
 * [-32767, 32767], int32 [-(2^31 - 1), 2^31 - 1]); nothing ever wraps around.
 * The symmetric range keeps negation exact and the accumulator bounds below
 * tight. Every kernel that writes a narrowed value takes a bt_q_stats (may be
 * NULL): it ADDS the number of clamped values to `saturated` and raises
 * `absmax` to the largest magnitude it produced before clamping (in the
 * output's units, capped at UINT32_MAX). The executor adapts each tensor's
 * scale from these after every step.
 *
 * Sums are exact. Products of int8 values are summed in int32 accumulators
 * whose worst case is checked before anything runs: a reduction of K int8 x
 * int8 products fits while K * 128 * 128 (+ the bias) <= 2^31 - 1 (128, not
 * 127: an int8 input of -128, which no kernel produces, is still safe). A kernel
 * whose shapes (or bias scale) could overflow its accumulator returns
 * BT_ERR_OVERFLOW and writes nothing. Reductions over positions (weight
 * gradients, groupnorm statistics) are summed in int64. Because no sum ever
 * wraps, the order of summation does not matter and the result is exactly
 * the documented formula: the NumPy reference (reference/fixed.py) computes
 * the same integers.
 *
 * Conventions otherwise as kernels.h: bt_<op>_<pass>_q7, outputs first
 * (each with its scale and then its bt_q_stats), inputs next, sizes last;
 * weight gradients ACCUMULATE (+=, saturating), input gradients OVERWRITE;
 * NCHW layout; on any status but BT_OK nothing is written; no allocation, no
 * float, no libm.
 */
#ifndef BIOTRAIN_QMATH_H
#define BIOTRAIN_QMATH_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* round(x * 2^-shift), ties to even. shift < 0 multiplies; a product whose
 * magnitude reaches BT_Q_BIG saturates there (callers then clamp to their
 * type). |x| must be below 2^63 - 1. */
int64_t bt_q_shift_round(int64_t x, int shift);
/* round(num / den), ties to even; den > 0. */
int64_t bt_q_div_round(int64_t num, int64_t den);
/* Clamps v to [-lim, lim] and records it in st (may be NULL). */
int64_t bt_q_clamp(int64_t v, int64_t lim, bt_q_stats *st);
/* floor(sqrt(v)) exactly. */
uint64_t bt_q_isqrt64(uint64_t v);
/* Number of significant bits of v (0 for 0). */
int bt_q_bitlen(uint64_t v);
/* exp(x * 2^-frac) for x <= 0 as a Q30 value in [0, 2^30] (exp(0) is
 * exactly 2^30). Integer only: x is turned into base 2 (times log2(e) in
 * Q30, then rounded to 16 fractional bits t = -(n + r/2^16)), 2^(-r/2^16) is
 * the product of the BT_Q_EXP2 constants round(2^30 * 2^(-2^-k)) for the set
 * bits of r (each product rounded back to Q30), and 2^-n is a rounded shift.
 * x > 0 is treated as 0. */
int32_t bt_q_exp_neg_q30(int32_t x, int frac);
/* log2(v * 2^-frac) in Q16 for 1 <= v < 2^62 (the integer part from the bit
 * length, 16 fractional bits by repeated squaring of the Q30 mantissa, each
 * square rounded back to Q30). */
int64_t bt_q_log2_q16(uint64_t v, int frac);
/* A float32 scalar as an exact integer pair: *value = mant * 2^-exp with
 * |mant| < 2^24 (0 for 0). Reads the IEEE 754 bits through memcpy: no float
 * arithmetic. BT_ERR_NONFINITE for NaN or Inf. */
bt_status bt_q_decode_f32(int32_t *mant, int *exp, const float *value);
/* The scale that places `absmax` (measured in units of 2^-frac) with its top
 * bit at bit top-1, i.e. in [2^(top-1), 2^top): frac + top - bitlen(absmax),
 * clamped to [BT_Q_FRAC_MIN, BT_Q_FRAC_MAX]. An absmax of 0 (nothing
 * survived rounding: the values are below half a unit) raises frac by 4. */
int bt_q_frac_adapt(int frac, uint32_t absmax, int top);

/* Largest |v| of an int32 tensor (for choosing a scale). */
uint32_t bt_q31_absmax(const int32_t *v, size_t count);

#ifdef __cplusplus
}
#endif
#endif
