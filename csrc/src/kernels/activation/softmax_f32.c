/* Softmax over the last axis, float32. Each row is reduced before it is
 * written, so it may run in place. Checks: NULL pointers ->
 * BT_ERR_NULL_POINTER; rows or cols not positive (or rows*cols above INT_MAX)
 * -> BT_ERR_BAD_SIZE. */
#include <stddef.h>
#include "biotrain/activation.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

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
