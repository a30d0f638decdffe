/* Average and max pooling, q7. Average pooling divides the exact window sum
 * by k_h*k_w with one rounding (bt_q_div_round after the change of scale),
 * so a window of 5 is as exact as a window of 8. */
#include "biotrain/pool.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

/* round(sum * 2^(out_frac - in_frac) / k) in one rounding. The caller has
 * checked that k << shift stays below 2^62. */
static inline int64_t scaled_mean(int64_t sum, int shift, int64_t k)
{
    if (shift >= 0) return q_div(sum, k << shift);
    return q_div(q_shr(sum, shift), k);
}

static bt_status div_ok(int64_t k, int shift)
{
    BT_REQUIRE(shift <= 0 || bt_q_bitlen((uint64_t)k) + shift <= 61, BT_ERR_OVERFLOW);
    return BT_OK;
}

bt_status bt_avgpool2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                                  int in_frac, const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow, kh, kw;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    {
        const int64_t k = (int64_t)s->k_h * s->k_w;
        const int shift = in_frac - out_frac;
        BT_TRY(div_ok(k, shift));
        for (p = 0; p < s->n * s->c; ++p) {
            const int8_t *plane = in + (size_t)p * s->h_in * s->w_in;
            for (oh = 0; oh < ho; ++oh) {
                for (ow = 0; ow < wo; ++ow) {
                    int64_t sum = 0;
                    for (kh = 0; kh < s->k_h; ++kh) {
                        const int ih = oh * s->stride_h - s->pad_h + kh;
                        if (ih < 0 || ih >= s->h_in) continue;
                        for (kw = 0; kw < s->k_w; ++kw) {
                            const int iw = ow * s->stride_w - s->pad_w + kw;
                            if (iw < 0 || iw >= s->w_in) continue;
                            sum += plane[(size_t)ih * s->w_in + iw];
                        }
                    }
                    out[((size_t)p * ho + oh) * wo + ow] =
                        (int8_t)q_clamp(scaled_mean(sum, shift, k), BT_Q7_MAX, st);
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_avgpool2d_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const bt_pool2d_shape *s)
{
    int ho, wo, p, ih, iw, oh, ow;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac), BT_ERR_BAD_PARAM);
    {
        const int64_t k = (int64_t)s->k_h * s->k_w;
        const int shift = d_out_frac - d_in_frac;
        BT_TRY(div_ok(k, shift));
        /* gather: the windows covering (ih, iw) are oh with oh*sh - ph <= ih < oh*sh - ph + k_h */
        for (p = 0; p < s->n * s->c; ++p) {
            const int8_t *g = d_out + (size_t)p * ho * wo;
            for (ih = 0; ih < s->h_in; ++ih) {
                const int th = ih + s->pad_h;
                const int oh_lo = th - s->k_h + 1 <= 0 ? 0 : (th - s->k_h + s->stride_h) / s->stride_h;
                const int oh_hi = th / s->stride_h < ho - 1 ? th / s->stride_h : ho - 1;
                for (iw = 0; iw < s->w_in; ++iw) {
                    const int tw = iw + s->pad_w;
                    const int ow_lo = tw - s->k_w + 1 <= 0 ? 0 : (tw - s->k_w + s->stride_w) / s->stride_w;
                    const int ow_hi = tw / s->stride_w < wo - 1 ? tw / s->stride_w : wo - 1;
                    int64_t sum = 0;
                    for (oh = oh_lo; oh <= oh_hi; ++oh)
                        for (ow = ow_lo; ow <= ow_hi; ++ow) sum += g[(size_t)oh * wo + ow];
                    d_in[((size_t)p * s->h_in + ih) * s->w_in + iw] =
                        (int8_t)q_clamp(scaled_mean(sum, shift, k), BT_Q7_MAX, st);
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_maxpool2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, int32_t *argmax,
                                  const int8_t *in, int in_frac, const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow, kh, kw;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    for (p = 0; p < s->n * s->c; ++p) {
        const int8_t *plane = in + (size_t)p * s->h_in * s->w_in;
        for (oh = 0; oh < ho; ++oh) {
            for (ow = 0; ow < wo; ++ow) {
                int best = -1, bestv = 0;
                for (kh = 0; kh < s->k_h; ++kh) {
                    const int ih = oh * s->stride_h - s->pad_h + kh;
                    if (ih < 0 || ih >= s->h_in) continue;
                    for (kw = 0; kw < s->k_w; ++kw) {
                        const int iw = ow * s->stride_w - s->pad_w + kw;
                        const int idx = ih * s->w_in + iw;
                        if (iw < 0 || iw >= s->w_in) continue;
                        if (best < 0 || plane[idx] > bestv) {
                            best = idx;
                            bestv = plane[idx];
                        }
                    }
                }
                /* bt_pool2d_check guarantees every window holds an input */
                out[((size_t)p * ho + oh) * wo + ow] = bt_q_narrow7(bestv, in_frac - out_frac, st);
                if (argmax) argmax[((size_t)p * ho + oh) * wo + ow] = best;
            }
        }
    }
    return BT_OK;
}

bt_status bt_maxpool2d_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const int32_t *argmax, const bt_pool2d_shape *s)
{
    int ho, wo, p, ih, iw, oh, ow;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(argmax);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac), BT_ERR_BAD_PARAM);
    {
        const int plane_in = s->h_in * s->w_in;
        const int shift = d_out_frac - d_in_frac;
        for (p = 0; p < s->n * s->c * ho * wo; ++p)
            if (argmax[p] < 0 || argmax[p] >= plane_in) return BT_ERR_CORRUPT;
        /* gather over the windows that can reach (ih, iw), so d_in is written once */
        for (p = 0; p < s->n * s->c; ++p) {
            const int8_t *g = d_out + (size_t)p * ho * wo;
            const int32_t *am = argmax + (size_t)p * ho * wo;
            for (ih = 0; ih < s->h_in; ++ih) {
                const int th = ih + s->pad_h;
                const int oh_lo = th - s->k_h + 1 <= 0 ? 0 : (th - s->k_h + s->stride_h) / s->stride_h;
                const int oh_hi = th / s->stride_h < ho - 1 ? th / s->stride_h : ho - 1;
                for (iw = 0; iw < s->w_in; ++iw) {
                    const int tw = iw + s->pad_w;
                    const int ow_lo = tw - s->k_w + 1 <= 0 ? 0 : (tw - s->k_w + s->stride_w) / s->stride_w;
                    const int ow_hi = tw / s->stride_w < wo - 1 ? tw / s->stride_w : wo - 1;
                    const int idx = ih * s->w_in + iw;
                    int64_t sum = 0;
                    for (oh = oh_lo; oh <= oh_hi; ++oh)
                        for (ow = ow_lo; ow <= ow_hi; ++ow)
                            if (am[oh * wo + ow] == idx) sum += g[(size_t)oh * wo + ow];
                    d_in[(size_t)p * plane_in + idx] = bt_q_narrow7(sum, shift, st);
                }
            }
        }
    }
    return BT_OK;
}
