/* ELU in fixed point (activation.h). */
#include "biotrain/activation.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

static bt_status alpha_ok(int32_t mant, int exp)
{
    BT_REQUIRE(mant >= 0 && mant < (1 << 24) && exp >= -100 && exp <= 200, BT_ERR_BAD_PARAM);
    return BT_OK;
}

bt_status bt_elu_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                            int in_frac, int count, int32_t alpha_mant, int alpha_exp)
{
    int i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    BT_TRY(alpha_ok(alpha_mant, alpha_exp));
    for (i = 0; i < count; ++i) {
        const int x = in[i];
        if (x > 0) {
            out[i] = bt_q_narrow7(x, in_frac - out_frac, st);
        } else {
            /* alpha * (exp(x) - 1): (e - 2^30) is in [-2^30, 0], alpha_mant < 2^24 */
            const int64_t e = bt_q_exp_neg_q30(x, in_frac);
            out[i] = bt_q_narrow7((int64_t)alpha_mant * (e - ((int64_t)1 << 30)), 30 + alpha_exp - out_frac, st);
        }
    }
    return BT_OK;
}

bt_status bt_elu_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                             int d_out_frac, const int8_t *out, int out_frac, int count,
                             int32_t alpha_mant, int alpha_exp)
{
    int i;
    int64_t alpha16;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(out);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(out_frac),
               BT_ERR_BAD_PARAM);
    BT_TRY(alpha_ok(alpha_mant, alpha_exp));
    alpha16 = q_shr(alpha_mant, alpha_exp - 16);
    for (i = 0; i < count; ++i) {
        if (out[i] > 0) {
            d_in[i] = bt_q_narrow7(d_out[i], d_out_frac - d_in_frac, st);
        } else {
            const int64_t slope = q_shr(out[i], out_frac - 16) + alpha16; /* Q16 */
            d_in[i] = bt_q_narrow7(d_out[i] * slope, d_out_frac + 16 - d_in_frac, st);
        }
    }
    return BT_OK;
}
