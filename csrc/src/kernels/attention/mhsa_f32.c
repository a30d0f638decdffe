/* Multi-head self-attention, float32 (attention.h).
 *
 * Summation orders (fixed; each "+= a * b" is one fused multiply-add,
 * acc = bt_fmaf(a, b, acc)):
 *  projections      the linear kernels' (linear_f32.c) over n * S token rows
 *  score            s_ij = (sum_d q_i[d] k_j[d], d ascending) * (1 / sqrt(hd))
 *  softmax row      m = max_j s_ij, e_j = bt_expf(s_ij - m), l = sum_j e_j
 *                   (j ascending), p_ij = e_j * (1 / l); the backward
 *                   recomputes p from the same s, m and l: the same bits
 *  head output      o_i[d] = 0, += p_ij v_j[d] for j ascending
 *  backward, per sample:
 *    dO_i[d]        = 0, += dy_i[e] wo[e][d] for e ascending (all heads at once)
 *    D_i (head h)   = sum_d dO_i[d] o_i[d] over the head's d ascending
 *  then per head, key by key (j ascending), query by query (i ascending):
 *    p              = p_ij, recomputed as above (or read from the kept map)
 *    dV_j[d]       += p dO_i[d];  dp += dO_i[d] v_j[d] (d ascending, from 0)
 *    ds             = (p * (dp - D_i)) * (1 / sqrt(hd))
 *    dK_j[d]       += ds q_i[d];  dQ_i[d] += ds k_j[d]
 *  dV_j, dK_j start at 0 for each key, dQ at 0 for each head.
 *  RoPE             (a, b) -> (a c - b s, a s + b c), and its transpose
 *                   (a c + b s, b c - a s) for the gradient, with
 *                   (s, c) = bt_sincospif(t * f_i), f_i = 10000^(-2i/hd) / pi.
 */
#include <string.h>
#include "biotrain/attention.h"
#include "biotrain/linear.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"

bt_status bt_mhsa_check_shape(const bt_mhsa_shape *sh)
{
    BT_REQUIRE_PTR(sh);
    /* every buffer index fits in an int: qkv (3D per token), probs (H S S) */
    BT_REQUIRE(bt_sizes_ok(sh->n, sh->s, sh->d, 3) && sh->heads > 0 &&
                   bt_sizes_ok(sh->n, sh->heads, sh->s, sh->s) && bt_sizes_ok(sh->d, sh->d, 3, 1),
               BT_ERR_BAD_SIZE);
    BT_REQUIRE(sh->d % sh->heads == 0, BT_ERR_GROUPS);
    BT_REQUIRE(sh->rope == 0 || sh->rope == 1, BT_ERR_BAD_PARAM);
    BT_REQUIRE(!sh->rope || (sh->d / sh->heads) % 2 == 0, BT_ERR_BAD_PARAM);
    return BT_OK;
}

size_t bt_mhsa_backward_workspace_size(const bt_mhsa_shape *sh)
{
    size_t s, hd;
    if (bt_mhsa_check_shape(sh) != BT_OK) return 0;
    s = (size_t)sh->s;
    hd = (size_t)(sh->d / sh->heads);
    return ((size_t)sh->d + (size_t)sh->heads * s + s * hd + 2 * hd) * sizeof(float);
}

/* ------------------------------------------------------------------ RoPE */
/* Rotates the q and k pairs of every head of every token in place; inverse:
 * the transposed rotation (the gradient through it). */
static void rope(float *qkv, const bt_mhsa_shape *sh, int inverse)
{
    const int D = sh->d, hd = D / sh->heads, half = hd / 2;
    const float ln_base = bt_logf(BT_ROPE_BASE);
    const float inv_pi = 0.318309886183790672f;
    int i, t, r, h, part;
    for (i = 0; i < half; ++i) {
        /* 10000^(-2i/hd) / pi: the angle in units of pi */
        const float f = bt_expf(-((float)(2 * i) / (float)hd) * ln_base) * inv_pi;
        for (t = 0; t < sh->s; ++t) {
            float sn, cs;
            bt_sincospif((float)t * f, &sn, &cs);
            for (r = 0; r < sh->n; ++r) {
                float *tok = qkv + ((size_t)r * sh->s + t) * 3 * D;
                for (part = 0; part < 2; ++part)      /* q, then k */
                    for (h = 0; h < sh->heads; ++h) {
                        float *p = tok + part * D + h * hd + 2 * i;
                        const float a = p[0], b = p[1];
                        /* One product, then a fused multiply-add: written as a*c - b*d the
                         * vectoriser may turn the pair into a complex multiply with fused
                         * instructions (x86 vfmaddsub) whatever -ffp-contract says, which
                         * would round differently from the MCU. */
                        if (!inverse) {
                            p[0] = bt_fmaf(a, cs, -(b * sn));
                            p[1] = bt_fmaf(a, sn, b * cs);
                        } else {
                            p[0] = bt_fmaf(a, cs, b * sn);
                            p[1] = bt_fmaf(b, cs, -(a * sn));
                        }
                    }
            }
        }
    }
}

