/* The fixed-point executor: runs the same bt_graph as exec.h, over a plan
 * built with opts.dtype = BT_DTYPE_FIXED, with the kernels of
 * kernels_fixed.h. Integer arithmetic only (no float anywhere in this path:
 * the graph's float options, eps and the ELU alpha, are decoded from their
 * IEEE bits with bt_q_decode_f32).
 *
 * Tensors and their scales (fractional bits), one scale per tensor:
 *   activations, activation gradients     int8, out_frac[v], dout_frac[v]
 *   master parameters                     int32, param_frac[v][k]
 *   the int8 copy of conv/linear weights  wq_frac[v], remade from the master
 *                                         at the start of every step and
 *                                         forward so that its absmax is in [64, 127]
 *   weight gradients, momentum            int32, grad_frac[v][k], mom_frac[v][k]
 * A flatten shares its input's tensor, so it shares its scales too.
 *
 * Scales adapt after every step (when `adapt` is set, the default) from what
 * the step saw: every kernel records the largest magnitude it produced before
 * clamping and how many values it clamped (bt_q_stats). Then
 *   activations and their gradients: a step that saturated (absmax > 127)
 *     lowers frac at once to bt_q_frac_adapt(frac, absmax, 7), which puts
 *     that step's largest value at [64, 127]; a scale is only raised after
 *     BT_FIXED_GROW_STEPS steps in a row without saturation, to fit the
 *     largest value of those steps (so one quiet batch does not make the next
 *     one saturate). A tensor not written in a step keeps its scale;
 *   weight gradients: frac = bt_q_frac_adapt(frac, absmax, 24): 7 bits of
 *     headroom in int32 for the next step's micro-batch sums;
 *   masters: a tensor whose absmax passes 2^30 is halved (rounded) and its
 *     frac lowered by one, so weights can grow without saturating;
 *   momentum: takes the gradient's scale in every update (bt_sgd_update_q31
 *     realigns it).
 * bt_fixed_calibrate sets the first scales from data: passes of forward and
 * backward over a batch without any update, each followed by the
 * immediate rule bt_q_frac_adapt(frac, absmax, 7) (up or down).
 *
 * A step over a batch of B samples runs micro-batches of the plan's size,
 * accumulates the int32 gradients (each kernel call rounds once), then
 * updates the masters once. The loss is Q16 (BT_Q_LOSS_FRAC). Nothing is
 * updated when a step fails (labels out of range, a kernel's
 * BT_ERR_OVERFLOW); `error_node` names the node whose kernel failed.
 */
#ifndef BIOTRAIN_EXEC_FIXED_H
#define BIOTRAIN_EXEC_FIXED_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/plan.h"
#include "biotrain/kernels_fixed.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default scale of a master parameter until the caller sets one. */
#define BT_FIXED_DEFAULT_PARAM_FRAC 24
/* Steps without saturation before an int8 tensor's scale may grow. */
#define BT_FIXED_GROW_STEPS 8

typedef struct {
    const bt_graph *g;
    const bt_plan *p;
    uint8_t *arena;
    size_t arena_bytes;
    bt_q_sgd_cfg opt;
    unsigned long steps;        /* updates done */
    int adapt;                  /* 1: scales follow each step's statistics (default) */
    int out_frac[BT_MAX_NODES];
    int dout_frac[BT_MAX_NODES];
    int param_frac[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
    int wq_frac[BT_MAX_NODES];
    int grad_frac[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
    int mom_frac[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
    /* the last step's (or forward's) statistics per tensor */
    bt_q_stats out_st[BT_MAX_NODES];
    bt_q_stats dout_st[BT_MAX_NODES];
    bt_q_stats grad_st[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
    bt_q_stats param_st[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
    uint8_t out_seen[BT_MAX_NODES], dout_seen[BT_MAX_NODES];
    /* the largest value over the steps since the scale last changed, and their count */
    uint32_t out_win[BT_MAX_NODES], dout_win[BT_MAX_NODES];
    uint8_t out_win_n[BT_MAX_NODES], dout_win_n[BT_MAX_NODES];
    uint32_t saturated_last;    /* values clamped in the last call, all tensors */
    uint64_t saturated_total;   /* since init */
    int32_t last_loss;          /* Q16 */
    int32_t eps_mant[BT_MAX_NODES];  /* groupnorm eps, ELU alpha, dropout p: decoded per node */
    int eps_exp[BT_MAX_NODES];
    bt_rng rng;                 /* dropout masks (the float executor's stream) */
    int error_node;             /* the node whose kernel failed in the last call, -1 if none */
} bt_fixed_session;

/* Binds a graph and a fixed-point plan to an arena of at least
 * plan->peak_bytes bytes and zeroes it. BT_ERR_UNSUPPORTED for an op the
 * fixed-point path does not have (batchnorm, GELU) or an Adam plan;
 * BT_ERR_BAD_PARAM for a float32 plan or a momentum the plan has no buffer
 * for. Masters start at 0 with BT_FIXED_DEFAULT_PARAM_FRAC. `seed` seeds the
 * dropout masks. */
bt_status bt_fixed_session_init(bt_fixed_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                                size_t arena_bytes, const bt_q_sgd_cfg *opt, uint64_t seed);

/* The int32 master of a node's parameter `which` (0 weight, 1 bias), its
 * element count and a pointer to its scale; NULL if absent. Writing the
 * values and the scale is how the caller loads weights. */
int32_t *bt_fixed_session_param(bt_fixed_session *s, int node, int which, size_t *numel, int **frac);

bt_status bt_fixed_session_set_lr(bt_fixed_session *s, int32_t lr_mant, int lr_exp);

/* `rounds` passes of forward and backward over x [batch, c, h, w] (int16
 * with x_frac fractional bits) without update, each followed by the scale
 * adaptation. The masters and the momentum are not touched. */
bt_status bt_fixed_calibrate(bt_fixed_session *s, const int16_t *x, int x_frac, const int32_t *labels,
                             int batch, int rounds);

/* One optimizer step; *loss (may be NULL) gets the mean cross-entropy over
 * the batch before the update, Q16. */
bt_status bt_fixed_train_step(bt_fixed_session *s, int32_t *loss, const int16_t *x, int x_frac,
                              const int32_t *labels, int batch);

/* Inference: logits [n, classes] in int8 with *logits_frac fractional bits.
 * The scales do not change. */
bt_status bt_fixed_forward(bt_fixed_session *s, int8_t *logits, int *logits_frac, const int16_t *x,
                           int x_frac, int n);

/* FNV-1a over every master (its int32 values, then its scale): host and MCU
 * print it after each step to prove they hold the same bits. */
uint32_t bt_fixed_session_checksum(const bt_fixed_session *s);

#ifdef __cplusplus
}
#endif
#endif
