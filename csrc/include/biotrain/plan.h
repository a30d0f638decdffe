/* The static memory planner.
 *
 * It walks the training schedule of one micro-batch,
 *     step 0          load the input
 *     step i          forward of node i            (i = 1 .. N-1)
 *     step N          loss forward and backward
 *     step 2N - i     backward of node i           (i = N-1 .. 1)
 *     step 2N         optimizer update
 * gives every tensor a lifetime [first, last] in those steps (parameters,
 * their gradients and the optimizer state live for the whole run; an
 * activation from its forward to the last step that reads it; an activation
 * gradient from the backward that produces it to the backward that consumes
 * it), puts tensors that an op may overwrite in place into one buffer
 * (ReLU, ELU, dropout and the residual add over their input; an input
 * gradient over the activation or output gradient it replaces), keeps one
 * bit per element for a ReLU's backward instead of its output, recomputes a
 * cheap convolution's output (at most BT_RECOMPUTE_MAX_MACS multiply-adds per
 * output, e.g. a spatial Cx1 conv) at the backward of the norm that reads it
 * instead of keeping it through the whole step, gives an op's backward
 * scratch (a saved spec with `scratch`, ops.h: attention's one head map) its
 * backward step alone, then assigns
 * every buffer an offset in one arena: largest first, into the lowest gap
 * left by the buffers already placed that overlap it in time.
 * Only what runs is planned: a frozen node has no weight gradient, and no
 * gradient flows below the lowest trainable node.
 * The planner never allocates: the plan is a fixed-size table.
 *
 * plan.c is the op-aware part: it reads each op's descriptor (ops.h: what
 * its backward reads, what it saves, what may run in place or be
 * recomputed) to give every tensor its lifetime and its sharing. arena.c is
 * the op-agnostic part: it turns groups of tensors into buffers and places
 * them in the arena. */
#ifndef BIOTRAIN_PLAN_H
#define BIOTRAIN_PLAN_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/graph.h"
#include "biotrain/optim.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_MAX_TENSORS 384
/* Every buffer starts at a multiple of this many bytes of the arena, which
 * itself must be aligned so (the bindings and the firmware align theirs). */
#define BT_ARENA_ALIGN 16
#define BT_RECOMPUTE_MAX_MACS 16

typedef enum {
    BT_KIND_PARAM = 0,      /* weights, biases, running statistics */
    BT_KIND_GRAD,           /* parameter gradients (accumulated over micro-batches) */
    BT_KIND_OPT_STATE,      /* momentum, Adam moments */
    BT_KIND_INPUT,          /* the micro-batch input and its labels */
    BT_KIND_ACTIVATION,     /* layer outputs and what backward saves (mean, rstd, masks, indices) */
    BT_KIND_ACT_GRAD,       /* gradients of activations */
    BT_KIND_SCRATCH,        /* one-op temporaries */
    BT_KIND_COUNT_
} bt_tensor_kind;

typedef enum {
    BT_ROLE_OUT = 0, BT_ROLE_DOUT, BT_ROLE_PARAM, BT_ROLE_PGRAD, BT_ROLE_OPT_M, BT_ROLE_OPT_V,
    BT_ROLE_SAVED,          /* saved for the backward: its op's descriptor names it (mean, mask, ...) */
    BT_ROLE_DIN_SCRATCH, BT_ROLE_LABELS, BT_ROLE_PROBS, BT_ROLE_RECOMPUTED,
    BT_ROLE_LORA_WEIGHT,    /* an adapted weight W + (alpha / r) B A, at one step */
    BT_ROLE_LORA_GRAD,      /* its gradient, at the backward step */
    BT_ROLE_COUNT_
} bt_tensor_role;

const char *bt_kind_name(bt_tensor_kind k);
const char *bt_role_name(bt_tensor_role r);

