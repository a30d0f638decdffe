/* add: the residual sum of two tensors of one shape. It may overwrite either
 * dying input; slot 0's input gradient may overwrite the output gradient (in
 * fixed point a rescaled copy, so the executor runs slot 1 first). */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_node *a = op_src(g, nd, 0), *b = op_src(g, nd, 1);
    if (a->c != b->c || a->h != b->h || a->w != b->w) return BT_ERR_SHAPE_MISMATCH;
    return op_infer_same_shape(g, nd);
}

static bt_status fwd_f32(const bt_op_ctx *c) { return bt_add_forward_f32(c->out, c->in[0], c->in[1], op_count(c)); }

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    return bt_add_backward_f32(c->din[k], NULL, c->dout, op_count(c));
}

static bt_status fwd_q7(const bt_op_ctx *c)
{
    return bt_add_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], c->in[1], c->in_frac[1],
                             op_count(c));
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    return bt_requant_q7(c->din[k], c->din_frac[k], c->din_st[k], c->dout, c->dout_frac, op_count(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, NULL};

const bt_op_desc bt_op_add = {
    "add", 2, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT, NULL, 0, -1,
    infer, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, NULL};
