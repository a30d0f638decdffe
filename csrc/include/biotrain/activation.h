/* The activation family: ReLU (plain and one-bit mask), ELU, GELU and
 * softmax over the last axis, float32 and fixed point. */
#ifndef BIOTRAIN_ACTIVATION_H
#define BIOTRAIN_ACTIVATION_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- float32 */
/* Elementwise over count values. out may alias in; d_in may alias d_out. */
bt_status bt_relu_forward_f32(float *out, const float *in, int count);
/* Uses the forward OUTPUT, so ReLU runs in place. */
bt_status bt_relu_backward_f32(float *d_in, const float *d_out, const float *out, int count);

/* ReLU that saves one bit per element for its backward instead of its
 * output: mask [ceil(count/32)] words, bit i%32 of word i/32 set where
 * in[i] > 0. 32x less memory than keeping the output. */
bt_status bt_relu_forward_mask_f32(float *out, uint32_t *mask, const float *in, int count);
bt_status bt_relu_backward_mask_f32(float *d_in, const float *d_out, const uint32_t *mask, int count);
/* Words of a ReLU mask for count elements. */
size_t bt_relu_mask_words(int count);

/* ELU(x) = x for x > 0, alpha * (exp(x) - 1) otherwise. */
bt_status bt_elu_forward_f32(float *out, const float *in, int count, float alpha);
/* Uses the forward OUTPUT (dy/dx = y + alpha for x <= 0), so ELU runs in place. */
bt_status bt_elu_backward_f32(float *d_in, const float *d_out, const float *out, int count,
                              float alpha);

/* GELU, tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))). */
bt_status bt_gelu_forward_f32(float *out, const float *in, int count);
/* Uses the forward INPUT. */
bt_status bt_gelu_backward_f32(float *d_in, const float *d_out, const float *in, int count);
/* GELU, exact form x Phi(x) (the runtime's own erf), and its derivative. */
bt_status bt_gelu_erf_forward_f32(float *out, const float *in, int count);
bt_status bt_gelu_erf_backward_f32(float *d_in, const float *d_out, const float *in, int count);

/* Softmax over the last axis: in/out [rows, cols]. */
bt_status bt_softmax_forward_f32(float *out, const float *in, int rows, int cols);
/* Uses the forward OUTPUT. d_in may alias d_out. */
bt_status bt_softmax_backward_f32(float *d_in, const float *d_out, const float *out, int rows,
                                  int cols);

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
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

#ifdef __cplusplus
}
#endif
#endif
