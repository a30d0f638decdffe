/* C unit test of the groupnorm, batchnorm, activation, elementwise, dropout
 * and loss float32 kernels: values against small double-precision
 * computations written here, every status (NULL pointers, sizes, groups,
 * parameters, labels) with the outputs left untouched, the in-place (aliasing)
 * cases each kernel allows, and += for weight gradients.
 * Exit status 0 when every check passes, 1 otherwise. */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <stdint.h>
#include "biotrain/kernels.h"
#include "biotrain/bt_math.h"
#include "biotrain/rng.h"
#include "bt_test.h"

static float from_bits(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}
static float make_nan(void) { return from_bits(0x7fc00000u); }
static float make_inf(void) { return from_bits(0x7f800000u); }

/* Deterministic test data in [-1, 1) * scale + offset. */
static uint32_t lcg = 12345u;
static float rnd(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (float)(lcg >> 8) / 8388608.0f - 1.0f;
}
static void fill(float *a, int count, float scale, float offset)
{
    int i;
    for (i = 0; i < count; ++i) a[i] = rnd() * scale + offset;
}
static void fill_const(float *a, int count, float v)
{
    int i;
    for (i = 0; i < count; ++i) a[i] = v;
}
static int all_equal(const float *a, int count, float v)
{
    int i;
    for (i = 0; i < count; ++i)
        if (a[i] != v) return 0;
    return 1;
}
static int same_bits(const float *a, const float *b, int count)
{
    return memcmp(a, b, (size_t)count * sizeof(float)) == 0;
}

/* ------------------------------------------------------------- groupnorm */

enum { GN_N = 2, GN_C = 6, GN_HW = 5, GN_G = 3, GN_SZ = GN_N * GN_C * GN_HW };

/* Double-precision GroupNorm, forward and backward, from the definitions. */
static void gn_ref(double *y, double *dx, double *dw, double *db, const float *x, const float *dy,
                   const float *w, const float *b, int n, int c, int hw, int g, double eps)
{
    int cpg = c / g, m = cpg * hw, s, k, i, ch;
    for (ch = 0; ch < c; ++ch) dw[ch] = db[ch] = 0.0;
    for (s = 0; s < n; ++s)
        for (k = 0; k < g; ++k) {
            const int off = (s * g + k) * m;
            double mean = 0.0, var = 0.0, r, sg = 0.0, sgx = 0.0;
            for (i = 0; i < m; ++i) mean += x[off + i];
            mean /= m;
            for (i = 0; i < m; ++i) var += (x[off + i] - mean) * (x[off + i] - mean);
            var /= m;
            r = 1.0 / sqrt(var + eps);
            for (i = 0; i < m; ++i) {
                ch = k * cpg + i / hw;
                y[off + i] = (x[off + i] - mean) * r * (w ? w[ch] : 1.0) + (b ? b[ch] : 0.0);
                sg += dy[off + i] * (w ? w[ch] : 1.0);
                sgx += dy[off + i] * (w ? w[ch] : 1.0) * (x[off + i] - mean) * r;
                dw[ch] += dy[off + i] * (x[off + i] - mean) * r;
                db[ch] += dy[off + i];
            }
            for (i = 0; i < m; ++i) {
                double xh = (x[off + i] - mean) * r;
                ch = k * cpg + i / hw;
                dx[off + i] = r * (dy[off + i] * (w ? w[ch] : 1.0) - sg / m - xh * sgx / m);
            }
        }
}

