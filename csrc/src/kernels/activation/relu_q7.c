/* ReLU and ELU, q7. Elementwise, so in place is safe (each value is read
 * before its slot is written). ELU's exponential is bt_q_exp_neg_q30: integer
 * only, the same bits on every platform. */
#include "biotrain/activation.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

bt_status bt_relu_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                             int in_frac, int count)
{
    int i;
    const int sh = in_frac - out_frac;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    for (i = 0; i < count; ++i) {
        /* negative values go to 0 before rescaling: they neither saturate nor count */
        const int x = in[i] > 0 ? in[i] : 0;
        out[i] = bt_q_narrow7(x, sh, st);
    }
    return BT_OK;
}

bt_status bt_relu_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                              int d_out_frac, const int8_t *out, int count)
{
    int i;
    const int sh = d_out_frac - d_in_frac;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(out);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac), BT_ERR_BAD_PARAM);
    for (i = 0; i < count; ++i) d_in[i] = out[i] > 0 ? bt_q_narrow7(d_out[i], sh, st) : 0;
    return BT_OK;
}

bt_status bt_relu_forward_mask_q7(int8_t *out, int out_frac, bt_q_stats *st, uint32_t *mask,
                                  const int8_t *in, int in_frac, int count)
{
    int i;
    const int sh = in_frac - out_frac;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    for (i = 0; i < count; i += 32) {
        uint32_t bits = 0;
        int j, end = count - i < 32 ? count - i : 32;
        for (j = 0; j < end; ++j) {
            const int x = in[i + j]; /* read before write: out may alias in */
            if (x > 0) bits |= (uint32_t)1u << j;
            out[i + j] = bt_q_narrow7(x > 0 ? x : 0, sh, st);
        }
        mask[i / 32] = bits;
    }
    return BT_OK;
}

bt_status bt_relu_backward_mask_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                   int d_out_frac, const uint32_t *mask, int count)
{
    int i;
    const int sh = d_out_frac - d_in_frac;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac), BT_ERR_BAD_PARAM);
    for (i = 0; i < count; ++i)
        d_in[i] = ((mask[i / 32] >> (i % 32)) & 1u) ? bt_q_narrow7(d_out[i], sh, st) : 0;
    return BT_OK;
}
