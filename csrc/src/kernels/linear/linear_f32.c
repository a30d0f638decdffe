/* linear (fully connected), float32. in [n, in_f], weight [out_f, in_f]
 * (PyTorch layout), bias [out_f], out [n, out_f].
 *
 * Summation order (fixed, platform-independent with -ffp-contract=off); each
 * "+= a * b" below is one fused multiply-add, acc = bt_fmaf(a, b, acc):
 *  forward          out[i][o] = bias[o] (0 without bias), then += in[i][k] * w[o][k]
 *                   for k ascending.
 *  backward_input   d_in[i][k] = 0, then += d_out[i][o] * w[o][k] for o ascending.
 *  backward_weight  d_w[o][k] += d_out[i][o] * in[i][k] and d_b[o] += d_out[i][o]
 *                   for i ascending, straight into the accumulator, so one call
 *                   over a batch gives the same bits as one call per sample.
 */
#include "biotrain/linear.h"
#include "../kernel_checks.h"
#include "biotrain/bt_math.h"

static bt_status linear_sizes(int n, int in_f, int out_f)
{
    BT_REQUIRE(bt_sizes_ok(n, in_f, 1, 1) && bt_sizes_ok(n, out_f, 1, 1) &&
                   bt_sizes_ok(out_f, in_f, 1, 1),
               BT_ERR_BAD_SIZE);
    return BT_OK;
}

bt_status bt_linear_forward_f32(float *restrict out, const float *restrict in,
                                const float *restrict weight, const float *restrict bias,
                                int n, int in_f, int out_f)
{
    int i, o, k;
    BT_TRY(linear_sizes(n, in_f, out_f));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(weight);
    for (i = 0; i < n; ++i) {
        const float *x = in + (size_t)i * in_f;
        float *y = out + (size_t)i * out_f;
        /* 4 outputs at a time share each load of x[k] */
        for (o = 0; o + 4 <= out_f; o += 4) {
            const float *w0 = weight + (size_t)o * in_f, *w1 = w0 + in_f, *w2 = w1 + in_f, *w3 = w2 + in_f;
            float a0 = bias ? bias[o] : 0.0f, a1 = bias ? bias[o + 1] : 0.0f;
            float a2 = bias ? bias[o + 2] : 0.0f, a3 = bias ? bias[o + 3] : 0.0f;
            for (k = 0; k < in_f; ++k) {
                const float xv = x[k];
                a0 = bt_fmaf(xv, w0[k], a0);
                a1 = bt_fmaf(xv, w1[k], a1);
                a2 = bt_fmaf(xv, w2[k], a2);
                a3 = bt_fmaf(xv, w3[k], a3);
            }
            y[o] = a0;
            y[o + 1] = a1;
            y[o + 2] = a2;
            y[o + 3] = a3;
        }
        for (; o < out_f; ++o) {
            const float *w = weight + (size_t)o * in_f;
            float acc = bias ? bias[o] : 0.0f;
            for (k = 0; k < in_f; ++k) acc = bt_fmaf(x[k], w[k], acc);
            y[o] = acc;
        }
    }
    return BT_OK;
}

bt_status bt_linear_backward_input_f32(float *restrict d_in, const float *restrict d_out,
                                       const float *restrict weight, int n, int in_f, int out_f)
{
    int i, o, k;
    BT_TRY(linear_sizes(n, in_f, out_f));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(weight);
    /* Row form: the contiguous d_in row is the inner loop. */
    for (i = 0; i < n; ++i) {
        float *dx = d_in + (size_t)i * in_f;
        const float *dy = d_out + (size_t)i * out_f;
        for (k = 0; k < in_f; ++k) dx[k] = 0.0f;
        for (o = 0; o < out_f; ++o) {
            const float g = dy[o];
            const float *w = weight + (size_t)o * in_f;
            for (k = 0; k < in_f; ++k) dx[k] = bt_fmaf(g, w[k], dx[k]);
        }
    }
    return BT_OK;
}

bt_status bt_linear_backward_weight_f32(float *restrict d_weight, float *restrict d_bias,
                                        const float *restrict d_out, const float *restrict in,
                                        int n, int in_f, int out_f)
{
    int i, o, k;
    BT_TRY(linear_sizes(n, in_f, out_f));
    BT_REQUIRE_PTR(d_weight);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    for (i = 0; i < n; ++i) {
        const float *x = in + (size_t)i * in_f;
        const float *dy = d_out + (size_t)i * out_f;
        if (d_bias)
            for (o = 0; o < out_f; ++o) d_bias[o] += dy[o];
        /* 4 weight rows at a time share each load of x[k] */
        for (o = 0; o + 4 <= out_f; o += 4) {
            const float g0 = dy[o], g1 = dy[o + 1], g2 = dy[o + 2], g3 = dy[o + 3];
            float *d0 = d_weight + (size_t)o * in_f, *d1 = d0 + in_f, *d2 = d1 + in_f, *d3 = d2 + in_f;
            for (k = 0; k < in_f; ++k) {
                const float xv = x[k];
                d0[k] = bt_fmaf(g0, xv, d0[k]);
                d1[k] = bt_fmaf(g1, xv, d1[k]);
                d2[k] = bt_fmaf(g2, xv, d2[k]);
                d3[k] = bt_fmaf(g3, xv, d3[k]);
            }
        }
        for (; o < out_f; ++o) {
            const float g = dy[o];
            float *dw = d_weight + (size_t)o * in_f;
            for (k = 0; k < in_f; ++k) dw[k] = bt_fmaf(g, x[k], dw[k]);
        }
    }
    return BT_OK;
}
