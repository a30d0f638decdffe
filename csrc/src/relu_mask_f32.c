/* ReLU with a one-bit mask saved for the backward (see kernels_f32.h). */
#include "biotrain/kernels_f32.h"

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
