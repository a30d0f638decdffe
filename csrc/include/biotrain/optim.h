/* Optimizers, applied in place to one parameter tensor at a time.
 * Semantics follow torch.optim: SGD with momentum (dampening 0, no Nesterov)
 * and L2 weight decay added to the gradient; Adam with bias correction. */
#ifndef BIOTRAIN_OPTIM_H
#define BIOTRAIN_OPTIM_H

#include <stddef.h>
#include "biotrain/status.h"
#include "biotrain/plan.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    bt_optim_kind kind;
    float lr;
    float momentum;        /* SGD */
    float weight_decay;
    float beta1, beta2, eps; /* Adam */
} bt_optim_cfg;

typedef struct {
    unsigned long step;    /* updates done */
    float beta1_pow, beta2_pow; /* beta^step, kept by multiplication: no powf */
} bt_optim_state;

bt_status bt_optim_check(const bt_optim_cfg *cfg);

/* w -= lr * (momentum buffer of (g + wd * w)); buf may be NULL if momentum == 0. */
bt_status bt_sgd_update_f32(float *w, float *buf, const float *g, size_t count,
                            const bt_optim_cfg *cfg);
/* Adam; st holds the already-advanced beta powers of this step. */
bt_status bt_adam_update_f32(float *w, float *m, float *v, const float *g, size_t count,
                             const bt_optim_cfg *cfg, const bt_optim_state *st);

#ifdef __cplusplus
}
#endif
#endif
