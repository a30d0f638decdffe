/* Residual add and gradient accumulation in fixed point (elementwise.h). */
#include "biotrain/elementwise.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

bt_status bt_add_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *a, int a_frac,
                            const int8_t *b, int b_frac, int count)
{
    int i, sa, sb;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(a);
    BT_REQUIRE_PTR(b);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(a_frac) && bt_q_frac_ok(b_frac), BT_ERR_BAD_PARAM);
    sa = a_frac - out_frac;
    sb = b_frac - out_frac;
    for (i = 0; i < count; ++i)
        out[i] = (int8_t)q_clamp(q_shr(a[i], sa) + q_shr(b[i], sb), BT_Q7_MAX, st);
    return BT_OK;
}

bt_status bt_accumulate_q7(int8_t *acc, int acc_frac, bt_q_stats *st, const int8_t *x, int x_frac,
                           int count)
{
    int i, sx;
    BT_REQUIRE_PTR(acc);
    BT_REQUIRE_PTR(x);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(acc_frac) && bt_q_frac_ok(x_frac), BT_ERR_BAD_PARAM);
    sx = x_frac - acc_frac;
    for (i = 0; i < count; ++i)
        acc[i] = (int8_t)q_clamp((int64_t)acc[i] + q_shr(x[i], sx), BT_Q7_MAX, st);
    return BT_OK;
}
