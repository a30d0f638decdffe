/* The norm family: GroupNorm (LayerNorm over channels is groups = 1; float32
 * and fixed point) and BatchNorm (float32). */
#ifndef BIOTRAIN_NORM_H
#define BIOTRAIN_NORM_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- groupnorm, float32 */
/* in/out [n, c, hw]; groups divides c; weight, bias [c] (both may be NULL =
 * no affine); mean, rstd [n, groups] are the only statistics saved for the
 * backward. rstd = 1 / sqrt(var + eps), var the biased variance. */
bt_status bt_groupnorm_forward_f32(float *out, float *mean, float *rstd, const float *in,
                                   const float *weight, const float *bias,
                                   int n, int c, int hw, int groups, float eps);
/* d_in may alias in or d_out (each (sample, group) block is reduced first). */
bt_status bt_groupnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight,
                                          int n, int c, int hw, int groups);
bt_status bt_groupnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw, int groups);

/* ---- batchnorm, float32 */
/* Training mode: batch statistics over (n, hw) per channel; saves mean, rstd
 * [c]; updates running_mean/running_var (may be NULL) with
 * r = (1 - momentum) * r + momentum * batch_stat, the variance unbiased
 * (n*hw/(n*hw-1)) as PyTorch does. */
bt_status bt_batchnorm_forward_train_f32(float *out, float *mean, float *rstd,
                                         float *running_mean, float *running_var,
                                         const float *in, const float *weight,
                                         const float *bias, int n, int c, int hw,
                                         float momentum, float eps);
/* Eval mode: normalises with the running statistics. */
bt_status bt_batchnorm_forward_eval_f32(float *out, const float *in, const float *running_mean,
                                        const float *running_var, const float *weight,
                                        const float *bias, int n, int c, int hw, float eps);
/* Backward of training mode. d_in may alias in or d_out. */
bt_status bt_batchnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight, int n, int c, int hw);
bt_status bt_batchnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw);

/* ---- groupnorm, fixed point */
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

#ifdef __cplusplus
}
#endif
#endif