static void test_groupnorm(void)
{
    float x[GN_SZ], dy[GN_SZ], y[GN_SZ], dx[GN_SZ], w[GN_C], b[GN_C];
    float mean[GN_N * GN_C], rstd[GN_N * GN_C], dw[GN_C], db[GN_C], buf[GN_SZ], buf2[GN_SZ];
    double ry[GN_SZ], rdx[GN_SZ], rdw[GN_C], rdb[GN_C];
    const float eps = 1e-5f;
    fill(x, GN_SZ, 2.0f, 3.0f);
    fill(dy, GN_SZ, 1.0f, 0.0f);
    fill(w, GN_C, 0.5f, 1.0f);
    fill(b, GN_C, 1.0f, 0.0f);

    /* values, with and without affine */
    gn_ref(ry, rdx, rdw, rdb, x, dy, w, b, GN_N, GN_C, GN_HW, GN_G, eps);
    CHECK_STATUS(bt_groupnorm_forward_f32(y, mean, rstd, x, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_OK);
    CHECK_CLOSE(y, ry, GN_SZ);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(dx, dy, x, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    CHECK_CLOSE(dx, rdx, GN_SZ);
    fill_const(dw, GN_C, 0.0f);
    fill_const(db, GN_C, 0.0f);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(dw, db, dy, x, mean, rstd, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    CHECK_CLOSE(dw, rdw, GN_C);
    CHECK_CLOSE(db, rdb, GN_C);
    /* += : a second call doubles */
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(dw, db, dy, x, mean, rstd, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    {
        double r2[GN_C];
        int i;
        for (i = 0; i < GN_C; ++i) r2[i] = 2.0 * rdw[i];
        CHECK_CLOSE(dw, r2, GN_C);
        for (i = 0; i < GN_C; ++i) r2[i] = 2.0 * rdb[i];
        CHECK_CLOSE(db, r2, GN_C);
    }
    /* LayerNorm (1 group) and InstanceNorm (C groups), no affine */
    {
        int gs[2] = {1, GN_C}, t;
        for (t = 0; t < 2; ++t) {
            gn_ref(ry, rdx, rdw, rdb, x, dy, NULL, NULL, GN_N, GN_C, GN_HW, gs[t], eps);
            CHECK_STATUS(bt_groupnorm_forward_f32(y, mean, rstd, x, NULL, NULL, GN_N, GN_C, GN_HW, gs[t], eps), BT_OK);
            CHECK_CLOSE(y, ry, GN_SZ);
            CHECK_STATUS(bt_groupnorm_backward_input_f32(dx, dy, x, mean, rstd, NULL, GN_N, GN_C, GN_HW, gs[t]), BT_OK);
            CHECK_CLOSE(dx, rdx, GN_SZ);
        }
    }

    /* in place: d_in == in and d_in == d_out give the out-of-place bits */
    CHECK_STATUS(bt_groupnorm_forward_f32(y, mean, rstd, x, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_OK);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(dx, dy, x, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    memcpy(buf, x, sizeof buf);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, buf, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    CHECK(same_bits(buf, dx, GN_SZ));
    memcpy(buf, dy, sizeof buf);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, buf, x, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_OK);
    CHECK(same_bits(buf, dx, GN_SZ));
    memcpy(buf, x, sizeof buf);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, mean, rstd, buf, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_OK);
    CHECK(same_bits(buf, y, GN_SZ));

    /* statuses; nothing written */
    fill_const(buf, GN_SZ, 7.0f);
    fill_const(buf2, GN_N * GN_G, 7.0f);
    CHECK_STATUS(bt_groupnorm_forward_f32(NULL, mean, rstd, x, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, NULL, rstd, x, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, NULL, x, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, NULL, w, b, GN_N, GN_C, GN_HW, GN_G, eps), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, 0, GN_C, GN_HW, GN_G, eps), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, -1, GN_HW, GN_G, eps), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, 0, GN_G, eps), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, 65536, 65536, 1, 1, eps), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, 4, eps), BT_ERR_GROUPS);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, 0, eps), BT_ERR_GROUPS);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, -3, eps), BT_ERR_GROUPS);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, GN_G, 0.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, GN_G, -1.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, GN_G, make_nan()), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_groupnorm_forward_f32(buf, buf2, buf2, x, w, b, GN_N, GN_C, GN_HW, GN_G, make_inf()), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(NULL, dy, x, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, NULL, x, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, NULL, mean, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, x, NULL, rstd, w, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, x, mean, NULL, w, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, x, mean, rstd, w, GN_N, GN_C, -5, GN_G), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_backward_input_f32(buf, dy, x, mean, rstd, w, GN_N, GN_C, GN_HW, 5), BT_ERR_GROUPS);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(NULL, NULL, dy, x, mean, rstd, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(buf, buf, NULL, x, mean, rstd, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(buf, buf, dy, NULL, mean, rstd, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(buf, buf, dy, x, NULL, rstd, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(buf, buf, dy, x, mean, NULL, GN_N, GN_C, GN_HW, GN_G), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(buf, NULL, dy, x, mean, rstd, GN_N, 0, GN_HW, GN_G), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_groupnorm_backward_weight_f32(NULL, buf, dy, x, mean, rstd, GN_N, GN_C, GN_HW, 7), BT_ERR_GROUPS);
    CHECK(all_equal(buf, GN_SZ, 7.0f));
    CHECK(all_equal(buf2, GN_N * GN_G, 7.0f));
}

/* ------------------------------------------------------------- batchnorm */

enum { BN_N = 3, BN_C = 4, BN_HW = 5, BN_SZ = BN_N * BN_C * BN_HW };

static void test_batchnorm(void)
{
    float x[BN_SZ], dy[BN_SZ], y[BN_SZ], dx[BN_SZ], w[BN_C], b[BN_C], buf[BN_SZ];
    float mean[BN_C], rstd[BN_C], rm[BN_C], rv[BN_C], dw[BN_C], db[BN_C];
    double ry[BN_SZ], rdx[BN_SZ], rdw[BN_C], rdb[BN_C], rrm[BN_C], rrv[BN_C];
    const float eps = 1e-5f, mom = 0.1f;
    const int m = BN_N * BN_HW;
    int ch, s, i;
    fill(x, BN_SZ, 1.5f, -2.0f);
    fill(dy, BN_SZ, 1.0f, 0.0f);
    fill(w, BN_C, 0.5f, 1.0f);
    fill(b, BN_C, 1.0f, 0.0f);
    fill(rm, BN_C, 1.0f, 0.0f);
    fill(rv, BN_C, 0.5f, 1.0f);

    for (ch = 0; ch < BN_C; ++ch) {
        double mu = 0.0, var = 0.0, r, sg = 0.0, sgx = 0.0;
        for (s = 0; s < BN_N; ++s)
            for (i = 0; i < BN_HW; ++i) mu += x[(s * BN_C + ch) * BN_HW + i];
        mu /= m;
        for (s = 0; s < BN_N; ++s)
            for (i = 0; i < BN_HW; ++i) {
                double d = x[(s * BN_C + ch) * BN_HW + i] - mu;
                var += d * d;
            }
        rrm[ch] = (1.0 - mom) * rm[ch] + mom * mu;
        rrv[ch] = (1.0 - mom) * rv[ch] + mom * var / (m - 1);
        var /= m;
        r = 1.0 / sqrt(var + eps);
        rdw[ch] = rdb[ch] = 0.0;
        for (s = 0; s < BN_N; ++s)
            for (i = 0; i < BN_HW; ++i) {
                const int k = (s * BN_C + ch) * BN_HW + i;
                const double xh = (x[k] - mu) * r;
                ry[k] = xh * w[ch] + b[ch];
                sg += dy[k] * w[ch];
                sgx += dy[k] * w[ch] * xh;
                rdw[ch] += dy[k] * xh;
                rdb[ch] += dy[k];
            }
        for (s = 0; s < BN_N; ++s)
            for (i = 0; i < BN_HW; ++i) {
                const int k = (s * BN_C + ch) * BN_HW + i;
                rdx[k] = r * (dy[k] * w[ch] - sg / m - (x[k] - mu) * r * sgx / m);
            }
    }
    CHECK_STATUS(bt_batchnorm_forward_train_f32(y, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, mom, eps), BT_OK);
    CHECK_CLOSE(y, ry, BN_SZ);
    CHECK_CLOSE(rm, rrm, BN_C);
    CHECK_CLOSE(rv, rrv, BN_C);
    CHECK_STATUS(bt_batchnorm_backward_input_f32(dx, dy, x, mean, rstd, w, BN_N, BN_C, BN_HW), BT_OK);
    CHECK_CLOSE(dx, rdx, BN_SZ);
    fill_const(dw, BN_C, 0.0f);
    fill_const(db, BN_C, 0.0f);
    CHECK_STATUS(bt_batchnorm_backward_weight_f32(dw, db, dy, x, mean, rstd, BN_N, BN_C, BN_HW), BT_OK);
    CHECK_CLOSE(dw, rdw, BN_C);
    CHECK_CLOSE(db, rdb, BN_C);

    /* eval with the updated running stats */
    {
        double re[BN_SZ];
        for (s = 0; s < BN_N; ++s)
            for (ch = 0; ch < BN_C; ++ch)
                for (i = 0; i < BN_HW; ++i) {
                    const int k = (s * BN_C + ch) * BN_HW + i;
                    re[k] = (x[k] - rm[ch]) / sqrt((double)rv[ch] + eps) * w[ch] + b[ch];
                }
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(y, x, rm, rv, w, b, BN_N, BN_C, BN_HW, eps), BT_OK);
        CHECK_CLOSE(y, re, BN_SZ);
        memcpy(buf, x, sizeof buf);
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, buf, rm, rv, w, b, BN_N, BN_C, BN_HW, eps), BT_OK);
        CHECK(same_bits(buf, y, BN_SZ));
    }

    /* in place */
    memcpy(buf, x, sizeof buf);
    CHECK_STATUS(bt_batchnorm_backward_input_f32(buf, dy, buf, mean, rstd, w, BN_N, BN_C, BN_HW), BT_OK);
    CHECK(same_bits(buf, dx, BN_SZ));
    memcpy(buf, dy, sizeof buf);
    CHECK_STATUS(bt_batchnorm_backward_input_f32(buf, buf, x, mean, rstd, w, BN_N, BN_C, BN_HW), BT_OK);
    CHECK(same_bits(buf, dx, BN_SZ));

    /* statuses; nothing written (running stats included) */
    {
        float rm0[BN_C], rv0[BN_C];
        memcpy(rm0, rm, sizeof rm);
        memcpy(rv0, rv, sizeof rv);
        fill_const(buf, BN_SZ, 7.0f);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(NULL, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, mom, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, NULL, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, mom, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, NULL, rm, rv, x, w, b, BN_N, BN_C, BN_HW, mom, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, NULL, w, b, BN_N, BN_C, BN_HW, mom, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, 0, BN_C, BN_HW, mom, eps), BT_ERR_BAD_SIZE);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, 1, BN_C, 1, mom, eps), BT_ERR_BAD_SIZE);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, -0.1f, eps), BT_ERR_BAD_PARAM);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, 1.1f, eps), BT_ERR_BAD_PARAM);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, make_nan(), eps), BT_ERR_BAD_PARAM);
        CHECK_STATUS(bt_batchnorm_forward_train_f32(buf, mean, rstd, rm, rv, x, w, b, BN_N, BN_C, BN_HW, mom, 0.0f), BT_ERR_BAD_PARAM);
        CHECK(same_bits(rm, rm0, BN_C) && same_bits(rv, rv0, BN_C));
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, x, NULL, rv, w, b, BN_N, BN_C, BN_HW, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, x, rm, NULL, w, b, BN_N, BN_C, BN_HW, eps), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, x, rm, rv, w, b, BN_N, BN_C, -1, eps), BT_ERR_BAD_SIZE);
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, x, rm, rv, w, b, BN_N, BN_C, BN_HW, -eps), BT_ERR_BAD_PARAM);
        rv[2] = -1.0f;
        CHECK_STATUS(bt_batchnorm_forward_eval_f32(buf, x, rm, rv, w, b, BN_N, BN_C, BN_HW, eps), BT_ERR_BAD_PARAM);
        rv[2] = rv0[2];
        CHECK_STATUS(bt_batchnorm_backward_input_f32(buf, dy, x, NULL, rstd, w, BN_N, BN_C, BN_HW), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_backward_input_f32(buf, dy, x, mean, rstd, w, BN_N, 0, BN_HW), BT_ERR_BAD_SIZE);
        CHECK_STATUS(bt_batchnorm_backward_weight_f32(NULL, NULL, dy, x, mean, rstd, BN_N, BN_C, BN_HW), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_backward_weight_f32(buf, NULL, dy, x, mean, NULL, BN_N, BN_C, BN_HW), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_batchnorm_backward_weight_f32(buf, buf, dy, x, mean, rstd, -2, BN_C, BN_HW), BT_ERR_BAD_SIZE);
        CHECK(all_equal(buf, BN_SZ, 7.0f));
    }
}

