/* conv2d, float32: direct loops over NCHW, no im2col and no workspace.
 *
 * Summation order. Each output value is built by one fixed sequence of
 * float32 operations, the same on every platform when compiled with
 * -ffp-contract=off. Each "+= w * in" below is one fused multiply-add,
 * acc = bt_fmaf(w, in, acc): a single correctly rounded instruction on the
 * MCU's FPU and the host's FMA units, and exact software elsewhere:
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
 * Taps that fall into the zero padding are skipped, not added as zeros (the
 * backward_input blocks that do add w * 0 are only used where that gives
 * the same bits; see there).
 *
 * How the loops run. None of this changes the order above: the loops only
 * advance many independent sums side by side, never split one.
 *  - forward and backward_input fill a block of R output rows (R output
 *    channels of one group; for backward_input R input channels) times VB
 *    consecutive positions (R * VB <= 128; narrower blocks for narrow rows)
 *    in local accumulators, going through all terms of those outputs in the
 *    documented order before storing them. Each term's input is loaded once
 *    for R * VB sums, and the compiler keeps the block in vector registers.
 *    A block needs stride 1 along the width and every tap of its positions
 *    inside the input; the positions near the padding, and rows with a
 *    width stride, take the plain reference loop (clipped per tap, so padded
 *    taps are skipped). The last block of a row is moved back to end at the
 *    row's interior end: it recomputes a few outputs to the same bits
 *    instead of leaving a tail.
 *  - backward_weight holds R output channels times KB consecutive weights
 *    (taps) of one input channel in accumulators and runs through the
 *    positions in order. Where the block's taps are consecutive in memory
 *    (stride and dilation 1 along the width) it reads the input directly,
 *    and with one output channel per group (depthwise) the R rows are R
 *    groups side by side; otherwise (Cx1 spatial filters, pointwise convs)
 *    it first copies 16 positions of the block's taps into a tile on the
 *    stack. Positions where a tap of the block falls into the padding run
 *    per weight.
 * The blocks are written with one accumulator array per row (the REP
 * macros) because compilers vectorise that form reliably. Stack use stays
 * under 2 KiB. Cores without vector registers use the smaller blocks of
 * conv2d_f32_small.h instead (at most 16 sums, taps unrolled over a sliding
 * window of inputs in registers); they follow the same order.
 */
#include "biotrain/conv.h"
#include "../kernel_checks.h"
#include "biotrain/bt_math.h"
#include "biotrain/port.h"

/* Cores with 32 scalar float registers and no vector unit get their own
 * blocks (conv2d_f32_small.h): the same order, fewer sums in flight. Define
 * BT_CONV_SMALL_BLOCKS to 0 or 1 to choose; a host test builds both. */
#ifndef BT_CONV_SMALL_BLOCKS
#if defined(__riscv) || defined(__arm__) || defined(__thumb__)
#define BT_CONV_SMALL_BLOCKS 1
#else
#define BT_CONV_SMALL_BLOCKS 0
#endif
#endif

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
    int l, h;
    if (stride == 1) { /* the common case, without divisions */
        l = off >= 0 ? 0 : -off;
        h = last < 0 ? 0 : last + 1;
    } else {
        l = off >= 0 ? 0 : (-off - 1) / stride + 1;
        h = last < 0 ? 0 : last / stride + 1;
    }
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

/* The shape with the derived sizes, as the loops below use it. */
typedef struct {
    int n, c_in, h_in, w_in, c_out, k_h, k_w;
    int sh, sw, ph, pw, dh, dw;
    int groups, cig, cog, ho, wo;
    size_t in_plane, out_plane, taps;
} geom;

static bt_status geom_init(geom *g, const bt_conv2d_shape *s)
{
    BT_TRY(bt_conv2d_check(s, &g->ho, &g->wo));
    g->n = s->n; g->c_in = s->c_in; g->h_in = s->h_in; g->w_in = s->w_in;
    g->c_out = s->c_out; g->k_h = s->k_h; g->k_w = s->k_w;
    g->sh = s->stride_h; g->sw = s->stride_w; g->ph = s->pad_h; g->pw = s->pad_w;
    g->dh = s->dil_h; g->dw = s->dil_w;
    g->groups = s->groups;
    g->cig = s->c_in / s->groups;
    g->cog = s->c_out / s->groups;
    g->in_plane = (size_t)s->h_in * s->w_in;
    g->out_plane = (size_t)g->ho * g->wo;
    g->taps = (size_t)s->k_h * s->k_w;
    return BT_OK;
}

#if !BT_CONV_SMALL_BLOCKS
/* Rows per block: the largest of 8, 4, 2, 1 not above what is left. */
static int block_rows(int left) { return left >= 8 ? 8 : left >= 4 ? 4 : left >= 2 ? 2 : 1; }

/* Positions per block for R rows: the widest of the compiled widths that
 * fits in `width`, 0 if none does. */
static int block_width(int R, int width)
{
    static const int widths[4][5] = {{128, 32, 8, 1, 0}, {64, 16, 4, 1, 0}, {32, 16, 8, 4, 1}, {16, 8, 4, 1, 0}};
    const int *w = widths[R == 1 ? 0 : R == 2 ? 1 : R == 4 ? 2 : 3];
    int k;
    for (k = 0; k < 5 && w[k] > 0; ++k)
        if (w[k] <= width) return w[k];
    return 0;
}

#endif

/* 1 if no value is infinite or NaN (checked on the bits, no libm). */
static int all_finite(const float *x, size_t count)
{
    size_t i;
    int ok = 1;
    for (i = 0; i < count; ++i) {
        union { float f; uint32_t u; } v;
        v.f = x[i];
        ok &= (v.u & 0x7f800000u) != 0x7f800000u;
    }
    return ok;
}

#if BT_CONV_SMALL_BLOCKS
#include "conv2d_f32_small.h"
#endif

