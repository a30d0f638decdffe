/* The sequence family, float32 (sequence.h). Reductions over samples and
 * tokens run in memory order (blocked_sum.h where long), so the bits depend
 * only on the shapes. Checks before any write: NULL -> BT_ERR_NULL_POINTER,
 * sizes not positive or too large -> BT_ERR_BAD_SIZE, p outside [0, 1) ->
 * BT_ERR_BAD_PARAM. */
#include <stddef.h>
#include <string.h>
#include "biotrain/sequence.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

bt_status bt_tokens_forward_f32(float *out, const float *in, int n, int c, int hw)
{
    size_t i, ch, s;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i) {
        const float *x = in + i * (size_t)c * (size_t)hw;
        float *y = out + i * (size_t)c * (size_t)hw;
        for (s = 0; s < (size_t)hw; ++s)
            for (ch = 0; ch < (size_t)c; ++ch) y[s * (size_t)c + ch] = x[ch * (size_t)hw + s];
    }
    return BT_OK;
}

bt_status bt_tokens_backward_input_f32(float *d_in, const float *d_out, int n, int c, int hw)
{
    size_t i, ch, s;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i) {
        const float *dy = d_out + i * (size_t)c * (size_t)hw;
        float *dx = d_in + i * (size_t)c * (size_t)hw;
        for (ch = 0; ch < (size_t)c; ++ch)
            for (s = 0; s < (size_t)hw; ++s) dx[ch * (size_t)hw + s] = dy[s * (size_t)c + ch];
    }
    return BT_OK;
}

