/* Requantisation: a tensor into int8 at another scale (elementwise.h). */
#include "biotrain/elementwise.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

bt_status bt_requant_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in, int in_frac,
                        int count)
{
    int i, sh;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    sh = in_frac - out_frac;
    if (sh == 0) {
        for (i = 0; i < count; ++i) out[i] = (int8_t)q_clamp(in[i], BT_Q7_MAX, st);
    } else {
        for (i = 0; i < count; ++i) out[i] = (int8_t)q_clamp(q_shr(in[i], sh), BT_Q7_MAX, st);
    }
    return BT_OK;
}

bt_status bt_requant_q15_to_q7(int8_t *out, int out_frac, bt_q_stats *st, const int16_t *in,
                               int in_frac, int count)
{
    int i, sh;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    sh = in_frac - out_frac;
    for (i = 0; i < count; ++i) out[i] = (int8_t)q_clamp(q_shr(in[i], sh), BT_Q7_MAX, st);
    return BT_OK;
}

bt_status bt_requant_q31_to_q7(int8_t *out, int out_frac, bt_q_stats *st, const int32_t *in,
                               int in_frac, int count)
{
    int i, sh;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    sh = in_frac - out_frac;
    for (i = 0; i < count; ++i) out[i] = (int8_t)q_clamp(q_shr(in[i], sh), BT_Q7_MAX, st);
    return BT_OK;
}
