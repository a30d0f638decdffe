/* Losses, float32: softmax cross-entropy (mean over rows, int32 labels) and
 * mean squared error.
 *
 * Cross-entropy per row with label l: log(sum_j exp(x_j - max)) - (x_l - max),
 * the max subtracted so that no exp overflows. The mean over rows and the MSE
 * sum are blocked sums in row / element order (blocked_sum.h).
 *
 * Checks, in this order: NULL pointers -> BT_ERR_NULL_POINTER; a size not
 * positive (or n*classes above INT_MAX) -> BT_ERR_BAD_SIZE; a label outside
 * [0, classes) -> BT_ERR_LABEL. Every label is checked before anything is
 * written, so nothing is written on a bad status. */
#include <stddef.h>
#include "biotrain/loss.h"
#include "biotrain/bt_math.h"
#include "../kernel_checks.h"
#include "../blocked_sum.h"

static bt_status check_labels(const int32_t *labels, int n, int classes)
{
    size_t r;
    for (r = 0; r < (size_t)n; ++r)
        BT_REQUIRE(labels[r] >= 0 && labels[r] < classes, BT_ERR_LABEL);
    return BT_OK;
}

/* log(1 + s) for s >= 0 without losing s to the rounding of 1 + s (a
 * confident, correct row has s ~ 1e-7 and a loss of about s): with u = 1 + s
 * rounded, log(u) * s / (u - 1) cancels that rounding (Goldberg, "What every
 * computer scientist should know about floating-point arithmetic", thm. 4). */
static float log1p_nonneg(float s)
{
    const float u = 1.0f + s;
    if (u == 1.0f) return s;
    return bt_logf(u) * (s / (u - 1.0f));
}

/* Per row, with k the (first) argmax: the loss is
 * log1p(sum_{j != k} exp(x_j - x_k)) - (x_label - x_k), the sum of the
 * exponentials other than exp(0) = 1 being kept apart for the log1p. Each row
 * is read (its max and x_label) before its probs are written, so probs may
 * alias logits. */
bt_status bt_cross_entropy_forward_f32(float *loss, float *probs, const float *logits,
                                       const int32_t *labels, int n, int classes)
{
    size_t r, j;
    bt_bsum total;
    BT_REQUIRE_PTR(loss);
    BT_REQUIRE_PTR(probs);
    BT_REQUIRE_PTR(logits);
    BT_REQUIRE_PTR(labels);
    BT_REQUIRE(bt_sizes_ok(n, classes, 1, 1), BT_ERR_BAD_SIZE);
    BT_TRY(check_labels(labels, n, classes));

    bt_bsum_init(&total);
    for (r = 0; r < (size_t)n; ++r) {
        const float *x = logits + r * (size_t)classes;
        float *p = probs + r * (size_t)classes;
        float mx = x[0], zl, rest, sum;
        size_t k = 0;
        bt_bsum acc;
        for (j = 1; j < (size_t)classes; ++j)
            if (x[j] > mx) {
                mx = x[j];
                k = j;
            }
        zl = x[labels[r]] - mx;
        bt_bsum_init(&acc);
        for (j = 0; j < (size_t)classes; ++j) {
            p[j] = bt_expf(x[j] - mx);
            if (j != k) bt_bsum_add(&acc, p[j]);
        }
        rest = bt_bsum_get(&acc);
        sum = 1.0f + rest;
        for (j = 0; j < (size_t)classes; ++j) p[j] = p[j] / sum;
        bt_bsum_add(&total, log1p_nonneg(rest) - zl);
    }
    *loss = bt_bsum_get(&total) / (float)n;
    return BT_OK;
}

/* d_logits = (probs - onehot) * (d_loss / n); element i reads only probs[i],
 * so d_logits may alias probs. */
bt_status bt_cross_entropy_backward_f32(float *d_logits, const float *probs,
                                        const int32_t *labels, float d_loss, int n,
                                        int classes)
{
    size_t r, j;
    float scale;
    BT_REQUIRE_PTR(d_logits);
    BT_REQUIRE_PTR(probs);
    BT_REQUIRE_PTR(labels);
    BT_REQUIRE(bt_sizes_ok(n, classes, 1, 1), BT_ERR_BAD_SIZE);
    BT_TRY(check_labels(labels, n, classes));

    scale = d_loss / (float)n;
    for (r = 0; r < (size_t)n; ++r) {
        const size_t off = r * (size_t)classes;
        const size_t k = off + (size_t)labels[r];
        for (j = off; j < off + (size_t)classes; ++j)
            d_logits[j] = (j == k ? probs[j] - 1.0f : probs[j]) * scale;
    }
    return BT_OK;
}