/* X(r) for r = 0 .. R-1, written out (see the file comment). */
#define REP1(X) X(0)
#define REP2(X) X(0) X(1)
#define REP4(X) X(0) X(1) X(2) X(3)
#define REP8(X) X(0) X(1) X(2) X(3) X(4) X(5) X(6) X(7)

/* GCC unrolls short fixed-count loops completely before it vectorises
 * them, and then vectorises the unrolled statements across the rows
 * instead of along the loop; keeping the loop lets it vectorise along the
 * positions (or taps). Only a hint: the arithmetic is the same. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define KEEP_LOOP _Pragma("GCC unroll 1")
#else
#define KEEP_LOOP
#endif
#define NO_HINT

/* ================================================================ forward */

/* Reference loop for outputs [oa, ob) of one output row: orow = b, then
 * += w * in per tap (ci, kh, kw ascending), each tap clipped to the
 * positions whose input lies inside the row. */
static void fwd_row_ref(float *orow, const float *in_g, const float *w_co, float b,
                        const geom *g, int oh, int oa, int ob)
{
    const int ih0 = oh * g->sh - g->ph;
    int ci, kh, kw, ow;
    if (oa >= ob) return;
    for (ow = oa; ow < ob; ++ow) orow[ow] = b;
    for (ci = 0; ci < g->cig; ++ci) {
        const float *in_c = in_g + (size_t)ci * g->in_plane;
        const float *w_c = w_co + (size_t)ci * g->taps;
        for (kh = 0; kh < g->k_h; ++kh) {
            const int ih = ih0 + kh * g->dh;
            const float *irow;
            if (ih < 0) continue;
            if (ih >= g->h_in) break;
            irow = in_c + (size_t)ih * g->w_in;
            for (kw = 0; kw < g->k_w; ++kw) {
                const int off = kw * g->dw - g->pw; /* iw = ow * sw + off */
                const float wv = w_c[kh * g->k_w + kw];
                int lo, hi;
                tap_range(off, g->sw, g->w_in, g->wo, &lo, &hi);
                if (lo < oa) lo = oa;
                if (hi > ob) hi = ob;
                if (lo >= hi) continue;
                if (g->sw == 1) {
                    const float *src = irow + (lo + off);
                    float *dst = orow + lo;
                    const int m = hi - lo;
                    int i;
                    for (i = 0; i < m; ++i) dst[i] = bt_fmaf(wv, src[i], dst[i]);
                } else {
                    for (ow = lo; ow < hi; ++ow) orow[ow] = bt_fmaf(wv, irow[ow * g->sw + off], orow[ow]);
                }
            }
        }
    }
}

/* One block of R output channels x VB positions [ow0, ow0 + VB) of output
 * row oh, stride 1 along the width, every tap inside the input. out points
 * at (co0, oh, ow0); w_co at the weights of co0; kh runs over [kh_lo, kh_hi),
 * the rows that lie inside the input. */
