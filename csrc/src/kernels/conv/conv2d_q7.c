/* conv2d, q7: direct loops over NCHW with int32 accumulators.
 *
 * Each output (or input-gradient) value is one exact int32 dot product,
 * rounded once into its int8 result (conv.h, qmath.h). The worst case of
 * every accumulator is checked before anything is written, so no sum can
 * wrap. Weight gradients sum over positions: int32 runs of at most
 * RUN_MAX products, added into int64, then rounded once into the int32
 * gradient accumulator.
 *
 * The split (biotrain/port.h): forward and weight gradient hand each worker a
 * range of output channels, the input gradient a range of input channels, so
 * no element is written by two workers; each worker counts its saturations in
 * its own bt_q_stats, merged after the join (a sum and a max: the same in any
 * order). One worker runs the same loops as before. */
#include "biotrain/conv.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"
#include "biotrain/port.h"

/* 131071 * 128 * 128 < 2^31 - 1: an int32 run of this many int8 products cannot overflow. */
#define RUN_MAX 131071
/* Outputs accumulated together in an int32 run on the stack (512 bytes). */
#define CHUNK 128

/* Per-worker statistics of a split kernel: zeroed before, merged into st after. */
typedef struct {
    bt_q_stats w[BT_PORT_MAX_WORKERS];
    int on;
} split_stats;

static void stats_init(split_stats *ss, const bt_q_stats *st)
{
    int k;
    ss->on = st != NULL;
    for (k = 0; k < BT_PORT_MAX_WORKERS; ++k) ss->w[k].saturated = ss->w[k].absmax = 0;
}

static bt_q_stats *stats_of(split_stats *ss, int worker) { return ss->on ? &ss->w[worker] : NULL; }

static void stats_merge(bt_q_stats *st, const split_stats *ss)
{
    int k;
    if (!st) return;
    for (k = 0; k < BT_PORT_MAX_WORKERS; ++k) {
        st->saturated += ss->w[k].saturated;
        if (ss->w[k].absmax > st->absmax) st->absmax = ss->w[k].absmax;
    }
}

/* Positions o in [*lo, *hi) with 0 <= o * stride + off < len, clipped to [0, n_out). */
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

typedef struct {
    int8_t *out;
    const int8_t *in, *weight;
    const int32_t *bias;
    int bshift, oshift;
    const bt_conv2d_shape *s;
    int ho, wo;
    split_stats ss;
} fwd_job;

