/* The conv2d family: dense, grouped, depthwise, pointwise and dilated
 * convolution, float32 and fixed point. NCHW; a Conv1d is the H = 1 case. */
#ifndef BIOTRAIN_CONV_H
#define BIOTRAIN_CONV_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shapes: bt_conv2d_shape (types.h). */
/* Validates the shape and gives the output size; h_out/w_out may be NULL. */
bt_status bt_conv2d_check(const bt_conv2d_shape *s, int *h_out, int *w_out);

/* ---- float32 */
bt_status bt_conv2d_forward_f32(float *out, const float *in, const float *weight,
                                const float *bias, const bt_conv2d_shape *s);
/* d_in [n, c_in, h_in, w_in] = conv_transpose(d_out, weight). */
bt_status bt_conv2d_backward_input_f32(float *d_in, const float *d_out, const float *weight,
                                       const bt_conv2d_shape *s);
/* d_weight += corr(in, d_out); d_bias (may be NULL) += sum of d_out. */
bt_status bt_conv2d_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                        const float *in, const bt_conv2d_shape *s);

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
/* Shapes as bt_conv2d_shape (types.h).
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

#ifdef __cplusplus
}
#endif
#endif
