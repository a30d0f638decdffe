/* GroupNorm, float32: forward, backward_input, backward_weight.
 *
 * Layout: in/out [n, c, hw], so each (sample, group) block is the contiguous
 * run of m = (c / groups) * hw values starting at (s * groups + g) * m.
 * LayerNorm over (c, hw) is groups = 1; InstanceNorm is groups = c.
 *
 * Statistics: two passes over the block (mean, then the squared deviations
 * from it, with the correction of the corrected two-pass algorithm), not
 * E[x^2] - E[x]^2, which cancels badly when |mean| >> std.
 * Only mean and rstd = 1 / sqrt(var + eps) are saved, 2 floats per block.
 *
 * Summation order: every reduction runs over its terms in memory order as
 * lane sums (blocked_sum.h), so the result depends only on the shapes, never
 * on the platform: the statistics take the whole block as one run; the
 * input gradient one run per channel, added in channel order; the weight
 * gradient one run per sample, added in sample order straight to the
 * accumulator (micro-batches give the same bits as a whole batch).
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; a size not
 * positive or n*c*hw above INT_MAX -> BT_ERR_BAD_SIZE; groups < 1 or not
 * dividing c -> BT_ERR_GROUPS; eps not a finite positive value ->
 * BT_ERR_BAD_PARAM. Nothing is written unless every check passes. */
#include <stddef.h>
#include "biotrain/norm.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

/* The reductions, in the lane order of blocked_sum.h. */
BT_DEFINE_LANE_SUM(sum_x, a[i])
BT_DEFINE_LANE_SUM(sum_dev, a[i] - mu)
BT_DEFINE_LANE_SUM(sum_dev2, (a[i] - mu) * (a[i] - mu))
BT_DEFINE_LANE_SUM(sum_g, a[i] * w)
BT_DEFINE_LANE_SUM(sum_gxh, (a[i] * w) * ((b[i] - mu) * r))
BT_DEFINE_LANE_SUM(sum_dyxh, a[i] * ((b[i] - mu) * r))

static bt_status check_dims(int n, int c, int hw, int groups)
{
    BT_REQUIRE(bt_sizes_ok(n, c, hw, 1), BT_ERR_BAD_SIZE);
    BT_REQUIRE(groups >= 1 && c % groups == 0, BT_ERR_GROUPS);
    return BT_OK;
}

/* weight and bias are independent: either may be NULL (scale 1, shift 0).
 * out may alias in: a block is only written after both of its reductions. */
bt_status bt_groupnorm_forward_f32(float *out, float *mean, float *rstd, const float *in,
                                   const float *weight, const float *bias,
                                   int n, int c, int hw, int groups, float eps)
{
    size_t cpg, m, blk, ch, i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_REQUIRE_PTR(in);
    BT_TRY(check_dims(n, c, hw, groups));
    BT_REQUIRE(eps > 0.0f && bt_isfinitef(eps), BT_ERR_BAD_PARAM);

    cpg = (size_t)(c / groups);
    m = cpg * (size_t)hw;
    for (blk = 0; blk < (size_t)n * (size_t)groups; ++blk) {
        const float *x = in + blk * m;
        float *y = out + blk * m;
        size_t c0 = (blk % (size_t)groups) * cpg; /* first channel of the group */
        float sum = 0.0f, ssq = 0.0f, sd = 0.0f;
        float mu, var, r;

        {
            const bt_lane_args p = {x, NULL, 0.0f, 0.0f, 0.0f};
            sum_x(&p, m, &sum);
        }
        mu = sum / (float)m;

        /* Corrected two-pass (Chan, Golub, LeVeque): the sum of the
         * deviations from the first-pass mean, exactly 0 in exact arithmetic,
         * corrects both that mean (whose rounding error grows with |mean|)
         * and the variance. */
        {
            const bt_lane_args p = {x, NULL, 0.0f, mu, 0.0f};
            sum_dev(&p, m, &sd);
            sum_dev2(&p, m, &ssq);
        }
        var = (ssq - sd * (sd / (float)m)) / (float)m;
        if (var < 0.0f) var = 0.0f; /* rounding, for a (nearly) constant block */
        mu = mu + sd / (float)m;
        r = 1.0f / bt_sqrtf(var + eps);
        mean[blk] = mu;
        rstd[blk] = r;

        /* y = (x - mean) * (rstd * w) + b, channel by channel. */
        for (ch = 0; ch < cpg; ++ch) {
            const float sc = weight ? r * weight[c0 + ch] : r;
            const float *xc = x + ch * (size_t)hw;
            float *yc = y + ch * (size_t)hw;
            if (bias) {
                const float sh = bias[c0 + ch];
                for (i = 0; i < (size_t)hw; ++i) yc[i] = (xc[i] - mu) * sc + sh;
            } else {
                for (i = 0; i < (size_t)hw; ++i) yc[i] = (xc[i] - mu) * sc;
            }
        }
    }
    return BT_OK;
}