/* ------------------------------------------------------------ activation */

enum { ACT_N = 37 };

static void test_activations(void)
{
    float x[ACT_N], dy[ACT_N], y[ACT_N], dx[ACT_N], buf[ACT_N];
    double r[ACT_N];
    const float alpha = 0.7f;
    const double k0 = sqrt(2.0 / 3.14159265358979323846), k1 = 0.044715;
    int i;
    fill(x, ACT_N, 4.0f, 0.0f);
    fill(dy, ACT_N, 1.0f, 0.0f);
    x[0] = 0.0f;

    CHECK_STATUS(bt_relu_forward_f32(y, x, ACT_N), BT_OK);
    for (i = 0; i < ACT_N; ++i) r[i] = x[i] > 0 ? x[i] : 0.0;
    CHECK_CLOSE(y, r, ACT_N);
    CHECK_STATUS(bt_relu_backward_f32(dx, dy, y, ACT_N), BT_OK);
    for (i = 0; i < ACT_N; ++i) r[i] = x[i] > 0 ? dy[i] : 0.0;
    CHECK_CLOSE(dx, r, ACT_N);

    CHECK_STATUS(bt_elu_forward_f32(y, x, ACT_N, alpha), BT_OK);
    for (i = 0; i < ACT_N; ++i) r[i] = x[i] > 0 ? x[i] : alpha * (exp(x[i]) - 1.0);
    CHECK_CLOSE(y, r, ACT_N);
    CHECK_STATUS(bt_elu_backward_f32(dx, dy, y, ACT_N, alpha), BT_OK);
    for (i = 0; i < ACT_N; ++i) r[i] = dy[i] * (x[i] > 0 ? 1.0 : alpha * exp(x[i]));
    CHECK_CLOSE(dx, r, ACT_N);

    CHECK_STATUS(bt_gelu_forward_f32(y, x, ACT_N), BT_OK);
    for (i = 0; i < ACT_N; ++i) r[i] = 0.5 * x[i] * (1.0 + tanh(k0 * (x[i] + k1 * x[i] * x[i] * x[i])));
    CHECK_CLOSE(y, r, ACT_N);
    CHECK_STATUS(bt_gelu_backward_f32(dx, dy, x, ACT_N), BT_OK);
    for (i = 0; i < ACT_N; ++i) {
        const double t = tanh(k0 * (x[i] + k1 * x[i] * x[i] * x[i]));
        r[i] = dy[i] * (0.5 * (1.0 + t) + 0.5 * x[i] * (1.0 - t * t) * k0 * (1.0 + 3.0 * k1 * x[i] * x[i]));
    }
    CHECK_CLOSE(dx, r, ACT_N);
    {   /* huge |x|: no NaN from 0 * inf */
        float big[4] = {1e30f, -1e30f, 3e38f, -3e38f}, gy[4], gd[4], ones[4] = {1, 1, 1, 1};
        CHECK_STATUS(bt_gelu_forward_f32(gy, big, 4), BT_OK);
        CHECK_STATUS(bt_gelu_backward_f32(gd, ones, big, 4), BT_OK);
        CHECK(gy[0] == 1e30f && gy[1] == 0.0f && gy[2] == 3e38f && gy[3] == 0.0f);
        CHECK(gd[0] == 1.0f && gd[1] == 0.0f && gd[2] == 1.0f && gd[3] == 0.0f);
    }

    /* in place: out == in, d_in == d_out */
    {
        bt_status (*fwd[2])(float *, const float *, int) = {bt_relu_forward_f32, bt_gelu_forward_f32};
        int f;
        for (f = 0; f < 2; ++f) {
            CHECK_STATUS(fwd[f](y, x, ACT_N), BT_OK);
            memcpy(buf, x, sizeof buf);
            CHECK_STATUS(fwd[f](buf, buf, ACT_N), BT_OK);
            CHECK(same_bits(buf, y, ACT_N));
        }
        CHECK_STATUS(bt_elu_forward_f32(y, x, ACT_N, alpha), BT_OK);
        memcpy(buf, x, sizeof buf);
        CHECK_STATUS(bt_elu_forward_f32(buf, buf, ACT_N, alpha), BT_OK);
        CHECK(same_bits(buf, y, ACT_N));
        CHECK_STATUS(bt_elu_backward_f32(dx, dy, y, ACT_N, alpha), BT_OK);
        memcpy(buf, dy, sizeof buf);
        CHECK_STATUS(bt_elu_backward_f32(buf, buf, y, ACT_N, alpha), BT_OK);
        CHECK(same_bits(buf, dx, ACT_N));
        CHECK_STATUS(bt_gelu_backward_f32(dx, dy, x, ACT_N), BT_OK);
        memcpy(buf, dy, sizeof buf);
        CHECK_STATUS(bt_gelu_backward_f32(buf, buf, x, ACT_N), BT_OK);
        CHECK(same_bits(buf, dx, ACT_N));
    }

    /* softmax [rows, cols], in place both ways */
    {
        enum { R = 3, K = 7 };
        float s[R * K], sd[R * K], sb[R * K];
        double rs[R * K], rsd[R * K];
        int row, j;
        fill(s, R * K, 5.0f, 0.0f);
        s[3] = 80.0f; /* a dominant logit */
        for (row = 0; row < R; ++row) {
            double mx = -1e300, sum = 0.0, dot = 0.0;
            for (j = 0; j < K; ++j) mx = s[row * K + j] > mx ? s[row * K + j] : mx;
            for (j = 0; j < K; ++j) sum += exp(s[row * K + j] - mx);
            for (j = 0; j < K; ++j) rs[row * K + j] = exp(s[row * K + j] - mx) / sum;
            for (j = 0; j < K; ++j) dot += dy[row * K + j] * rs[row * K + j];
            for (j = 0; j < K; ++j) rsd[row * K + j] = rs[row * K + j] * (dy[row * K + j] - dot);
        }
        CHECK_STATUS(bt_softmax_forward_f32(y, s, R, K), BT_OK);
        CHECK_CLOSE(y, rs, R * K);
        CHECK_STATUS(bt_softmax_backward_f32(sd, dy, y, R, K), BT_OK);
        CHECK_CLOSE(sd, rsd, R * K);
        memcpy(sb, s, sizeof sb);
        CHECK_STATUS(bt_softmax_forward_f32(sb, sb, R, K), BT_OK);
        CHECK(same_bits(sb, y, R * K));
        memcpy(sb, dy, sizeof sb);
        CHECK_STATUS(bt_softmax_backward_f32(sb, sb, y, R, K), BT_OK);
        CHECK(same_bits(sb, sd, R * K));
    }

    /* statuses; nothing written */
    fill_const(buf, ACT_N, 7.0f);
    CHECK_STATUS(bt_relu_forward_f32(NULL, x, ACT_N), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_relu_forward_f32(buf, NULL, ACT_N), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_relu_forward_f32(buf, x, 0), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_relu_backward_f32(buf, dy, NULL, ACT_N), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_relu_backward_f32(buf, dy, y, -1), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_elu_forward_f32(buf, x, ACT_N, -1.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_elu_forward_f32(buf, x, ACT_N, make_nan()), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_elu_forward_f32(buf, NULL, ACT_N, 1.0f), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_elu_backward_f32(buf, dy, y, ACT_N, -0.5f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_elu_backward_f32(buf, NULL, y, ACT_N, 1.0f), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_elu_backward_f32(buf, dy, y, 0, 1.0f), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_gelu_forward_f32(buf, x, 0), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_gelu_backward_f32(buf, dy, NULL, ACT_N), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_softmax_forward_f32(buf, x, 0, 3), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_softmax_forward_f32(buf, x, 3, -3), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_softmax_forward_f32(NULL, x, 3, 3), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_softmax_backward_f32(buf, dy, NULL, 3, 3), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_softmax_backward_f32(buf, dy, y, 3, 0), BT_ERR_BAD_SIZE);
    CHECK(all_equal(buf, ACT_N, 7.0f));
}

/* ----------------------------------------------------------- elementwise */

static void test_elementwise(void)
{
    float a[9], b[9], o[9], da[9], db[9];
    int i;
    fill(a, 9, 2.0f, 0.0f);
    fill(b, 9, 2.0f, 1.0f);
    CHECK_STATUS(bt_add_forward_f32(o, a, b, 9), BT_OK);
    for (i = 0; i < 9; ++i) CHECK(o[i] == a[i] + b[i]);
    memcpy(o, a, sizeof o);
    CHECK_STATUS(bt_add_forward_f32(o, o, b, 9), BT_OK); /* out == a */
    for (i = 0; i < 9; ++i) CHECK(o[i] == a[i] + b[i]);
    CHECK_STATUS(bt_add_backward_f32(da, db, b, 9), BT_OK);
    CHECK(same_bits(da, b, 9) && same_bits(db, b, 9));
    CHECK_STATUS(bt_add_backward_f32(NULL, db, a, 9), BT_OK);
    CHECK(same_bits(db, a, 9));
    memcpy(da, a, sizeof da);
    CHECK_STATUS(bt_add_backward_f32(da, NULL, da, 9), BT_OK); /* d_a == d_out */
    CHECK(same_bits(da, a, 9));
    memcpy(o, a, sizeof o);
    CHECK_STATUS(bt_accumulate_f32(o, b, 9), BT_OK);
    for (i = 0; i < 9; ++i) CHECK(o[i] == a[i] + b[i]);

    fill_const(o, 9, 7.0f);
    CHECK_STATUS(bt_add_forward_f32(NULL, a, b, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_add_forward_f32(o, a, NULL, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_add_forward_f32(o, a, b, 0), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_add_backward_f32(NULL, NULL, a, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_add_backward_f32(o, o, NULL, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_add_backward_f32(o, NULL, a, -4), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_accumulate_f32(NULL, a, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_accumulate_f32(o, NULL, 9), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_accumulate_f32(o, a, 0), BT_ERR_BAD_SIZE);
    CHECK(all_equal(o, 9, 7.0f));
}

/* --------------------------------------------------------------- dropout */

static void test_dropout(void)
{
    /* The published PCG32 demo stream for seed 42, stream 54. */
    static const uint32_t demo[6] = {0xa15c02b7u, 0x7b47f409u, 0xba1d3330u,
                                     0x83d2f293u, 0xbfa4784bu, 0xcbed606eu};
    const float ps[4] = {0.0f, 0.3f, 0.5f, 0.75f};
    float x[6], y[6], dx[6], buf[6];
    uint8_t mask[6], mbuf[6];
    bt_rng rng, rng0;
    int t, i;
    fill(x, 6, 1.0f, 2.0f);
    bt_rng_seed(&rng, 42u, 54u);
    for (i = 0; i < 6; ++i) CHECK(bt_rng_next_u32(&rng) == demo[i]);

    for (t = 0; t < 4; ++t) {
        const uint32_t thr = (uint32_t)(ps[t] * 16777216.0f);
        const float scale = 1.0f / (1.0f - ps[t]);
        bt_rng_seed(&rng, 42u, 54u);
        CHECK_STATUS(bt_dropout_forward_f32(y, mask, x, 6, ps[t], &rng), BT_OK);
        for (i = 0; i < 6; ++i) {
            const int keep = (demo[i] >> 8) >= thr;
            CHECK(mask[i] == keep);
            CHECK(y[i] == (keep ? x[i] * scale : 0.0f));
        }
        CHECK_STATUS(bt_dropout_backward_f32(dx, x, mask, 6, ps[t]), BT_OK);
        CHECK(same_bits(dx, y, 6));
        /* in place, and the generator advanced by exactly 6 draws */
        bt_rng_seed(&rng0, 42u, 54u);
        for (i = 0; i < 6; ++i) (void)bt_rng_next_u32(&rng0);
        CHECK(rng.state == rng0.state && rng.inc == rng0.inc);
        bt_rng_seed(&rng, 42u, 54u);
        memcpy(buf, x, sizeof buf);
        CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, buf, 6, ps[t], &rng), BT_OK);
        CHECK(same_bits(buf, y, 6));
        memcpy(buf, x, sizeof buf);
        CHECK_STATUS(bt_dropout_backward_f32(buf, buf, mask, 6, ps[t]), BT_OK);
        CHECK(same_bits(buf, y, 6));
    }
    { /* p = 0.5: threshold 2^23, so an element is kept iff its draw has the top bit set */
        static const uint8_t want[6] = {1, 0, 1, 1, 1, 1}; /* a1.. 7b.. ba.. 83.. bf.. cb.. */
        bt_rng_seed(&rng, 42u, 54u);
        CHECK_STATUS(bt_dropout_forward_f32(y, mask, x, 6, 0.5f, &rng), BT_OK);
        CHECK(memcmp(mask, want, 6) == 0);
    }

    bt_rng_seed(&rng, 1u, 2u);
    rng0 = rng;
    fill_const(buf, 6, 7.0f);
    memset(mbuf, 9, sizeof mbuf);
    CHECK_STATUS(bt_dropout_forward_f32(NULL, mbuf, x, 6, 0.5f, &rng), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_dropout_forward_f32(buf, NULL, x, 6, 0.5f, &rng), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, NULL, 6, 0.5f, &rng), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, x, 6, 0.5f, NULL), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, x, 0, 0.5f, &rng), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, x, 6, 1.0f, &rng), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, x, 6, -0.1f, &rng), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_dropout_forward_f32(buf, mbuf, x, 6, make_nan(), &rng), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_dropout_backward_f32(buf, x, NULL, 6, 0.5f), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_dropout_backward_f32(buf, x, mask, -6, 0.5f), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_dropout_backward_f32(buf, x, mask, 6, 2.0f), BT_ERR_BAD_PARAM);
    CHECK(all_equal(buf, 6, 7.0f));
    for (i = 0; i < 6; ++i) CHECK(mbuf[i] == 9);
    CHECK(rng.state == rng0.state && rng.inc == rng0.inc);
}