typedef struct {
    int node;               /* owning node (-1 for the loss' tensors) */
    bt_tensor_role role;
    int index;              /* parameter index, saved slot or input slot */
    bt_tensor_kind kind;
    size_t bytes;
    int first, last;        /* lifetime in schedule steps, inclusive */
    int buffer;             /* the buffer (offset) it shares */
} bt_tensor;

typedef struct {
    size_t offset, bytes;
    int first, last;
} bt_buffer;

/* What the executor looks up per node: tensor ids, -1 where absent. */
typedef struct {
    int out, dout;
    int param[BT_MAX_PARAMS_PER_NODE];
    int pgrad[BT_MAX_PARAMS_PER_NODE];
    int opt_m[BT_MAX_PARAMS_PER_NODE];
    int opt_v[BT_MAX_PARAMS_PER_NODE];
    int saved[BT_MAX_SAVED];            /* what the op saves for its backward (its descriptor's order) */
    int din[BT_MAX_NODE_INPUTS];        /* where this node's backward writes each input's gradient */
    int din_accumulate[BT_MAX_NODE_INPUTS]; /* 1: din is a scratch to add into the input's dout */
    int bwd_in[BT_MAX_NODE_INPUTS];     /* the input activation this node's backward reads */
    int recompute[BT_MAX_NODE_INPUTS];  /* node to run again into bwd_in before the backward, or -1 */
    int n_saved;
    int run_backward;                   /* gradient flows through this node */
    int weight_grad;                    /* some parameter of this node is trained */
    int lora_weight[BT_MAX_LORA];       /* each adapter's effective weight at the forward */
    int lora_weight_bwd[BT_MAX_LORA];   /* ... and at the backward */
    int lora_grad[BT_MAX_LORA];         /* the effective weight's gradient */
} bt_plan_node;

typedef struct {
    int micro_batch;        /* samples per forward/backward pass */
    bt_optim_kind optimizer;
    int momentum;           /* SGD keeps a momentum buffer */
    int reuse;              /* 1: share buffers in time and in place (default); 0: every tensor its own bytes */
    bt_dtype dtype;         /* BT_DTYPE_F32 (0, the default when zero-initialised) or BT_DTYPE_FIXED:
                             * only the byte counts differ (qmath.h lists the element types) */
} bt_plan_opts;

typedef struct {
    bt_plan_opts opts;
    int n_steps;            /* schedule length: 2N + 1 */
    int n_tensors, n_buffers;
    bt_tensor tensors[BT_MAX_TENSORS];
    bt_buffer buffers[BT_MAX_TENSORS];
    bt_plan_node nodes[BT_MAX_NODES];
    int labels, probs;      /* loss tensors */
    size_t peak_bytes;      /* arena bytes the run needs: the highest byte any buffer reaches */
    size_t live_peak_bytes; /* the most bytes live at one step (a lower bound on any layout) */
    int peak_step;          /* the step where live_peak_bytes is reached */
    size_t live_by_kind[BT_KIND_COUNT_]; /* breakdown of live_peak_bytes */
    size_t total_by_kind[BT_KIND_COUNT_]; /* every tensor's bytes, no sharing: the naive figure */
    size_t naive_bytes;     /* sum of total_by_kind */
    int has_batchnorm;      /* an op with batch statistics: the micro-batch must be the whole batch */
} bt_plan;

bt_status bt_plan_build(bt_plan *p, const bt_graph *g, const bt_plan_opts *opts);

/* The role of a tensor as a name: "out", "param", ..., or for a saved
 * tensor its op's name for it ("mean", "mask", "argmax"). */
const char *bt_plan_tensor_role(const bt_plan *p, const bt_graph *g, int tensor);

/* Byte offset of a tensor in the arena. */
size_t bt_plan_offset(const bt_plan *p, int tensor);
/* Bytes live at one schedule step (for plots and checks). */
size_t bt_plan_live_bytes(const bt_plan *p, int step);

#ifdef __cplusplus
}
#endif
#endif
