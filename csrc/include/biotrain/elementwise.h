/* Elementwise ops: residual add, gradient accumulation and (fixed point)
 * requantisation between scales. */
#ifndef BIOTRAIN_ELEMENTWISE_H
#define BIOTRAIN_ELEMENTWISE_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- float32 */
/* out = a + b (residual). out may alias a or b. */
bt_status bt_add_forward_f32(float *out, const float *a, const float *b, int count);
/* d_a = d_out, d_b = d_out; either may be NULL (not needed) or alias d_out. */
bt_status bt_add_backward_f32(float *d_a, float *d_b, const float *d_out, int count);
/* acc += x: used to sum the gradients of a tensor read by several ops. */
bt_status bt_accumulate_f32(float *acc, const float *x, int count);

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
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

#ifdef __cplusplus
}
#endif
#endif
