/* The network description: a DAG of layers with per-sample shapes.
 *
 * Building a graph is separate from planning its memory (plan.h) and from
 * running it (exec.h). A graph holds no tensors, only shapes and options, in
 * fixed-size tables, so that an MCU can keep it in a static variable.
 * Node 0 is always the input. A node's inputs are earlier nodes, so the node
 * order is a topological order and the forward runs in it. */
#ifndef BIOTRAIN_GRAPH_H
#define BIOTRAIN_GRAPH_H

#include <stddef.h>
#include "biotrain/status.h"
#include "biotrain/types.h"
#include "biotrain/ops.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BT_MAX_NODES 64
#define BT_NAME_LEN 32

/* Per-op options (the op table names their fields for the bindings and the
 * emitter). Batch size is not part of a graph (n is set by the plan). */
typedef struct {
    int c_out, k_h, k_w, stride_h, stride_w, pad_h, pad_w, dil_h, dil_w, groups;
    int has_bias;
} bt_conv2d_opts;

typedef struct {
    int out_f, has_bias;
} bt_linear_opts;

typedef struct {
    int groups;        /* groupnorm; unused by batchnorm */
    int affine;        /* weight and bias present */
    float eps;
    float momentum;    /* batchnorm running statistics */
} bt_norm_opts;

typedef struct {
    int k_h, k_w, stride_h, stride_w, pad_h, pad_w;
} bt_pool_opts;

/* Multi-head self-attention over a token sequence (c = 1, h = S tokens, w = D
 * features); attention.h has the math. Parameters, in slot order, the
 * absent ones skipped: in_proj weight [3D, D], in_proj bias [3D] (qkv_bias),
 * out_proj weight [D, D], out_proj bias [D] (out_bias); all trainable. */
typedef struct {
    int heads;         /* dividing D */
    int qkv_bias;      /* 0/1 */
    int out_bias;      /* 0/1 */
    int rope;          /* 0/1: rotary position embedding on q and k (D / heads even) */
    int keep_probs;    /* 0: the backward recomputes one head's S x S map at a time;
                        * 1: the forward keeps all H x S x S probabilities (the whole-map variant) */
} bt_mhsa_opts;

typedef union {
    bt_conv2d_opts conv;
    bt_linear_opts linear;
    bt_norm_opts norm;
    bt_pool_opts pool;
    bt_mhsa_opts mhsa;
    float alpha;       /* elu */
    float p;           /* dropout, drop_path */
    int exact;         /* gelu: 1 the erf form, 0 the tanh form */
} bt_node_opts;

/* A LoRA adapter on a weight W [rows, cols] of a node: the layer computes
 * with W + (alpha / rank) B A, A [rank, cols] and B [rows, rank] being two
 * more parameter slots of the node (after its op's own, in adapter order).
 * PEFT's initialisation (A Kaiming-uniform, B zero) is the caller's. */
#define BT_MAX_LORA 2
typedef struct {
    int slot;              /* the adapted parameter of the op */
    int rank;
    float alpha;
} bt_lora;

/* trainable: one bit per parameter slot (bit k: slot k is updated) */
#define BT_TRAIN_ALL 0xFF

typedef struct bt_node {
    bt_op_kind kind;
    int n_inputs;
    int inputs[BT_MAX_NODE_INPUTS];
    int c, h, w;           /* output shape of one sample */
    int trainable;         /* set by the training strategy: bit k updates parameter slot k */
    int n_lora;
    bt_lora lora[BT_MAX_LORA];
    char name[BT_NAME_LEN];
    bt_node_opts o;
} bt_node;

typedef struct bt_graph {
    bt_node nodes[BT_MAX_NODES];
    int n_nodes;
    int classes;           /* size of the last node's output, the logits */
} bt_graph;

/* Starts a graph whose input is one sample of shape [c, h, w]; the input is node 0. */
bt_status bt_graph_init(bt_graph *g, int c, int h, int w);

/* Appends a node of any op reading `n_inputs` earlier nodes, checks its
 * options against the inputs (the op's descriptor, ops.h), and returns its id
 * in *id. Nothing is added on a bad status. `opts` may be NULL for an op
 * without options. */