/* Output channels [co_b, co_e) of every sample. */
static void fwd_range(void *arg, int co_b, int co_e, int worker)
{
    fwd_job *j = (fwd_job *)arg;
    const bt_conv2d_shape *s = j->s;
    bt_q_stats *st = stats_of(&j->ss, worker);
    const int8_t *in = j->in, *weight = j->weight;
    const int32_t *bias = j->bias;
    int8_t *out = j->out;
    const int ho = j->ho, wo = j->wo, bshift = j->bshift, oshift = j->oshift;
    int n, co, oh, ci, kh, kw;
    int32_t acc[CHUNK];
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        for (n = 0; n < s->n; ++n) {
            for (co = co_b; co < co_e; ++co) {
                const int8_t *in_g = in + ((size_t)n * s->c_in + (size_t)(co / cog) * cig) * in_plane;
                const int8_t *w_co = weight + (size_t)co * cig * taps;
                int8_t *out_c = out + ((size_t)n * s->c_out + co) * out_plane;
                const int32_t b = bias ? (int32_t)q_shr(bias[co], bshift) : 0;
                for (oh = 0; oh < ho; ++oh) {
                    const int ih0 = oh * sh - ph;
                    int ow0, i;
                    /* a run of up to CHUNK outputs accumulates tap by tap, each tap a
                     * contiguous (or strided) slice of the input row */
                    for (ow0 = 0; ow0 < wo; ow0 += CHUNK) {
                        const int m = wo - ow0 < CHUNK ? wo - ow0 : CHUNK;
                        for (i = 0; i < m; ++i) acc[i] = b;
                        for (ci = 0; ci < cig; ++ci) {
                            const int8_t *in_c = in_g + (size_t)ci * in_plane;
                            const int8_t *w_c = w_co + (size_t)ci * taps;
                            for (kh = 0; kh < k_h; ++kh) {
                                const int ih = ih0 + kh * dh;
                                const int8_t *irow;
                                if (ih < 0) continue;
                                if (ih >= h_in) break;
                                irow = in_c + (size_t)ih * w_in;
                                for (kw = 0; kw < k_w; ++kw) {
                                    const int off = kw * dw - pw; /* iw = ow * sw + off */
                                    const int32_t wv = w_c[kh * k_w + kw];
                                    int lo, hi, o;
                                    tap_range(off, sw, w_in, wo, &lo, &hi);
                                    if (lo < ow0) lo = ow0;
                                    if (hi > ow0 + m) hi = ow0 + m;
                                    if (sw == 1) {
                                        const int8_t *src = irow + off;
                                        for (o = lo; o < hi; ++o) acc[o - ow0] += wv * src[o];
                                    } else {
                                        for (o = lo; o < hi; ++o) acc[o - ow0] += wv * irow[o * sw + off];
                                    }
                                }
                            }
                        }
                        for (i = 0; i < m; ++i) out_c[(size_t)oh * wo + ow0 + i] = bt_q_narrow7(acc[i], oshift, st);
                    }
                }
            }
        }
    }
}

bt_status bt_conv2d_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                               int in_frac, const int8_t *weight, int w_frac, const int32_t *bias,
                               int bias_frac, const bt_conv2d_shape *s)
{
    int ho, wo, co;
    fwd_job job;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(weight);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac) && bt_q_frac_ok(w_frac) &&
                   (!bias || bt_q_frac_ok(bias_frac)),
               BT_ERR_BAD_PARAM);
    {
        const int cig = s->c_in / s->groups;
        const int acc_frac = in_frac + w_frac, bshift = bias_frac - acc_frac;
        const int oshift = acc_frac - out_frac;
        const int64_t worst = (int64_t)cig * s->k_h * s->k_w * BT_Q7_ABS * BT_Q7_ABS;
        if (worst > BT_Q31_MAX) return BT_ERR_OVERFLOW;
        if (bias)
            for (co = 0; co < s->c_out; ++co) {
                int64_t b = q_shr(bias[co], bshift);
                if ((b < 0 ? -b : b) > BT_Q31_MAX - worst) return BT_ERR_OVERFLOW;
            }
        job.out = out;
        job.in = in;
        job.weight = weight;
        job.bias = bias;
        job.bshift = bshift;
        job.oshift = oshift;
        job.s = s;
        job.ho = ho;
        job.wo = wo;
        stats_init(&job.ss, st);
        bt_port_parallel_for(s->c_out, fwd_range, &job);
        stats_merge(st, &job.ss);
    }
    return BT_OK;
}

typedef struct {
    int8_t *d_in;
    const int8_t *d_out, *weight;
    int oshift;
    const bt_conv2d_shape *s;
    int ho, wo;
    split_stats ss;
} bin_job;

