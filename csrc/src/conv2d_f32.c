/* conv2d, float32: direct loops over NCHW, no im2col and no workspace.
 *
 * Summation order. Each output value is built by one fixed sequence of
 * float32 additions, the same on every platform when compiled with
 * -ffp-contract=off (vectorising across output positions keeps it, since it
 * only runs independent sequences side by side):
 *  forward          out = bias[co] (0 without bias), then += w * in for
 *                   ci (within the group), kh, kw ascending.
 *  backward_input   d_in = 0, then += d_out * w for co (within the group),
 *                   kh, kw ascending (each (co, kh, kw) reaches a given input
 *                   position through at most one output position).
 *  backward_weight  d_weight keeps its current value and gets += d_out * in
 *                   for n, oh, ow ascending; d_bias += d_out in the same
 *                   order. Samples go straight into the accumulator, so one
 *                   call over a batch gives the same bits as one call per
 *                   sample in order (micro-batch accumulation is exact).
 * Taps that fall into the zero padding are skipped, not added as zeros.
 *
 * The loops keep the contiguous output (or input) row innermost and compute,
 * once per tap, the range of positions whose tap lies inside the input, so
 * the inner loop has no bounds test.
 */
#include "biotrain/kernels_f32.h"
#include "kernel_checks.h"

/* Output extent of one spatial axis. The padded extent must fit in an int so
 * that all index arithmetic below stays in int. */
static bt_status conv_out_size(int in, int k, int stride, int pad, int dil, int *out)
{
    const long long span = (long long)in + 2LL * pad;
    const long long field = (long long)dil * (k - 1) + 1;
    if (span > INT_MAX || field > span) return BT_ERR_BAD_SIZE;
    *out = (int)((span - field) / stride + 1);
    return BT_OK;
}

/* Positions o in [*lo, *hi) with 0 <= o * stride + off < len, clipped to
 * [0, n_out). Written to avoid overflow for any stride. */
