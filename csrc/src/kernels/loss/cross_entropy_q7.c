/* Softmax cross-entropy, q7 logits: an integer softmax with a running
 * maximum (every exponent is <= 0, so exp never overflows and the largest
 * term is exactly 1.0), probabilities in Q14, and the loss from an integer
 * log2. */
#include "biotrain/loss.h"
#include "../q7_internal.h"
#include "../kernel_checks.h"

static bt_status check(const int32_t *labels, int n, int classes)
{
    int r;
    BT_REQUIRE_PTR(labels);
    BT_REQUIRE(bt_sizes_ok(n, classes, 1, 1), BT_ERR_BAD_SIZE);
    for (r = 0; r < n; ++r)
        if (labels[r] < 0 || labels[r] >= classes) return BT_ERR_LABEL;
    return BT_OK;
}

bt_status bt_cross_entropy_forward_q7(int32_t *loss, int16_t *probs, const int8_t *logits,
                                      int logit_frac, const int32_t *labels, int n, int classes)
{
    int r, j;
    int64_t total = 0;
    BT_REQUIRE_PTR(loss);
    BT_REQUIRE_PTR(probs);
    BT_REQUIRE_PTR(logits);
    BT_TRY(check(labels, n, classes));
    BT_REQUIRE(bt_q_frac_ok(logit_frac), BT_ERR_BAD_PARAM);
    for (r = 0; r < n; ++r) {
        const int8_t *z = logits + (size_t)r * classes;
        int16_t *p = probs + (size_t)r * classes;
        int m = z[0];
        int64_t s = 0, ln, dy;
        for (j = 1; j < classes; ++j)
            if (z[j] > m) m = z[j];
        for (j = 0; j < classes; ++j) s += bt_q_exp_neg_q30(z[j] - m, logit_frac);
        for (j = 0; j < classes; ++j)
            p[j] = (int16_t)q_div((int64_t)bt_q_exp_neg_q30(z[j] - m, logit_frac) << BT_Q_PROB_FRAC, s);
        ln = q_shr(bt_q_log2_q16((uint64_t)s, 30) * LN2_Q30, 30);
        dy = q_shr(z[labels[r]] - m, logit_frac - BT_Q_LOSS_FRAC);
        total += ln - dy;
    }
    *loss = (int32_t)q_clamp(q_div(total, n), BT_Q31_MAX, NULL);
    return BT_OK;
}

bt_status bt_cross_entropy_backward_q7(int8_t *d_logits, int d_frac, bt_q_stats *st,
                                       const int16_t *probs, const int32_t *labels, int den, int n,
                                       int classes)
{
    int r, j;
    const int shift = BT_Q_PROB_FRAC - d_frac; /* value * 2^(d_frac - 14) */
    BT_REQUIRE_PTR(d_logits);
    BT_REQUIRE_PTR(probs);
    BT_TRY(check(labels, n, classes));
    BT_REQUIRE(bt_q_frac_ok(d_frac) && den > 0, BT_ERR_BAD_PARAM);
    BT_REQUIRE(shift <= 0 || bt_q_bitlen((uint64_t)den) + shift <= 61, BT_ERR_OVERFLOW);
    for (r = 0; r < n; ++r) {
        const int16_t *p = probs + (size_t)r * classes;
        int8_t *d = d_logits + (size_t)r * classes;
        /* ascending: d[j] (one byte) only ever lands on bytes of p[0..j] already read */
        for (j = 0; j < classes; ++j) {
            const int64_t num = (int64_t)p[j] - (j == labels[r] ? ((int64_t)1 << BT_Q_PROB_FRAC) : 0);
            const int64_t v = shift >= 0 ? q_div(num, (int64_t)den << shift)
                                         : q_div(q_shr(num, shift), den);
            d[j] = (int8_t)q_clamp(v, BT_Q7_MAX, st);
        }
    }
    return BT_OK;
}
