/* C tests of the conv2d, linear and pooling float32 kernels: results against
 * textbook loops in double over many shapes, every status (NULL pointers,
 * bad sizes, groups, padding, corrupt argmax), "nothing written on error",
 * weight-gradient accumulation and its micro-batch bit-exactness.
 * Buffers are heap blocks of the exact size so that a sanitizer catches any
 * access outside them. Exit status 0 when every check passes, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/kernels.h"
#include "bt_test.h"

/* ------------------------------------------------------------- helpers */
static unsigned long long lcg_state = 12345u;
static float frand(void) /* uniform in [-1, 1) */
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return (float)((double)(lcg_state >> 40) / (double)(1ull << 24) * 2.0 - 1.0);
}

static float *falloc(size_t n)
{
    float *p = (float *)malloc((n ? n : 1) * sizeof(float));
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    return p;
}

static float *frandom(size_t n)
{
    float *p = falloc(n);
    size_t i;
    for (i = 0; i < n; ++i) p[i] = frand();
    return p;
}

static double *dzeros(size_t n)
{
    double *p = (double *)calloc(n ? n : 1, sizeof(double));
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    return p;
}

static int all_equal_to(const float *p, size_t n, float v)
{
    size_t i;
    for (i = 0; i < n; ++i)
        if (memcmp(&p[i], &v, sizeof v) != 0) return 0;
    return 1;
}

static void fill(float *p, size_t n, float v)
{
    size_t i;
    for (i = 0; i < n; ++i) p[i] = v;
}

#define SENTINEL 12345.0f

/* --------------------------------------------------------------- conv2d */
static int conv_ho(const bt_conv2d_shape *s)
{
    return (s->h_in + 2 * s->pad_h - s->dil_h * (s->k_h - 1) - 1) / s->stride_h + 1;
}
static int conv_wo(const bt_conv2d_shape *s)
{
    return (s->w_in + 2 * s->pad_w - s->dil_w * (s->k_w - 1) - 1) / s->stride_w + 1;
}

/* Textbook conv in double: y, dx, dw, db of the loss sum(y * dy). */
static void conv_ref(const bt_conv2d_shape *s, const float *x, const float *w, const float *b,
                     const float *dy, double *y, double *dx, double *dw, double *db)
{
    const int ho = conv_ho(s), wo = conv_wo(s);
    const int cig = s->c_in / s->groups, cog = s->c_out / s->groups;
    int n, co, oh, ow, cl, kh, kw;
    for (n = 0; n < s->n; ++n)
        for (co = 0; co < s->c_out; ++co)
            for (oh = 0; oh < ho; ++oh)
                for (ow = 0; ow < wo; ++ow) {
                    const size_t yi = (((size_t)n * s->c_out + co) * ho + oh) * wo + ow;
                    double acc = b ? b[co] : 0.0;
                    if (db) db[co] += dy[yi];
                    for (cl = 0; cl < cig; ++cl) {
                        const int ci = (co / cog) * cig + cl;
                        for (kh = 0; kh < s->k_h; ++kh)
                            for (kw = 0; kw < s->k_w; ++kw) {
                                const int ih = oh * s->stride_h - s->pad_h + kh * s->dil_h;
                                const int iw = ow * s->stride_w - s->pad_w + kw * s->dil_w;
                                size_t xi, wi;
                                if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                                xi = (((size_t)n * s->c_in + ci) * s->h_in + ih) * s->w_in + iw;
                                wi = (((size_t)co * cig + cl) * s->k_h + kh) * s->k_w + kw;
                                acc += (double)w[wi] * x[xi];
                                dx[xi] += (double)w[wi] * dy[yi];
                                dw[wi] += (double)x[xi] * dy[yi];
                            }
                    }
                    y[yi] = acc;
                }
}

static bt_conv2d_shape conv_shape(int n, int c_in, int h, int w, int c_out, int kh, int kw,
                                  int sh, int sw, int ph, int pw, int dh, int dw, int g)
{
    bt_conv2d_shape s;
    s.n = n;
    s.c_in = c_in;
    s.h_in = h;
    s.w_in = w;
    s.c_out = c_out;
    s.k_h = kh;
    s.k_w = kw;
    s.stride_h = sh;
    s.stride_w = sw;
    s.pad_h = ph;
    s.pad_w = pw;
    s.dil_h = dh;
    s.dil_w = dw;
    s.groups = g;
    return s;
}