/* --------------------------------------------------------------- softmax */
/* Scores of query row q against the S keys (stride 3D apart) into row[S]. */
static void score_row(float *row, const float *q, const float *k0, int S, int stride, int hd, float scale)
{
    int j, d;
    for (j = 0; j < S; ++j) {
        const float *k = k0 + (size_t)j * stride;
        float acc = 0.0f;
        for (d = 0; d < hd; ++d) acc = bt_fmaf(q[d], k[d], acc);
        row[j] = acc * scale;
    }
}

/* row (scores) -> probabilities; returns max and sum of exponentials. */
static void softmax_row(float *row, int S, float *m_out, float *l_out)
{
    float m = row[0], l = 0.0f, inv;
    int j;
    for (j = 1; j < S; ++j)
        if (row[j] > m) m = row[j];
    for (j = 0; j < S; ++j) {
        row[j] = bt_expf(row[j] - m);
        l += row[j];
    }
    inv = 1.0f / l;
    for (j = 0; j < S; ++j) row[j] *= inv;
    *m_out = m;
    *l_out = l;
}

/* One of the forward's probabilities again, from the same score, max and sum:
 * softmax_row's operations, so the same bits. */
static float prob_of(float score, float m, float l) { return bt_expf(score - m) * (1.0f / l); }

static float inv_sqrt_head(int hd) { return 1.0f / bt_sqrtf((float)hd); }

/* --------------------------------------------------------------- forward */
bt_status bt_mhsa_forward_f32(float *out, float *qkv, float *attn, float *stats, float *probs,
                              const float *in, const float *w_qkv, const float *b_qkv,
                              const float *w_o, const float *b_o, const bt_mhsa_shape *sh)
{
    int r, h, i, j, d, S, D, D3, hd;
    float scale;
    BT_TRY(bt_mhsa_check_shape(sh));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(qkv);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(w_qkv);
    BT_REQUIRE_PTR(w_o);
    S = sh->s; D = sh->d; D3 = 3 * D; hd = D / sh->heads;
    scale = inv_sqrt_head(hd);
    BT_TRY(bt_linear_forward_f32(qkv, in, w_qkv, b_qkv, sh->n * S, D, D3));
    if (sh->rope) rope(qkv, sh, 0);
    for (r = 0; r < sh->n; ++r) {
        const float *base = qkv + (size_t)r * S * D3;
        float *o_r = attn + (size_t)r * S * D;
        for (h = 0; h < sh->heads; ++h) {
            const float *k0 = base + D + h * hd, *v0 = base + 2 * D + h * hd;
            for (i = 0; i < S; ++i) {
                /* one score row: in the whole map if kept, else in out (free until the projection) */
                float *row = probs ? probs + (((size_t)r * sh->heads + h) * S + i) * S : out + (size_t)r * S * D;
                float *o = o_r + (size_t)i * D + h * hd;
                float m, l;
                score_row(row, base + (size_t)i * D3 + h * hd, k0, S, D3, hd, scale);
                softmax_row(row, S, &m, &l);
                if (stats) {
                    float *st = stats + (((size_t)r * sh->heads + h) * S + i) * 2;
                    st[0] = m;
                    st[1] = l;
                }
                for (d = 0; d < hd; ++d) o[d] = 0.0f;
                for (j = 0; j < S; ++j) {
                    const float p = row[j];
                    const float *v = v0 + (size_t)j * D3;
                    for (d = 0; d < hd; ++d) o[d] = bt_fmaf(p, v[d], o[d]);
                }
            }
        }
    }
    return bt_linear_forward_f32(out, attn, w_o, b_o, sh->n * S, D, D);
}

/* -------------------------------------------------------------- backward */
bt_status bt_mhsa_backward_out_weight_f32(float *d_w_o, float *d_b_o, const float *attn, const float *d_out,
                                          const bt_mhsa_shape *sh)
{
    BT_TRY(bt_mhsa_check_shape(sh));
    BT_REQUIRE_PTR(d_w_o);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE_PTR(d_out);
    return bt_linear_backward_weight_f32(d_w_o, d_b_o, d_out, attn, sh->n * sh->s, sh->d, sh->d);
}