/* ------------------------------------------------------------------ loss */

static void test_loss(void)
{
    enum { N = 4, K = 5 };
    float logits[N * K], probs[N * K], d[N * K], buf[N * K], loss = 0.0f, l2;
    double rp[N * K], rd[N * K], rloss = 0.0;
    int32_t labels[N] = {0, 4, 2, 2}, bad[N] = {0, 5, 2, 2}, neg[N] = {0, 1, -1, 2};
    const float d_loss = 0.5f;
    int r, j;
    fill(logits, N * K, 3.0f, 0.0f);
    logits[K + 4] = 40.0f; /* a confident, correct row: loss ~ 1e-17 relative to the others */
    for (r = 0; r < N; ++r) {
        double mx = -1e300, sum = 0.0;
        for (j = 0; j < K; ++j) mx = logits[r * K + j] > mx ? logits[r * K + j] : mx;
        for (j = 0; j < K; ++j) sum += exp(logits[r * K + j] - mx);
        for (j = 0; j < K; ++j) {
            rp[r * K + j] = exp(logits[r * K + j] - mx) / sum;
            rd[r * K + j] = d_loss * (rp[r * K + j] - (j == labels[r])) / N;
        }
        rloss += log(sum) - (logits[r * K + labels[r]] - mx);
    }
    rloss /= N;
    CHECK_STATUS(bt_cross_entropy_forward_f32(&loss, probs, logits, labels, N, K), BT_OK);
    CHECK(fabs(loss - rloss) <= BT_TEST_TOL * fabs(rloss));
    CHECK_CLOSE(probs, rp, N * K);
    CHECK_STATUS(bt_cross_entropy_backward_f32(d, probs, labels, d_loss, N, K), BT_OK);
    CHECK_CLOSE(d, rd, N * K);
    { /* a single confident row keeps its tiny loss to relative accuracy */
        float one[3] = {20.0f, 0.0f, 0.0f}, p1[3], l1;
        int32_t lab0 = 0;
        const double exact = log(1.0 + 2.0 * exp(-20.0));
        CHECK_STATUS(bt_cross_entropy_forward_f32(&l1, p1, one, &lab0, 1, 3), BT_OK);
        CHECK(fabs(l1 - exact) <= BT_TEST_TOL * exact);
    }
    /* in place: probs == logits, d_logits == probs */
    memcpy(buf, logits, sizeof buf);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, buf, labels, N, K), BT_OK);
    CHECK(same_bits(buf, probs, N * K) && l2 == loss);
    CHECK_STATUS(bt_cross_entropy_backward_f32(buf, buf, labels, d_loss, N, K), BT_OK);
    CHECK(same_bits(buf, d, N * K));

    /* statuses; nothing written (a bad label is caught before any row) */
    fill_const(buf, N * K, 7.0f);
    l2 = 7.0f;
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, logits, bad, N, K), BT_ERR_LABEL);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, logits, neg, N, K), BT_ERR_LABEL);
    CHECK_STATUS(bt_cross_entropy_forward_f32(NULL, buf, logits, labels, N, K), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, NULL, logits, labels, N, K), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, NULL, labels, N, K), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, logits, NULL, N, K), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, logits, labels, 0, K), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_cross_entropy_forward_f32(&l2, buf, logits, labels, N, -1), BT_ERR_BAD_SIZE);
    CHECK_STATUS(bt_cross_entropy_backward_f32(buf, probs, bad, 1.0f, N, K), BT_ERR_LABEL);
    CHECK_STATUS(bt_cross_entropy_backward_f32(buf, probs, neg, 1.0f, N, K), BT_ERR_LABEL);
    CHECK_STATUS(bt_cross_entropy_backward_f32(NULL, probs, labels, 1.0f, N, K), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_cross_entropy_backward_f32(buf, probs, labels, 1.0f, N, 0), BT_ERR_BAD_SIZE);
    CHECK(all_equal(buf, N * K, 7.0f) && l2 == 7.0f);

    /* MSE */
    {
        float p[7], t[7], dp[7], pb[7], ml;
        double s = 0.0, rdp[7];
        int i;
        fill(p, 7, 2.0f, 0.0f);
        fill(t, 7, 1.0f, 0.5f);
        for (i = 0; i < 7; ++i) {
            s += ((double)p[i] - t[i]) * ((double)p[i] - t[i]);
            rdp[i] = 3.0 * 2.0 * ((double)p[i] - t[i]) / 7.0;
        }
        CHECK_STATUS(bt_mse_forward_f32(&ml, p, t, 7), BT_OK);
        CHECK(fabs(ml - s / 7.0) <= BT_TEST_TOL * (s / 7.0));
        CHECK_STATUS(bt_mse_backward_f32(dp, p, t, 3.0f, 7), BT_OK);
        CHECK_CLOSE(dp, rdp, 7);
        memcpy(pb, p, sizeof pb);
        CHECK_STATUS(bt_mse_backward_f32(pb, pb, t, 3.0f, 7), BT_OK);
        CHECK(same_bits(pb, dp, 7));
        ml = 7.0f;
        fill_const(pb, 7, 7.0f);
        CHECK_STATUS(bt_mse_forward_f32(NULL, p, t, 7), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_mse_forward_f32(&ml, NULL, t, 7), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_mse_forward_f32(&ml, p, t, 0), BT_ERR_BAD_SIZE);
        CHECK_STATUS(bt_mse_backward_f32(pb, p, NULL, 1.0f, 7), BT_ERR_NULL_POINTER);
        CHECK_STATUS(bt_mse_backward_f32(pb, p, t, 1.0f, -7), BT_ERR_BAD_SIZE);
        CHECK(ml == 7.0f && all_equal(pb, 7, 7.0f));
    }
}

/* --------------------------------------------------------------- bt_math */

static void test_math(void)
{
    const float inf = make_inf(), nan_ = make_nan();
    CHECK(bt_expf(0.0f) == 1.0f && bt_expf(inf) == inf && bt_expf(-inf) == 0.0f);
    CHECK(bt_expf(nan_) != bt_expf(nan_));
    CHECK(bt_logf(1.0f) == 0.0f && bt_logf(0.0f) == -inf && bt_logf(inf) == inf);
    CHECK(bt_logf(-1.0f) != bt_logf(-1.0f));
    CHECK(bt_tanhf(inf) == 1.0f && bt_tanhf(-inf) == -1.0f && bt_tanhf(1e-40f) == 1e-40f);
    CHECK(fabs(bt_expf(1.0f) - 2.718281828459045) < 3e-7);
    CHECK(fabs(bt_logf(10.0f) - 2.302585092994046) < 3e-7);
    CHECK(fabs(bt_tanhf(0.5f) - 0.46211715726000974) < 1e-7);
}

int main(void)
{
    test_groupnorm();
    test_batchnorm();
    test_activations();
    test_elementwise();
    test_dropout();
    test_loss();
    test_math();
    return bt_test_report("test_kernels_norm_act_loss");
}
