/* conv2d, float32: the blocks for cores with 32 scalar float registers and no
 * vector unit (RISC-V F, Cortex-M), included by conv2d_f32.c when
 * BT_CONV_SMALL_BLOCKS is 1. The drivers in conv2d_f32.c pick the blocks;
 * these only advance the same sums as the host blocks with fewer
 * accumulators, so the bits stay those of the documented order.
 *
 * Why they look like this. A host block holds up to 128 sums in vector
 * registers; here that many would spill, and each multiply-add would cost a
 * load and a store of its accumulator. These keep at most 16 sums, and where
 * the taps are consecutive in memory (dilation 1 along the width) they unroll
 * the taps by U and load the VB + U - 1 inputs the U taps share once: a
 * sliding window in registers. A 1 x 8 block with U = 8 then does 64 fused
 * multiply-adds for 15 input and 8 weight loads. Everything is unrolled
 * completely (small constant trip counts), so the arrays become registers. */
#ifndef BT_CONV2D_F32_SMALL_H
#define BT_CONV2D_F32_SMALL_H

#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define SM_UNROLL _Pragma("GCC unroll 16")
#else
#define SM_UNROLL
#endif

/* Rows per block and positions (or taps) per block. */
static int block_rows(int left) { return left >= 4 ? 4 : left >= 2 ? 2 : 1; }

static int block_width(int R, int width)
{
    if (R <= 2 && width >= 8) return 8;
    if (width >= 4) return 4;
    return width >= 1 ? 1 : 0;
}

/* ---------------------------------------------------------------- forward
 * R output channels x VB positions; see FWD_BLOCK in conv2d_f32.c for the
 * arguments. */
