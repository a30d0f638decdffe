/* The linear family (a fully connected layer over the flattened sample),
 * float32 and fixed point. */
#ifndef BIOTRAIN_LINEAR_H
#define BIOTRAIN_LINEAR_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- float32 */
/* in [n, in_f], weight [out_f, in_f] (PyTorch layout), bias [out_f] (may be NULL),
 * out [n, out_f]. */
bt_status bt_linear_forward_f32(float *out, const float *in, const float *weight,
                                const float *bias, int n, int in_f, int out_f);
bt_status bt_linear_backward_input_f32(float *d_in, const float *d_out, const float *weight,
                                       int n, int in_f, int out_f);
bt_status bt_linear_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                        const float *in, int n, int in_f, int out_f);

/* LoRA (graph.h): W_eff = W + scale * B A, and from its gradient
 * dA += B^T (scale dW_eff), dB += (scale dW_eff) A^T (d_a or d_b may be NULL:
 * that one is frozen). W, W_eff, dW_eff [rows, cols]; A [rank, cols]; B [rows, rank]. */
bt_status bt_lora_merge_f32(float *w_eff, const float *w, const float *a, const float *b, float scale,
                            int rows, int cols, int rank);
bt_status bt_lora_backward_f32(float *d_a, float *d_b, const float *d_w_eff, const float *a, const float *b,
                               float scale, int rows, int cols, int rank);

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
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

#ifdef __cplusplus
}
#endif
#endif
