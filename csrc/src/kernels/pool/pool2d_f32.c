/* 2-D pooling and global average pooling, float32, NCHW.
 *
 * Output size uses floor (PyTorch's ceil_mode=False) and padding is at most
 * half the window (as PyTorch requires). Then every window lies inside the
 * padded input and holds at least one real input value, so average pooling
 * always divides by k_h * k_w (count_include_pad=True) and max pooling always
 * has a candidate.
 *
 * Summation order (fixed, platform-independent with -ffp-contract=off):
 *  avgpool forward      out = (0 + in over kh, kw ascending, padding skipped) / (k_h*k_w)
 *  avgpool backward     d_in = (0 + d_out over the windows holding the position,
 *                       kh, kw ascending) / (k_h*k_w)
 *  maxpool backward     d_in = 0, then += d_out for each window whose argmax is
 *                       the position, oh, ow ascending (windows overlap when
 *                       stride < k).
 *  global avgpool       out = (0 + in over hw ascending) / hw; d_in = d_out / hw.
 * Max pooling scans a window in (kh, kw) order and keeps the first maximum; a
 * NaN counts as the maximum (the first NaN wins) so that it is not dropped.
 * Backward kernels must not alias their inputs.
 *
 * Average pooling without padding (every window inside the input) sums each
 * window in a register, eight windows side by side, instead of sweeping
 * rows; with non-overlapping windows (stride = kernel, no padding) the
 * backward writes (0 + d_out) / (k_h * k_w) into each window directly. Both
 * give the bits of the orders above.
 */
#include "biotrain/pool.h"
#include "../kernel_checks.h"

static bt_status pool_out_size(int in, int k, int stride, int pad, int *out)
{
    const long long span = (long long)in + 2LL * pad;
    if (span > INT_MAX || k > span) return BT_ERR_BAD_SIZE;
    *out = (int)((span - k) / stride + 1);
    return BT_OK;
}

/* Positions o in [*lo, *hi) with 0 <= o * stride + off < len, clipped to
 * [0, n_out). */
static void tap_range(int off, int stride, int len, int n_out, int *lo, int *hi)
{
    const int last = len - 1 - off;
    int l = off >= 0 ? 0 : (-off - 1) / stride + 1;
    int h = last < 0 ? 0 : last / stride + 1;
    if (h > n_out) h = n_out;
    if (l > h) l = h;
    *lo = l;
    *hi = h;
}

bt_status bt_pool2d_check(const bt_pool2d_shape *s, int *h_out, int *w_out)
{
    int ho, wo;
    BT_REQUIRE_PTR(s);
    BT_REQUIRE(s->n > 0 && s->c > 0 && s->h_in > 0 && s->w_in > 0 && s->k_h > 0 && s->k_w > 0,
               BT_ERR_BAD_SIZE);
    BT_REQUIRE(s->stride_h >= 1 && s->stride_w >= 1 && s->pad_h >= 0 && s->pad_w >= 0 &&
                   s->pad_h <= s->k_h / 2 && s->pad_w <= s->k_w / 2,
               BT_ERR_BAD_SIZE);
    BT_TRY(pool_out_size(s->h_in, s->k_h, s->stride_h, s->pad_h, &ho));
    BT_TRY(pool_out_size(s->w_in, s->k_w, s->stride_w, s->pad_w, &wo));
    BT_REQUIRE(bt_sizes_ok(s->n, s->c, s->h_in, s->w_in) && bt_sizes_ok(s->n, s->c, ho, wo),
               BT_ERR_BAD_SIZE);
    if (h_out) *h_out = ho;
    if (w_out) *w_out = wo;
    return BT_OK;
}

/* The divisor k_h * k_w as a float (exact up to 2^24). */
static float window_size(const bt_pool2d_shape *s)
{
    return (float)((long long)s->k_h * s->k_w);
}

/* Average pooling without padding: out = (0 + in over kh, kw) / div per
 * window, sixteen windows of a row side by side (the last block of a row is
 * moved back to end at the row's end: it recomputes a few outputs to the
 * same bits). With stride = kernel along the width and a kernel of 4 or 8,
 * the stride is a constant the compiler can vectorise the loads for. */
