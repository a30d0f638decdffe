/* Helpers shared by the op descriptors (internal, not installed). */
#ifndef BIOTRAIN_OP_INTERNAL_H
#define BIOTRAIN_OP_INTERNAL_H

#include <stddef.h>
#include <string.h>
#include "biotrain/graph.h"
#include "biotrain/kernels.h"

/* An option field of bt_node_opts, named as in C. */
#define BT_OPT_FIELD(type, member, field) { #field, type, offsetof(bt_node_opts, member.field), #member "." #field }
#define BT_OPT_SCALAR(type, member) { #member, type, offsetof(bt_node_opts, member), #member }

static inline const bt_node *op_node(const bt_op_ctx *c) { return &c->g->nodes[c->node]; }
static inline const bt_node *op_src(const bt_graph *g, const bt_node *nd, int k) { return &g->nodes[nd->inputs[k]]; }
/* Values of this node's output in the micro-batch. */
static inline int op_count(const bt_op_ctx *c) { return c->rows * (int)bt_node_numel(op_node(c)); }
/* Values of one sample of input k. */
static inline int op_in_numel(const bt_op_ctx *c, int k)
{
    return (int)bt_node_numel(op_src(c->g, op_node(c), k));
}

/* infer for ops whose output has the shape of input 0 */
static inline bt_status op_infer_same_shape(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    nd->c = src->c; nd->h = src->h; nd->w = src->w;
    return BT_OK;
}

/* A pass that copies (a view, or an identity in inference) when the two
 * buffers differ: element size by format. */
static inline void op_copy(void *dst, const void *src, int count, bt_dtype dt)
{
    if (dst != src) memmove(dst, src, (size_t)count * (dt == BT_DTYPE_FIXED ? 1u : sizeof(float)));
}

#endif
