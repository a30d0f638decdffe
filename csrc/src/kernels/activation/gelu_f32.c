/* GELU, float32, in both forms, each with the exact derivative of its own
 * form (never a tanh forward with another backward):
 *   tanh form: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)));
 *   exact (erf) form: x Phi(x) = 0.5 x (1 + erf(x / sqrt(2))), derivative Phi(x) + x phi(x). The backward reads the forward input.
 * Elementwise: out may alias in, d_in may alias d_out. */
#include <stddef.h>
#include "biotrain/activation.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"

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

#define SQRT1_2 0.707106781186547524f
#define INV_SQRT_2PI 0.398942280401432678f

bt_status bt_gelu_erf_forward_f32(float *out, const float *in, int count)
{
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) {
        const float x = in[i];
        out[i] = (0.5f * x) * (1.0f + bt_erff(x * SQRT1_2));
    }
    return BT_OK;
}

bt_status bt_gelu_erf_backward_f32(float *d_in, const float *d_out, const float *in, int count)
{
    size_t i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) {
        const float x = in[i];
        const float cdf = 0.5f * (1.0f + bt_erff(x * SQRT1_2));
        const float pdf = (x * x < 200.0f) ? INV_SQRT_2PI * bt_expf(-0.5f * (x * x)) : 0.0f;
        d_in[i] = d_out[i] * (cdf + x * pdf);
    }
    return BT_OK;
}
