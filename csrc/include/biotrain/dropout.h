/* Inverted dropout, float32 and fixed point, with one mask stream (rng.h). */
#ifndef BIOTRAIN_DROPOUT_H
#define BIOTRAIN_DROPOUT_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- float32 */
/* Inverted dropout: keep with probability 1 - p and scale by 1 / (1 - p).
 * mask [count] gets 1 for kept, 0 for dropped. The mask comes from bt_rng with
 * integer-only arithmetic, so the same seed gives the same mask on every
 * platform. 0 <= p < 1. */
bt_status bt_dropout_forward_f32(float *out, uint8_t *mask, const float *in, int count,
                                 float p, bt_rng *rng);
bt_status bt_dropout_backward_f32(float *d_in, const float *d_out, const uint8_t *mask,
                                  int count, float p);

/* ---- fixed point (q7 activations, int32 masters and gradients; qmath.h states the rules) */
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

#ifdef __cplusplus
}
#endif
#endif
