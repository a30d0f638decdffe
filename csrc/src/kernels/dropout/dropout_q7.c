/* Inverted dropout, q7. The keep decision is the float path's (integer
 * threshold against 24 random bits), so a seed gives the same mask in both;
 * the 1/(1 - p) scale is a Q30 integer computed once per call. */
#include "biotrain/dropout.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

/* p in [0, 1 - 2^-20]: *threshold = floor(p 2^24), *scale = round(2^60 / (2^30 - round(p 2^30))). */
static bt_status dropout_consts(int32_t p_mant, int p_exp, uint32_t *threshold, int64_t *scale)
{
    int64_t p30, den;
    BT_REQUIRE(p_mant >= 0 && p_mant < (1 << 24) && p_exp >= -100 && p_exp <= 200, BT_ERR_BAD_PARAM);
    p30 = q_shr(p_mant, p_exp - 30);
    den = ((int64_t)1 << 30) - p30;
    BT_REQUIRE(den >= ((int64_t)1 << 10), BT_ERR_BAD_PARAM); /* p < 1, and 1/(1-p) <= 2^20 */
    /* p * 2^24 = p_mant * 2^(24 - p_exp), truncated as the float path's conversion */
    if (p_exp <= 24) *threshold = (uint32_t)p_mant << (24 - p_exp);
    else *threshold = p_exp - 24 >= 32 ? 0u : (uint32_t)p_mant >> (p_exp - 24);
    *scale = q_div((int64_t)1 << 60, den);
    return BT_OK;
}

bt_status bt_dropout_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, uint8_t *mask,
                                const int8_t *in, int in_frac, int count, int32_t p_mant, int p_exp,
                                bt_rng *rng)
{
    uint32_t threshold;
    int64_t scale;
    int i;
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(rng);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac), BT_ERR_BAD_PARAM);
    BT_TRY(dropout_consts(p_mant, p_exp, &threshold, &scale));
    for (i = 0; i < count; ++i) {
        const int keep = (bt_rng_next_u32(rng) >> 8) >= threshold;
        const int x = in[i]; /* read before write: out may alias in */
        mask[i] = (uint8_t)keep;
        out[i] = keep ? bt_q_narrow7(x * scale, 30 + in_frac - out_frac, st) : 0;
    }
    return BT_OK;
}

bt_status bt_dropout_backward_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st, const int8_t *d_out,
                                 int d_out_frac, const uint8_t *mask, int count, int32_t p_mant,
                                 int p_exp)
{
    uint32_t threshold;
    int64_t scale;
    int i;
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(mask);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac), BT_ERR_BAD_PARAM);
    BT_TRY(dropout_consts(p_mant, p_exp, &threshold, &scale));
    for (i = 0; i < count; ++i)
        d_in[i] = mask[i] ? bt_q_narrow7(d_out[i] * scale, 30 + d_out_frac - d_in_frac, st) : 0;
    return BT_OK;
}