/* Input channels [ci_b, ci_e) of every sample. */
static void bin_range(void *arg, int ci_b, int ci_e, int worker)
{
    bin_job *j = (bin_job *)arg;
    const bt_conv2d_shape *s = j->s;
    bt_q_stats *st = stats_of(&j->ss, worker);
    int8_t *d_in = j->d_in;
    const int8_t *d_out = j->d_out, *weight = j->weight;
    const int ho = j->ho, wo = j->wo, oshift = j->oshift;
    int n, ci, ih, co, kh, kw;
    int32_t acc[CHUNK];
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        /* Gather: each run of up to CHUNK d_in values of a row sums over (co, kh, kw). */
        for (n = 0; n < s->n; ++n) {
            for (ci = ci_b; ci < ci_e; ++ci) {
                const int g = ci / cig, cl = ci % cig;
                int8_t *d_in_c = d_in + ((size_t)n * s->c_in + ci) * in_plane;
                const int8_t *d_out_g = d_out + ((size_t)n * s->c_out + (size_t)g * cog) * out_plane;
                const int8_t *w_g = weight + ((size_t)g * cog * cig + cl) * taps;
                for (ih = 0; ih < h_in; ++ih) {
                    int iw0, i;
                    for (iw0 = 0; iw0 < w_in; iw0 += CHUNK) {
                        const int m = w_in - iw0 < CHUNK ? w_in - iw0 : CHUNK;
                        for (i = 0; i < m; ++i) acc[i] = 0;
                        for (co = 0; co < cog; ++co) {
                            const int8_t *dout_c = d_out_g + (size_t)co * out_plane;
                            const int8_t *w_c = w_g + (size_t)co * cig * taps;
                            for (kh = 0; kh < k_h; ++kh) {
                                const int t = ih + ph - kh * dh; /* = oh * sh */
                                const int8_t *grow;
                                int oh;
                                if (t < 0) break;
                                if (t % sh != 0) continue;
                                oh = t / sh;
                                if (oh >= ho) continue;
                                grow = dout_c + (size_t)oh * wo;
                                for (kw = 0; kw < k_w; ++kw) {
                                    const int32_t wv = w_c[kh * k_w + kw];
                                    const int off = pw - kw * dw; /* ow * sw = iw + off */
                                    int lo, hi, iw;
                                    if (sw == 1) {
                                        /* 0 <= iw + off < wo */
                                        lo = -off > iw0 ? -off : iw0;
                                        hi = wo - off < iw0 + m ? wo - off : iw0 + m;
                                        for (iw = lo; iw < hi; ++iw) acc[iw - iw0] += wv * grow[iw + off];
                                    } else {
                                        for (iw = iw0; iw < iw0 + m; ++iw) {
                                            const int u = iw + off;
                                            if (u < 0 || u % sw != 0 || u / sw >= wo) continue;
                                            acc[iw - iw0] += wv * grow[u / sw];
                                        }
                                    }
                                }
                            }
                        }
                        for (i = 0; i < m; ++i) d_in_c[(size_t)ih * w_in + iw0 + i] = bt_q_narrow7(acc[i], oshift, st);
                    }
                }
            }
        }
    }
}

bt_status bt_conv2d_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                      const int8_t *d_out, int d_out_frac, const int8_t *weight,
                                      int w_frac, const bt_conv2d_shape *s)
{
    int ho, wo;
    bin_job job;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(weight);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(w_frac),
               BT_ERR_BAD_PARAM);
    if ((int64_t)(s->c_out / s->groups) * s->k_h * s->k_w * BT_Q7_ABS * BT_Q7_ABS > BT_Q31_MAX)
        return BT_ERR_OVERFLOW;
    job.d_in = d_in;
    job.d_out = d_out;
    job.weight = weight;
    job.oshift = d_out_frac + w_frac - d_in_frac;
    job.s = s;
    job.ho = ho;
    job.wo = wo;
    stats_init(&job.ss, st);
    bt_port_parallel_for(s->c_in, bin_range, &job);
    stats_merge(st, &job.ss);
    return BT_OK;
}

typedef struct {
    int32_t *d_weight, *d_bias;
    const int8_t *d_out, *in;
    int wshift, bshift;
    const bt_conv2d_shape *s;
    int ho, wo;
    split_stats ss;
} bw_job;

