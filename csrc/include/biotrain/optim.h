/* Optimizers, applied in place to one parameter tensor at a time.
 * Semantics follow torch.optim: SGD with momentum (dampening 0, no Nesterov)
 * and L2 weight decay added to the gradient; Adam with bias correction. */
#ifndef BIOTRAIN_OPTIM_H
#define BIOTRAIN_OPTIM_H

#include <stddef.h>
#include "biotrain/status.h"
#include <stdint.h>
#include "biotrain/types.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef enum { BT_OPTIM_SGD = 0, BT_OPTIM_ADAM = 1 } bt_optim_kind;

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

/* ---- fixed point (int32 masters, qmath.h's rules) */
/* SGD with momentum (dampening 0, no Nesterov, L2 weight decay added to the
 * gradient), as torch.optim.SGD, on int32 masters. Each hyper-parameter is an
 * exact float32 value given as mant * 2^-exp (bt_q_decode_f32). */
typedef struct {
    int32_t lr_mant; int lr_exp;
    int32_t mom_mant; int mom_exp;   /* 0: no momentum buffer */
    int32_t wd_mant; int wd_exp;
} bt_q_sgd_cfg;

bt_status bt_q_sgd_check(const bt_q_sgd_cfg *cfg);
/* Per element, all in int64, g_frac being the gradient's scale:
 *   ge = g + round(wd * w * 2^(g_frac - w_frac))
 *   buf = clamp32(round(mom * buf * 2^(g_frac - buf_frac)) + ge)   (buf now has g_frac)
 *   w = clamp32(w - round(lr * buf * 2^(w_frac - g_frac)))         (ge instead of buf
 *                                                                   without momentum)
 * buf may be NULL when mom_mant is 0. st records the clamps of w and buf. */
bt_status bt_sgd_update_q31(int32_t *w, int w_frac, int32_t *buf, int buf_frac, bt_q_stats *st,
                            const int32_t *g, int g_frac, size_t count, const bt_q_sgd_cfg *cfg);

#ifdef __cplusplus
}
#endif
#endif
