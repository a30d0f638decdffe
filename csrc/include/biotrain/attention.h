/* The attention family: multi-head self-attention as one op, float32.
 *
 * A token sequence is one sample of shape (c = 1, h = S tokens, w = D
 * features), the features of a token contiguous. With H heads of
 * hd = D / H features each:
 *   QKV = x W^T + b                       W [3D, D] rows q, then k, then v
 *                                         (nn.MultiheadAttention's in_proj_weight)
 *   q, k <- RoPE(q), RoPE(k)              optional: per head, feature pairs
 *                                         (2i, 2i+1) of token t rotated by
 *                                         t * 10000^(-2i/hd) radians
 *   P_h = softmax(q_h k_h^T / sqrt(hd))   over the keys, per query row
 *   O_h = P_h v_h, O = [O_0 .. O_H-1]     the concatenated head outputs [S, D]
 *   y = O Wo^T + bo                       Wo [D, D]
 *
 * What the backward needs is saved by the forward: QKV (q and k after RoPE),
 * O, and either the per-row maximum and sum of exponentials of every head or,
 * the whole-map variant, all of P [n, H, S, S]. From the row statistics the
 * backward recomputes each probability where it uses it (key by key, one
 * head at a time), so it holds no S x S map at all: its workspace is
 * O(S hd + H S), and attention memory grows with S, not with H x S x S.
 *
 * The backward comes in steps, in this order: the output projection's
 * weight gradient (it reads O), bt_mhsa_backward_qkv_f32 (turns the saved
 * QKV into the gradient of the loss with respect to the projection's output
 * and O into its own gradient, in place: what it overwrites is read no
 * more), then the QKV weight gradient and the input gradient, which read
 * that. Conventions of kernels.h: outputs first, sizes last, weight
 * gradients accumulate (+=), input gradients overwrite, nothing written on a
 * bad status. */
#ifndef BIOTRAIN_ATTENTION_H
#define BIOTRAIN_ATTENTION_H

#include <stddef.h>
#include "biotrain/status.h"

#ifdef __cplusplus
extern "C" {
#endif

/* RoPE's base: the rotation of pair i is 10000^(-2i/hd) radians per token. */
#define BT_ROPE_BASE 10000.0f

typedef struct {
    int n;       /* samples */
    int s;       /* tokens per sample */
    int d;       /* features per token (the embedding) */
    int heads;   /* H, dividing d */
    int rope;    /* 1: rotary position embedding on q and k (d / heads even) */
} bt_mhsa_shape;

/* BT_OK if the shape is valid: sizes positive (and their products within an
 * int), heads dividing d, an even head size with RoPE. */
bt_status bt_mhsa_check_shape(const bt_mhsa_shape *sh);

/* Bytes of the workspace bt_mhsa_backward_qkv_f32 needs: one token's output
 * gradient (D), every head's row sums D_i (H S), one head's dQ (S hd) and one
 * key's dK and dV (2 hd). Independent of n and of whether the map is kept.
 * 0 for a bad shape. */
size_t bt_mhsa_backward_workspace_size(const bt_mhsa_shape *sh);

/* ---- float32 */
/* in [n, S, D]; w_qkv [3D, D], b_qkv [3D] (may be NULL), w_o [D, D], b_o [D]
 * (may be NULL). Writes out [n, S, D], qkv [n, S, 3D] (after RoPE) and attn
 * [n, S, D] (the concatenated head outputs), and, where not NULL, stats
 * [n, H, S, 2] (each query row's maximum score and sum of exponentials) and
 * probs [n, H, S, S]. out doubles as the buffer of one score row until the
 * output projection overwrites it, so it must not alias anything else. */
bt_status bt_mhsa_forward_f32(float *out, float *qkv, float *attn, float *stats, float *probs,
                              const float *in, const float *w_qkv, const float *b_qkv,
                              const float *w_o, const float *b_o, const bt_mhsa_shape *sh);

/* d_w_o [D, D] += d_out^T attn, d_b_o [D] += sum d_out (may be NULL). Runs
 * before bt_mhsa_backward_qkv_f32, which overwrites attn. */
bt_status bt_mhsa_backward_out_weight_f32(float *d_w_o, float *d_b_o, const float *attn, const float *d_out,
                                          const bt_mhsa_shape *sh);

/* Overwrites qkv [n, S, 3D] (the forward's) with the gradient of the loss
 * with respect to the QKV projection's output (before RoPE), and attn with
 * the gradient of the head outputs, from d_out [n, S, D], w_o and either
 * probs [n, H, S, S] (the whole map, read) or, with probs NULL, stats
 * [n, H, S, 2]; workspace of bt_mhsa_backward_workspace_size(sh) bytes. The
 * probabilities recomputed from stats have the forward's bits, so both
 * variants give the same gradients bit for bit. */
bt_status bt_mhsa_backward_qkv_f32(float *qkv, float *attn, const float *probs, float *workspace,
                                   size_t workspace_bytes, const float *stats, const float *d_out,
                                   const float *w_o, const bt_mhsa_shape *sh);

/* d_w_qkv [3D, D] += dqkv^T in, d_b_qkv [3D] += sum dqkv (may be NULL);
 * dqkv is what bt_mhsa_backward_qkv_f32 left in qkv. */
bt_status bt_mhsa_backward_qkv_weight_f32(float *d_w_qkv, float *d_b_qkv, const float *dqkv, const float *in,
                                          const bt_mhsa_shape *sh);

/* d_in [n, S, D] = dqkv w_qkv. d_in may be the buffer of the op's d_out once
 * bt_mhsa_backward_qkv_f32 and the weight gradient have read it. */
bt_status bt_mhsa_backward_input_f32(float *d_in, const float *dqkv, const float *w_qkv,
                                     const bt_mhsa_shape *sh);

#ifdef __cplusplus
}
#endif
#endif
