/* BatchNorm, float32: training forward (batch statistics), eval forward
 * (running statistics), backward_input, backward_weight.
 *
 * Layout: in/out [n, c, hw]; channel ch owns the n runs of hw values starting
 * at (s * c + ch) * hw. Statistics are per channel over m = n * hw values,
 * two passes (mean, then the squared deviations from it, with the correction
 * of the corrected two-pass algorithm). Only mean and
 * rstd = 1 / sqrt(var + eps) are saved for the backward, 2 floats per channel.
 *
 * Summation order: every reduction runs over its channel's terms in the order
 * (sample, position) through the blocked sum of blocked_sum.h.
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; a size not
 * positive or n*c*hw above INT_MAX -> BT_ERR_BAD_SIZE (training also needs
 * n*hw >= 2, as PyTorch does: the unbiased variance of one value is
 * undefined); eps not finite positive, momentum outside [0, 1], or (eval) a
 * running variance with var + eps <= 0 -> BT_ERR_BAD_PARAM. Nothing is
 * written unless every check passes. */
#include <stddef.h>
#include "biotrain/norm.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

/* out = (in - mu) * (r * w) + b over channel ch; weight/bias may be NULL. */
static void normalize_channel(float *out, const float *in, const float *weight, const float *bias,
                              size_t n, size_t c, size_t hw, size_t ch, float mu, float r)
{
    const float sc = weight ? r * weight[ch] : r;
    size_t s, i;
    for (s = 0; s < n; ++s) {
        const size_t off = (s * c + ch) * hw;
        if (bias) {
            const float sh = bias[ch];
            for (i = 0; i < hw; ++i) out[off + i] = (in[off + i] - mu) * sc + sh;
        } else {
            for (i = 0; i < hw; ++i) out[off + i] = (in[off + i] - mu) * sc;
        }
    }
}

/* running_mean and running_var are independent and may be NULL (not
 * tracked). out may alias in: a channel is written after its reductions. */
bt_status bt_batchnorm_forward_train_f32(float *out, float *mean, float *rstd,
                                         float *running_mean, float *running_var,
                                         const float *in, const float *weight,
                                         const float *bias, int n, int c, int hw,
                                         float momentum, float eps)
{
    size_t ch, s, i, m;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE((long long)n * hw >= 2, BT_ERR_BAD_SIZE);
    BT_REQUIRE(eps > 0.0f && bt_isfinitef(eps), BT_ERR_BAD_PARAM);
    BT_REQUIRE(momentum >= 0.0f && momentum <= 1.0f, BT_ERR_BAD_PARAM);

    m = (size_t)n * (size_t)hw;
    for (ch = 0; ch < (size_t)c; ++ch) {
        bt_bsum acc, dev;
        float mu, sd, ssq, r;

        bt_bsum_init(&acc);
        for (s = 0; s < (size_t)n; ++s) {
            const float *x = in + (s * (size_t)c + ch) * (size_t)hw;
            for (i = 0; i < (size_t)hw; ++i) bt_bsum_add(&acc, x[i]);
        }
        mu = bt_bsum_get(&acc) / (float)m;

        /* Corrected two-pass (Chan, Golub, LeVeque): the sum of the
         * deviations from the first-pass mean, exactly 0 in exact arithmetic,
         * corrects both that mean and the sum of squares. */
        bt_bsum_init(&acc);
        bt_bsum_init(&dev);
        for (s = 0; s < (size_t)n; ++s) {
            const float *x = in + (s * (size_t)c + ch) * (size_t)hw;
            for (i = 0; i < (size_t)hw; ++i) {
                const float d = x[i] - mu;
                bt_bsum_add(&dev, d);
                bt_bsum_add(&acc, d * d);
            }
        }
        sd = bt_bsum_get(&dev);
        ssq = bt_bsum_get(&acc) - sd * (sd / (float)m);
        if (ssq < 0.0f) ssq = 0.0f; /* rounding, for a (nearly) constant channel */
        mu = mu + sd / (float)m;
        r = 1.0f / bt_sqrtf(ssq / (float)m + eps);
        mean[ch] = mu;
        rstd[ch] = r;
        /* The running variance is unbiased, the normalising one biased (PyTorch). */
        if (running_mean)
            running_mean[ch] = (1.0f - momentum) * running_mean[ch] + momentum * mu;
        if (running_var)
            running_var[ch] = (1.0f - momentum) * running_var[ch] + momentum * (ssq / (float)(m - 1));
        normalize_channel(out, in, weight, bias, (size_t)n, (size_t)c, (size_t)hw, ch, mu, r);
    }
    return BT_OK;
}