bt_status bt_mhsa_backward_qkv_f32(float *qkv, float *attn, const float *probs, float *workspace,
                                   size_t workspace_bytes, const float *stats, const float *d_out,
                                   const float *w_o, const bt_mhsa_shape *sh)
{
    int r, h, i, j, d, e, S, D, D3, H, hd;
    float scale, *grow, *Dv, *dq, *dv, *dk;
    BT_TRY(bt_mhsa_check_shape(sh));
    BT_REQUIRE_PTR(qkv);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE_PTR(workspace);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(w_o);
    BT_REQUIRE(probs != NULL || stats != NULL, BT_ERR_NULL_POINTER);
    BT_REQUIRE(workspace_bytes >= bt_mhsa_backward_workspace_size(sh), BT_ERR_WORKSPACE);
    S = sh->s; D = sh->d; D3 = 3 * D; H = sh->heads; hd = D / H;
    scale = inv_sqrt_head(hd);
    grow = workspace;                 /* [D]: one token's head-output gradient */
    Dv = grow + D;                    /* [H, S]: D_i of every head */
    dq = Dv + (size_t)H * S;          /* [S, hd]: one head's dQ, accumulated over the keys */
    dv = dq + (size_t)S * hd;         /* [hd]: one key's dV */
    dk = dv + hd;                     /* [hd]: one key's dK */
    for (r = 0; r < sh->n; ++r) {
        float *base = qkv + (size_t)r * S * D3;
        float *o_r = attn + (size_t)r * S * D;
        const float *dy_r = d_out + (size_t)r * S * D;
        /* dO = dy wo, token by token; D_i = dO_i . o_i per head; then dO over O (read no more) */
        for (i = 0; i < S; ++i) {
            const float *dy = dy_r + (size_t)i * D;
            float *o = o_r + (size_t)i * D;
            for (d = 0; d < D; ++d) grow[d] = 0.0f;
            for (e = 0; e < D; ++e) {
                const float a = dy[e];
                const float *w = w_o + (size_t)e * D;
                for (d = 0; d < D; ++d) grow[d] = bt_fmaf(a, w[d], grow[d]);
            }
            for (h = 0; h < H; ++h) {
                float acc = 0.0f;
                for (d = h * hd; d < (h + 1) * hd; ++d) acc = bt_fmaf(grow[d], o[d], acc);
                Dv[(size_t)h * S + i] = acc;
            }
            memcpy(o, grow, (size_t)D * sizeof(float));
        }
        for (h = 0; h < H; ++h) {
            float *q0 = base + h * hd, *k0 = base + D + h * hd, *v0 = base + 2 * D + h * hd;
            const float *g0 = o_r + h * hd, *Dh = Dv + (size_t)h * S;
            const float *st = stats ? stats + ((size_t)r * H + h) * S * 2 : NULL;
            const float *pm = probs ? probs + ((size_t)r * H + h) * S * S : NULL;
            memset(dq, 0, (size_t)S * hd * sizeof(float));
            /* key by key: each probability is a scalar recomputed (or read) where it is used,
             * so no S x S map and no S-long column is held */
            for (j = 0; j < S; ++j) {
                float *k = k0 + (size_t)j * D3, *v = v0 + (size_t)j * D3;
                for (d = 0; d < hd; ++d) dv[d] = dk[d] = 0.0f;
                for (i = 0; i < S; ++i) {
                    const float *q = q0 + (size_t)i * D3, *g = g0 + (size_t)i * D;
                    float *dqi = dq + (size_t)i * hd;
                    float p, dp = 0.0f, ds;
                    if (pm) {
                        p = pm[(size_t)i * S + j];
                    } else {
                        float sc;
                        score_row(&sc, q, k, 1, D3, hd, scale);
                        p = prob_of(sc, st[2 * i], st[2 * i + 1]);
                    }
                    for (d = 0; d < hd; ++d) {
                        dv[d] = bt_fmaf(p, g[d], dv[d]);
                        dp = bt_fmaf(g[d], v[d], dp);
                    }
                    ds = p * (dp - Dh[i]) * scale;
                    for (d = 0; d < hd; ++d) {
                        dk[d] = bt_fmaf(ds, q[d], dk[d]);
                        dqi[d] = bt_fmaf(ds, k[d], dqi[d]);
                    }
                }
                /* key j is read no more: its gradients over it */
                memcpy(v, dv, (size_t)hd * sizeof(float));
                memcpy(k, dk, (size_t)hd * sizeof(float));
            }
            for (i = 0; i < S; ++i) memcpy(q0 + (size_t)i * D3, dq + (size_t)i * hd, (size_t)hd * sizeof(float));
        }
    }
    if (sh->rope) rope(qkv, sh, 1);
    return BT_OK;
}

bt_status bt_mhsa_backward_qkv_weight_f32(float *d_w_qkv, float *d_b_qkv, const float *dqkv, const float *in,
                                          const bt_mhsa_shape *sh)
{
    BT_TRY(bt_mhsa_check_shape(sh));
    BT_REQUIRE_PTR(d_w_qkv);
    BT_REQUIRE_PTR(dqkv);
    BT_REQUIRE_PTR(in);
    return bt_linear_backward_weight_f32(d_w_qkv, d_b_qkv, dqkv, in, sh->n * sh->s, sh->d, 3 * sh->d);
}

bt_status bt_mhsa_backward_input_f32(float *d_in, const float *dqkv, const float *w_qkv, const bt_mhsa_shape *sh)
{
    BT_TRY(bt_mhsa_check_shape(sh));
    return bt_linear_backward_input_f32(d_in, dqkv, w_qkv, sh->n * sh->s, sh->d, 3 * sh->d);
}