/* Weights and bias of output channels [co_b, co_e). */
static void bw_range(void *arg, int co_b, int co_e, int worker)
{
    bw_job *j = (bw_job *)arg;
    const bt_conv2d_shape *s = j->s;
    bt_q_stats *st = stats_of(&j->ss, worker);
    int32_t *d_weight = j->d_weight, *d_bias = j->d_bias;
    const int8_t *d_out = j->d_out, *in = j->in;
    const int ho = j->ho, wo = j->wo, wshift = j->wshift;
    int n, co, ci, kh, kw, oh, ow;
    {
        const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
        const int h_in = s->h_in, w_in = s->w_in, k_h = s->k_h, k_w = s->k_w;
        const int sh = s->stride_h, sw = s->stride_w, ph = s->pad_h, pw = s->pad_w;
        const int dh = s->dil_h, dw = s->dil_w;
        const size_t in_plane = (size_t)h_in * w_in, out_plane = (size_t)ho * wo;
        const size_t taps = (size_t)k_h * k_w;
        for (co = co_b; co < co_e; ++co) {
            const int g = co / cog;
            for (ci = 0; ci < cig; ++ci) {
                for (kh = 0; kh < k_h; ++kh) {
                    for (kw = 0; kw < k_w; ++kw) {
                        const int off = kw * dw - pw; /* iw = ow * sw + off */
                        int64_t sum = 0;
                        int lo, hi;
                        int32_t *dst = d_weight + ((size_t)co * cig + ci) * taps + (size_t)kh * k_w + kw;
                        tap_range(off, sw, w_in, wo, &lo, &hi);
                        for (n = 0; n < s->n && lo < hi; ++n) {
                            const int8_t *dout_c = d_out + ((size_t)n * s->c_out + co) * out_plane;
                            const int8_t *in_c = in + ((size_t)n * s->c_in + (size_t)g * cig + ci) * in_plane;
                            for (oh = 0; oh < ho; ++oh) {
                                const int ih = oh * sh - ph + kh * dh;
                                const int8_t *grow, *irow;
                                if (ih < 0 || ih >= h_in) continue;
                                grow = dout_c + (size_t)oh * wo;
                                irow = in_c + (size_t)ih * w_in;
                                for (ow = lo; ow < hi;) {
                                    const int end = hi - ow > RUN_MAX ? ow + RUN_MAX : hi;
                                    int32_t run = 0;
                                    if (sw == 1) {
                                        for (; ow < end; ++ow) run += (int32_t)grow[ow] * irow[ow + off];
                                    } else {
                                        for (; ow < end; ++ow) run += (int32_t)grow[ow] * irow[ow * sw + off];
                                    }
                                    sum += run;
                                }
                            }
                        }
                        *dst = bt_q_acc32(*dst, sum, wshift, st);
                    }
                }
            }
            if (d_bias) {
                int64_t sum = 0;
                size_t i;
                for (n = 0; n < s->n; ++n) {
                    const int8_t *dout_c = d_out + ((size_t)n * s->c_out + co) * out_plane;
                    for (i = 0; i < out_plane; ++i) sum += dout_c[i];
                }
                d_bias[co] = bt_q_acc32(d_bias[co], sum, j->bshift, st);
            }
        }
    }
}

bt_status bt_conv2d_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias, int db_frac,
                                       bt_q_stats *st, const int8_t *d_out, int d_out_frac,
                                       const int8_t *in, int in_frac, const bt_conv2d_shape *s)
{
    int ho, wo;
    bw_job job;
    BT_TRY(bt_conv2d_check(s, &ho, &wo));
    BT_REQUIRE_PTR(d_weight);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_q_frac_ok(dw_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(in_frac) &&
                   (!d_bias || bt_q_frac_ok(db_frac)),
               BT_ERR_BAD_PARAM);
    job.d_weight = d_weight;
    job.d_bias = d_bias;
    job.d_out = d_out;
    job.in = in;
    job.wshift = d_out_frac + in_frac - dw_frac;
    job.bshift = d_out_frac - db_frac;
    job.s = s;
    job.ho = ho;
    job.wo = wo;
    stats_init(&job.ss, st);
    bt_port_parallel_for(s->c_out, bw_range, &job);
    stats_merge(st, &job.ss);
    return BT_OK;
}
