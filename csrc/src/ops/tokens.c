/* tokens: a (c, h, w) feature map as a sequence (1, h*w, c) of h*w tokens
 * of c features (a conv patcher's output entering a transformer). A copy
 * (a transpose), not a view. Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    nd->c = 1; nd->h = src->h * src->w; nd->w = src->c;
    return BT_OK;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_tokens_forward_f32(c->out, c->in[0], c->rows, nd->w, nd->h);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const bt_node *nd = op_node(c);
    (void)k;
    return bt_tokens_backward_input_f32(c->din[0], c->dout, c->rows, nd->w, nd->h);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

const bt_op_desc bt_op_tokens = {
    "tokens", 1, 0, NULL, 0, -1, infer, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