#define AVG_ROW(SW, KW)                                                                     \
    for (ow = 0; wo >= 16; ow += 16) {                                                    \
        if (ow > wo - 16) ow = wo - 16; /* last block: back to end at wo (same values) */ \
        float acc[16];                                                                    \
        for (i = 0; i < 16; ++i) acc[i] = 0.0f;                                           \
        for (kh = 0; kh < k_h; ++kh) {                                                    \
            const float *row = top + (size_t)kh * w_in + (size_t)ow * (SW);               \
            for (kw = 0; kw < (KW); ++kw)                                                 \
                for (i = 0; i < 16; ++i) acc[i] += row[i * (SW) + kw];                    \
        }                                                                                 \
        for (i = 0; i < 16; ++i) orow[ow + i] = acc[i] / div;                             \
        if (ow + 16 >= wo) {                                                              \
            ow = wo;                                                                      \
            break;                                                                        \
        }                                                                                 \
    }
static void avgpool_forward_inside(float *restrict out, const float *restrict in,
                                   const bt_pool2d_shape *s, int ho, int wo)
{
    const int planes = s->n * s->c, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
    const int sh = s->stride_h, sw = s->stride_w;
    const size_t in_plane = (size_t)s->h_in * w_in, out_plane = (size_t)ho * wo;
    const float div = window_size(s);
    int p, oh, ow, kh, kw, i;
    for (p = 0; p < planes; ++p) {
        const float *in_p = in + (size_t)p * in_plane;
        for (oh = 0; oh < ho; ++oh) {
            const float *top = in_p + (size_t)oh * sh * w_in;
            float *orow = out + (size_t)p * out_plane + (size_t)oh * wo;
            ow = 0;
            if (sw == 8 && k_w == 8) {
                AVG_ROW(8, 8)
            } else if (sw == 4 && k_w == 4) {
                AVG_ROW(4, 4)
            } else {
                AVG_ROW(sw, k_w)
            }
            for (; ow < wo; ++ow) {
                float acc = 0.0f;
                for (kh = 0; kh < k_h; ++kh) {
                    const float *row = top + (size_t)kh * w_in + (size_t)ow * sw;
                    for (kw = 0; kw < k_w; ++kw) acc += row[kw];
                }
                orow[ow] = acc / div;
            }
        }
    }
}

bt_status bt_avgpool2d_forward_f32(float *restrict out, const float *restrict in,
                                   const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow, kh, kw;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    if (s->pad_h == 0 && s->pad_w == 0) {
        avgpool_forward_inside(out, in, s, ho, wo);
        return BT_OK;
    }
    {
        const int planes = s->n * s->c, h_in = s->h_in, w_in = s->w_in;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const float div = window_size(s);
        for (p = 0; p < planes; ++p) {
            const float *in_p = in + (size_t)p * in_plane;
            float *out_p = out + (size_t)p * out_plane;
            for (oh = 0; oh < ho; ++oh) {
                float *orow = out_p + (size_t)oh * wo;
                for (ow = 0; ow < wo; ++ow) orow[ow] = 0.0f;
                for (kh = 0; kh < s->k_h; ++kh) {
                    const int ih = oh * sh - ph + kh;
                    const float *irow;
                    if (ih < 0) continue;
                    if (ih >= h_in) break;
                    irow = in_p + (size_t)ih * w_in;
                    for (kw = 0; kw < s->k_w; ++kw) {
                        const int off = kw - pw; /* iw = ow * sw + off */
                        int lo, hi;
                        tap_range(off, sw, w_in, wo, &lo, &hi);
                        for (ow = lo; ow < hi; ++ow) orow[ow] += irow[ow * sw + off];
                    }
                }
                for (ow = 0; ow < wo; ++ow) orow[ow] = orow[ow] / div;
            }
        }
    }
    return BT_OK;
}

/* Non-overlapping windows without padding: each input position lies in at
 * most one window, so d_in = (0 + d_out of that window) / div, and 0 / div
 * where no window reaches (rows and columns left over by the floor). The
 * quotients of a window row are first written to the start of its first
 * d_in row (one vectorisable pass), then spread over the windows from the
 * last one back (a window's values land at or after its own quotient, so
 * none is overwritten before it is read), then copied to the window's other
 * rows. */