bt_status bt_graph_add_node(bt_graph *g, int *id, bt_op_kind kind, const int *inputs, int n_inputs,
                            const bt_node_opts *opts, const char *name);

/* Typed shorthands for bt_graph_add_node, one per op of the CNN zoo. */
bt_status bt_graph_conv2d(bt_graph *g, int *id, int input, const bt_conv2d_opts *o, const char *name);
/* Linear reads the input flattened to c*h*w features. */
bt_status bt_graph_linear(bt_graph *g, int *id, int input, const bt_linear_opts *o, const char *name);
bt_status bt_graph_groupnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name);
bt_status bt_graph_batchnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name);
bt_status bt_graph_relu(bt_graph *g, int *id, int input, const char *name);
bt_status bt_graph_elu(bt_graph *g, int *id, int input, float alpha, const char *name);
bt_status bt_graph_gelu(bt_graph *g, int *id, int input, const char *name);
bt_status bt_graph_avgpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name);
bt_status bt_graph_maxpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name);
bt_status bt_graph_global_avgpool(bt_graph *g, int *id, int input, const char *name);
bt_status bt_graph_add(bt_graph *g, int *id, int a, int b, const char *name);
bt_status bt_graph_flatten(bt_graph *g, int *id, int input, const char *name);
bt_status bt_graph_dropout(bt_graph *g, int *id, int input, float p, const char *name);

/* Marks the last node as the logits; its c*h*w is the number of classes. */
bt_status bt_graph_finish(bt_graph *g);

/* Marks a node's parameters as trained (1: all) or frozen (0). Nodes without
 * parameters ignore the flag. */
bt_status bt_graph_set_trainable(bt_graph *g, int node, int trainable);
/* Trains the parameter slots of `mask` (bit k: slot k; BT_TRAIN_ALL: all)
 * and freezes the rest.
 * A weight that an adapter does not cover is frozen only with the whole
 * node's weights: refused with BT_ERR_BAD_PARAM otherwise. */
bt_status bt_graph_set_trainable_mask(bt_graph *g, int node, int mask);

/* Puts a LoRA adapter of `rank` (1 .. min(rows, cols)) and scaling
 * alpha / rank on parameter `slot` of `node`; its A and B become the node's
 * next two parameter slots. Refused (graph unchanged): a slot the op has no
 * adapter for, one already adapted, a rank out of range, alpha not positive
 * and finite, no slots left. */
bt_status bt_graph_add_lora(bt_graph *g, int node, int slot, int rank, float alpha);
/* The adapter of node j's slot `slot`, or -1; and the rows of an adapted weight. */
int bt_node_lora_of(const bt_graph *g, int node, int slot);
int bt_node_lora_rows(const bt_graph *g, int node, int slot);

/* The kernel shape of a conv2d node, or of a pooling node (a global average
 * pool is the pool whose window is the whole plane), for a micro-batch of
 * `rows` samples: what every executor hands the kernels. */
void bt_node_conv2d_shape(const bt_graph *g, int node, int rows, bt_conv2d_shape *cs);
void bt_node_pool2d_shape(const bt_graph *g, int node, int rows, bt_pool2d_shape *ps);

/* Elements of one sample of a node's output. */
size_t bt_node_numel(const bt_node *nd);

/* Parameters of a node: its op's own slots (0..4: weight, bias, running
 * mean, running var, or attention's projections), then each adapter's A and
 * B; the count and the element count of each. bt_node_trainable_params is
 * how many of the op's own slots can train at all. */
int bt_node_param_count(const bt_graph *g, int node);
/* The op's own slots (before any adapter's). */
int bt_node_base_param_count(const bt_graph *g, int node);
int bt_node_trainable_params(const bt_graph *g, int node);
size_t bt_node_param_numel(const bt_graph *g, int node, int which);
/* 1 if slot `which` receives a gradient: the node's mask has it and the op
 * lets it train (running statistics never do). */
int bt_node_param_trains(const bt_graph *g, int node, int which);

#ifdef __cplusplus
}
#endif
#endif
