/* linear, q7: out = in * weight^T + bias with int32 dot products.
 * The same rules as fixed_conv2d.c (a linear layer is a 1x1 conv over
 * in_f channels); the accumulator bounds are checked before anything runs. */
#include "biotrain/linear.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

#define RUN_MAX 131071 /* int8 products per int32 run: 131071 * 128 * 128 < 2^31 - 1 */

static bt_status check(int n, int in_f, int out_f)
{
    BT_REQUIRE(bt_sizes_ok(n, in_f, 1, 1) && bt_sizes_ok(n, out_f, 1, 1) && bt_sizes_ok(out_f, in_f, 1, 1),
               BT_ERR_BAD_SIZE);
    return BT_OK;
}

bt_status bt_linear_forward_q7(int8_t *out, int out_frac, bt_q_stats *st, const int8_t *in,
                               int in_frac, const int8_t *weight, int w_frac, const int32_t *bias,
                               int bias_frac, int n, int in_f, int out_f)
{
    int r, o, i;
    int64_t worst;
    const int bshift = bias_frac - (in_frac + w_frac), oshift = in_frac + w_frac - out_frac;
    BT_TRY(check(n, in_f, out_f));
    BT_REQUIRE_PTR(out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE_PTR(weight);
    BT_REQUIRE(bt_q_frac_ok(out_frac) && bt_q_frac_ok(in_frac) && bt_q_frac_ok(w_frac) &&
                   (!bias || bt_q_frac_ok(bias_frac)),
               BT_ERR_BAD_PARAM);
    worst = (int64_t)in_f * BT_Q7_ABS * BT_Q7_ABS;
    if (worst > BT_Q31_MAX) return BT_ERR_OVERFLOW;
    if (bias)
        for (o = 0; o < out_f; ++o) {
            int64_t b = q_shr(bias[o], bshift);
            if ((b < 0 ? -b : b) > BT_Q31_MAX - worst) return BT_ERR_OVERFLOW;
        }
    for (r = 0; r < n; ++r) {
        const int8_t *x = in + (size_t)r * in_f;
        for (o = 0; o < out_f; ++o) {
            const int8_t *w = weight + (size_t)o * in_f;
            int32_t acc = bias ? (int32_t)q_shr(bias[o], bshift) : 0;
            for (i = 0; i < in_f; ++i) acc += (int32_t)x[i] * w[i];
            out[(size_t)r * out_f + o] = bt_q_narrow7(acc, oshift, st);
        }
    }
    return BT_OK;
}

bt_status bt_linear_backward_input_q7(int8_t *d_in, int d_in_frac, bt_q_stats *st,
                                      const int8_t *d_out, int d_out_frac, const int8_t *weight,
                                      int w_frac, int n, int in_f, int out_f)
{
    int r, o, i;
    const int oshift = d_out_frac + w_frac - d_in_frac;
    BT_TRY(check(n, in_f, out_f));
    BT_REQUIRE_PTR(d_in);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(weight);
    BT_REQUIRE(bt_q_frac_ok(d_in_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(w_frac),
               BT_ERR_BAD_PARAM);
    if ((int64_t)out_f * BT_Q7_ABS * BT_Q7_ABS > BT_Q31_MAX) return BT_ERR_OVERFLOW;
    for (r = 0; r < n; ++r) {
        const int8_t *d = d_out + (size_t)r * out_f;
        for (i = 0; i < in_f; ++i) {
            int32_t acc = 0;
            for (o = 0; o < out_f; ++o) acc += (int32_t)d[o] * weight[(size_t)o * in_f + i];
            d_in[(size_t)r * in_f + i] = bt_q_narrow7(acc, oshift, st);
        }
    }
    return BT_OK;
}

bt_status bt_linear_backward_weight_q7(int32_t *d_weight, int dw_frac, int32_t *d_bias, int db_frac,
                                       bt_q_stats *st, const int8_t *d_out, int d_out_frac,
                                       const int8_t *in, int in_frac, int n, int in_f, int out_f)
{
    int r, o, i;
    const int wshift = d_out_frac + in_frac - dw_frac;
    BT_TRY(check(n, in_f, out_f));
    BT_REQUIRE_PTR(d_weight);
    BT_REQUIRE_PTR(d_out);
    BT_REQUIRE_PTR(in);
    BT_REQUIRE(bt_q_frac_ok(dw_frac) && bt_q_frac_ok(d_out_frac) && bt_q_frac_ok(in_frac) &&
                   (!d_bias || bt_q_frac_ok(db_frac)),
               BT_ERR_BAD_PARAM);
    for (o = 0; o < out_f; ++o) {
        for (i = 0; i < in_f; ++i) {
            int64_t sum = 0;
            for (r = 0; r < n;) {
                const int end = n - r > RUN_MAX ? r + RUN_MAX : n;
                int32_t run = 0;
                for (; r < end; ++r) run += (int32_t)d_out[(size_t)r * out_f + o] * in[(size_t)r * in_f + i];
                sum += run;
            }
            d_weight[(size_t)o * in_f + i] = bt_q_acc32(d_weight[(size_t)o * in_f + i], sum, wshift, st);
        }
        if (d_bias) {
            int64_t sum = 0;
            for (r = 0; r < n; ++r) sum += d_out[(size_t)r * out_f + o];
            d_bias[o] = bt_q_acc32(d_bias[o], sum, d_out_frac - db_frac, st);
        }
    }
    return BT_OK;
}
