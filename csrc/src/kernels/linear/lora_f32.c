/* LoRA adapters, float32: the effective weight a layer computes with, and
 * the adapters' gradients from its gradient (graph.h: bt_lora). W, W_eff and
 * dW_eff are [rows, cols], A [rank, cols], B [rows, rank], s = alpha / rank.
 *
 * Summation order (fixed, platform-independent with -ffp-contract=off):
 *  merge     t[i][j] = 0, then += B[i][k] * A[k][j] for k ascending (fused);
 *            W_eff[i][j] = W[i][j] + s * t[i][j]  (PEFT: W + (B @ A) * s)
 *  backward  with g[i][j] = s * dW_eff[i][j] (the gradient of B A):
 *            dB[i][k] += g[i][j] * A[k][j] for j ascending,
 *            dA[k][j] += B[i][k] * g[i][j] for i ascending (fused, into the
 *            accumulators, so micro-batches add up as one call).
 */
#include "biotrain/linear.h"
#include "../kernel_checks.h"
#include "biotrain/bt_math.h"

static bt_status lora_sizes(int rows, int cols, int rank)
{
    BT_REQUIRE(bt_sizes_ok(rows, cols, 1, 1) && rank >= 1 && rank <= rows && rank <= cols, BT_ERR_BAD_SIZE);
    return BT_OK;
}

bt_status bt_lora_merge_f32(float *restrict w_eff, const float *restrict w, const float *restrict a,
                            const float *restrict b, float scale, int rows, int cols, int rank)
{
    int i, j, k;
    BT_TRY(lora_sizes(rows, cols, rank));
    BT_REQUIRE_PTR(w_eff);
    BT_REQUIRE_PTR(w);
    BT_REQUIRE_PTR(a);
    BT_REQUIRE_PTR(b);
    for (i = 0; i < rows; ++i) {
        float *we = w_eff + (size_t)i * cols;
        const float *wr = w + (size_t)i * cols;
        for (j = 0; j < cols; ++j) we[j] = 0.0f;
        for (k = 0; k < rank; ++k) {
            const float bik = b[(size_t)i * rank + k];
            const float *ak = a + (size_t)k * cols;
            for (j = 0; j < cols; ++j) we[j] = bt_fmaf(bik, ak[j], we[j]);
        }
        for (j = 0; j < cols; ++j) {
            const float d = we[j] * scale;
            we[j] = wr[j] + d;
        }
    }
    return BT_OK;
}

bt_status bt_lora_backward_f32(float *restrict d_a, float *restrict d_b, const float *restrict d_w_eff,
                               const float *restrict a, const float *restrict b, float scale, int rows, int cols,
                               int rank)
{
    int i, j, k;
    BT_TRY(lora_sizes(rows, cols, rank));
    BT_REQUIRE_PTR(d_w_eff);
    BT_REQUIRE_PTR(a);
    BT_REQUIRE_PTR(b);
    for (i = 0; i < rows; ++i) {
        const float *dw = d_w_eff + (size_t)i * cols;
        for (k = 0; k < rank; ++k) {
            const float *ak = a + (size_t)k * cols;
            const float bik = b[(size_t)i * rank + k];
            float acc = 0.0f;
            for (j = 0; j < cols; ++j) {
                const float g = dw[j] * scale;
                acc = bt_fmaf(g, ak[j], acc);
                if (d_a) d_a[(size_t)k * cols + j] = bt_fmaf(bik, g, d_a[(size_t)k * cols + j]);
            }
            if (d_b) d_b[(size_t)i * rank + k] += acc;
        }
    }
    return BT_OK;
}