#define FWD_SMALL(R, VB, U)                                                                    \
    static void fwd_small_##R##_##VB(float *out, const float *in_g, const float *w_co,       \
                                     const float *bias, const geom *g, int ih0, int kh_lo,   \
                                     int kh_hi, int ow0)                                     \
    {                                                                                         \
        float acc[R][VB];                                                                     \
        const size_t ws = (size_t)g->cig * g->taps;                                           \
        int r, i, u, ci, kh, kw;                                                              \
        SM_UNROLL for (r = 0; r < R; ++r) {                                                   \
            const float b0 = bias ? bias[r] : 0.0f;                                           \
            SM_UNROLL for (i = 0; i < VB; ++i) acc[r][i] = b0;                                \
        }                                                                                     \
        for (ci = 0; ci < g->cig; ++ci) {                                                     \
            const float *in_c = in_g + (size_t)ci * g->in_plane;                              \
            for (kh = kh_lo; kh < kh_hi; ++kh) {                                              \
                const float *irow =                                                           \
                    in_c + (size_t)(ih0 + kh * g->dh) * g->w_in + (size_t)(ow0 - g->pw);      \
                const float *wk = w_co + (size_t)ci * g->taps + (size_t)kh * g->k_w;          \
                kw = 0;                                                                       \
                if (g->dw == 1)                                                               \
                    for (; kw + U <= g->k_w; kw += U) {                                       \
                        float x[VB + U - 1];                                                  \
                        SM_UNROLL for (i = 0; i < VB + U - 1; ++i) x[i] = irow[kw + i];       \
                        SM_UNROLL for (u = 0; u < U; ++u)                                     \
                            SM_UNROLL for (r = 0; r < R; ++r) {                               \
                                const float wv = wk[(size_t)r * ws + (size_t)(kw + u)];       \
                                SM_UNROLL for (i = 0; i < VB; ++i)                            \
                                    acc[r][i] = bt_fmaf(wv, x[i + u], acc[r][i]);             \
                            }                                                                 \
                    }                                                                         \
                for (; kw < g->k_w; ++kw) {                                                   \
                    const float *src = irow + (size_t)kw * g->dw;                             \
                    float x[VB];                                                              \
                    SM_UNROLL for (i = 0; i < VB; ++i) x[i] = src[i];                         \
                    SM_UNROLL for (r = 0; r < R; ++r) {                                       \
                        const float wv = wk[(size_t)r * ws + (size_t)kw];                     \
                        SM_UNROLL for (i = 0; i < VB; ++i)                                    \
                            acc[r][i] = bt_fmaf(wv, x[i], acc[r][i]);                         \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (i = 0; i < VB; ++i) out[(size_t)r * g->out_plane + (size_t)i] = acc[r][i]; \
    }
FWD_SMALL(1, 8, 8)
FWD_SMALL(1, 4, 8)
FWD_SMALL(1, 1, 8)
FWD_SMALL(2, 8, 2)
FWD_SMALL(2, 4, 4)
FWD_SMALL(2, 1, 4)
FWD_SMALL(4, 4, 2)
FWD_SMALL(4, 1, 4)

static void fwd_block(int R, int VB, float *out, const float *in_g, const float *w_co,
                      const float *bias, const geom *g, int ih0, int kh_lo, int kh_hi, int ow0)
{
    switch (R * 100 + VB) {
    case 108: fwd_small_1_8(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 104: fwd_small_1_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 101: fwd_small_1_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 208: fwd_small_2_8(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 204: fwd_small_2_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 201: fwd_small_2_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    case 404: fwd_small_4_4(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    default: fwd_small_4_1(out, in_g, w_co, bias, g, ih0, kh_lo, kh_hi, ow0); break;
    }
}

/* --------------------------------------------------------- backward_input
 * R input channels x VB positions of d_in row ih, every tap's output
 * position inside d_out (no padded blocks here: copying the zero-extended
 * row would cost more than the reference loops at the row ends). For tap kw
 * the value for position i is d_out[iw0 + pw - kw * dw + i]; U consecutive
 * taps from kw share the window starting at iw0 + pw - kw - (U - 1). */
#define BWI_SMALL(R, VB, U)                                                                    \
    static void bwi_small_##R##_##VB(float *din, const float *dout_g, const float *w_gl,     \
                                     const geom *g, int ih, int kh_lo, int kh_hi, int iw0)   \
    {                                                                                         \
        float acc[R][VB];                                                                     \
        int r, i, u, co, kh, kw;                                                              \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (i = 0; i < VB; ++i) acc[r][i] = 0.0f;                              \
        for (co = 0; co < g->cog; ++co) {                                                     \
            const float *dout_c = dout_g + (size_t)co * g->out_plane;                         \
            const float *w_c = w_gl + (size_t)co * g->cig * g->taps;                          \
            for (kh = kh_lo; kh < kh_hi; ++kh) {                                              \
                const int t = ih + g->ph - kh * g->dh; /* = oh * sh */                        \
                const float *grow;                                                            \
                const float *wk = w_c + (size_t)kh * g->k_w;                                  \
                int oh = t;                                                                   \
                if (g->sh != 1) {                                                             \
                    if (t % g->sh != 0) continue;                                             \
                    oh = t / g->sh;                                                           \
                }                                                                             \
                if (oh >= g->ho) continue;                                                    \
                grow = dout_c + (size_t)oh * g->wo + (size_t)(iw0 + g->pw);                   \
                kw = 0;                                                                       \
                if (g->dw == 1)                                                               \
                    for (; kw + U <= g->k_w; kw += U) {                                       \
                        const float *src = grow - (kw + U - 1);                               \
                        float x[VB + U - 1];                                                  \
                        SM_UNROLL for (i = 0; i < VB + U - 1; ++i) x[i] = src[i];             \
                        SM_UNROLL for (u = 0; u < U; ++u)                                     \
                            SM_UNROLL for (r = 0; r < R; ++r) {                               \
                                const float wv = wk[(size_t)r * g->taps + (size_t)(kw + u)];  \
                                SM_UNROLL for (i = 0; i < VB; ++i)                            \
                                    acc[r][i] = bt_fmaf(x[i + U - 1 - u], wv, acc[r][i]);     \
                            }                                                                 \
                    }                                                                         \
                for (; kw < g->k_w; ++kw) {                                                   \
                    const float *src = grow - kw * g->dw;                                     \
                    float x[VB];                                                              \
                    SM_UNROLL for (i = 0; i < VB; ++i) x[i] = src[i];                         \
                    SM_UNROLL for (r = 0; r < R; ++r) {                                       \
                        const float wv = wk[(size_t)r * g->taps + (size_t)kw];                \
                        SM_UNROLL for (i = 0; i < VB; ++i)                                    \
                            acc[r][i] = bt_fmaf(x[i], wv, acc[r][i]);                         \
                    }                                                                         \
                }                                                                             \
            }                                                                                 \
        }                                                                                     \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (i = 0; i < VB; ++i) din[(size_t)r * g->in_plane + (size_t)i] = acc[r][i]; \
    }
BWI_SMALL(1, 8, 8)
BWI_SMALL(1, 4, 8)
BWI_SMALL(1, 1, 8)
BWI_SMALL(2, 8, 2)
BWI_SMALL(2, 4, 4)
BWI_SMALL(2, 1, 4)
BWI_SMALL(4, 4, 2)
BWI_SMALL(4, 1, 4)

static void bwi_block(int R, int VB, float *din, const float *dout_g, const float *w_gl,
                      const geom *g, int ih, int kh_lo, int kh_hi, int iw0, int padded)
{
    (void)padded; /* never set: pad_ok is 0 with these blocks */
    switch (R * 100 + VB) {
    case 108: bwi_small_1_8(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 104: bwi_small_1_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 101: bwi_small_1_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 208: bwi_small_2_8(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 204: bwi_small_2_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 201: bwi_small_2_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    case 404: bwi_small_4_4(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    default: bwi_small_4_1(din, dout_g, w_gl, g, ih, kh_lo, kh_hi, iw0); break;
    }
}

/* -------------------------------------------------------- backward_weight
 * acc[r * KB + j] = fma(g[r * gs + p], x_j[p], acc[r * KB + j]) for p in
 * [0, np) ascending. Contiguous taps (wg_small_c): x_j[p] = src[p + j], and
 * P positions share the window src[p .. p + P + KB - 2]. Other taps
 * (wg_small_g): x_j[p] = rows[j][p * sw], read in place instead of through
 * the host's gathered tile. */
#define WG_SMALL_C(R, KB, P)                                                                   \
    static void wg_small_c_##R##_##KB(float *acc, const float *gr, size_t gs,                 \
                                      const float *src, int np)                               \
    {                                                                                         \
        float a[R][KB];                                                                       \
        int r, j, q, p = 0;                                                                   \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (j = 0; j < KB; ++j) a[r][j] = acc[r * KB + j];                     \
        for (; p + P <= np; p += P) {                                                         \
            float x[KB + P - 1];                                                              \
            SM_UNROLL for (j = 0; j < KB + P - 1; ++j) x[j] = src[p + j];                     \
            SM_UNROLL for (q = 0; q < P; ++q)                                                 \
                SM_UNROLL for (r = 0; r < R; ++r) {                                           \
                    const float gv = gr[(size_t)r * gs + (size_t)(p + q)];                    \
                    SM_UNROLL for (j = 0; j < KB; ++j) a[r][j] = bt_fmaf(gv, x[j + q], a[r][j]); \
                }                                                                             \
        }                                                                                     \
        for (; p < np; ++p)                                                                   \
            SM_UNROLL for (r = 0; r < R; ++r) {                                               \
                const float gv = gr[(size_t)r * gs + (size_t)p];                              \
                SM_UNROLL for (j = 0; j < KB; ++j) a[r][j] = bt_fmaf(gv, src[p + j], a[r][j]); \
            }                                                                                 \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (j = 0; j < KB; ++j) acc[r * KB + j] = a[r][j];                     \
    }
#define WG_SMALL_G(R, KB)                                                                      \
    static void wg_small_g_##R##_##KB(float *acc, const float *gr, size_t gs,                 \
                                      const float *const *rows, int sw, int np)               \
    {                                                                                         \
        float a[R][KB];                                                                       \
        int r, j, p;                                                                          \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (j = 0; j < KB; ++j) a[r][j] = acc[r * KB + j];                     \
        for (p = 0; p < np; ++p) {                                                            \
            float x[KB];                                                                      \
            SM_UNROLL for (j = 0; j < KB; ++j) x[j] = rows[j][p * sw];                        \
            SM_UNROLL for (r = 0; r < R; ++r) {                                               \
                const float gv = gr[(size_t)r * gs + (size_t)p];                              \
                SM_UNROLL for (j = 0; j < KB; ++j) a[r][j] = bt_fmaf(gv, x[j], a[r][j]);      \
            }                                                                                 \
        }                                                                                     \
        SM_UNROLL for (r = 0; r < R; ++r)                                                     \
            SM_UNROLL for (j = 0; j < KB; ++j) acc[r * KB + j] = a[r][j];                     \
    }
WG_SMALL_C(1, 8, 8)
WG_SMALL_C(1, 4, 8)
WG_SMALL_C(1, 1, 8)
WG_SMALL_C(2, 4, 4)
WG_SMALL_C(2, 1, 4)
WG_SMALL_C(4, 4, 2)
WG_SMALL_C(4, 1, 4)
WG_SMALL_G(1, 8)
WG_SMALL_G(1, 4)
WG_SMALL_G(1, 1)
WG_SMALL_G(2, 4)
WG_SMALL_G(2, 1)
WG_SMALL_G(4, 4)
WG_SMALL_G(4, 1)

/* Taps per block (no side-by-side groups here: with one output channel per
 * group the rows share no loads). */
static int wg_width(int R, int left, int contiguous, int cross)
{
    (void)contiguous;
    (void)cross;
    if (R == 1 && left >= 8) return 8;
    return left >= 4 ? 4 : 1;
}

static void wg_small_c(int R, int KB, float *acc, const float *gr, size_t gs, const float *src, int np)
{
    switch (R * 100 + KB) {
    case 108: wg_small_c_1_8(acc, gr, gs, src, np); break;
    case 104: wg_small_c_1_4(acc, gr, gs, src, np); break;
    case 101: wg_small_c_1_1(acc, gr, gs, src, np); break;
    case 204: wg_small_c_2_4(acc, gr, gs, src, np); break;
    case 201: wg_small_c_2_1(acc, gr, gs, src, np); break;
    case 404: wg_small_c_4_4(acc, gr, gs, src, np); break;
    default: wg_small_c_4_1(acc, gr, gs, src, np); break;
    }
}

static void wg_small_g(int R, int KB, float *acc, const float *gr, size_t gs, const float *const *rows,
                       int sw, int np)
{
    switch (R * 100 + KB) {
    case 108: wg_small_g_1_8(acc, gr, gs, rows, sw, np); break;
    case 104: wg_small_g_1_4(acc, gr, gs, rows, sw, np); break;
    case 101: wg_small_g_1_1(acc, gr, gs, rows, sw, np); break;
    case 204: wg_small_g_2_4(acc, gr, gs, rows, sw, np); break;
    case 201: wg_small_g_2_1(acc, gr, gs, rows, sw, np); break;
    case 404: wg_small_g_4_4(acc, gr, gs, rows, sw, np); break;
    default: wg_small_g_4_1(acc, gr, gs, rows, sw, np); break;
    }
}

#endif
