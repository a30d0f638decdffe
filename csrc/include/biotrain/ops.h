/* The op table: every op a graph can hold, described once.
 *
 * BT_OP_LIST is the one list of ops. The enum bt_op_kind, the table of
 * descriptors (csrc/src/ops/op_table.c) and the names all come from it, so
 * they cannot drift; a static assertion checks the table's length.
 *
 * A descriptor (bt_op_desc) says what the graph, the planner and the
 * executor need to know about an op, and nothing is said about an op
 * anywhere else:
 *   - its name, its number of inputs, its options (by name, for the bindings
 *     and the firmware emitter) and how it checks them and sizes its output
 *     (`infer`);
 *   - its parameter tensors (count, trainable count, element counts);
 *   - what its backward reads (flags BT_OPF_*), what it saves for the
 *     backward (`saved`: mean and 1/std, a mask, argmax indices) and whether
 *     its output may be recomputed instead of kept (`recompute_macs`);
 *   - its kernels in each number format (`kernels[dtype]`; NULL: the op has
 *     no kernel in that format, and a session in that format refuses the
 *     graph before any step).
 * The kernels of a descriptor are adapters: each reads the node's options
 * and tensors from a bt_op_ctx and calls the op family's kernel
 * (kernels.h). The executor fills the context from the plan's arena offsets;
 * the op test harness fills it from arrays of its own.
 *
 * Adding an op: a row in BT_OP_LIST, its options struct in graph.h (if it
 * has options), its descriptor file in csrc/src/ops/, its kernels in
 * csrc/src/kernels/<family>/ with their prototypes in the family header, its
 * NumPy reference and its row in the op test (docs/adding_an_op.md). */
#ifndef BIOTRAIN_OPS_H
#define BIOTRAIN_OPS_H

#include <stddef.h>
#include <stdint.h>
#include "biotrain/status.h"
#include "biotrain/types.h"
#include "biotrain/rng.h"

