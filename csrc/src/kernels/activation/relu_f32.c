/* ReLU, float32: out = max(0, x), NaN passing through; the plain form (its
 * backward reads the forward output, so it runs in place) and the masked form
 * (one bit per element saved for the backward instead of the output).
 * Elementwise: out may alias in, d_in may alias d_out. Checks: NULL pointers ->
 * BT_ERR_NULL_POINTER; count not positive -> BT_ERR_BAD_SIZE; nothing is
 * written unless every check passes. */
#include <stddef.h>
#include "biotrain/activation.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"

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

size_t bt_relu_mask_words(int count) { return count <= 0 ? 0 : ((size_t)count + 31u) / 32u; }

bt_status bt_relu_forward_mask_f32(float *out, uint32_t *mask, const float *in, int count)
{
    int i;
    if (!out || !mask || !in) return BT_ERR_NULL_POINTER;
    if (count <= 0) return BT_ERR_BAD_SIZE;
    for (i = 0; i < count; i += 32) {
        uint32_t bits = 0;
        int j, end = count - i < 32 ? count - i : 32;
        for (j = 0; j < end; ++j) {
            float v = in[i + j];
            /* read before write: out may alias in */
            if (v > 0.0f) bits |= (uint32_t)1u << j;
            out[i + j] = v > 0.0f ? v : 0.0f;
        }
        mask[i / 32] = bits;
    }
    return BT_OK;
}

bt_status bt_relu_backward_mask_f32(float *d_in, const float *d_out, const uint32_t *mask, int count)
{
    int i;
    if (!d_in || !d_out || !mask) return BT_ERR_NULL_POINTER;
    if (count <= 0) return BT_ERR_BAD_SIZE;
    /* One mask word per 32 elements: no division or modulo per element. */
    for (i = 0; i < count; i += 32) {
        const uint32_t bits = mask[i / 32];
        int j, end = count - i < 32 ? count - i : 32;
        for (j = 0; j < end; ++j)
            d_in[i + j] = ((bits >> j) & 1u) ? d_out[i + j] : 0.0f;
    }
    return BT_OK;
}
