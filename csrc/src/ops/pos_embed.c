/* pos_embed: a learned positional embedding added to every sample, one
 * weight of the input's shape (S x D for a sequence). Float32. */
#include "op_internal.h"

static int param_count(const bt_node *nd) { (void)nd; return 1; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    (void)g; (void)which;
    return bt_node_numel(nd);
}

static int per(const bt_op_ctx *c) { return (int)bt_node_numel(op_node(c)); }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_pos_embed_forward_f32(c->out, c->in[0], c->param[0], c->rows, per(c));
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    op_copy(c->din[0], c->dout, op_count(c), c->dtype);
    return BT_OK;
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    return bt_pos_embed_backward_weight_f32(c->pgrad[0], c->dout, c->rows, per(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

const bt_op_desc bt_op_pos_embed = {
    "pos_embed", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT, NULL, 0, -1,
    op_infer_same_shape, param_count, NULL, param_numel, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
