/* ELU, float32: x for x > 0, alpha (e^x - 1) otherwise; the backward reads
 * the forward output (dy/dx = y + alpha for x <= 0), so ELU runs in place.
 * Checks: NULL pointers -> BT_ERR_NULL_POINTER; count not positive ->
 * BT_ERR_BAD_SIZE; alpha negative or not finite -> BT_ERR_BAD_PARAM. */
#include <stddef.h>
#include "biotrain/activation.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"

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
