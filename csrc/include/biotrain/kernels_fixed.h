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
 * Conventions otherwise as kernels_f32.h: bt_<op>_<pass>_q7, outputs first
 * (each with its scale and then its bt_q_stats), inputs next, sizes last;
 * weight gradients ACCUMULATE (+=, saturating), input gradients OVERWRITE;
 * NCHW layout; on any status but BT_OK nothing is written; no allocation, no
 * float, no libm.
 */
#ifndef BIOTRAIN_KERNELS_FIXED_H
#define BIOTRAIN_KERNELS_FIXED_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/kernels_f32.h" /* bt_conv2d_shape, bt_pool2d_shape and their checks */
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_Q7_MAX 127
#define BT_Q15_MAX 32767
#define BT_Q31_MAX 2147483647L
#define BT_Q_FRAC_MIN (-32)
#define BT_Q_FRAC_MAX 48
/* Magnitude at which bt_q_shift_round's left shifts saturate. */
#define BT_Q_BIG ((int64_t)1 << 62)
/* Softmax probabilities: 1.0 is 2^14, exactly representable in int16. */
#define BT_Q_PROB_FRAC 14
/* Loss values (nats). */
#define BT_Q_LOSS_FRAC 16
/* Groupnorm: the normalised value x_hat carries this many fractional bits,
 * and its backward reads the scale (gamma) rounded to this many. */
#define BT_Q_GN_XHAT_FRAC 10
#define BT_Q_GN_GAMMA_FRAC 10

typedef struct {
    uint32_t saturated;  /* values clamped to their type's range (added to) */
    uint32_t absmax;     /* largest |value| before clamping, output units (max-ed into) */
} bt_q_stats;

/* ---------------------------------------------------------------- rules */
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

/* ------------------------------------------------------------ elementwise */
/* out = clamp(round(in * 2^(out_frac - in_frac))). out may alias in. */
bt_status bt_requant_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in, int in_frac,
                        int count);
/* An int16 input (e.g. an ADC sample) into q7. */
bt_status bt_requant_q15_to_q7(int8_t *out, int out_frac, bt_q_stats *st, const int16_t *in,
                               int in_frac, int count);
/* A master weight into the q7 copy the kernels read. */
bt_status bt_requant_q31_to_q7(int8_t *out, int out_frac, bt_q_stats *st, const int32_t *in,
                               int in_frac, int count);
/* out = clamp(round(a * 2^(out_frac - a_frac)) + round(b * 2^(out_frac - b_frac))).
 * out may alias a or b. */
bt_status bt_add_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *a, int a_frac,
                            const int8_t *b, int b_frac, int count);
/* acc = clamp(acc + round(x * 2^(acc_frac - x_frac))): sums the gradients of
 * a tensor read by several ops. */
bt_status bt_accumulate_q7(int8_t *acc, int acc_frac, bt_q_stats *st, const int8_t *x, int x_frac,
                           int count);
/* Largest |v| of an int32 tensor (for choosing a scale). */
uint32_t bt_q31_absmax(const int32_t *v, size_t count);

/* ---------------------------------------------------------------- conv2d */
/* Shapes as bt_conv2d_shape (kernels_f32.h).
 * forward: acc = round(bias * 2^(in_frac + w_frac - bias_frac)) +
 *          sum in * w (int32), out = clamp8(round(acc * 2^(out_frac - in_frac - w_frac))).
 * bias may be NULL. BT_ERR_OVERFLOW when (c_in/groups)*k_h*k_w*128*128 plus
 * the largest aligned bias exceeds 2^31 - 1. */
bt_status bt_conv2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                               int in_frac, const int8_t *weight, int w_frac, const int32_t *bias,
                               int bias_frac, const bt_conv2d_shape *s);
/* d_in = clamp8(round(conv_transpose(d_out, w) * 2^(d_in_frac - d_out_frac - w_frac))).
 * BT_ERR_OVERFLOW when (c_out/groups)*k_h*k_w*128*128 exceeds 2^31 - 1. */
bt_status bt_conv2d_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                      const int8_t *d_out, int d_out_frac, const int8_t *weight,
                                      int w_frac, const bt_conv2d_shape *s);
