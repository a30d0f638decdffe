/* The sequence family: kernels of token sequences, float32.
 *
 * A token sequence is one sample's tensor of shape (1, S, D): S tokens of D
 * features, the features of a token contiguous. (Linear layers over tokens,
 * LayerNorm over features and softmax over the last axis reuse the linear,
 * norm and activation families with S tokens as rows.) */
#ifndef BIOTRAIN_SEQUENCE_H
#define BIOTRAIN_SEQUENCE_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A (c, h, w) feature map as a sequence of h*w tokens of c features:
 * out[n][s][ch] = in[n][ch][s]. The backward is the transpose back. */
bt_status bt_tokens_forward_f32(float *out, const float *in, int n, int c, int hw);
bt_status bt_tokens_backward_input_f32(float *d_in, const float *d_out, int n, int c, int hw);

/* A learned positional embedding: out[n] = in[n] + pos (pos of `numel` = S*D
 * values). The input gradient is d_out (copied); the weight gradient adds the
 * sum over samples, in sample order. out may alias in. */
bt_status bt_pos_embed_forward_f32(float *out, const float *in, const float *pos, int n, int numel);
bt_status bt_pos_embed_backward_weight_f32(float *d_pos, const float *d_out, int n, int numel);

/* Mean over the tokens: in [n, S, D] -> out [n, D]. */
bt_status bt_token_mean_forward_f32(float *out, const float *in, int n, int s, int d);
bt_status bt_token_mean_backward_input_f32(float *d_in, const float *d_out, int n, int s, int d);

/* Sequence pooling (CCT): a = softmax_s(in[s] . w + b), out = sum_s a[s] in[s].
 * attn [n, S] is saved by the forward for the backward. */
bt_status bt_seq_pool_forward_f32(float *out, float *attn, const float *in, const float *w, const float *b, int n,
                                  int s, int d);
bt_status bt_seq_pool_backward_input_f32(float *d_in, const float *d_out, const float *in, const float *attn,
                                         const float *w, int n, int s, int d);
/* d_w [D] and d_b [1] (either may be NULL) accumulate with +=. */
bt_status bt_seq_pool_backward_weight_f32(float *d_w, float *d_b, const float *d_out, const float *in,
                                          const float *attn, const float *w, int n, int s, int d);

/* Drop-path (stochastic depth) on a residual branch: each sample is kept
 * whole with probability 1 - p and scaled by 1/(1 - p), or zeroed. keep [n]
 * gets 1 or 0; one draw per sample from rng, with dropout's integer rule
 * ((u32 >> 8) >= floor(p * 2^24)). 0 <= p < 1; out may alias in. */
bt_status bt_drop_path_forward_f32(float *out, uint8_t *keep, const float *in, int n, int per, float p,
                                   bt_rng *rng);
bt_status bt_drop_path_backward_f32(float *d_in, const float *d_out, const uint8_t *keep, int n, int per, float p);

#ifdef __cplusplus
}
#endif
#endif
