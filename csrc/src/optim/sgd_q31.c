/* SGD with momentum on int32 master weights. The masters carry ~24
 * significant bits, so an update of lr * g far below the weights' int8 copy
 * still lands (round to nearest, ties to even: no stochastic rounding needed). */
#include "biotrain/optim.h"
#include "../kernels/q7_internal.h"
#include "../kernels/kernel_checks.h"

/* m * 2^-e with 0 <= m <= 2^24 and a sane exponent. */
static int scalar_ok(int32_t m, int e) { return m >= 0 && m <= (1 << 24) && e >= -100 && e <= 200; }

bt_status bt_q_sgd_check(const bt_q_sgd_cfg *cfg)
{
    BT_REQUIRE_PTR(cfg);
    BT_REQUIRE(scalar_ok(cfg->lr_mant, cfg->lr_exp) && scalar_ok(cfg->mom_mant, cfg->mom_exp) &&
                   scalar_ok(cfg->wd_mant, cfg->wd_exp),
               BT_ERR_BAD_PARAM);
    /* momentum < 1: mant < 2^exp */
    BT_REQUIRE(cfg->mom_mant == 0 || (cfg->mom_exp > 0 && (cfg->mom_exp > 24 || cfg->mom_mant < (1 << cfg->mom_exp))),
               BT_ERR_BAD_PARAM);
    return BT_OK;
}

bt_status bt_sgd_update_q31(int32_t *w, int w_frac, int32_t *buf, int buf_frac, bt_q_stats *st,
                            const int32_t *g, int g_frac, size_t count, const bt_q_sgd_cfg *cfg)
{
    size_t i;
    BT_TRY(bt_q_sgd_check(cfg));
    BT_REQUIRE_PTR(w);
    BT_REQUIRE_PTR(g);
    BT_REQUIRE(cfg->mom_mant == 0 || buf != NULL, BT_ERR_NULL_POINTER);
    BT_REQUIRE(count > 0, BT_ERR_BAD_SIZE);
    BT_REQUIRE(bt_q_frac_ok(w_frac) && bt_q_frac_ok(g_frac) && (!buf || bt_q_frac_ok(buf_frac)),
               BT_ERR_BAD_PARAM);
    {
        const int wd_shift = cfg->wd_exp + w_frac - g_frac;
        const int mom_shift = cfg->mom_exp + buf_frac - g_frac;
        const int lr_shift = cfg->lr_exp + g_frac - w_frac;
        for (i = 0; i < count; ++i) {
            int64_t d = (int64_t)g[i];
            if (cfg->wd_mant) d += q_shr((int64_t)cfg->wd_mant * w[i], wd_shift);
            if (cfg->mom_mant) {
                d = q_clamp(q_shr((int64_t)cfg->mom_mant * buf[i], mom_shift) + d, BT_Q31_MAX, st);
                buf[i] = (int32_t)d;
            } else {
                d = q_clamp(d, BT_Q31_MAX, NULL);
            }
            w[i] = (int32_t)q_clamp((int64_t)w[i] - q_shr((int64_t)cfg->lr_mant * d, lr_shift),
                                       BT_Q31_MAX, st);
        }
    }
    return BT_OK;
}