static void conv_case(const bt_conv2d_shape *s, int with_bias)
{
    const int ho = conv_ho(s), wo = conv_wo(s);
    const size_t nx = (size_t)s->n * s->c_in * s->h_in * s->w_in;
    const size_t nw = (size_t)s->c_out * (s->c_in / s->groups) * s->k_h * s->k_w;
    const size_t ny = (size_t)s->n * s->c_out * ho * wo;
    const size_t per_x = nx / s->n, per_y = ny / s->n;
    float *x = frandom(nx), *w = frandom(nw), *b = with_bias ? frandom(s->c_out) : NULL;
    float *dy = frandom(ny), *y = falloc(ny), *dx = falloc(nx);
    float *dw0 = frandom(nw), *dw = falloc(nw), *db = falloc(s->c_out);
    float *dw_mb = falloc(nw), *db_mb = falloc(s->c_out);
    double *ry = dzeros(ny), *rdx = dzeros(nx), *rdw = dzeros(nw), *rdb = dzeros(s->c_out);
    int h_out = -1, w_out = -1, n, i;
    bt_conv2d_shape one = *s;

    CHECK_STATUS(bt_conv2d_check(s, &h_out, &w_out), BT_OK);
    CHECK(h_out == ho && w_out == wo);
    conv_ref(s, x, w, b, dy, ry, rdx, rdw, rdb);

    CHECK_STATUS(bt_conv2d_forward_f32(y, x, w, b, s), BT_OK);
    CHECK_CLOSE(y, ry, ny);
    CHECK_STATUS(bt_conv2d_backward_input_f32(dx, dy, w, s), BT_OK);
    CHECK_CLOSE(dx, rdx, nx);

    /* Accumulation: dw starts from dw0, db from 0.5. */
    memcpy(dw, dw0, nw * sizeof(float));
    fill(db, (size_t)s->c_out, 0.5f);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(dw, db, dy, x, s), BT_OK);
    for (i = 0; i < (int)nw; ++i) rdw[i] += dw0[i];
    for (i = 0; i < s->c_out; ++i) rdb[i] += 0.5;
    CHECK_CLOSE(dw, rdw, nw);
    CHECK_CLOSE(db, rdb, (size_t)s->c_out);

    /* One call per sample gives the same bits as one call over the batch. */
    memcpy(dw_mb, dw0, nw * sizeof(float));
    fill(db_mb, (size_t)s->c_out, 0.5f);
    one.n = 1;
    for (n = 0; n < s->n; ++n)
        CHECK_STATUS(bt_conv2d_backward_weight_f32(dw_mb, db_mb, dy + n * per_y, x + n * per_x, &one),
                     BT_OK);
    CHECK(memcmp(dw_mb, dw, nw * sizeof(float)) == 0);
    CHECK(memcmp(db_mb, db, (size_t)s->c_out * sizeof(float)) == 0);

    /* Without bias gradient: dw identical, nothing else touched. */
    memcpy(dw_mb, dw0, nw * sizeof(float));
    CHECK_STATUS(bt_conv2d_backward_weight_f32(dw_mb, NULL, dy, x, s), BT_OK);
    CHECK(memcmp(dw_mb, dw, nw * sizeof(float)) == 0);

    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw0); free(dw); free(db);
    free(dw_mb); free(db_mb); free(ry); free(rdx); free(rdw); free(rdb);
}

