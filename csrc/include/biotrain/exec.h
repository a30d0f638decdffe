/* The executor: runs a planned graph over one caller-owned arena, in either
 * number format.
 *
 * One schedule walk (exec.c) serves both formats: forward in node order,
 * the loss, the backward in reverse node order (within a node, the weight
 * gradient first, then the input gradients from the last slot to the
 * first), the update. The plan's dtype decides which kernel of each op runs
 * (the op table, ops.h) and how the input enters, how the loss, the
 * gradient accumulation, the update and the scales are handled
 * (exec_f32.c, exec_fixed.c).
 *
 * A training step over a batch of B samples runs micro-batches of the plan's
 * size, accumulates the parameter gradients, then updates the parameters
 * once. The batch is checked before anything changes (finite values, labels
 * in range, scales in range): a refused step leaves the parameters as they
 * were.
 *
 * Number formats at the API:
 *   float32      x is float [batch, c, h, w]; the loss is bt_value.f32; the
 *                logits float; parameters and gradients float.
 *   fixed point  x is int16 with x_frac fractional bits; the loss is
 *                bt_value.q with frac = BT_Q_LOSS_FRAC; the logits int8 with
 *                *logits_frac bits; parameters are int32 masters and
 *                gradients int32, each with its scale (bt_session_frac).
 *                Integer arithmetic only: the float options of the graph and
 *                the optimizer are decoded from their IEEE bits.
 *
 * Fixed-point scales (fractional bits), one per tensor:
 *   activations, activation gradients     int8, BT_FRAC_OUT, BT_FRAC_DOUT
 *   master parameters                     int32, BT_FRAC_PARAM
 *   the int8 copy of conv/linear weights  BT_FRAC_WQ, remade from the master
 *                                         at the start of every step and
 *                                         forward so that its absmax is in [64, 127]
 *   weight gradients, momentum            int32, BT_FRAC_GRAD, BT_FRAC_MOM
 * A view (flatten) shares its input's tensor, so it shares its scales too.
 * Scales adapt at every update (when `adapt` is set, the default) from what
 * the step saw: every kernel records the largest magnitude it produced
 * before clamping and how many values it clamped (bt_q_stats). Then
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
 *   momentum: takes the gradient's scale in every update.
 * bt_calibrate sets the first scales from data: passes of forward and
 * backward over a batch without any update, each followed by the immediate
 * rule bt_q_frac_adapt(frac, absmax, 7) (up or down).
 */
#ifndef BIOTRAIN_EXEC_H
#define BIOTRAIN_EXEC_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/plan.h"
#include "biotrain/optim.h"
#include "biotrain/rng.h"
#include "biotrain/qmath.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Default scale of a fixed-point master parameter until the caller sets one. */
#define BT_FIXED_DEFAULT_PARAM_FRAC 24
/* Steps without saturation before an int8 tensor's scale may grow. */
#define BT_FIXED_GROW_STEPS 8

/* A number in the session's format: float32 (f32), or the integer q with
 * frac fractional bits (fixed point). */
typedef struct {
    float f32;
    int32_t q;
    int frac;
} bt_value;

/* The scales of a node's tensors (fixed point). */
typedef enum {
    BT_FRAC_OUT = 0,   /* its output */
    BT_FRAC_DOUT,      /* its output gradient */
    BT_FRAC_WQ,        /* the int8 copy of its weight */
    BT_FRAC_PARAM,     /* parameter `which` */
    BT_FRAC_GRAD,      /* the gradient of parameter `which` */
    BT_FRAC_MOM,       /* the momentum of parameter `which` */
    BT_FRAC_COUNT_
} bt_frac_kind;

/* What the fixed-point format keeps per tensor (exec.h's rules). */
typedef struct {
    int out_frac[BT_MAX_NODES];
    int dout_frac[BT_MAX_NODES];
    int wq_frac[BT_MAX_NODES];
    int param_frac[BT_MAX_NODES][BT_MAX_PARAMS_PER_NODE];
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
    /* each node's float option (eps, alpha, p) decoded: mant * 2^-exp */
    int32_t qopt_mant[BT_MAX_NODES];
    int qopt_exp[BT_MAX_NODES];
    bt_q_sgd_cfg sgd;           /* the optimizer's settings, decoded */
    int64_t loss_sum;           /* Q16 loss of the rows so far in this step */
} bt_fixed_state;

typedef struct {
    const bt_graph *g;
    const bt_plan *p;
    uint8_t *arena;
    size_t arena_bytes;
    bt_dtype dtype;             /* the plan's */
    bt_optim_cfg opt;
    bt_optim_state opt_state;   /* updates done; float32 Adam's beta powers */
    bt_rng rng;                 /* dropout masks */
    bt_value last_loss;
    float loss_sum;             /* float32: the loss of the rows so far in this step */
    int adapt;                  /* fixed point: 1 (default): scales follow each step */
    int error_node;             /* the node whose kernel failed in the last call, -1 if none */
    bt_fixed_state fx;          /* fixed point only */
} bt_session;

/* Binds a graph and its plan to an arena of at least plan->peak_bytes bytes,
 * aligned to BT_ARENA_ALIGN (BT_ERR_ARENA_TOO_SMALL / BT_ERR_BAD_PARAM
 * otherwise; nothing is written then), and zeroes the planned bytes.
 * The optimizer must be the plan's (and SGD momentum needs a plan with a
 * momentum buffer). BT_ERR_UNSUPPORTED for an op without a kernel in the
 * plan's format, or an optimizer the format does not have (fixed point runs
 * SGD). Parameters are then set through bt_session_param (fixed point:
 * masters start at 0 with BT_FIXED_DEFAULT_PARAM_FRAC). */
