/* Activations, float32: ReLU, ELU, GELU (tanh form), softmax over the last
 * axis.
 *
 * The elementwise ones (ReLU, ELU, GELU) may run in place: out may alias in,
 * d_in may alias d_out, since element i reads only index i. Softmax reduces
 * each row before it writes that row, so it may run in place as well.
 * NaN inputs propagate to the outputs (they are not clamped away).
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; count, rows
 * or cols not positive (or rows*cols above INT_MAX) -> BT_ERR_BAD_SIZE;
 * alpha negative or not finite -> BT_ERR_BAD_PARAM. Nothing is written unless
 * every check passes. */
#include <stddef.h>
#include "biotrain/kernels_f32.h"
#include "biotrain/bt_math.h"
#include "kernel_checks.h"
#include "blocked_sum.h"

/* ------------------------------------------------------------------ ReLU */

bt_status bt_relu_forward_f32(float *out, const float *in, int count)
{
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    /* "x < 0 ? 0 : x" rather than "x > 0 ? x : 0" lets NaN through. */
    for (i = 0; i < (size_t)count; ++i) out[i] = in[i] < 0.0f ? 0.0f : in[i];
    return BT_OK;
}

/* out > 0 exactly where in > 0, so the output decides the mask. */
bt_status bt_relu_backward_f32(float *d_in, const float *d_out, const float *out, int count)
{
    size_t i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(out);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) d_in[i] = out[i] > 0.0f ? d_out[i] : 0.0f;
    return BT_OK;
}

/* ------------------------------------------------------------------- ELU */

/* e^x - 1 for x <= 0 without the cancellation of bt_expf(x) - 1 near 0:
 * for |x| < 0.5 the Taylor series x + x^2 q(x), q to degree 8 (truncation
 * below 2^-28 relative). Within about one ulp on both branches. */
static float expm1_nonpos(float x)
{
    float q;
    if (x <= -0.5f) return bt_expf(x) - 1.0f;
    q = 1.0f / 3628800.0f;
    q = q * x + 1.0f / 362880.0f;
    q = q * x + 1.0f / 40320.0f;
    q = q * x + 1.0f / 5040.0f;
    q = q * x + 1.0f / 720.0f;
    q = q * x + 1.0f / 120.0f;
    q = q * x + 1.0f / 24.0f;
    q = q * x + 1.0f / 6.0f;
    q = q * x + 0.5f;
    return x + (x * x) * q;
}

static int alpha_ok(float alpha) { return alpha >= 0.0f && bt_isfinitef(alpha); }

bt_status bt_elu_forward_f32(float *out, const float *in, int count, float alpha)
{
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(alpha_ok(alpha), BT_ERR_BAD_PARAM);
    for (i = 0; i < (size_t)count; ++i) {
        const float x = in[i];
        out[i] = x > 0.0f ? x : alpha * expm1_nonpos(x);
    }
    return BT_OK;
}

/* For x <= 0, d/dx alpha (e^x - 1) = alpha e^x = y + alpha; and y > 0 exactly
 * where x > 0 (alpha >= 0), so the output alone gives the derivative. */
bt_status bt_elu_backward_f32(float *d_in, const float *d_out, const float *out, int count,
                              float alpha)
{
    size_t i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(out);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(alpha_ok(alpha), BT_ERR_BAD_PARAM);
    for (i = 0; i < (size_t)count; ++i) {
        const float y = out[i];
        d_in[i] = y > 0.0f ? d_out[i] : d_out[i] * (y + alpha);
    }
    return BT_OK;
}

/* ------------------------------------------------------------------ GELU */

#define GELU_K0 0.797884560802865f /* sqrt(2 / pi) */
#define GELU_K1 0.044715f

/* 0.5 (1 + tanh(u)) = sigmoid(2u). Evaluated as sigmoid with e = exp(-2|u|)
 * in (0, 1], it neither overflows nor cancels (1 + tanh(u) loses every digit
 * for u << 0), so GELU keeps its relative accuracy for negative x too.
 * *one_minus gets 1 - sigmoid(2u), also without cancellation. */
static float sigmoid2(float u, float *one_minus)
{
    float e;
    if (u >= 0.0f) {
        e = bt_expf(-2.0f * u);
        *one_minus = e / (1.0f + e);
        return 1.0f / (1.0f + e);
    }
    e = bt_expf(2.0f * u); /* also the NaN path */
    *one_minus = 1.0f / (1.0f + e);
    return e / (1.0f + e);
}

static float gelu_u(float x) { return GELU_K0 * (x + GELU_K1 * (x * x * x)); }

bt_status bt_gelu_forward_f32(float *out, const float *in, int count)
{
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) {
        const float x = in[i];
        float oms;
        out[i] = x * sigmoid2(gelu_u(x), &oms);
    }
    return BT_OK;
}

/* d/dx [x s(2u)] = s + 2 x s (1 - s) du/dx, du/dx = k0 (1 + 3 k1 x^2). */
bt_status bt_gelu_backward_f32(float *d_in, const float *d_out, const float *in, int count)
{
    size_t i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) {
        const float x = in[i];
        float oms, s, t, d;
        s = sigmoid2(gelu_u(x), &oms);
        t = (x * s) * oms;
        d = s;
        /* t is 0 once s or 1 - s underflows; skipping then avoids 0 * inf
         * from the x^2 factor at huge |x|. */
        if (t != 0.0f) d = s + t * (2.0f * GELU_K0 * (1.0f + 3.0f * GELU_K1 * (x * x)));
        d_in[i] = d_out[i] * d;
    }
    return BT_OK;
}

/* --------------------------------------------------------------- softmax */

/* Per row: subtract the row maximum, exponentiate, divide by the sum (a
 * blocked sum in column order). Each row is read before it is written, so out
 * may alias in. */
bt_status bt_softmax_forward_f32(float *out, const float *in, int rows, int cols)
{
    size_t r, j;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_sizes_ok(rows, cols, 1, 1), BT_ERR_BAD_SIZE);
    for (r = 0; r < (size_t)rows; ++r) {
        const float *x = in + r * (size_t)cols;
        float *y = out + r * (size_t)cols;
        float mx = x[0], sum;
        bt_bsum acc;
        for (j = 1; j < (size_t)cols; ++j)
            if (x[j] > mx) mx = x[j];
        bt_bsum_init(&acc);
        for (j = 0; j < (size_t)cols; ++j) {
            y[j] = bt_expf(x[j] - mx);
            bt_bsum_add(&acc, y[j]);
        }
        sum = bt_bsum_get(&acc);
        for (j = 0; j < (size_t)cols; ++j) y[j] = y[j] / sum;
    }
    return BT_OK;
}

/* d_in = y * (d_out - sum_j d_out_j y_j) per row; the row's sum is taken
 * before the row is written, so d_in may alias d_out (or out). */
bt_status bt_softmax_backward_f32(float *d_in, const float *d_out, const float *out, int rows,
                                  int cols)
{
    size_t r, j;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(out);
    BT_REQUIRE(bt_sizes_ok(rows, cols, 1, 1), BT_ERR_BAD_SIZE);
    for (r = 0; r < (size_t)rows; ++r) {
        const size_t off = r * (size_t)cols;
        bt_bsum acc;
        float dot;
        bt_bsum_init(&acc);
        for (j = off; j < off + (size_t)cols; ++j) bt_bsum_add(&acc, d_out[j] * out[j]);
        dot = bt_bsum_get(&acc);
        for (j = off; j < off + (size_t)cols; ++j) d_in[j] = out[j] * (d_out[j] - dot);
    }
    return BT_OK;
}