static void test_conv_values(void)
{
    static const int cases[][14] = {
        /* n c_in h w c_out kh kw sh sw ph pw dh dw groups */
        {1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1},     /* tiny */
        {2, 3, 7, 9, 4, 3, 3, 1, 1, 0, 0, 1, 1, 1},
        {2, 3, 7, 9, 4, 3, 3, 1, 1, 1, 1, 1, 1, 1},     /* same padding */
        {1, 4, 8, 11, 6, 3, 2, 2, 3, 1, 1, 1, 1, 2},    /* stride, groups 2 */
        {2, 6, 9, 10, 6, 3, 3, 1, 2, 2, 1, 2, 3, 6},    /* depthwise, dilation */
        {2, 4, 5, 6, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1},     /* pointwise */
        {1, 4, 5, 6, 8, 1, 1, 2, 2, 0, 0, 1, 1, 4},     /* grouped pointwise, stride */
        {3, 2, 1, 40, 4, 1, 7, 1, 3, 0, 3, 1, 2, 2},    /* conv1d (H = 1) */
        {2, 1, 8, 30, 8, 8, 1, 1, 1, 0, 0, 1, 1, 1},    /* spatial 8x1 like MI-BMInet */
        {1, 8, 1, 50, 8, 1, 16, 1, 1, 0, 8, 1, 1, 8},   /* depthwise 1x16 with padding */
        {2, 3, 4, 4, 3, 1, 1, 1, 1, 3, 2, 1, 1, 3},     /* padding wider than the kernel */
        {1, 2, 6, 6, 2, 3, 3, 5, 5, 1, 1, 1, 1, 1},     /* stride larger than the kernel */
        {1, 2, 3, 3, 4, 3, 3, 1, 1, 0, 0, 1, 1, 2},     /* output 1x1 */
        {2, 6, 7, 13, 9, 2, 4, 3, 2, 1, 2, 3, 2, 3},
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        const int *c = cases[i];
        bt_conv2d_shape s = conv_shape(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9],
                                       c[10], c[11], c[12], c[13]);
        conv_case(&s, (int)(i % 2));
        conv_case(&s, (int)(1 - i % 2));
    }
}

static void test_conv_tiny_exact(void)
{
    /* 1x1 conv of one value: 2 * 3 + 1 = 7, exact in float. */
    bt_conv2d_shape s = conv_shape(1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1);
    float x = 2.0f, w = 3.0f, b = 1.0f, y = 0.0f, dy = 4.0f, dx = 0.0f, dw = 1.0f, db = 1.0f;
    CHECK_STATUS(bt_conv2d_forward_f32(&y, &x, &w, &b, &s), BT_OK);
    CHECK(y == 7.0f);
    CHECK_STATUS(bt_conv2d_backward_input_f32(&dx, &dy, &w, &s), BT_OK);
    CHECK(dx == 12.0f);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(&dw, &db, &dy, &x, &s), BT_OK);
    CHECK(dw == 9.0f && db == 5.0f); /* 1 + 8, 1 + 4 */
}