/* out may alias in. */
bt_status bt_batchnorm_forward_eval_f32(float *out, const float *in, const float *running_mean,
                                        const float *running_var, const float *weight,
                                        const float *bias, int n, int c, int hw, float eps)
{
    size_t ch;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(running_mean);
    BT_REQUIRE_PTR(running_var);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE(eps > 0.0f && bt_isfinitef(eps), BT_ERR_BAD_PARAM);
    /* A corrupt running variance would give NaN everywhere: refuse it first. */
    for (ch = 0; ch < (size_t)c; ++ch)
        BT_REQUIRE(running_var[ch] + eps > 0.0f, BT_ERR_BAD_PARAM);

    for (ch = 0; ch < (size_t)c; ++ch) {
        const float r = 1.0f / bt_sqrtf(running_var[ch] + eps);
        normalize_channel(out, in, weight, bias, (size_t)n, (size_t)c, (size_t)hw, ch,
                          running_mean[ch], r);
    }
    return BT_OK;
}

/* With g = d_out * w and xhat = (x - mean) * rstd, per channel over (n, hw):
 *   d_in = rstd * (g - mean(g) - xhat * mean(g * xhat)).
 * A channel is reduced completely before any of it is written, and d_in[i]
 * depends only on d_out[i], in[i] and the channel sums, so d_in may alias in
 * or d_out. weight may be NULL (w = 1). */
bt_status bt_batchnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight, int n, int c, int hw)
{
    size_t ch, s, i, m;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);

    m = (size_t)n * (size_t)hw;
    for (ch = 0; ch < (size_t)c; ++ch) {
        const float mu = mean[ch], r = rstd[ch];
        const float w = weight ? weight[ch] : 1.0f;
        bt_bsum sg, sgx;
        float a, b;

        bt_bsum_init(&sg);
        bt_bsum_init(&sgx);
        for (s = 0; s < (size_t)n; ++s) {
            const size_t off = (s * (size_t)c + ch) * (size_t)hw;
            for (i = off; i < off + (size_t)hw; ++i) {
                const float g = d_out[i] * w;
                bt_bsum_add(&sg, g);
                bt_bsum_add(&sgx, g * ((in[i] - mu) * r));
            }
        }
        a = bt_bsum_get(&sg) / (float)m;
        b = bt_bsum_get(&sgx) / (float)m;

        for (s = 0; s < (size_t)n; ++s) {
            const size_t off = (s * (size_t)c + ch) * (size_t)hw;
            for (i = off; i < off + (size_t)hw; ++i) {
                const float g = d_out[i] * w;
                const float xh = (in[i] - mu) * r;
                d_in[i] = ((g - a) - xh * b) * r;
            }
        }
    }
    return BT_OK;
}

/* d_weight[ch] += sum of d_out * xhat; d_bias[ch] += sum of d_out. Either
 * output may be NULL, not both: a call that computes nothing is a caller
 * error. */
bt_status bt_batchnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw)
{
    size_t ch, s, i;
    BT_REQUIRE(d_weight != NULL || d_bias != NULL, BT_ERR_NULL_POINTER);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);

    for (ch = 0; ch < (size_t)c; ++ch) {
        const float mu = mean[ch], r = rstd[ch];
        bt_bsum sw, sb;
        bt_bsum_init(&sw);
        bt_bsum_init(&sb);
        for (s = 0; s < (size_t)n; ++s) {
            const size_t off = (s * (size_t)c + ch) * (size_t)hw;
            for (i = off; i < off + (size_t)hw; ++i) {
                bt_bsum_add(&sw, d_out[i] * ((in[i] - mu) * r));
                bt_bsum_add(&sb, d_out[i]);
            }
        }
        if (d_weight) d_weight[ch] += bt_bsum_get(&sw);
        if (d_bias) d_bias[ch] += bt_bsum_get(&sb);
    }
    return BT_OK;
}