/* d_weight += round(corr(in, d_out) * 2^(dw_frac - d_out_frac - in_frac)),
 * d_bias (may be NULL) += round(sum d_out * 2^(db_frac - d_out_frac)); the
 * sums are exact (int64), each result is rounded once per call and added
 * with int32 saturation (st: the accumulated values). */
bt_status bt_conv2d_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias, int db_frac,
                                       bt_q_stats *st, const int8_t *d_out, int d_out_frac,
                                       const int8_t *in, int in_frac, const bt_conv2d_shape *s);

/* ---------------------------------------------------------------- linear */
/* in [n, in_f], weight [out_f, in_f], bias [out_f] (int32, may be NULL), out
 * [n, out_f]. The same rules as conv2d with K = in_f (forward) or out_f
 * (backward input). */
bt_status bt_linear_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                               int in_frac, const int8_t *weight, int w_frac, const int32_t *bias,
                               int bias_frac, int n, int in_f, int out_f);
bt_status bt_linear_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                      const int8_t *d_out, int d_out_frac, const int8_t *weight,
                                      int w_frac, int n, int in_f, int out_f);
bt_status bt_linear_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias, int db_frac,
                                       bt_q_stats *st, const int8_t *d_out, int d_out_frac,
                                       const int8_t *in, int in_frac, int n, int in_f, int out_f);

/* ------------------------------------------------------------- groupnorm */
/* in/out [n, c, hw], groups divides c, M = (c/groups)*hw values per block.
 * weight (gamma) and bias (beta) are int32 [c] with their own scales (the
 * master copies), both NULL for no affine.
 * Per (sample, group) block, with x the int8 inputs:
 *   S = sum x, D = M * sum x^2 - S^2 (exact), E = round(round(eps * M *
 *   2^(2 in_frac)) * M) (eps = eps_mant * 2^-eps_exp), v = max(D + E, 1);
 *   this is M^2 (var + eps) in the input's integer units.
 *   The reciprocal square root: u = (62 - bitlen(v)) / 2 (floor),
 *   s = isqrt(v << 2u) in [2^30, 2^31), r = round(2^54 / s), so that
 *   1/sqrt(v) ~ r * 2^(u - 54).
 *   x_hat = round((M x - S) * r * 2^(u - 54 + BT_Q_GN_XHAT_FRAC))
 *   y = clamp8(round((gamma * x_hat + round(beta * 2^(w_frac + XF - b_frac)))
 *                    * 2^(out_frac - w_frac - XF)))       (XF = BT_Q_GN_XHAT_FRAC)
 *   (without affine: y = clamp8(round(x_hat * 2^(out_frac - XF)))).
 * Saved for the backward: mean [n, groups] gets S, rstd [n, groups] gets
 * r | (u << 25). BT_ERR_OVERFLOW when M > 2^22 or an aligned beta reaches
 * 2^62. */
bt_status bt_groupnorm_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, int32_t *mean,
                                  int32_t *rstd, const int8_t *in, int in_frac,
                                  const int32_t *weight, int w_frac, const int32_t *bias,
                                  int b_frac, int n, int c, int hw, int groups, int32_t eps_mant,
                                  int eps_exp);
/* Per block, with x_hat recomputed as in the forward, g = round(gamma *
 * 2^(BT_Q_GN_GAMMA_FRAC - w_frac)) (1.0 without affine) and GF =
 * BT_Q_GN_GAMMA_FRAC:
 *   h = dy * g, A = sum h, B = sum h * x_hat, a = round(A / M), b = round(B / M)
 *   t = h - a - round(x_hat * b * 2^-2XF)
 *   k = M * r, kept as k_m = round(k * 2^-k_e) with k_e = max(0, bitlen(k) - 20)
 *   dx = clamp8(round(t * k_m * 2^(in_frac + d_in_frac + u + k_e - 54 - d_out_frac - GF)))
 * which is dx = (1/sigma)(dx_hat - mean(dx_hat) - x_hat mean(dx_hat x_hat)).
 * d_in may alias d_out or in. BT_ERR_OVERFLOW when the int64 sums could
 * overflow for this block size and gamma (see the bound in fixed_norm.c). */