#define FWD_INIT(r) acc[r][i] = b[r];
#define FWD_W(r) wv[r] = wk[(size_t)(r) * ws + kw];
#define FWD_MAC(r) acc[r][i] = bt_fmaf(wv[r], x, acc[r][i]);
#define FWD_STORE(r) for (i = 0; i < NVB; ++i) out[(size_t)(r) * g->out_plane + i] = acc[r][i];
#define FWD_BIAS(r) b[r] = bias ? bias[r] : 0.0f;
#define FWD_BLOCK(R, VB, HINT)                                                                  \
    static void fwd_block_##R##_##VB(float *out, const float *in_g, const float *w_co,       \
                                     const float *bias, const geom *g, int ih0, int kh_lo,   \
                                     int kh_hi, int ow0)                                     \
    {                                                                                         \
        enum { NVB = VB };                                                                    \
        float acc[R][VB], b[R], wv[R];                                                        \
        const size_t ws = (size_t)g->cig * g->taps;                                           \
        int i, ci, kh, kw;                                                                    \
        REP##R(FWD_BIAS)                                                                      \
        for (i = 0; i < VB; ++i) { REP##R(FWD_INIT) }                                         \
        for (ci = 0; ci < g->cig; ++ci) {                                                     \
            const float *in_c = in_g + (size_t)ci * g->in_plane;                              \
            for (kh = kh_lo; kh < kh_hi; ++kh) {                                              \
                const float *irow =                                                           \
                    in_c + (size_t)(ih0 + kh * g->dh) * g->w_in + (size_t)(ow0 - g->pw);      \
                const float *wk = w_co + (size_t)ci * g->taps + (size_t)kh * g->k_w;          \
                for (kw = 0; kw < g->k_w; ++kw) {                                             \
                    const float *src = irow + (size_t)kw * g->dw;                             \
                    REP##R(FWD_W)                                                             \
                    HINT                                                                      \
                    for (i = 0; i < VB; ++i) {                                                \
                        const float x = src[i];                                               \
                        REP##R(FWD_MAC)                                                       \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        REP##R(FWD_STORE) /* row by row: each row is one vector store */                                        \
    }
#if !BT_CONV_SMALL_BLOCKS
FWD_BLOCK(1, 128, NO_HINT)
FWD_BLOCK(1, 32, NO_HINT)
FWD_BLOCK(1, 8, KEEP_LOOP)
FWD_BLOCK(2, 64, NO_HINT)
FWD_BLOCK(2, 16, NO_HINT)
FWD_BLOCK(2, 4, KEEP_LOOP)
FWD_BLOCK(4, 32, NO_HINT)
FWD_BLOCK(4, 16, NO_HINT)
FWD_BLOCK(4, 8, KEEP_LOOP)
FWD_BLOCK(4, 4, KEEP_LOOP)
FWD_BLOCK(8, 16, NO_HINT)
FWD_BLOCK(8, 8, KEEP_LOOP)
FWD_BLOCK(8, 4, KEEP_LOOP)
FWD_BLOCK(1, 1, KEEP_LOOP)
FWD_BLOCK(2, 1, KEEP_LOOP)
FWD_BLOCK(4, 1, KEEP_LOOP)
FWD_BLOCK(8, 1, KEEP_LOOP)

static void fwd_block(int R, int VB, float *out, const float *in_g, const float *w_co,
                      const float *bias, const geom *g, int ih0, int kh_lo, int kh_hi, int ow0)
{
    switch (R * 1000 + VB) {
    case 1128: fwd_block_1_128(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 1032: fwd_block_1_32(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 1008: fwd_block_1_8(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 2064: fwd_block_2_64(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 2016: fwd_block_2_16(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 2004: fwd_block_2_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 4032: fwd_block_4_32(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 4016: fwd_block_4_16(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 4008: fwd_block_4_8(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 4004: fwd_block_4_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 8016: fwd_block_8_16(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 8008: fwd_block_8_8(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 1001: fwd_block_1_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 2001: fwd_block_2_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 4001: fwd_block_4_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 8001: fwd_block_8_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    default: fwd_block_8_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    }
}

#endif

/* One pass's arguments, handed to the workers of bt_port_parallel_for. Each
 * worker gets a range of channels (output channels for forward and
 * backward_weight, input channels for backward_input) and writes only
 * those: every output value is built by one worker in the documented order,
 * so the bits do not depend on the number of workers. */
typedef struct {
    float *out, *d_in, *d_weight, *d_bias;        /* written (each pass: its own) */
    const float *in, *d_out, *weight, *bias;      /* read */
    geom g;
    int a, b, pad_ok; /* interior [a, b) of a row; backward_input: padded blocks allowed */
} conv_job;

/* The groups that channels [cb, ce) (of cpg per group) touch, and the part
 * [*lo, *hi) of group grp inside the range. */
static void group_part(int grp, int cpg, int cb, int ce, int *lo, int *hi)
{
    *lo = grp * cpg > cb ? grp * cpg : cb;
    *hi = (grp + 1) * cpg < ce ? (grp + 1) * cpg : ce;
}

static void fwd_range(void *arg, int cb, int ce, int worker)
{
    const conv_job *job = (const conv_job *)arg;
    const geom g = job->g;
    const int a = job->a, b = job->b;
    const float *in = job->in, *weight = job->weight, *bias = job->bias;
    float *out = job->out;
    int n, grp, co0, oh, r, glo, ghi;
    (void)worker;
    {
        for (n = 0; n < g.n; ++n) {
            for (grp = cb / g.cog; grp * g.cog < ce; ++grp) {
                const float *in_g = in + ((size_t)n * g.c_in + (size_t)grp * g.cig) * g.in_plane;
                group_part(grp, g.cog, cb, ce, &glo, &ghi);
                for (co0 = glo; co0 < ghi; co0 += r) {
                    const int R = block_rows(ghi - co0);
                    const int VB = b > a ? block_width(R, b - a) : 0;
                    const float *w_co = weight + (size_t)co0 * g.cig * g.taps;
                    const float *b_co = bias ? bias + co0 : NULL;
                    float *out_c = out + ((size_t)n * g.c_out + co0) * g.out_plane;
                    r = R;
                    for (oh = 0; oh < g.ho; ++oh) {
                        const int ih0 = oh * g.sh - g.ph;
                        int kh_lo = 0, kh_hi = g.k_h, ow0, k;
                        float *orow = out_c + (size_t)oh * g.wo;
                        while (kh_lo < g.k_h && ih0 + kh_lo * g.dh < 0) ++kh_lo;
                        while (kh_hi > kh_lo && ih0 + (kh_hi - 1) * g.dh >= g.h_in) --kh_hi;
                        if (VB == 0 || kh_lo >= kh_hi) { /* no block fits, or bias only */
                            for (k = 0; k < R; ++k)
                                fwd_row_ref(orow + (size_t)k * g.out_plane, in_g,
                                            w_co + (size_t)k * g.cig * g.taps,
                                            b_co ? b_co[k] : 0.0f, &g, oh, 0, g.wo);
                            continue;
                        }
                        for (k = 0; k < R; ++k) {
                            float *ok = orow + (size_t)k * g.out_plane;
                            const float *wk = w_co + (size_t)k * g.cig * g.taps;
                            const float bk = b_co ? b_co[k] : 0.0f;
                            fwd_row_ref(ok, in_g, wk, bk, &g, oh, 0, a);
                            fwd_row_ref(ok, in_g, wk, bk, &g, oh, b, g.wo);
                        }
                        for (ow0 = a;; ow0 += VB) {
                            if (ow0 > b - VB) ow0 = b - VB; /* last block: back to end at b */
                            fwd_block(R, VB, orow + ow0, in_g, w_co, b_co, &g, ih0, kh_lo, kh_hi, ow0);
                            if (ow0 + VB >= b) break;
                        }
                    }
                }
            }
        }
    }
}

bt_status bt_conv2d_forward_f32(float *restrict out, const float *restrict in,
                                const float *restrict weight, const float *restrict bias,
                                const bt_conv2d_shape *s)
{
    conv_job job = {0};
    BT_TRY(geom_init(&job.g, s));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(weight);
    job.out = out;
    job.in = in;
    job.weight = weight;
    job.bias = bias;
    /* Interior [a, b): positions where every kw tap lies inside the row. */
    if (job.g.sw == 1) {
        int lo, hi;
        tap_range(-job.g.pw, 1, job.g.w_in, job.g.wo, &lo, &hi);
        job.a = lo;
        tap_range((job.g.k_w - 1) * job.g.dw - job.g.pw, 1, job.g.w_in, job.g.wo, &lo, &hi);
        job.b = hi;
    }
    bt_port_parallel_for(job.g.c_out, fwd_range, &job);
    return BT_OK;
}

/* ========================================================= backward_input */

/* Reference loop for input positions [ia, ib) of one d_in row (channel cl of
 * group grp, row ih): drow = 0, then += d_out * w for co, kh, kw ascending. */
static void bwi_row_ref(float *drow, const float *dout_g, const float *w_gl, const geom *g,
                        int ih, int ia, int ib)
{
    int iw, co, kh, kw, ow;
    if (ia >= ib) return;
    for (iw = ia; iw < ib; ++iw) drow[iw] = 0.0f;
    for (co = 0; co < g->cog; ++co) {
        const float *dout_c = dout_g + (size_t)co * g->out_plane;
        const float *w_c = w_gl + (size_t)co * g->cig * g->taps;
        for (kh = 0; kh < g->k_h; ++kh) {
            const int t = ih + g->ph - kh * g->dh; /* = oh * sh */
            const float *grow;
            int oh = t;
            if (t < 0) break;
            if (g->sh != 1) {
                if (t % g->sh != 0) continue;
                oh = t / g->sh;
            }
            if (oh >= g->ho) continue;
            grow = dout_c + (size_t)oh * g->wo;
            for (kw = 0; kw < g->k_w; ++kw) {
                const int off = kw * g->dw - g->pw; /* iw = ow * sw + off */
                const float wv = w_c[kh * g->k_w + kw];
                int lo, hi;
                /* ow with ia <= ow * sw + off < ib */
                tap_range(off - ia, g->sw, ib - ia, g->wo, &lo, &hi);
                if (lo >= hi) continue;
                if (g->sw == 1) {
                    float *dst = drow + (lo + off);
                    const float *src = grow + lo;
                    const int m = hi - lo;
                    int i;
                    for (i = 0; i < m; ++i) dst[i] = bt_fmaf(src[i], wv, dst[i]);
                } else {
                    for (ow = lo; ow < hi; ++ow)
                        drow[ow * g->sw + off] = bt_fmaf(grow[ow], wv, drow[ow * g->sw + off]);
                }
            }
        }
    }
}

#define BWI_BUF 256 /* floats of zero-extended d_out row in a padded block */

/* One block of R input channels x VB positions [iw0, iw0 + VB) of d_in row
 * ih, stride 1 along the width. din points at (ci0, ih, iw0); w_gl at the
 * weights of (first co of the group, ci0 within the group). Without
 * `padded`, every tap's output position must lie inside d_out; with it,
 * each d_out row is first copied into a zero-extended buffer, so taps
 * outside d_out add w * 0 (see bt_conv2d_backward_input_f32 for why that
 * leaves the bits unchanged). */
#define BWI_INIT(r) acc[r][i] = 0.0f;
#define BWI_W(r) wv[r] = wk[(size_t)(r) * g->taps + kw];
#define BWI_MAC(r) acc[r][i] = bt_fmaf(x, wv[r], acc[r][i]);
#define BWI_STORE(r) for (i = 0; i < NVB; ++i) din[(size_t)(r) * g->in_plane + i] = acc[r][i];
#define BWI_BLOCK(R, VB, HINT)                                                                  \
    static void bwi_block_##R##_##VB(float *din, const float *dout_g, const float *w_gl,     \
                                     const geom *g, int ih, int kh_lo, int kh_hi, int iw0,   \
                                     int padded)                                             \
    {                                                                                         \
        enum { NVB = VB };                                                                    \
        float acc[R][VB], wv[R], buf[BWI_BUF];                                                \
        const int ext = (g->k_w - 1) * g->dw, base = iw0 + g->pw - ext;                      \
        int i, co, kh, kw;                                                                    \
        for (i = 0; i < VB; ++i) { REP##R(BWI_INIT) }                                         \
        for (co = 0; co < g->cog; ++co) {                                                     \
            const float *dout_c = dout_g + (size_t)co * g->out_plane;                         \
            const float *w_c = w_gl + (size_t)co * g->cig * g->taps;                          \
            for (kh = kh_lo; kh < kh_hi; ++kh) {                                              \
                const int t = ih + g->ph - kh * g->dh; /* = oh * sh */                        \
                const float *grow, *row;                                                      \
                const float *wk = w_c + (size_t)kh * g->k_w;                                  \
                int oh = t;                                                                   \
                if (g->sh != 1) {                                                             \
                    if (t % g->sh != 0) continue;                                             \
                    oh = t / g->sh;                                                           \
                }                                                                             \
                if (oh >= g->ho) continue;                                                    \
                grow = dout_c + (size_t)oh * g->wo;                                           \
                if (padded) {                                                                 \
                    /* buf[j] = d_out[base + j], 0 outside the row */                         \
                    const int len = VB + ext;                                                 \
                    int j0 = -base, j1 = g->wo - base, j;                                     \
                    if (j0 < 0) j0 = 0;                                                       \
                    if (j1 > len) j1 = len;                                                   \
                    if (j1 < j0) j1 = j0;                                                     \
                    for (j = 0; j < j0; ++j) buf[j] = 0.0f;                                   \
                    for (j = j0; j < j1; ++j) buf[j] = grow[base + j];                        \
                    for (j = j1; j < len; ++j) buf[j] = 0.0f;                                 \
                    row = buf;                                                                \
                } else {                                                                      \
                    row = grow + (size_t)base; /* base >= 0 inside the interior */            \
                }                                                                             \
                for (kw = 0; kw < g->k_w; ++kw) {                                             \
                    /* ow = iw - off, off = kw * dw - pw */                                   \
                    const float *src = row + (size_t)(ext - kw * g->dw);                      \
                    REP##R(BWI_W)                                                             \
                    HINT                                                                      \
                    for (i = 0; i < VB; ++i) {                                                \
                        const float x = src[i];                                               \
                        REP##R(BWI_MAC)                                                       \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        REP##R(BWI_STORE)                                        \
    }
#if !BT_CONV_SMALL_BLOCKS
BWI_BLOCK(1, 128, NO_HINT)
BWI_BLOCK(1, 32, NO_HINT)
BWI_BLOCK(1, 8, KEEP_LOOP)
BWI_BLOCK(2, 64, NO_HINT)
BWI_BLOCK(2, 16, NO_HINT)
BWI_BLOCK(2, 4, KEEP_LOOP)
BWI_BLOCK(4, 32, NO_HINT)
BWI_BLOCK(4, 16, NO_HINT)
BWI_BLOCK(4, 8, KEEP_LOOP)
BWI_BLOCK(4, 4, KEEP_LOOP)
BWI_BLOCK(8, 16, NO_HINT)
BWI_BLOCK(8, 8, KEEP_LOOP)
BWI_BLOCK(8, 4, KEEP_LOOP)
BWI_BLOCK(1, 1, KEEP_LOOP)
BWI_BLOCK(2, 1, KEEP_LOOP)
BWI_BLOCK(4, 1, KEEP_LOOP)
BWI_BLOCK(8, 1, KEEP_LOOP)

static void bwi_block(int R, int VB, float *din, const float *dout_g, const float *w_gl,
                      const geom *g, int ih, int kh_lo, int kh_hi, int iw0, int padded)
{
    switch (R * 1000 + VB) {
    case 1128: bwi_block_1_128(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 1032: bwi_block_1_32(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 1008: bwi_block_1_8(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 2064: bwi_block_2_64(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 2016: bwi_block_2_16(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 2004: bwi_block_2_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 4032: bwi_block_4_32(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 4016: bwi_block_4_16(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 4008: bwi_block_4_8(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 4004: bwi_block_4_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 8016: bwi_block_8_16(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 8008: bwi_block_8_8(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 1001: bwi_block_1_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 2001: bwi_block_2_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 4001: bwi_block_4_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    case 8001: bwi_block_8_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    default: bwi_block_8_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0, padded); break;
    }
}

#endif

/* Zero-extended blocks. A tap whose output position lies outside d_out
 * contributes nothing and is skipped by the reference loop; a padded block
 * adds w * 0 instead. That leaves the bits unchanged when w is finite: the
 * product is +0 or -0, the sum starts at +0 and can never become -0 (in
 * round-to-nearest x + y is -0 only if both are -0), and adding a zero to
 * any other value returns it unchanged. With an infinite or NaN weight,
 * w * 0 is NaN, so those calls take the reference loop at the row ends. */
static void bwi_range(void *arg, int cb, int ce, int worker)
{
    const conv_job *job = (const conv_job *)arg;
    const geom g = job->g;
    const int a = job->a, b = job->b, pad_ok = job->pad_ok;
    const float *d_out = job->d_out, *weight = job->weight;
    float *d_in = job->d_in;
    int n, grp, cl0, ih, r, glo, ghi;
    (void)worker;
    {
        /* Gather by input row: each d_in row is owned by one iteration and
         * receives its terms in the documented order. */
        for (n = 0; n < g.n; ++n) {
            for (grp = cb / g.cig; grp * g.cig < ce; ++grp) {
                const float *dout_g = d_out + ((size_t)n * g.c_out + (size_t)grp * g.cog) * g.out_plane;
                const float *w_g = weight + (size_t)grp * g.cog * g.cig * g.taps;
                group_part(grp, g.cig, cb, ce, &glo, &ghi);
                glo -= grp * g.cig; /* channels within the group */
                ghi -= grp * g.cig;
                for (cl0 = glo; cl0 < ghi; cl0 += r) {
                    const int R = block_rows(ghi - cl0);
                    /* Padded blocks cover the whole row; plain ones the interior. */
                    const int VB = pad_ok ? block_width(R, g.w_in) : b > a ? block_width(R, b - a) : 0;
                    const int lo = pad_ok ? 0 : a, hi = pad_ok ? g.w_in : b;
                    const float *w_gl = w_g + (size_t)cl0 * g.taps;
                    float *din_c = d_in + ((size_t)n * g.c_in + (size_t)grp * g.cig + cl0) * g.in_plane;
                    r = R;
                    for (ih = 0; ih < g.h_in; ++ih) {
                        float *drow = din_c + (size_t)ih * g.w_in;
                        /* kh with 0 <= ih + ph - kh * dh (ascending kh lowers it) */
                        const int kh_hi = (ih + g.ph) / g.dh + 1 < g.k_h ? (ih + g.ph) / g.dh + 1 : g.k_h;
                        int k, iw0, kh_lo = 0;
                        /* and, with stride 1, ih + ph - kh * dh < ho */
                        if (g.sh == 1)
                            while (kh_lo < kh_hi && ih + g.ph - kh_lo * g.dh >= g.ho) ++kh_lo;
                        if (VB == 0) {
                            for (k = 0; k < R; ++k)
                                bwi_row_ref(drow + (size_t)k * g.in_plane, dout_g,
                                            w_gl + (size_t)k * g.taps, &g, ih, 0, g.w_in);
                            continue;
                        }
                        for (k = 0; k < R; ++k) {
                            float *dk = drow + (size_t)k * g.in_plane;
                            const float *wk = w_gl + (size_t)k * g.taps;
                            bwi_row_ref(dk, dout_g, wk, &g, ih, 0, lo);
                            bwi_row_ref(dk, dout_g, wk, &g, ih, hi, g.w_in);
                        }
                        for (iw0 = lo;; iw0 += VB) {
                            if (iw0 > hi - VB) iw0 = hi - VB;
                            bwi_block(R, VB, drow + iw0, dout_g, w_gl, &g, ih, kh_lo, kh_hi, iw0,
                                      iw0 < a || iw0 + VB > b);
                            if (iw0 + VB >= hi) break;
                        }
                    }
                }
            }
        }
    }
}

bt_status bt_conv2d_backward_input_f32(float *restrict d_in, const float *restrict d_out,
                                       const float *restrict weight, const bt_conv2d_shape *s)
{
    conv_job job = {0};
    const geom *g = &job.g;
    BT_TRY(geom_init(&job.g, s));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(weight);
    job.d_in = d_in;
    job.d_out = d_out;
    job.weight = weight;
    /* Interior [a, b): input positions that every kw tap reaches from an
     * output position inside the row (stride 1: ow = iw - off). */
    if (g->sw == 1) {
        const int off_max = (g->k_w - 1) * g->dw - g->pw, off_min = -g->pw;
        job.a = off_max > 0 ? off_max : 0;
        job.b = g->wo + off_min < g->w_in ? g->wo + off_min : g->w_in;
        job.pad_ok = !BT_CONV_SMALL_BLOCKS && (g->k_w - 1) * g->dw <= BWI_BUF - 128 &&
                     all_finite(weight, (size_t)g->c_out * g->cig * g->taps);
    }
    bt_port_parallel_for(g->c_in, bwi_range, &job);
    return BT_OK;
}

/* ======================================================== backward_weight */

#define WG_TP 16 /* positions per gathered tile */

/* acc[r * KB + j] += g[r * gs + p] * src[p * ps + j] for p in [0, np), p
 * ascending: R x KB weight chains advanced side by side, the R output
 * channels reading the same input. The _x form reads src[r * ss + p + j]
 * instead: row r has its own input (one output channel per group). */
#define WG_LOAD(r) a[r][j] = acc[(r) * KB + j];
#define WG_G(r) gv[r] = gr[(size_t)(r) * gs + p];
#define WG_MAC(r) a[r][j] = bt_fmaf(gv[r], x, a[r][j]);
#define WGX_MAC(r) a[r][j] = bt_fmaf(gv[r], s[(size_t)(r) * ss + j], a[r][j]);
#define WG_STORE(r) acc[(r) * KB + j] = a[r][j];
#define WG_BLOCK(R, KB_, HINT)                                                                  \
    static void wg_block_##R##_##KB_(float *acc, const float *gr, size_t gs,                 \
                                     const float *src, size_t ps, int np)                    \
    {                                                                                         \
        enum { KB = KB_ };                                                                    \
        float a[R][KB], gv[R];                                                                \
        int j, p;                                                                             \
        for (j = 0; j < KB; ++j) { REP##R(WG_LOAD) }                                          \
        for (p = 0; p < np; ++p) {                                                            \
            const float *s = src + (size_t)p * ps;                                            \
            REP##R(WG_G)                                                                      \
            HINT                                                                              \
            for (j = 0; j < KB; ++j) {                                                        \
                const float x = s[j];                                                         \
                REP##R(WG_MAC)                                                                \
            }                                                                                 \
        }                                                                                     \
        for (j = 0; j < KB; ++j) { REP##R(WG_STORE) }                                         \
    }
#define WGX_BLOCK(R, KB_, HINT)                                                                  \
    static void wgx_block_##R##_##KB_(float *acc, const float *gr, size_t gs,                \
                                      const float *src, size_t ss, int np)                   \
    {                                                                                         \
        enum { KB = KB_ };                                                                    \
        float a[R][KB], gv[R];                                                                \
        int j, p;                                                                             \
        for (j = 0; j < KB; ++j) { REP##R(WG_LOAD) }                                          \
        for (p = 0; p < np; ++p) {                                                            \
            const float *s = src + p;                                                         \
            REP##R(WG_G)                                                                      \
            HINT                                                                              \
            for (j = 0; j < KB; ++j) { REP##R(WGX_MAC) }                                      \
        }                                                                                     \
        for (j = 0; j < KB; ++j) { REP##R(WG_STORE) }                                         \
    }
#if !BT_CONV_SMALL_BLOCKS
WG_BLOCK(1, 64, NO_HINT)
WG_BLOCK(1, 16, NO_HINT)
WG_BLOCK(2, 16, NO_HINT)
WG_BLOCK(4, 16, NO_HINT)
WG_BLOCK(8, 16, NO_HINT)
WG_BLOCK(1, 8, KEEP_LOOP)
WG_BLOCK(2, 8, KEEP_LOOP)
WG_BLOCK(4, 8, KEEP_LOOP)
WG_BLOCK(8, 8, KEEP_LOOP)
WG_BLOCK(1, 4, KEEP_LOOP)
WG_BLOCK(2, 4, KEEP_LOOP)
WG_BLOCK(4, 4, KEEP_LOOP)
WG_BLOCK(8, 4, KEEP_LOOP)
WG_BLOCK(1, 1, KEEP_LOOP)
WG_BLOCK(2, 1, KEEP_LOOP)
WG_BLOCK(4, 1, KEEP_LOOP)
WG_BLOCK(8, 1, KEEP_LOOP)
WGX_BLOCK(2, 64, NO_HINT)
WGX_BLOCK(2, 16, NO_HINT)
WGX_BLOCK(4, 16, NO_HINT)
WGX_BLOCK(8, 16, NO_HINT)

/* ss != 0 selects the _x form (R > 1, KB 16 or 64 only). */
static void wg_block(int R, int KB, float *acc, const float *gr, size_t gs, const float *src,
                     size_t ss, size_t ps, int np)
{
    if (ss != 0 && R > 1) {
        switch (R * 100 + KB) {
        case 264: wgx_block_2_64(acc, gr, gs, src, ss, np); break;
        case 216: wgx_block_2_16(acc, gr, gs, src, ss, np); break;
        case 416: wgx_block_4_16(acc, gr, gs, src, ss, np); break;
        default: wgx_block_8_16(acc, gr, gs, src, ss, np); break;
        }
        return;
    }
    switch (R * 100 + KB) {
    case 164: wg_block_1_64(acc, gr, gs, src, ps, np); break;
    case 116: wg_block_1_16(acc, gr, gs, src, ps, np); break;
    case 216: wg_block_2_16(acc, gr, gs, src, ps, np); break;
    case 416: wg_block_4_16(acc, gr, gs, src, ps, np); break;
    case 816: wg_block_8_16(acc, gr, gs, src, ps, np); break;
    case 108: wg_block_1_8(acc, gr, gs, src, ps, np); break;
    case 208: wg_block_2_8(acc, gr, gs, src, ps, np); break;
    case 408: wg_block_4_8(acc, gr, gs, src, ps, np); break;
    case 808: wg_block_8_8(acc, gr, gs, src, ps, np); break;
    case 104: wg_block_1_4(acc, gr, gs, src, ps, np); break;
    case 204: wg_block_2_4(acc, gr, gs, src, ps, np); break;
    case 404: wg_block_4_4(acc, gr, gs, src, ps, np); break;
    case 804: wg_block_8_4(acc, gr, gs, src, ps, np); break;
    case 101: wg_block_1_1(acc, gr, gs, src, ps, np); break;
    case 201: wg_block_2_1(acc, gr, gs, src, ps, np); break;
    case 401: wg_block_4_1(acc, gr, gs, src, ps, np); break;
    default: wg_block_8_1(acc, gr, gs, src, ps, np); break;
    }
}

/* Taps per block: the widest compiled width not above `left`; with
 * `cross`, 64 or 16 only (0: none fits). */
static int wg_width(int R, int left, int contiguous, int cross)
{
    if (contiguous && (R == 1 || (R == 2 && cross)) && left >= 64) return 64;
    if (cross) return left >= 16 ? 16 : 0;
    return left >= 16 ? 16 : left >= 8 ? 8 : left >= 4 ? 4 : 1;
}

#endif

/* One weight's chain over output positions [p0, p1) of one row:
 * acc += grow[ow] * irow[ow * sw + off], skipping taps outside the row. */
static float wg_chain(float acc, const float *grow, const float *irow, int off, const geom *g,
                      int p0, int p1)
{
    int lo, hi, ow;
    tap_range(off, g->sw, g->w_in, g->wo, &lo, &hi);
    if (lo < p0) lo = p0;
    if (hi > p1) hi = p1;
    for (ow = lo; ow < hi; ++ow) acc = bt_fmaf(grow[ow], irow[ow * g->sw + off], acc);
    return acc;
}

/* The input row (NULL where it lies in the padding) and the width offset
 * (iw = ow * sw + off) of flattened tap t = (ci, kh, kw) at output row oh. */
static const float *wg_tap(const geom *g, const float *in_g, int t, int oh, int *off)
{
    const int ci = t / (int)g->taps, kk = t % (int)g->taps;
    const int kh = kk / g->k_w, kw = kk % g->k_w;
    const int ih = oh * g->sh - g->ph + kh * g->dh;
    *off = kw * g->dw - g->pw;
    if (ih < 0 || ih >= g->h_in) return NULL;
    return in_g + (size_t)ci * g->in_plane + (size_t)ih * g->w_in;
}

/* A block of weights: R output channels from co0 times KB consecutive
 * entries t0 .. t0+KB-1 of the flattened (ci, kh, kw) index of one output
 * channel's weights. Without `cross` the R channels belong to one group and
 * read the same input channels; with it (one output channel per group) row
 * r belongs to group grp0 + r and reads its own. contiguous: the KB taps
 * share (ci, kh) and have consecutive kw with stride and dilation 1, so
 * their inputs are consecutive in memory; otherwise KB <= 16, no cross, and
 * the taps are gathered into a tile. */
static void wg_run(float *restrict d_weight, const float *restrict d_out,
                   const float *restrict in, const geom *g, int co0, int R, int t0, int KB,
                   int contiguous, int cross)
{
    float acc[128];
#if !BT_CONV_SMALL_BLOCKS
    float tile[WG_TP * 16];
#endif
    const float *rowp[16];
    int offs[16];
    const size_t wstride = (size_t)g->cig * g->taps; /* between output channels */
    const size_t ss = cross ? (size_t)g->cig * g->in_plane : 0;
    const int grp = co0 / g->cog;
    int r, j, n, oh;
    for (r = 0; r < R; ++r)
        for (j = 0; j < KB; ++j) acc[r * KB + j] = d_weight[(size_t)(co0 + r) * wstride + (size_t)(t0 + j)];
    for (n = 0; n < g->n; ++n) {
        const float *in_g = in + ((size_t)n * g->c_in + (size_t)grp * g->cig) * g->in_plane;
        const float *dout_r = d_out + ((size_t)n * g->c_out + co0) * g->out_plane;
        for (oh = 0; oh < g->ho; ++oh) {
            const float *grow = dout_r + (size_t)oh * g->wo;
            const float *row0 = NULL;
            int pa = 0, pb = g->wo, rows_ok = 1, lo, hi, off;
            /* Interior [pa, pb): positions where every tap of the block lies
             * inside the input. */
            if (contiguous) {
                row0 = wg_tap(g, in_g, t0, oh, &offs[0]);
                rows_ok = row0 != NULL;
                tap_range(offs[0], 1, g->w_in, g->wo, &pa, &hi);
                tap_range(offs[0] + KB - 1, 1, g->w_in, g->wo, &lo, &pb);
            } else {
                for (j = 0; j < KB; ++j) {
                    rowp[j] = wg_tap(g, in_g, t0 + j, oh, &offs[j]);
                    if (!rowp[j]) {
                        rows_ok = 0;
                        continue;
                    }
                    tap_range(offs[j], g->sw, g->w_in, g->wo, &lo, &hi);
                    if (lo > pa) pa = lo;
                    if (hi < pb) pb = hi;
                }
            }
            if (!rows_ok && contiguous) continue; /* the block's row lies in the padding */
            if (!rows_ok || pa >= pb) pa = pb = g->wo; /* the whole row per weight */
            /* Positions before the interior, per weight. */
            if (pa > 0)
                for (j = 0; j < KB; ++j) {
                    const float *irow = wg_tap(g, in_g, t0 + j, oh, &off);
                    if (!irow) continue;
                    for (r = 0; r < R; ++r)
                        acc[r * KB + j] = wg_chain(acc[r * KB + j], grow + (size_t)r * g->out_plane,
                                                   irow + r * ss, off, g, 0, pa);
                }
#if BT_CONV_SMALL_BLOCKS
            if (pa < pb) {
                if (contiguous) {
                    wg_small_c(R, KB, acc, grow + pa, g->out_plane, row0 + (pa + offs[0]), pb - pa);
                } else {
                    const float *rows[16];
                    for (j = 0; j < KB; ++j) rows[j] = rowp[j] + (pa * g->sw + offs[j]);
                    wg_small_g(R, KB, acc, grow + pa, g->out_plane, rows, g->sw, pb - pa);
                }
            }
#else
            if (pa < pb) {
                if (contiguous) {
                    wg_block(R, KB, acc, grow + pa, g->out_plane, row0 + (pa + offs[0]), ss, 1, pb - pa);
                } else {
                    int p;
                    for (p = pa; p < pb; p += WG_TP) {
                        const int np = pb - p < WG_TP ? pb - p : WG_TP;
                        int q;
                        for (j = 0; j < KB; ++j) {
                            const float *src = rowp[j] + (p * g->sw + offs[j]);
                            for (q = 0; q < np; ++q) tile[q * KB + j] = src[q * g->sw];
                        }
                        wg_block(R, KB, acc, grow + p, g->out_plane, tile, 0, (size_t)KB, np);
                    }
                }
            }
#endif
            /* Positions after the interior, per weight. */
            if (pb < g->wo)
                for (j = 0; j < KB; ++j) {
                    const float *irow = wg_tap(g, in_g, t0 + j, oh, &off);
                    if (!irow) continue;
                    for (r = 0; r < R; ++r)
                        acc[r * KB + j] = wg_chain(acc[r * KB + j], grow + (size_t)r * g->out_plane,
                                                   irow + r * ss, off, g, pb, g->wo);
                }
        }
    }
    for (r = 0; r < R; ++r)
        for (j = 0; j < KB; ++j) d_weight[(size_t)(co0 + r) * wstride + (size_t)(t0 + j)] = acc[r * KB + j];
}

static void bww_range(void *arg, int cb, int ce, int worker)
{
    const conv_job *job = (const conv_job *)arg;
    const geom g = job->g;
    const float *d_out = job->d_out, *in = job->in;
    float *d_weight = job->d_weight, *d_bias = job->d_bias;
    int co0, r, n, co;
    (void)worker;
    if (d_bias) {
        for (co = cb; co < ce; ++co) {
            float acc = d_bias[co];
            for (n = 0; n < g.n; ++n) {
                const float *dout_c = d_out + ((size_t)n * g.c_out + co) * g.out_plane;
                size_t i;
                for (i = 0; i < g.out_plane; ++i) acc += dout_c[i];
            }
            d_bias[co] = acc;
        }
    }
    {
        const int per_co = g.cig * (int)g.taps;
        /* Runs of consecutive kw taps (stride and dilation 1 along the width)
         * read the input in place; otherwise taps are gathered into tiles.
         * With one output channel per group, a block takes the channels of
         * R groups side by side. */
        const int direct = g.sw == 1 && g.dw == 1 && g.k_w >= 4;
        const int cross = !BT_CONV_SMALL_BLOCKS && direct && g.cog == 1 && g.k_w >= 16;
        for (co0 = cb; co0 < ce; co0 += r) {
            const int gend = (co0 / g.cog + 1) * g.cog;
            const int left = cross || gend > ce ? ce - co0 : gend - co0;
            const int R = cross && g.k_w >= 64 ? (left >= 2 ? 2 : 1) : block_rows(left);
            r = R;
            if (direct) {
                int row; /* (ci, kh) */
                for (row = 0; row < g.cig * g.k_h; ++row) {
                    int kw0 = 0, KB, k;
                    for (; kw0 < g.k_w; kw0 += KB) {
                        KB = wg_width(R, g.k_w - kw0, 1, cross && R > 1);
                        if (KB == 0) { /* taps left after the side-by-side blocks */
                            for (k = 0; k < R; ++k) {
                                int kw1 = kw0, KB1;
                                for (; kw1 < g.k_w; kw1 += KB1) {
                                    KB1 = wg_width(1, g.k_w - kw1, 1, 0);
                                    wg_run(d_weight, d_out, in, &g, co0 + k, 1, row * g.k_w + kw1, KB1, 1, 0);
                                }
                            }
                            break;
                        }
                        wg_run(d_weight, d_out, in, &g, co0, R, row * g.k_w + kw0, KB, 1, cross && R > 1);
                    }
                }
            } else {
                int t0 = 0, KB;
                for (; t0 < per_co; t0 += KB) {
                    KB = wg_width(R, per_co - t0, 0, 0);
                    wg_run(d_weight, d_out, in, &g, co0, R, t0, KB, 0, 0);
                }
            }
        }
    }
}

bt_status bt_conv2d_backward_weight_f32(float *restrict d_weight, float *restrict d_bias,
                                        const float *restrict d_out, const float *restrict in,
                                        const bt_conv2d_shape *s)
{
    conv_job job = {0};
    BT_TRY(geom_init(&job.g, s));
    BT_REQUIRE_PTR(d_weight);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    job.d_weight = d_weight;
    job.d_bias = d_bias;
    job.in = in;
    job.d_out = d_out;
    bt_port_parallel_for(job.g.c_out, bww_range, &job);
    return BT_OK;
}
