/* Elementwise float32 ops: residual add (forward, backward) and gradient
 * accumulation. Element i reads only index i, so every output may alias any
 * input of the same call.
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; count not
 * positive -> BT_ERR_BAD_SIZE. Nothing is written unless both pass. */
#include <stddef.h>
#include "biotrain/elementwise.h"
#include "../kernel_checks.h"

bt_status bt_add_forward_f32(float *out, const float *a, const float *b, int count)
{
    size_t i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(a);
    BT_REQUIRE_PTR(b);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) out[i] = a[i] + b[i];
    return BT_OK;
}

/* Either of d_a, d_b may be NULL (that input needs no gradient), not both:
 * a call that computes nothing is a caller error. An output that aliases
 * d_out is left as it is. */
bt_status bt_add_backward_f32(float *d_a, float *d_b, const float *d_out, int count)
{
    size_t i;
    BT_REQUIRE(d_a != NULL || d_b != NULL, BT_ERR_NULL_POINTER);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    if (d_a && d_a != d_out)
        for (i = 0; i < (size_t)count; ++i) d_a[i] = d_out[i];
    if (d_b && d_b != d_out)
        for (i = 0; i < (size_t)count; ++i) d_b[i] = d_out[i];
    return BT_OK;
}

bt_status bt_accumulate_f32(float *acc, const float *x, int count)
{
    size_t i;
    BT_REQUIRE_PTR(acc);
    BT_REQUIRE_PTR(x);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    for (i = 0; i < (size_t)count; ++i) acc[i] += x[i];
    return BT_OK;
}