#define AVG_SPREAD(KW)                                                                      \
    for (ow = wo - 1; ow >= 0; --ow) {                                                    \
        const float v = drow[ow];                                                         \
        for (kw = 0; kw < (KW); ++kw) drow[(size_t)ow * (KW) + kw] = v;                   \
    }
static void avgpool_backward_tiled(float *restrict d_in, const float *restrict d_out,
                                   const bt_pool2d_shape *s, int ho, int wo)
{
    const int planes = s->n * s->c, h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
    const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
    const float div = window_size(s), zero = 0.0f / div;
    int p, oh, ih, iw, ow, kw;
    for (p = 0; p < planes; ++p) {
        const float *dout_p = d_out + (size_t)p * out_plane;
        float *din_p = d_in + (size_t)p * in_plane;
        for (oh = 0; oh < ho; ++oh) {
            const float *grow = dout_p + (size_t)oh * wo;
            float *drow = din_p + (size_t)oh * k_h * w_in;
            for (ow = 0; ow < wo; ++ow) drow[ow] = (0.0f + grow[ow]) / div;
            if (k_w == 8) {
                AVG_SPREAD(8)
            } else if (k_w == 4) {
                AVG_SPREAD(4)
            } else {
                AVG_SPREAD(k_w)
            }
            for (iw = wo * k_w; iw < w_in; ++iw) drow[iw] = zero;
            for (ih = 1; ih < k_h; ++ih)
                for (iw = 0; iw < w_in; ++iw) drow[(size_t)ih * w_in + iw] = drow[iw];
        }
        for (ih = ho * k_h; ih < h_in; ++ih)
            for (iw = 0; iw < w_in; ++iw) din_p[(size_t)ih * w_in + iw] = zero;
    }
}

bt_status bt_avgpool2d_backward_f32(float *restrict d_in, const float *restrict d_out,
                                    const bt_pool2d_shape *s)
{
    int ho, wo, p, ih, iw, kh, kw, ow;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    if (s->pad_h == 0 && s->pad_w == 0 && s->stride_h == s->k_h && s->stride_w == s->k_w) {
        avgpool_backward_tiled(d_in, d_out, s, ho, wo);
        return BT_OK;
    }
    {
        const int planes = s->n * s->c, h_in = s->h_in, w_in = s->w_in;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const float div = window_size(s);
        /* Gather by input row, then one division per value. */
        for (p = 0; p < planes; ++p) {
            const float *dout_p = d_out + (size_t)p * out_plane;
            float *din_p = d_in + (size_t)p * in_plane;
            for (ih = 0; ih < h_in; ++ih) {
                float *drow = din_p + (size_t)ih * w_in;
                for (iw = 0; iw < w_in; ++iw) drow[iw] = 0.0f;
                for (kh = 0; kh < s->k_h; ++kh) {
                    const int t = ih + ph - kh; /* = oh * sh */
                    const float *grow;
                    if (t < 0) break;
                    if (t % sh != 0 || t / sh >= ho) continue;
                    grow = dout_p + (size_t)(t / sh) * wo;
                    for (kw = 0; kw < s->k_w; ++kw) {
                        const int off = kw - pw; /* iw = ow * sw + off */
                        int lo, hi;
                        tap_range(off, sw, w_in, wo, &lo, &hi);
                        for (ow = lo; ow < hi; ++ow) drow[ow * sw + off] += grow[ow];
                    }
                }
                for (iw = 0; iw < w_in; ++iw) drow[iw] = drow[iw] / div;
            }
        }
    }
    return BT_OK;
}

/* Flat index (ih * w_in + iw) of the maximum of output (oh, ow)'s window in
 * one plane; the window is clipped to the input (it is never empty). */
static int32_t window_argmax(const float *plane, const bt_pool2d_shape *s, int oh, int ow)
{
    const int h0 = oh * s->stride_h - s->pad_h, w0 = ow * s->stride_w - s->pad_w;
    const int ih_lo = h0 < 0 ? 0 : h0, iw_lo = w0 < 0 ? 0 : w0;
    const int ih_hi = h0 + s->k_h < s->h_in ? h0 + s->k_h : s->h_in;
    const int iw_hi = w0 + s->k_w < s->w_in ? w0 + s->k_w : s->w_in;
    int32_t best_i = (int32_t)ih_lo * s->w_in + iw_lo;
    float best = plane[best_i];
    int ih, iw;
    for (ih = ih_lo; ih < ih_hi; ++ih) {
        const float *row = plane + (size_t)ih * s->w_in;
        for (iw = iw_lo; iw < iw_hi; ++iw) {
            const float v = row[iw];
            if (v > best || (v != v && best == best)) {
                best = v;
                best_i = (int32_t)ih * s->w_in + iw;
            }
        }
    }
    return best_i;
}

