/* The executor: runs a planned graph over one caller-owned arena.
 *
 * A training step over a batch of B samples runs micro-batches of the plan's
 * size, accumulates the parameter gradients, then updates the parameters
 * once. The batch is checked before anything changes (finite values, labels
 * in range): a refused step leaves the parameters as they were. */
#ifndef BIOTRAIN_EXEC_H
#define BIOTRAIN_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/plan.h"
#include "biotrain/optim.h"
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    const bt_graph *g;
    const bt_plan *p;
    uint8_t *arena;
    size_t arena_bytes;
    bt_optim_cfg opt;
    bt_optim_state opt_state;
    bt_rng rng;             /* dropout masks */
    float last_loss;
    int error_node;         /* the node whose kernel failed in the last call, -1 if none */
} bt_session;

/* Binds a graph and its plan to an arena of at least plan->peak_bytes bytes
 * (BT_ERR_ARENA_TOO_SMALL otherwise; nothing is written then). Zeroes the
 * arena: parameters are then set through bt_session_param. */
bt_status bt_session_init(bt_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                          size_t arena_bytes, const bt_optim_cfg *opt, uint64_t seed);

/* Pointer to a node's parameter `which` (0 weight, 1 bias, 2 running mean,
 * 3 running var) in the arena, and its element count; NULL if absent. */
float *bt_session_param(bt_session *s, int node, int which, size_t *numel);

/* Pointer to the gradient of a trainable parameter (NULL if the parameter is
 * frozen or absent). The planner keeps gradient buffers for the whole step,
 * so the values stay until the next bt_grad_step or bt_train_step. */
float *bt_session_grad(bt_session *s, int node, int which, size_t *numel);

/* Number of trainable parameter values (0 for strategy "none"). */
size_t bt_session_n_trainable(const bt_session *s);

bt_status bt_session_set_lr(bt_session *s, float lr);

/* One optimizer step over x [batch, c, h, w] with labels [batch]. *loss gets
 * the mean cross-entropy over the batch (before the update). */
bt_status bt_train_step(bt_session *s, float *loss, const float *x, const int32_t *labels,
                        int batch);

/* The two halves of bt_train_step, for callers that combine gradients
 * themselves (meta-learning, averaging gradients across devices):
 * bt_grad_step leaves the batch's mean gradient in the gradient buffers and
 * updates nothing; bt_apply_update applies the optimizer to whatever the
 * buffers hold (BT_ERR_DIVERGED, weights untouched, if any is not finite).
 * bt_grad_step then bt_apply_update gives the bits of bt_train_step. */
bt_status bt_grad_step(bt_session *s, float *loss, const float *x, const int32_t *labels, int batch);
bt_status bt_apply_update(bt_session *s);

/* Inference (batchnorm in eval mode, dropout off): logits [n, classes]. */
bt_status bt_forward(bt_session *s, float *logits, const float *x, int n);

/* A checksum of all parameters (FNV-1a over their bytes): host and MCU print
 * it after every step to prove they hold the same bits. */
uint32_t bt_session_param_checksum(const bt_session *s);

#ifdef __cplusplus
}
#endif
#endif
