/* token_mean: the mean over the tokens of a (1, S, D) sequence -> (1, 1, D).
 * Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    if (src->c != 1) return BT_ERR_SHAPE_MISMATCH;
    nd->c = 1; nd->h = 1; nd->w = src->w;
    return BT_OK;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *src = op_src(c->g, op_node(c), 0);
    return bt_token_mean_forward_f32(c->out, c->in[0], c->rows, src->h, src->w);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const bt_node *src = op_src(c->g, op_node(c), 0);
    (void)k;
    return bt_token_mean_backward_input_f32(c->din[0], c->dout, c->rows, src->h, src->w);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

const bt_op_desc bt_op_token_mean = {
    "token_mean", 1, 0, NULL, 0, -1, infer, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