bt_status bt_maxpool2d_forward_f32(float *restrict out, int32_t *restrict argmax,
                                   const float *restrict in, const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    {
        const int planes = s->n * s->c;
        const size_t in_plane = (size_t)s->h_in * s->w_in, out_plane = (size_t)ho * wo;
        for (p = 0; p < planes; ++p) {
            const float *in_p = in + (size_t)p * in_plane;
            float *out_p = out + (size_t)p * out_plane;
            int32_t *arg_p = argmax ? argmax + (size_t)p * out_plane : NULL;
            for (oh = 0; oh < ho; ++oh) {
                for (ow = 0; ow < wo; ++ow) {
                    const int32_t i = window_argmax(in_p, s, oh, ow);
                    out_p[(size_t)oh * wo + ow] = in_p[i];
                    if (arg_p) arg_p[(size_t)oh * wo + ow] = i;
                }
            }
        }
    }
    return BT_OK;
}

bt_status bt_maxpool2d_backward_f32(float *restrict d_in, const float *restrict d_out,
                                    const int32_t *restrict argmax, const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow;
    size_t i;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(argmax);
    {
        const int planes = s->n * s->c, w_in = s->w_in;
        const size_t in_plane = (size_t)s->h_in * w_in, out_plane = (size_t)ho * wo;
        /* Every index must lie inside its own window (as the forward makes
         * it); anything else is corrupt and is refused before writing. */
        for (p = 0; p < planes; ++p) {
            const int32_t *arg_p = argmax + (size_t)p * out_plane;
            for (oh = 0; oh < ho; ++oh) {
                const int h0 = oh * s->stride_h - s->pad_h;
                for (ow = 0; ow < wo; ++ow) {
                    const int32_t a = arg_p[(size_t)oh * wo + ow];
                    const int w0 = ow * s->stride_w - s->pad_w;
                    int ih, iw;
                    if (a < 0 || (size_t)a >= in_plane) return BT_ERR_CORRUPT;
                    ih = a / w_in;
                    iw = a % w_in;
                    if (ih < h0 || ih >= h0 + s->k_h || iw < w0 || iw >= w0 + s->k_w)
                        return BT_ERR_CORRUPT;
                }
            }
        }
        for (i = 0; i < (size_t)planes * in_plane; ++i) d_in[i] = 0.0f;
        for (p = 0; p < planes; ++p) {
            const int32_t *arg_p = argmax + (size_t)p * out_plane;
            const float *dout_p = d_out + (size_t)p * out_plane;
            float *din_p = d_in + (size_t)p * in_plane;
            for (i = 0; i < out_plane; ++i) din_p[arg_p[i]] += dout_p[i];
        }
    }
    return BT_OK;
}

bt_status bt_maxpool2d_backward_recompute_f32(float *restrict d_in, const float *restrict d_out,
                                              const float *restrict in,
                                              const bt_pool2d_shape *s)
{
    int ho, wo, p, oh, ow;
    size_t i;
    BT_TRY(bt_pool2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    {
        const int planes = s->n * s->c;
        const size_t in_plane = (size_t)s->h_in * s->w_in, out_plane = (size_t)ho * wo;
        for (i = 0; i < (size_t)planes * in_plane; ++i) d_in[i] = 0.0f;
        for (p = 0; p < planes; ++p) {
            const float *in_p = in + (size_t)p * in_plane;
            const float *dout_p = d_out + (size_t)p * out_plane;
            float *din_p = d_in + (size_t)p * in_plane;
            for (oh = 0; oh < ho; ++oh)
                for (ow = 0; ow < wo; ++ow)
                    din_p[window_argmax(in_p, s, oh, ow)] += dout_p[(size_t)oh * wo + ow];
        }
    }
    return BT_OK;
}