bt_status bt_groupnorm_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                         const int8_t *d_out, int d_out_frac, const int8_t *in,
                                         int in_frac, const int32_t *mean, const int32_t *rstd,
                                         const int32_t *weight, int w_frac, int n, int c, int hw,
                                         int groups);
/* d_weight[c] += round(sum dy * x_hat * 2^(dw_frac - d_out_frac - XF)),
 * d_bias[c] += round(sum dy * 2^(db_frac - d_out_frac)) (int32, saturating). */
bt_status bt_groupnorm_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias,
                                          int db_frac, bt_q_stats *st, const int8_t *d_out,
                                          int d_out_frac, const int8_t *in, int in_frac,
                                          const int32_t *mean, const int32_t *rstd, int n, int c,
                                          int hw, int groups);

/* ------------------------------------------------------------ activation */
/* ReLU: out = max(0, clamp8(round(in * 2^(out_frac - in_frac)))). out may alias in. */
bt_status bt_relu_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                             int in_frac, int count);
/* d_in = out > 0 ? clamp8(round(d_out * 2^(d_in_frac - d_out_frac))) : 0
 * (uses the forward OUTPUT). d_in may alias d_out. */
bt_status bt_relu_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                              int d_out_frac, const int8_t *out, int count);
/* ReLU that saves one bit per element for its backward instead of its
 * output (the layout of bt_relu_forward_mask_f32: bit i%32 of word i/32 set
 * where in[i] > 0). out may alias in. */
bt_status bt_relu_forward_mask_q7(int8_t *out, int out_frac, bt_q_stats *st, uint32_t *mask,
                                  const int8_t *in, int in_frac, int count);
/* d_in = mask bit set ? clamp8(round(d_out * 2^(d_in_frac - d_out_frac))) : 0.
 * d_in may alias d_out. */
bt_status bt_relu_backward_mask_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const uint32_t *mask, int count);
/* ELU with alpha = alpha_mant * 2^-alpha_exp (alpha >= 0):
 *   x > 0:  y = clamp8(round(x * 2^(out_frac - in_frac)))
 *   x <= 0: y = clamp8(round(alpha_mant * (bt_q_exp_neg_q30(x, in_frac) - 2^30)
 *                            * 2^(out_frac - 30 - alpha_exp)))
 * out may alias in. */
bt_status bt_elu_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                            int in_frac, int count, int32_t alpha_mant, int alpha_exp);
/* Uses the forward OUTPUT y: the slope is 1 for y > 0, else y + alpha taken
 * in Q16: p = round(y * 2^(16 - out_frac)) + round(alpha_mant * 2^(16 - alpha_exp));
 * d_in = clamp8(round(d_out * p * 2^(d_in_frac - d_out_frac - 16))) for y <= 0.
 * d_in may alias d_out. */
bt_status bt_elu_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                             int d_out_frac, const int8_t *out, int out_frac, int count,
                             int32_t alpha_mant, int alpha_exp);

/* --------------------------------------------------------------- dropout */
/* Inverted dropout with p = p_mant * 2^-p_exp in [0, 1 - 2^-20], with the
 * float path's mask (dropout_f32.c): threshold = floor(p * 2^24), element i
 * kept iff (bt_rng_next_u32(rng) >> 8) >= threshold, one draw per element in
 * order; mask[i] = 1 for kept. Kept values are scaled by 1/(1 - p) taken in
 * Q30, s = round(2^60 / (2^30 - round(p * 2^30))):
 *   out = kept ? clamp8(round(x * s * 2^(out_frac - in_frac - 30))) : 0.
 * out may alias in. On a bad status the generator has not advanced. */
bt_status bt_dropout_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, uint8_t *mask,
                                const int8_t *in, int in_frac, int count, int32_t p_mant, int p_exp,
                                bt_rng *rng);
