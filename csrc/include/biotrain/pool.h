/* The pool2d family: average, max and global average pooling, float32 and
 * fixed point. */
#ifndef BIOTRAIN_POOL_H
#define BIOTRAIN_POOL_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Shapes: bt_pool2d_shape (types.h). */
bt_status bt_pool2d_check(const bt_pool2d_shape *s, int *h_out, int *w_out);

/* ---- float32 */
bt_status bt_avgpool2d_forward_f32(float *out, const float *in, const bt_pool2d_shape *s);
bt_status bt_avgpool2d_backward_f32(float *d_in, const float *d_out, const bt_pool2d_shape *s);

/* argmax [n, c, h_out, w_out] receives the flat index (h * w_in + w) of each
 * window's maximum inside its (sample, channel) plane; the first maximum wins.
 * Pass argmax = NULL to save nothing and recompute it in the backward. */
bt_status bt_maxpool2d_forward_f32(float *out, int32_t *argmax, const float *in,
                                   const bt_pool2d_shape *s);
bt_status bt_maxpool2d_backward_f32(float *d_in, const float *d_out, const int32_t *argmax,
                                    const bt_pool2d_shape *s);
/* Backward without saved indices: recomputes the argmax from the forward input. */
bt_status bt_maxpool2d_backward_recompute_f32(float *d_in, const float *d_out, const float *in,
                                              const bt_pool2d_shape *s);


/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
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
 * argmax as in the float32 kernel (may be NULL). */
bt_status bt_maxpool2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, int32_t *argmax,
                                  const int8_t *in, int in_frac, const bt_pool2d_shape *s);
/* d_in = clamp8(round(sum of the d_out whose argmax it is * 2^(d_in_frac - d_out_frac))). */
bt_status bt_maxpool2d_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const int32_t *argmax, const bt_pool2d_shape *s);

#ifdef __cplusplus
}
#endif
#endif