/* With g = d_out * w and xhat = (x - mean) * rstd, per block:
 *   d_in = rstd * (g - mean(g) - xhat * mean(g * xhat)).
 * Each block is reduced completely before any of it is written, and d_in[i]
 * depends only on d_out[i], in[i] and the block sums, so d_in may alias in or
 * d_out. weight may be NULL (w = 1). */
bt_status bt_groupnorm_backward_input_f32(float *d_in, const float *d_out, const float *in,
                                          const float *mean, const float *rstd,
                                          const float *weight,
                                          int n, int c, int hw, int groups)
{
    size_t cpg, m, blk, ch, i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_TRY(check_dims(n, c, hw, groups));

    cpg = (size_t)(c / groups);
    m = cpg * (size_t)hw;
    for (blk = 0; blk < (size_t)n * (size_t)groups; ++blk) {
        const float *x = in + blk * m;
        const float *dy = d_out + blk * m;
        float *dx = d_in + blk * m;
        const size_t c0 = (blk % (size_t)groups) * cpg;
        const float mu = mean[blk], r = rstd[blk];
        float sg = 0.0f, sgx = 0.0f, a, b;

        /* one run per channel (its own w), channels in order */
        for (ch = 0; ch < cpg; ++ch) {
            const float w = weight ? weight[c0 + ch] : 1.0f;
            const bt_lane_args p = {dy + ch * (size_t)hw, x + ch * (size_t)hw, w, mu, r};
            sum_g(&p, (size_t)hw, &sg);
            sum_gxh(&p, (size_t)hw, &sgx);
        }
        a = sg / (float)m;
        b = sgx / (float)m;

        for (ch = 0; ch < cpg; ++ch) {
            const float w = weight ? weight[c0 + ch] : 1.0f;
            for (i = ch * (size_t)hw; i < (ch + 1) * (size_t)hw; ++i) {
                const float g = dy[i] * w;
                const float xh = (x[i] - mu) * r;
                dx[i] = ((g - a) - xh * b) * r;
            }
        }
    }
    return BT_OK;
}

/* d_weight[ch] += sum over (sample, position) of d_out * xhat; d_bias[ch] +=
 * sum of d_out. Either output may be NULL (that parameter is absent or
 * frozen), not both: a call that computes nothing is a caller error. */
bt_status bt_groupnorm_backward_weight_f32(float *d_weight, float *d_bias, const float *d_out,
                                           const float *in, const float *mean,
                                           const float *rstd, int n, int c, int hw, int groups)
{
    size_t cpg, ch, s;
    BT_REQUIRE(d_weight != NULL || d_bias != NULL, BT_ERR_NULL_POINTER);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(mean);
    BT_REQUIRE_PTR(rstd);
    BT_TRY(check_dims(n, c, hw, groups));

    cpg = (size_t)(c / groups);
    for (ch = 0; ch < (size_t)c; ++ch) {
        /* Straight into the accumulators, one run per sample: a batch gives
         * the same bits as one call per sample in order. */
        float sw = d_weight ? d_weight[ch] : 0.0f, sb = d_bias ? d_bias[ch] : 0.0f;
        for (s = 0; s < (size_t)n; ++s) {
            const size_t blk = s * (size_t)groups + ch / cpg;
            const size_t off = (s * (size_t)c + ch) * (size_t)hw;
            const bt_lane_args p = {d_out + off, in + off, 0.0f, mean[blk], rstd[blk]};
            sum_dyxh(&p, (size_t)hw, &sw);
            sum_x(&p, (size_t)hw, &sb);
        }
        if (d_weight) d_weight[ch] = sw;
        if (d_bias) d_bias[ch] = sb;
    }
    return BT_OK;
}