bt_status bt_pos_embed_forward_f32(float *out, const float *in, const float *pos, int n, int numel)
{
    size_t i, j;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(pos);
    BT_REQUIRE(bt_sizes_ok(n, numel, 1, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i)
        for (j = 0; j < (size_t)numel; ++j) out[i * (size_t)numel + j] = in[i * (size_t)numel + j] + pos[j];
    return BT_OK;
}

bt_status bt_pos_embed_backward_weight_f32(float *d_pos, const float *d_out, int n, int numel)
{
    size_t i, j;
    BT_REQUIRE_PTR(d_pos);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE(bt_sizes_ok(n, numel, 1, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i)
        for (j = 0; j < (size_t)numel; ++j) d_pos[j] += d_out[i * (size_t)numel + j];
    return BT_OK;
}

bt_status bt_token_mean_forward_f32(float *out, const float *in, int n, int s, int d)
{
    size_t i, t, f;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_sizes_ok(n, s, d, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i)
        for (f = 0; f < (size_t)d; ++f) {
            const float *x = in + i * (size_t)s * (size_t)d + f;
            bt_bsum acc;
            bt_bsum_init(&acc);
            for (t = 0; t < (size_t)s; ++t) bt_bsum_add(&acc, x[t * (size_t)d]);
            out[i * (size_t)d + f] = bt_bsum_get(&acc) / (float)s;
        }
    return BT_OK;
}

bt_status bt_token_mean_backward_input_f32(float *d_in, const float *d_out, int n, int s, int d)
{
    size_t i, t, f;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE(bt_sizes_ok(n, s, d, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i)
        for (t = 0; t < (size_t)s; ++t)
            for (f = 0; f < (size_t)d; ++f)
                d_in[(i * (size_t)s + t) * (size_t)d + f] = d_out[i * (size_t)d + f] / (float)s;
    return BT_OK;
}

/* x . w over d features, in order */
static float dot(const float *x, const float *w, int d)
{
    bt_bsum acc;
    int f;
    bt_bsum_init(&acc);
    for (f = 0; f < d; ++f) bt_bsum_add(&acc, x[f] * w[f]);
    return bt_bsum_get(&acc);
}

bt_status bt_seq_pool_forward_f32(float *out, float *attn, const float *in, const float *w, const float *b, int n,
                                  int s, int d)
{
    size_t i, t, f;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(w);
    BT_REQUIRE(bt_sizes_ok(n, s, d, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i) {
        const float *x = in + i * (size_t)s * (size_t)d;
        float *a = attn + i * (size_t)s;
        float *y = out + i * (size_t)d;
        float mx, sum = 0.0f;
        for (t = 0; t < (size_t)s; ++t) a[t] = dot(x + t * (size_t)d, w, d) + (b ? b[0] : 0.0f);
        mx = a[0];
        for (t = 1; t < (size_t)s; ++t) mx = a[t] > mx ? a[t] : mx;
        for (t = 0; t < (size_t)s; ++t) {
            a[t] = bt_expf(a[t] - mx);
            sum += a[t];
        }
        for (t = 0; t < (size_t)s; ++t) a[t] /= sum;
        for (f = 0; f < (size_t)d; ++f) y[f] = 0.0f;
        for (t = 0; t < (size_t)s; ++t)
            for (f = 0; f < (size_t)d; ++f) y[f] += a[t] * x[t * (size_t)d + f];
    }
    return BT_OK;
}

bt_status bt_seq_pool_backward_input_f32(float *d_in, const float *d_out, const float *in, const float *attn,
                                         const float *w, int n, int s, int d)
{
    size_t i, t, f;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE_PTR(w);
    BT_REQUIRE(bt_sizes_ok(n, s, d, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i) {
        const float *x = in + i * (size_t)s * (size_t)d, *a = attn + i * (size_t)s, *dy = d_out + i * (size_t)d;
        float *dx = d_in + i * (size_t)s * (size_t)d;
        /* dz is computed token by token from the input, which d_in may not alias, so no scratch is needed */
        float m = 0.0f;
        for (t = 0; t < (size_t)s; ++t) m += a[t] * dot(x + t * (size_t)d, dy, d);
        for (t = 0; t < (size_t)s; ++t) {
            const float dz = a[t] * (dot(x + t * (size_t)d, dy, d) - m);
            for (f = 0; f < (size_t)d; ++f) dx[t * (size_t)d + f] = a[t] * dy[f] + dz * w[f];
        }
    }
    return BT_OK;
}

bt_status bt_seq_pool_backward_weight_f32(float *d_w, float *d_b, const float *d_out, const float *in,
                                          const float *attn, const float *w, int n, int s, int d)
{
    size_t i, t, f;
    (void)w;
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(attn);
    BT_REQUIRE(bt_sizes_ok(n, s, d, 1), BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)n; ++i) {
        const float *x = in + i * (size_t)s * (size_t)d, *a = attn + i * (size_t)s, *dy = d_out + i * (size_t)d;
        float m = 0.0f, db = 0.0f;
        for (t = 0; t < (size_t)s; ++t) m += a[t] * dot(x + t * (size_t)d, dy, d);
        for (t = 0; t < (size_t)s; ++t) {
            const float dz = a[t] * (dot(x + t * (size_t)d, dy, d) - m);
            if (d_w)
                for (f = 0; f < (size_t)d; ++f) d_w[f] += dz * x[t * (size_t)d + f];
            db += dz;
        }
        if (d_b) d_b[0] += db;
    }
    return BT_OK;
}

bt_status bt_drop_path_forward_f32(float *out, uint8_t *keep, const float *in, int n, int per, float p,
                                   bt_rng *rng)
{
    size_t i, j;
    uint32_t threshold;
    float scale;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(keep);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(rng);
    BT_REQUIRE(bt_sizes_ok(n, per, 1, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE(p >= 0.0f && p < 1.0f, BT_ERR_BAD_PARAM);
    threshold = (uint32_t)(p * 16777216.0f);
    scale = 1.0f / (1.0f - p);
    for (i = 0; i < (size_t)n; ++i) {
        keep[i] = (uint8_t)((bt_rng_next_u32(rng) >> 8) >= threshold);
        for (j = 0; j < (size_t)per; ++j)
            out[i * (size_t)per + j] = keep[i] ? in[i * (size_t)per + j] * scale : 0.0f;
    }
    return BT_OK;
}

bt_status bt_drop_path_backward_f32(float *d_in, const float *d_out, const uint8_t *keep, int n, int per, float p)
{
    size_t i, j;
    float scale;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(keep);
    BT_REQUIRE(bt_sizes_ok(n, per, 1, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE(p >= 0.0f && p < 1.0f, BT_ERR_BAD_PARAM);
    scale = 1.0f / (1.0f - p);
    for (i = 0; i < (size_t)n; ++i)
        for (j = 0; j < (size_t)per; ++j)
            d_in[i * (size_t)per + j] = keep[i] ? d_out[i * (size_t)per + j] * scale : 0.0f;
    return BT_OK;
}
