/* Optimizers (torch.optim semantics), in place on one parameter tensor. */
#include "biotrain/optim.h"
#include "biotrain/bt_math.h"

static int finite_nonneg(float x) { return bt_isfinitef(x) && x >= 0.0f; }

bt_status bt_optim_check(const bt_optim_cfg *cfg)
{
    if (!cfg) return BT_ERR_NULL_POINTER;
    if (!finite_nonneg(cfg->lr) || !finite_nonneg(cfg->weight_decay)) return BT_ERR_BAD_PARAM;
    if (cfg->kind == BT_OPTIM_SGD) {
        if (!(cfg->momentum >= 0.0f && cfg->momentum < 1.0f)) return BT_ERR_BAD_PARAM;
        return BT_OK;
    }
    if (cfg->kind == BT_OPTIM_ADAM) {
        if (!(cfg->beta1 >= 0.0f && cfg->beta1 < 1.0f)) return BT_ERR_BAD_PARAM;
        if (!(cfg->beta2 >= 0.0f && cfg->beta2 < 1.0f)) return BT_ERR_BAD_PARAM;
        if (!(cfg->eps > 0.0f) || !bt_isfinitef(cfg->eps)) return BT_ERR_BAD_PARAM;
        return BT_OK;
    }
    return BT_ERR_UNSUPPORTED;
}

bt_status bt_sgd_update_f32(float *w, float *buf, const float *g, size_t count,
                            const bt_optim_cfg *cfg)
{
    size_t i;
    const float lr = cfg ? cfg->lr : 0.0f;
    if (!w || !g || !cfg) return BT_ERR_NULL_POINTER;
    if (cfg->momentum != 0.0f && !buf) return BT_ERR_NULL_POINTER;
    for (i = 0; i < count; ++i) {
        float d = g[i];
        if (cfg->weight_decay != 0.0f) d = d + cfg->weight_decay * w[i];
        if (cfg->momentum != 0.0f) {
            /* torch starts the buffer at the first gradient: momentum * 0 + d is the same */
            buf[i] = cfg->momentum * buf[i] + d;
            d = buf[i];
        }
        w[i] = w[i] - lr * d;
    }
    return BT_OK;
}

bt_status bt_adam_update_f32(float *w, float *m, float *v, const float *g, size_t count,
                             const bt_optim_cfg *cfg, const bt_optim_state *st)
{
    size_t i;
    float bc1, bc2_sqrt, step_size;
    if (!w || !m || !v || !g || !cfg || !st) return BT_ERR_NULL_POINTER;
    bc1 = 1.0f - st->beta1_pow;
    bc2_sqrt = bt_sqrtf(1.0f - st->beta2_pow);
    step_size = cfg->lr / bc1;
    for (i = 0; i < count; ++i) {
        float d = g[i];
        float denom;
        if (cfg->weight_decay != 0.0f) d = d + cfg->weight_decay * w[i];
        m[i] = m[i] + (1.0f - cfg->beta1) * (d - m[i]); /* torch: exp_avg.lerp_(grad, 1 - beta1) */
        v[i] = cfg->beta2 * v[i] + (1.0f - cfg->beta2) * d * d;
        denom = bt_sqrtf(v[i]) / bc2_sqrt + cfg->eps;
        w[i] = w[i] - step_size * (m[i] / denom);
    }
    return BT_OK;
}