static void test_conv_status(void)
{
    const bt_conv2d_shape good = conv_shape(2, 4, 5, 6, 6, 3, 3, 1, 1, 1, 1, 1, 1, 2);
    const size_t nx = 2 * 4 * 5 * 6, nw = 6 * 2 * 3 * 3, ny = 2 * 6 * 5 * 6;
    float *x = frandom(nx), *w = frandom(nw), *b = frandom(6), *dy = frandom(ny);
    float *y = falloc(ny), *dx = falloc(nx), *dw = falloc(nw), *db = falloc(6);
    bt_conv2d_shape s;
    int ho = -7, wo = -7;

    /* NULL pointers: every required one; the shape too. */
    CHECK_STATUS(bt_conv2d_check(NULL, &ho, &wo), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_check(&good, NULL, NULL), BT_OK);
    CHECK_STATUS(bt_conv2d_forward_f32(y, x, w, b, NULL), BT_ERR_NULL_POINTER);
    fill(y, ny, SENTINEL);
    CHECK_STATUS(bt_conv2d_forward_f32(NULL, x, w, b, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_forward_f32(y, NULL, w, b, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_forward_f32(y, x, NULL, b, &good), BT_ERR_NULL_POINTER);
    CHECK(all_equal_to(y, ny, SENTINEL));
    CHECK_STATUS(bt_conv2d_forward_f32(y, x, w, NULL, &good), BT_OK); /* bias optional */
    fill(dx, nx, SENTINEL);
    CHECK_STATUS(bt_conv2d_backward_input_f32(NULL, dy, w, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_input_f32(dx, NULL, w, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_input_f32(dx, dy, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_input_f32(dx, dy, w, NULL), BT_ERR_NULL_POINTER);
    CHECK(all_equal_to(dx, nx, SENTINEL));
    fill(dw, nw, SENTINEL);
    fill(db, 6, SENTINEL);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(NULL, db, dy, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(dw, db, NULL, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(dw, db, dy, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_conv2d_backward_weight_f32(dw, db, dy, x, NULL), BT_ERR_NULL_POINTER);
    CHECK(all_equal_to(dw, nw, SENTINEL) && all_equal_to(db, 6, SENTINEL));

    /* Sizes: each field zero or negative. */
#define BAD_FIELD(field, value, want)                                               \
    do {                                                                            \
        s = good;                                                                   \
        s.field = (value);                                                          \
        ho = wo = -7;                                                               \
        CHECK_STATUS(bt_conv2d_check(&s, &ho, &wo), want);                          \
        CHECK(ho == -7 && wo == -7);                                                \
        CHECK_STATUS(bt_conv2d_forward_f32(y, x, w, b, &s), want);                  \
        CHECK_STATUS(bt_conv2d_backward_input_f32(dx, dy, w, &s), want);            \
        CHECK_STATUS(bt_conv2d_backward_weight_f32(dw, db, dy, x, &s), want);       \
    } while (0)
    fill(y, ny, SENTINEL);
    BAD_FIELD(n, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(n, -1, BT_ERR_BAD_SIZE);
    BAD_FIELD(c_in, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(h_in, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(w_in, -3, BT_ERR_BAD_SIZE);
    BAD_FIELD(c_out, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(k_h, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(k_w, -1, BT_ERR_BAD_SIZE);
    BAD_FIELD(stride_h, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(stride_w, -2, BT_ERR_BAD_SIZE);
    BAD_FIELD(pad_h, -1, BT_ERR_BAD_SIZE);
    BAD_FIELD(pad_w, -1, BT_ERR_BAD_SIZE);
    BAD_FIELD(dil_h, 0, BT_ERR_BAD_SIZE);
    BAD_FIELD(dil_w, -1, BT_ERR_BAD_SIZE);
    BAD_FIELD(k_h, 8, BT_ERR_BAD_SIZE);       /* 5 + 2 < 8: empty output */
    BAD_FIELD(dil_w, 5, BT_ERR_BAD_SIZE);     /* 1 + 2*5 > 6 + 2 */
    BAD_FIELD(pad_h, 0x7fffffff, BT_ERR_BAD_SIZE); /* padded extent overflows int */
    BAD_FIELD(h_in, 0x40000000, BT_ERR_BAD_SIZE);  /* tensor larger than INT_MAX elements */
    BAD_FIELD(groups, 0, BT_ERR_GROUPS);
    BAD_FIELD(groups, -2, BT_ERR_GROUPS);
    BAD_FIELD(groups, 3, BT_ERR_GROUPS);      /* divides c_out = 6, not c_in = 4 */
    BAD_FIELD(groups, 4, BT_ERR_GROUPS);      /* divides c_in, not c_out */
    CHECK(all_equal_to(y, ny, SENTINEL));
    CHECK(all_equal_to(dx, nx, SENTINEL));
    CHECK(all_equal_to(dw, nw, SENTINEL) && all_equal_to(db, 6, SENTINEL));
#undef BAD_FIELD
    /* A huge stride is fine: one output position. */
    s = good;
    s.stride_h = s.stride_w = 0x7fffffff;
    CHECK_STATUS(bt_conv2d_check(&s, &ho, &wo), BT_OK);
    CHECK(ho == 1 && wo == 1);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw); free(db);
}

/* --------------------------------------------------------------- linear */
static void linear_case(int n, int in_f, int out_f, int with_bias)
{
    float *x = frandom((size_t)n * in_f), *w = frandom((size_t)out_f * in_f);
    float *b = with_bias ? frandom(out_f) : NULL, *dy = frandom((size_t)n * out_f);
    float *y = falloc((size_t)n * out_f), *dx = falloc((size_t)n * in_f);
    float *dw0 = frandom((size_t)out_f * in_f), *dw = falloc((size_t)out_f * in_f);
    float *dw_mb = falloc((size_t)out_f * in_f), *db = falloc(out_f), *db_mb = falloc(out_f);
    double *ry = dzeros((size_t)n * out_f), *rdx = dzeros((size_t)n * in_f);
    double *rdw = dzeros((size_t)out_f * in_f), *rdb = dzeros(out_f);
    int i, o, k;
    for (i = 0; i < n; ++i)
        for (o = 0; o < out_f; ++o) {
            double acc = b ? b[o] : 0.0, g = dy[i * out_f + o];
            for (k = 0; k < in_f; ++k) {
                acc += (double)x[i * in_f + k] * w[o * in_f + k];
                rdx[i * in_f + k] += g * w[o * in_f + k];
                rdw[o * in_f + k] += g * x[i * in_f + k];
            }
            ry[i * out_f + o] = acc;
            rdb[o] += g;
        }
    for (i = 0; i < out_f * in_f; ++i) rdw[i] += dw0[i];
    for (o = 0; o < out_f; ++o) rdb[o] += 0.25;
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, b, n, in_f, out_f), BT_OK);
    CHECK_CLOSE(y, ry, (size_t)n * out_f);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, dy, w, n, in_f, out_f), BT_OK);
    CHECK_CLOSE(dx, rdx, (size_t)n * in_f);
    memcpy(dw, dw0, sizeof(float) * out_f * in_f);
    fill(db, (size_t)out_f, 0.25f);
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, db, dy, x, n, in_f, out_f), BT_OK);
    CHECK_CLOSE(dw, rdw, (size_t)out_f * in_f);
    CHECK_CLOSE(db, rdb, (size_t)out_f);
    memcpy(dw_mb, dw0, sizeof(float) * out_f * in_f);
    fill(db_mb, (size_t)out_f, 0.25f);
    for (i = 0; i < n; ++i)
        CHECK_STATUS(bt_linear_backward_weight_f32(dw_mb, db_mb, dy + i * out_f, x + i * in_f, 1,
                                                   in_f, out_f),
                     BT_OK);
    CHECK(memcmp(dw_mb, dw, sizeof(float) * out_f * in_f) == 0);
    CHECK(memcmp(db_mb, db, sizeof(float) * out_f) == 0);
    free(x); free(w); free(b); free(dy); free(y); free(dx); free(dw0); free(dw); free(dw_mb);
    free(db); free(db_mb); free(ry); free(rdx); free(rdw); free(rdb);
}

static void test_linear(void)
{
    float x[6], w[12], b[4], y[8], dy[8], dx[6], dw[12], db[4];
    int i;
    linear_case(1, 1, 1, 1);
    linear_case(3, 5, 2, 0);
    linear_case(4, 208, 2, 1);
    linear_case(2, 16, 11, 1);
    linear_case(5, 33, 17, 0);
    for (i = 0; i < 6; ++i) x[i] = frand();
    for (i = 0; i < 12; ++i) w[i] = frand();
    for (i = 0; i < 8; ++i) dy[i] = frand();
    fill(b, 4, 0.5f);
    fill(y, 8, SENTINEL);
    fill(dx, 6, SENTINEL);
    fill(dw, 12, SENTINEL);
    fill(db, 4, SENTINEL);
    /* n = 2, in_f = 3, out_f = 4 */
    CHECK_STATUS(bt_linear_forward_f32(NULL, x, w, b, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_forward_f32(y, NULL, w, b, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_forward_f32(y, x, NULL, b, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, b, 0, 3, 4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, b, 2, -3, 4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, b, 2, 3, 0), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, b, 0x10000, 0x10000, 4), BT_ERR_BAD_SIZE);
    CHECK(all_equal_to(y, 8, SENTINEL));
    CHECK_STATUS(bt_linear_backward_input_f32(NULL, dy, w, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, NULL, w, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, dy, NULL, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, dy, w, -2, 3, 4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, dy, w, 2, 0, 4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_backward_input_f32(dx, dy, w, 2, 3, -4), BT_ERR_BAD_SIZE);
    CHECK(all_equal_to(dx, 6, SENTINEL));
    CHECK_STATUS(bt_linear_backward_weight_f32(NULL, db, dy, x, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, db, NULL, x, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, db, dy, NULL, 2, 3, 4), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, db, dy, x, 0, 3, 4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, db, dy, x, 2, 3, 0), BT_ERR_BAD_SIZE);
    CHECK(all_equal_to(dw, 12, SENTINEL) && all_equal_to(db, 4, SENTINEL));
    CHECK_STATUS(bt_linear_backward_weight_f32(dw, NULL, dy, x, 2, 3, 4), BT_OK);
    CHECK(all_equal_to(db, 4, SENTINEL));
    CHECK_STATUS(bt_linear_forward_f32(y, x, w, NULL, 2, 3, 4), BT_OK);
}

/* ----------------------------------------------------------------- pool */
static bt_pool2d_shape pool_shape(int n, int c, int h, int w, int kh, int kw, int sh, int sw,
                                  int ph, int pw)
{
    bt_pool2d_shape s;
    s.n = n;
    s.c = c;
    s.h_in = h;
    s.w_in = w;
    s.k_h = kh;
    s.k_w = kw;
    s.stride_h = sh;
    s.stride_w = sw;
    s.pad_h = ph;
    s.pad_w = pw;
    return s;
}

static void pool_case(const bt_pool2d_shape *s)
{
    const int ho = (s->h_in + 2 * s->pad_h - s->k_h) / s->stride_h + 1;
    const int wo = (s->w_in + 2 * s->pad_w - s->k_w) / s->stride_w + 1;
    const size_t planes = (size_t)s->n * s->c, nx = planes * s->h_in * s->w_in;
    const size_t ny = planes * ho * wo;
    float *x = frandom(nx), *dy = frandom(ny), *y = falloc(ny), *dx = falloc(nx);
    float *dx2 = falloc(nx);
    int32_t *arg = (int32_t *)malloc(ny * sizeof(int32_t));
    double *ry = dzeros(ny), *rdx = dzeros(nx), *rmy = dzeros(ny), *rmdx = dzeros(nx);
    size_t p;
    int oh, ow, kh, kw, h_out = 0, w_out = 0, arg_ok = 1;
    const double area = (double)s->k_h * s->k_w;

    for (p = 0; p < planes; ++p)
        for (oh = 0; oh < ho; ++oh)
            for (ow = 0; ow < wo; ++ow) {
                const size_t yi = (p * ho + oh) * wo + ow;
                double sum = 0.0, best = -HUGE_VAL;
                size_t besti = 0;
                for (kh = 0; kh < s->k_h; ++kh)
                    for (kw = 0; kw < s->k_w; ++kw) {
                        const int ih = oh * s->stride_h - s->pad_h + kh;
                        const int iw = ow * s->stride_w - s->pad_w + kw;
                        size_t xi;
                        if (ih < 0 || ih >= s->h_in || iw < 0 || iw >= s->w_in) continue;
                        xi = (p * s->h_in + ih) * s->w_in + iw;
                        sum += x[xi];
                        rdx[xi] += dy[yi] / area;
                        if (x[xi] > best) {
                            best = x[xi];
                            besti = xi;
                        }
                    }
                ry[yi] = sum / area;
                rmy[yi] = best;
                rmdx[besti] += dy[yi];
            }
    CHECK_STATUS(bt_pool2d_check(s, &h_out, &w_out), BT_OK);
    CHECK(h_out == ho && w_out == wo);
    CHECK_STATUS(bt_avgpool2d_forward_f32(y, x, s), BT_OK);
    CHECK_CLOSE(y, ry, ny);
    CHECK_STATUS(bt_avgpool2d_backward_f32(dx, dy, s), BT_OK);
    CHECK_CLOSE(dx, rdx, nx);
    CHECK_STATUS(bt_maxpool2d_forward_f32(y, arg, x, s), BT_OK);
    CHECK(bt_test_rel_err(y, rmy, ny) == 0.0);
    for (p = 0; p < ny; ++p) {
        const size_t plane = p / ((size_t)ho * wo);
        arg_ok &= x[plane * s->h_in * s->w_in + (size_t)arg[p]] == y[p];
    }
    CHECK(arg_ok);
    CHECK_STATUS(bt_maxpool2d_forward_f32(y, NULL, x, s), BT_OK);
    CHECK(bt_test_rel_err(y, rmy, ny) == 0.0);
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg, s), BT_OK);
    CHECK_CLOSE(dx, rmdx, nx);
    CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(dx2, dy, x, s), BT_OK);
    CHECK(memcmp(dx, dx2, nx * sizeof(float)) == 0);
    free(x); free(dy); free(y); free(dx); free(dx2); free(arg); free(ry); free(rdx); free(rmy);
    free(rmdx);
}

static void test_pool_values(void)
{
    static const int cases[][10] = {
        /* n c h w kh kw sh sw ph pw */
        {1, 1, 1, 1, 1, 1, 1, 1, 0, 0},
        {2, 3, 8, 8, 2, 2, 2, 2, 0, 0},
        {1, 2, 7, 9, 3, 3, 2, 2, 1, 1},
        {2, 2, 7, 9, 3, 2, 1, 1, 1, 1},   /* overlapping windows */
        {1, 8, 1, 100, 1, 8, 1, 8, 0, 0}, /* 1x8 pooling on a sequence */
        {3, 4, 1, 23, 1, 5, 1, 5, 0, 2},  /* 1x5, leftover columns dropped */
        {1, 2, 5, 6, 4, 4, 3, 1, 2, 2},   /* even kernel, padding k/2 */
        {2, 1, 6, 5, 6, 5, 1, 1, 0, 0},   /* window = whole input */
    };
    size_t i;
    for (i = 0; i < sizeof cases / sizeof cases[0]; ++i) {
        const int *c = cases[i];
        bt_pool2d_shape s = pool_shape(c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8], c[9]);
        pool_case(&s);
    }
}

static void test_pool_status(void)
{
    const bt_pool2d_shape good = pool_shape(2, 3, 6, 7, 3, 3, 2, 2, 1, 1); /* out 3x4 */
    const size_t nx = 2 * 3 * 6 * 7, ny = 2 * 3 * 3 * 4;
    float *x = frandom(nx), *dy = frandom(ny), *y = falloc(ny), *dx = falloc(nx);
    int32_t *arg = (int32_t *)malloc(ny * sizeof(int32_t)), *arg2 = (int32_t *)malloc(ny * sizeof(int32_t));
    bt_pool2d_shape s;
    int ho = -7, wo = -7;

    CHECK_STATUS(bt_pool2d_check(NULL, &ho, &wo), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_forward_f32(y, arg, x, &good), BT_OK);
    fill(y, ny, SENTINEL);
    fill(dx, nx, SENTINEL);
    CHECK_STATUS(bt_avgpool2d_forward_f32(NULL, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_avgpool2d_forward_f32(y, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_avgpool2d_forward_f32(y, x, NULL), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_avgpool2d_backward_f32(NULL, dy, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_avgpool2d_backward_f32(dx, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_avgpool2d_backward_f32(dx, dy, NULL), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_forward_f32(NULL, arg, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_forward_f32(y, arg, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_forward_f32(y, arg, x, NULL), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_f32(NULL, dy, arg, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, NULL, arg, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg, NULL), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(NULL, dy, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(dx, NULL, x, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(dx, dy, NULL, &good), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(dx, dy, x, NULL), BT_ERR_NULL_POINTER);
    CHECK(all_equal_to(y, ny, SENTINEL) && all_equal_to(dx, nx, SENTINEL));

#define BAD_FIELD(field, value)                                                      \
    do {                                                                             \
        s = good;                                                                    \
        s.field = (value);                                                           \
        ho = wo = -7;                                                                \
        CHECK_STATUS(bt_pool2d_check(&s, &ho, &wo), BT_ERR_BAD_SIZE);                \
        CHECK(ho == -7 && wo == -7);                                                 \
        CHECK_STATUS(bt_avgpool2d_forward_f32(y, x, &s), BT_ERR_BAD_SIZE);           \
        CHECK_STATUS(bt_avgpool2d_backward_f32(dx, dy, &s), BT_ERR_BAD_SIZE);        \
        CHECK_STATUS(bt_maxpool2d_forward_f32(y, arg2, x, &s), BT_ERR_BAD_SIZE);     \
        CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg, &s), BT_ERR_BAD_SIZE);   \
        CHECK_STATUS(bt_maxpool2d_backward_recompute_f32(dx, dy, x, &s), BT_ERR_BAD_SIZE); \
    } while (0)
    BAD_FIELD(n, 0);
    BAD_FIELD(c, -1);
    BAD_FIELD(h_in, 0);
    BAD_FIELD(w_in, -5);
    BAD_FIELD(k_h, 0);
    BAD_FIELD(k_w, -3);
    BAD_FIELD(stride_h, 0);
    BAD_FIELD(stride_w, -1);
    BAD_FIELD(pad_h, -1);
    BAD_FIELD(pad_w, 2);   /* more than k/2 = 1 */
    BAD_FIELD(k_h, 9);     /* window larger than the padded input (6 + 2) */
    BAD_FIELD(h_in, 0x7fffffff);
    CHECK(all_equal_to(y, ny, SENTINEL) && all_equal_to(dx, nx, SENTINEL));
#undef BAD_FIELD
    s = good;
    s.k_w = 4;
    s.pad_w = 2; /* k/2 with an even kernel is allowed */
    CHECK_STATUS(bt_pool2d_check(&s, &ho, &wo), BT_OK);

    /* Corrupt argmax: outside the plane, negative, or outside its window. */
    memcpy(arg2, arg, ny * sizeof(int32_t));
    arg2[5] = 6 * 7;
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg2, &good), BT_ERR_CORRUPT);
    arg2[5] = -1;
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg2, &good), BT_ERR_CORRUPT);
    memcpy(arg2, arg, ny * sizeof(int32_t));
    arg2[ny - 1] = 0; /* the last window (bottom right) does not hold (0, 0) */
    CHECK_STATUS(bt_maxpool2d_backward_f32(dx, dy, arg2, &good), BT_ERR_CORRUPT);
    CHECK(all_equal_to(dx, nx, SENTINEL));

    /* NaN propagates: the first NaN of a window is its maximum. */
    {
        bt_pool2d_shape t = pool_shape(1, 1, 2, 2, 2, 2, 2, 2, 0, 0);
        float v[4] = {1.0f, 0.0f, 5.0f, 0.0f}, o = 0.0f;
        int32_t a = -1;
        v[1] = v[3] = (float)nan("");
        CHECK_STATUS(bt_maxpool2d_forward_f32(&o, &a, v, &t), BT_OK);
        CHECK(o != o && a == 1);
    }

    /* global average pool: the average-pool kernel over the whole plane (what the op global_avgpool runs) */
    {
        float gx[12], gy[4], gdx[16], gdy[4] = {4.0f, 8.0f, -2.0f, 1.0f};
        bt_pool2d_shape g3, g4;
        int i;
        memset(&g3, 0, sizeof g3);
        g3.n = 2; g3.c = 2; g3.h_in = 1; g3.w_in = 3; g3.k_h = 1; g3.k_w = 3; g3.stride_h = 1; g3.stride_w = 3;
        g4 = g3;
        g4.w_in = 4; g4.k_w = 4; g4.stride_w = 4;
        for (i = 0; i < 12; ++i) gx[i] = (float)i;
        CHECK_STATUS(bt_avgpool2d_forward_f32(gy, gx, &g3), BT_OK);
        CHECK(gy[0] == 1.0f && gy[1] == 4.0f && gy[2] == 7.0f && gy[3] == 10.0f);
        CHECK_STATUS(bt_avgpool2d_backward_f32(gdx, gdy, &g4), BT_OK);
        CHECK(gdx[0] == 1.0f && gdx[3] == 1.0f && gdx[4] == 2.0f && gdx[8] == -0.5f &&
              gdx[15] == 0.25f);
    }
    free(x); free(dy); free(y); free(dx); free(arg); free(arg2);
}

int main(void)
{
    test_conv_tiny_exact();
    test_conv_values();
    test_conv_status();
    test_linear();
    test_pool_values();
    test_pool_status();
    return bt_test_report("test_kernels_conv_linear_pool");
}
