/* Mean squared error, float32: loss = mean((pred - target)^2), a blocked sum
 * in element order (blocked_sum.h). Checks: NULL pointers ->
 * BT_ERR_NULL_POINTER; count not positive -> BT_ERR_BAD_SIZE. */
#include <stddef.h>
#include "biotrain/loss.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

bt_status bt_mse_forward_f32(float *loss, const float *pred, const float *target, int count)
{
    size_t i;
    bt_bsum acc;
    BT_REQUIRE_PTR(loss);
    BT_REQUIRE_PTR(pred);
    BT_REQUIRE_PTR(target);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    bt_bsum_init(&acc);
    for (i = 0; i < (size_t)count; ++i) {
        const float d = pred[i] - target[i];
        bt_bsum_add(&acc, d * d);
    }
    *loss = bt_bsum_get(&acc) / (float)count;
    return BT_OK;
}

/* d_pred = (pred - target) * (2 d_loss / count); d_pred may alias pred or
 * target (elementwise). */
bt_status bt_mse_backward_f32(float *d_pred, const float *pred, const float *target,
                              float d_loss, int count)
{
    size_t i;
    float scale;
    BT_REQUIRE_PTR(d_pred);
    BT_REQUIRE_PTR(pred);
    BT_REQUIRE_PTR(target);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    scale = 2.0f * d_loss / (float)count;
    for (i = 0; i < (size_t)count; ++i) d_pred[i] = (pred[i] - target[i]) * scale;
    return BT_OK;
}