#ifdef __cplusplus
extern "C" {
#endif

/* X(ENUM_SUFFIX, name): the enum value BT_OP_<ENUM_SUFFIX>, the descriptor
 * bt_op_<name> and the name the bindings and the Python layers use. */
#define BT_OP_LIST(X)                 \
    X(INPUT, input)                   \
    X(CONV2D, conv2d)                 \
    X(LINEAR, linear)                 \
    X(GROUPNORM, groupnorm)           \
    X(BATCHNORM, batchnorm)           \
    X(RELU, relu)                     \
    X(ELU, elu)                       \
    X(GELU, gelu)                     \
    X(AVGPOOL2D, avgpool2d)           \
    X(MAXPOOL2D, maxpool2d)           \
    X(GLOBAL_AVGPOOL, global_avgpool) \
    X(ADD, add)                       \
    X(FLATTEN, flatten)               \
    X(DROPOUT, dropout)               \
    X(LAYERNORM, layernorm)           \
    X(SOFTMAX, softmax)               \
    X(TOKEN_LINEAR, token_linear)     \
    X(TOKENS, tokens)                 \
    X(POS_EMBED, pos_embed)           \
    X(TOKEN_MEAN, token_mean)         \
    X(SEQ_POOL, seq_pool)             \
    X(DROP_PATH, drop_path)           \
    X(MHSA, mhsa)

typedef enum {
#define BT_OP_ENUM_(id, name) BT_OP_##id,
    BT_OP_LIST(BT_OP_ENUM_)
#undef BT_OP_ENUM_
    BT_OP_COUNT_
} bt_op_kind;

#define BT_MAX_NODE_INPUTS 2
/* Parameter slots of a node: its op's own (at most 4: attention's two
 * projections with their biases) and two per LoRA adapter (graph.h). */
#define BT_MAX_PARAMS_PER_NODE 8
#define BT_MAX_SAVED 4

struct bt_graph;
struct bt_node;

/* ------------------------------------------------------------ the context */
/* One call of an op's kernel: its node, its tensors (NULL where absent) and,
 * in fixed point, each tensor's scale (fractional bits) and the statistics
 * the call records. Float32 tensors are float, fixed-point ones int8
 * (activations and their gradients) or int32 (masters, gradients, saved
 * statistics). */
typedef struct {
    const struct bt_graph *g;
    int node;
    int rows;                   /* samples in this micro-batch */
    int train;                  /* 1: training forward (saves for the backward, dropout on) */
    bt_dtype dtype;
    /* forward: the inputs' outputs; backward: the activations the backward reads */
    const void *in[BT_MAX_NODE_INPUTS];
    void *out;                  /* forward: written; backward: the forward output, read */
    const void *dout;           /* backward: the output gradient */
    void *din[BT_MAX_NODE_INPUTS]; /* backward_input: the input gradient of each slot */
    void *param[BT_MAX_PARAMS_PER_NODE];
    void *pgrad[BT_MAX_PARAMS_PER_NODE];  /* accumulated with += */
    void *saved[BT_MAX_SAVED];  /* what the descriptor's `saved` lists, in its order */
    bt_rng *rng;                /* dropout masks */
    /* fixed point */
    const int8_t *wq;           /* the int8 copy of param[0] that conv and linear read */
    int wq_frac;
    int in_frac[BT_MAX_NODE_INPUTS], out_frac, dout_frac, din_frac[BT_MAX_NODE_INPUTS];
    int param_frac[BT_MAX_PARAMS_PER_NODE], grad_frac[BT_MAX_PARAMS_PER_NODE];
    bt_q_stats *out_st;         /* what the forward writes (NULL: record nothing) */
    bt_q_stats *din_st[BT_MAX_NODE_INPUTS];
    bt_q_stats *grad_st;
    int32_t qopt_mant;          /* the op's float option (eps, alpha, p) as mant * 2^-exp */
    int qopt_exp;
} bt_op_ctx;

typedef struct {
    bt_status (*forward)(const bt_op_ctx *c);
    /* writes c->din[slot]; may overwrite what the descriptor allows (flags) */
    bt_status (*backward_input)(const bt_op_ctx *c, int slot);
    /* adds into c->pgrad; NULL for an op without parameters */
    bt_status (*backward_weight)(const bt_op_ctx *c);
} bt_op_kernels;

/* A build for one number format (an MCU image): -DBT_ONLY_F32 or
 * -DBT_ONLY_FIXED leaves the other format's kernels out of the op table (and
 * its executor out of the session), so the linker drops them: a fixed-point
 * image links no float kernel. A descriptor names its kernels through these. */
#if defined(BT_ONLY_F32) && defined(BT_ONLY_FIXED)
#error "BT_ONLY_F32 and BT_ONLY_FIXED exclude each other"
#endif
#if defined(BT_ONLY_FIXED)
#define BT_KERNELS_F32(k) ((const bt_op_kernels *)(0 * sizeof(k)))
#else
#define BT_KERNELS_F32(k) (&(k))
#endif
#if defined(BT_ONLY_F32)
#define BT_KERNELS_Q7(k) ((const bt_op_kernels *)(0 * sizeof(k)))
#else
#define BT_KERNELS_Q7(k) (&(k))
#endif

/* ------------------------------------------------------------ descriptors */
/* What the backward reads and what may share memory. */
#define BT_OPF_VIEW (1u << 0)             /* the output is its input 0 seen another way (no bytes) */
#define BT_OPF_INPLACE (1u << 1)          /* the forward may overwrite a dying input */
#define BT_OPF_DIN_OVER_DOUT (1u << 2)    /* slot 0's input gradient may overwrite the output gradient */
#define BT_OPF_BWD_READS_INPUT (1u << 3)  /* the input gradient reads the input activations */
#define BT_OPF_WGRAD_READS_INPUT (1u << 4) /* only the weight gradient reads the input */
#define BT_OPF_BWD_READS_OUTPUT (1u << 5) /* the input gradient reads the forward output */
#define BT_OPF_RECOMPUTE_INPUT (1u << 6)  /* a cheap producer may be run again at this backward */
#define BT_OPF_BATCH_STATS (1u << 7)      /* statistics over the batch: one micro-batch per step */
#define BT_OPF_Q_WEIGHT_COPY (1u << 8)    /* fixed point keeps an int8 copy of parameter 0 */

/* One tensor an op saves for its backward, or (scratch) the working memory
 * of its backward alone. The planner zeroes the specs before asking, so a
 * field an op leaves unset is 0. */
typedef struct {
    const char *name;           /* "mean", "rstd", "mask", "argmax": the plan's role name */
    size_t bytes;               /* for the micro-batch */
    int backward_only;          /* 1: only planned when the backward runs */
    int scratch;                /* 1: lives at this op's backward step only (planned only when the
                                 * backward runs; the forward must not touch it) */
} bt_saved_spec;

/* An option, by name: where it sits in bt_node_opts (graph.h). */
typedef enum { BT_OPT_INT = 0, BT_OPT_FLOAT = 1 } bt_opt_type;
typedef struct {
    const char *name;
    bt_opt_type type;
    size_t offset;              /* offsetof(bt_node_opts, member.field) */
    const char *path;           /* "member.field" in bt_node_opts: how emitted C sets it */
} bt_opt_field;

typedef struct {
    const char *name;
    int n_inputs;
    unsigned flags;
    const bt_opt_field *opts;   /* the options, in the order the emitter writes them */
    int n_opts;
    int qopt;                   /* index into opts of the float option fixed point decodes, or -1 */
    /* Checks the node's options against its inputs and sets its output shape
     * (nd->c, h, w). The node is not yet in the graph; its inputs are. */
    bt_status (*infer)(const struct bt_graph *g, struct bt_node *nd);
    int (*param_count)(const struct bt_node *nd);        /* NULL: none */
    int (*trainable_count)(const struct bt_node *nd);    /* NULL: param_count */
    size_t (*param_numel)(const struct bt_graph *g, const struct bt_node *nd, int which);
    /* The tensors saved for the backward, for `rows` samples; returns their count. */
    int (*saved)(const struct bt_graph *g, const struct bt_node *nd, int rows, bt_dtype dtype,
                 bt_saved_spec out[BT_MAX_SAVED]);
    /* Multiply-adds per output value when the output may be recomputed, else -1. */
    long (*recompute_macs)(const struct bt_graph *g, const struct bt_node *nd);
    const bt_op_kernels *kernels[BT_DTYPE_COUNT_];
    /* The rows of parameter `slot` seen as a matrix [rows, numel / rows] (the
     * output axis of a weight) when a LoRA adapter may sit on it, else 0;
     * NULL: the op takes no adapter. The kernels never see the adapter: the
     * executor hands them the effective weight and its gradient (exec.c). */
    int (*lora_rows)(const struct bt_graph *g, const struct bt_node *nd, int slot);
} bt_op_desc;

/* The descriptor of an op (NULL for an unknown kind). */
const bt_op_desc *bt_op_get(bt_op_kind kind);
/* The name of an op ("unknown" for an unknown kind), and the op of a name. */
const char *bt_op_name(bt_op_kind kind);
bt_status bt_op_find(bt_op_kind *kind, const char *name);
/* An option of an op by name (NULL if it has none of that name). */
const bt_opt_field *bt_op_option(const bt_op_desc *d, const char *name);

#ifdef __cplusplus
}
#endif
#endif