static void tap_range(int off, int stride, int len, int n_out, int *lo, int *hi)
{
    const int last = len - 1 - off; /* largest allowed o * stride */
    int l = off >= 0 ? 0 : (-off - 1) / stride + 1;
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

bt_status bt_conv2d_check(const bt_conv2d_shape *s, int *h_out, int *w_out)
{
    int ho, wo;
    BT_REQUIRE_PTR(s);
    BT_REQUIRE(s->n > 0 && s->c_in > 0 && s->h_in > 0 && s->w_in > 0 && s->c_out > 0 &&
                   s->k_h > 0 && s->k_w > 0,
               BT_ERR_BAD_SIZE);
    BT_REQUIRE(s->stride_h >= 1 && s->stride_w >= 1 && s->dil_h >= 1 && s->dil_w >= 1 &&
                   s->pad_h >= 0 && s->pad_w >= 0,
               BT_ERR_BAD_SIZE);
    /* groups < 1 divides nothing either. */
    BT_REQUIRE(s->groups >= 1 && s->c_in % s->groups == 0 && s->c_out % s->groups == 0,
               BT_ERR_GROUPS);
    BT_TRY(conv_out_size(s->h_in, s->k_h, s->stride_h, s->pad_h, s->dil_h, &ho));
    BT_TRY(conv_out_size(s->w_in, s->k_w, s->stride_w, s->pad_w, s->dil_w, &wo));
    BT_REQUIRE(bt_sizes_ok(s->n, s->c_in, s->h_in, s->w_in) &&
                   bt_sizes_ok(s->n, s->c_out, ho, wo) &&
                   bt_sizes_ok(s->c_out, s->c_in / s->groups, s->k_h, s->k_w),
               BT_ERR_BAD_SIZE);
    if (h_out) *h_out = ho;
    if (w_out) *w_out = wo;
    return BT_OK;
}

bt_status bt_conv2d_forward_f32(float *restrict out, const float *restrict in,
                                const float *restrict weight, const float *restrict bias,
                                const bt_conv2d_shape *s)
{
    int ho, wo, n, co, oh, ow, ci, kh, kw;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(weight);
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        for (n = 0; n < s->n; ++n) {
            for (co = 0; co < s->c_out; ++co) {
                const float *in_g = in + ((size_t)n * s->c_in + (size_t)(co / cog) * cig) * in_plane;
                const float *w_co = weight + (size_t)co * cig * taps;
                float *out_c = out + ((size_t)n * s->c_out + co) * out_plane;
                const float b = bias ? bias[co] : 0.0f;
                for (oh = 0; oh < ho; ++oh) {
                    float *orow = out_c + (size_t)oh * wo;
                    const int ih0 = oh * sh - ph;
                    for (ow = 0; ow < wo; ++ow) orow[ow] = b;
                    for (ci = 0; ci < cig; ++ci) {
                        const float *in_c = in_g + (size_t)ci * in_plane;
                        const float *w_c = w_co + (size_t)ci * taps;
                        for (kh = 0; kh < k_h; ++kh) {
                            const int ih = ih0 + kh * dh;
                            const float *irow;
                            if (ih < 0) continue;
                            if (ih >= h_in) break;
                            irow = in_c + (size_t)ih * w_in;
                            for (kw = 0; kw < k_w; ++kw) {
                                const int off = kw * dw - pw; /* iw = ow * sw + off */
                                const float wv = w_c[kh * k_w + kw];
                                int lo, hi;
                                tap_range(off, sw, w_in, wo, &lo, &hi);
                                if (lo >= hi) continue;
                                if (sw == 1) {
                                    const float *src = irow + (lo + off);
                                    float *dst = orow + lo;
                                    const int m = hi - lo;
                                    int i;
                                    for (i = 0; i < m; ++i) dst[i] += wv * src[i];
                                } else {
                                    for (ow = lo; ow < hi; ++ow)
                                        orow[ow] += wv * irow[ow * sw + off];
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_conv2d_backward_input_f32(float *restrict d_in, const float *restrict d_out,
                                       const float *restrict weight, const bt_conv2d_shape *s)
{
    int ho, wo, n, ci, ih, iw, co, kh, kw, ow;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(weight);
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        /* Gather by input row: each d_in row is owned by one iteration and
         * receives its terms in the documented order. */
        for (n = 0; n < s->n; ++n) {
            for (ci = 0; ci < s->c_in; ++ci) {
                const int g = ci / cig, cl = ci % cig;
                float *d_in_c = d_in + ((size_t)n * s->c_in + ci) * in_plane;
                for (ih = 0; ih < h_in; ++ih) {
                    float *drow = d_in_c + (size_t)ih * w_in;
                    for (iw = 0; iw < w_in; ++iw) drow[iw] = 0.0f;
                    for (co = g * cog; co < (g + 1) * cog; ++co) {
                        const float *dout_c = d_out + ((size_t)n * s->c_out + co) * out_plane;
                        const float *w_c = weight + ((size_t)co * cig + cl) * taps;
                        for (kh = 0; kh < k_h; ++kh) {
                            const int t = ih + ph - kh * dh; /* = oh * sh */
                            const float *grow;
                            int oh;
                            if (t < 0) break;
                            if (t % sh != 0) continue;
                            oh = t / sh;
                            if (oh >= ho) continue;
                            grow = dout_c + (size_t)oh * wo;
                            for (kw = 0; kw < k_w; ++kw) {
                                const int off = kw * dw - pw; /* iw = ow * sw + off */
                                const float wv = w_c[kh * k_w + kw];
                                int lo, hi;
                                tap_range(off, sw, w_in, wo, &lo, &hi);
                                if (lo >= hi) continue;
                                if (sw == 1) {
                                    float *dst = drow + (lo + off);
                                    const float *src = grow + lo;
                                    const int m = hi - lo;
                                    int i;
                                    for (i = 0; i < m; ++i) dst[i] += src[i] * wv;
                                } else {
                                    for (ow = lo; ow < hi; ++ow)
                                        drow[ow * sw + off] += grow[ow] * wv;
                                }
                            }
                        }
                    }
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_conv2d_backward_weight_f32(float *restrict d_weight, float *restrict d_bias,
                                        const float *restrict d_out, const float *restrict in,
                                        const bt_conv2d_shape *s)
{
    int ho, wo, n, co, cl, kh, kw, oh, ow;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_weight);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        for (n = 0; n < s->n; ++n) {
            for (co = 0; co < s->c_out; ++co) {
                const float *dout_c = d_out + ((size_t)n * s->c_out + co) * out_plane;
                const float *in_g = in + ((size_t)n * s->c_in + (size_t)(co / cog) * cig) * in_plane;
                if (d_bias) {
                    float acc = d_bias[co];
                    size_t i;
                    for (i = 0; i < out_plane; ++i) acc += dout_c[i];
                    d_bias[co] = acc;
                }
                for (cl = 0; cl < cig; ++cl) {
                    const float *in_c = in_g + (size_t)cl * in_plane;
                    float *dw_c = d_weight + ((size_t)co * cig + cl) * taps;
                    for (kh = 0; kh < k_h; ++kh) {
                        for (kw = 0; kw < k_w; ++kw) {
                            const int off = kw * dw - pw; /* iw = ow * sw + off */
                            float acc = dw_c[kh * k_w + kw];
                            int lo, hi;
                            tap_range(off, sw, w_in, wo, &lo, &hi);
                            for (oh = 0; oh < ho; ++oh) {
                                const int ih = oh * sh - ph + kh * dh;
                                const float *grow = dout_c + (size_t)oh * wo;
                                const float *irow;
                                if (ih < 0) continue;
                                if (ih >= h_in) break;
                                irow = in_c + (size_t)ih * w_in;
                                for (ow = lo; ow < hi; ++ow) acc += grow[ow] * irow[ow * sw + off];
                            }
                            dw_c[kh * k_w + kw] = acc;
                        }
                    }
                }
            }
        }
    }
    return BT_OK;
}