bt_status bt_session_init(bt_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                          size_t arena_bytes, const bt_optim_cfg *opt, uint64_t seed);

/* A node's parameter `which` (0 weight, 1 bias, 2 running mean, 3 running
 * var) in the arena, and its element count; NULL if absent. float* in
 * float32, int32_t* (the master) in fixed point. */
void *bt_session_param(bt_session *s, int node, int which, size_t *numel);
/* The gradient of a trainable parameter (NULL if frozen or absent), kept
 * until the next bt_grad_step or bt_train_step; same types as the parameter. */
void *bt_session_grad(bt_session *s, int node, int which, size_t *numel);
/* The optimizer state of a trainable parameter: moment 0 is SGD's momentum
 * or Adam's first moment, 1 Adam's second; NULL if there is none. */
void *bt_session_opt_state(bt_session *s, int node, int which, int moment, size_t *numel);

/* A tensor's scale (fixed point; 0 in float32 sessions), and setting one:
 * BT_ERR_BAD_PARAM outside [BT_Q_FRAC_MIN, BT_Q_FRAC_MAX] or for a tensor the
 * node does not have, BT_ERR_UNSUPPORTED in a float32 session. */
int bt_session_frac(const bt_session *s, int node, bt_frac_kind kind, int which);
bt_status bt_session_set_frac(bt_session *s, int node, bt_frac_kind kind, int which, int frac);
/* The statistics the last step or forward recorded for a node's output
 * (BT_FRAC_OUT), output gradient (BT_FRAC_DOUT) or weight gradient
 * (BT_FRAC_GRAD); zero in float32 sessions. */
bt_q_stats bt_session_stats(const bt_session *s, int node, bt_frac_kind kind);

/* Number of trainable parameter values (0 for strategy "none"). */
size_t bt_session_n_trainable(const bt_session *s);

bt_status bt_session_set_lr(bt_session *s, float lr);
/* Fixed point: 1 (the default) lets the scales follow each step, 0 freezes them. */
bt_status bt_session_set_adapt(bt_session *s, int adapt);

/* One optimizer step over x [batch, c, h, w] (see the formats above) with
 * labels [batch]. *loss (may be NULL) gets the mean cross-entropy over the
 * batch, before the update. */
bt_status bt_train_step(bt_session *s, bt_value *loss, const void *x, int x_frac, const int32_t *labels,
                        int batch);

/* The two halves of bt_train_step, for callers that combine gradients
 * themselves (meta-learning, averaging gradients across devices):
 * bt_grad_step leaves the batch's mean gradient in the gradient buffers
 * (fixed point: each with its BT_FRAC_GRAD scale) and updates nothing;
 * bt_apply_update applies the optimizer to whatever the buffers hold
 * (float32: BT_ERR_DIVERGED, weights untouched, if a value is not finite)
 * and, in fixed point, adapts the scales from the last grad step's
 * statistics. bt_grad_step then bt_apply_update gives the bits of
 * bt_train_step. */
bt_status bt_grad_step(bt_session *s, bt_value *loss, const void *x, int x_frac, const int32_t *labels,
                       int batch);
bt_status bt_apply_update(bt_session *s);

/* Fixed point: `rounds` passes of forward and backward over the batch
 * without update, each followed by the immediate scale rule; the masters and
 * the momentum are not touched. Float32 sessions have no scales: BT_OK,
 * nothing done. */
bt_status bt_calibrate(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch, int rounds);

/* Inference (batchnorm in eval mode, dropout off): logits [n, classes],
 * float, or int8 with *logits_frac fractional bits (may be NULL in float32).
 * The scales do not change. */
bt_status bt_forward(bt_session *s, void *logits, int *logits_frac, const void *x, int x_frac, int n);

/* FNV-1a over every parameter: float32, their bytes; fixed point, each
 * master's int32 values then its scale (little-endian words). Host and MCU
 * print it after every step to prove they hold the same bits. */
uint32_t bt_session_checksum(const bt_session *s);
/* FNV-1a over the rest of what the next step reads. Fixed point, per node:
 * the out, dout and wq scales, the two adaptation windows and their counts,
 * the grad and momentum scales of every parameter slot, then the momentum
 * values; float32, per node, the optimizer state's bytes, then the step
 * count and the beta powers. Then the dropout generator (state, inc; low
 * word first). */
uint32_t bt_session_state_checksum(const bt_session *s);

/* Everything a resumed run needs to continue with the same bits, as one
 * portable blob (little-endian words): the parameters, the optimizer state,
 * the step count, the generator and, in fixed point, every scale and
 * adaptation window. bt_session_load_state checks the whole blob against
 * this session (format, graph, plan, ranges) before it writes anything:
 * BT_ERR_CORRUPT (or BT_ERR_SHAPE_MISMATCH for another model's) and nothing
 * changed otherwise. */
size_t bt_session_state_bytes(const bt_session *s);
bt_status bt_session_save_state(const bt_session *s, void *buf, size_t cap, size_t *len);
bt_status bt_session_load_state(bt_session *s, const void *buf, size_t len);

#ifdef __cplusplus
}
#endif
#endif