/* d_in = mask ? clamp8(round(d_out * s * 2^(d_in_frac - d_out_frac - 30))) : 0. d_in may alias d_out. */
bt_status bt_dropout_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                 int d_out_frac, const uint8_t *mask, int count, int32_t p_mant,
                                 int p_exp);

/* ------------------------------------------------------------------ pool */
/* Shapes as bt_pool2d_shape. Average pooling divides by k_h*k_w (padding
 * counts as zeros): out = clamp8(round(sum * 2^(out_frac - in_frac) / (k_h k_w))),
 * one rounding. */
bt_status bt_avgpool2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                                  int in_frac, const bt_pool2d_shape *s);
/* d_in = clamp8(round(sum over the windows covering it of d_out
 *        * 2^(d_in_frac - d_out_frac) / (k_h k_w))). */
bt_status bt_avgpool2d_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const bt_pool2d_shape *s);
/* out = the window's largest value (the first one on ties), rescaled;
 * argmax as kernels_f32.h (may be NULL). */
bt_status bt_maxpool2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, int32_t *argmax,
                                  const int8_t *in, int in_frac, const bt_pool2d_shape *s);
/* d_in = clamp8(round(sum of the d_out whose argmax it is * 2^(d_in_frac - d_out_frac))). */
bt_status bt_maxpool2d_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const int32_t *argmax, const bt_pool2d_shape *s);

/* ------------------------------------------------------------------- loss */
/* Integer softmax cross-entropy over n rows of `classes` logits (int8,
 * logit_frac). Per row, with m the row maximum (the running maximum makes
 * every exponent <= 0):
 *   e_j = bt_q_exp_neg_q30(z_j - m, logit_frac), S = sum e_j
 *   probs_j = round(e_j * 2^14 / S)                       (int16, BT_Q_PROB_FRAC)
 *   loss_row = round(log2(S * 2^-30) [Q16] * ln 2 [Q30] * 2^-30)
 *              - round((z_y - m) * 2^(16 - logit_frac))   (Q16 nats)
 * *loss = round(sum loss_row / n) (Q16, the mean over the rows). */
bt_status bt_cross_entropy_forward_q7(int32_t *loss, int16_t *probs, const int8_t *logits,
                                      int logit_frac, const int32_t *labels, int n, int classes);
/* d_logits = clamp8(round((probs - 2^14 onehot) * 2^(d_frac - 14) / den)):
 * den is the number of samples the loss is averaged over (the batch of the
 * optimizer step; a micro-batch of m rows passes the whole batch size).
 * d_logits may alias probs (each int8 lands on bytes already read). */
bt_status bt_cross_entropy_backward_q7(int8_t *d_logits, int d_frac, bt_q_stats *st,
                                       const int16_t *probs, const int32_t *labels, int den, int n,
                                       int classes);

/* -------------------------------------------------------------- optimizer */
/* SGD with momentum (dampening 0, no Nesterov, L2 weight decay added to the
 * gradient), as torch.optim.SGD, on int32 masters. Each hyper-parameter is an
 * exact float32 value given as mant * 2^-exp (bt_q_decode_f32). */
typedef struct {
    int32_t lr_mant; int lr_exp;
    int32_t mom_mant; int mom_exp;   /* 0: no momentum buffer */
    int32_t wd_mant; int wd_exp;
} bt_q_sgd_cfg;

bt_status bt_q_sgd_check(const bt_q_sgd_cfg *cfg);
/* Per element, all in int64, g_frac being the gradient's scale:
 *   ge = g + round(wd * w * 2^(g_frac - w_frac))
 *   buf = clamp32(round(mom * buf * 2^(g_frac - buf_frac)) + ge)   (buf now has g_frac)
 *   w = clamp32(w - round(lr * buf * 2^(w_frac - g_frac)))         (ge instead of buf
 *                                                                   without momentum)
 * buf may be NULL when mom_mant is 0. st records the clamps of w and buf. */
bt_status bt_sgd_update_q31(int32_t *w, int w_frac, int32_t *buf, int buf_frac, bt_q_stats *st,
                            const int32_t *g, int g_frac, size_t count, const bt_q_sgd_cfg *cfg);

#ifdef __cplusplus
}
#endif
#endif
