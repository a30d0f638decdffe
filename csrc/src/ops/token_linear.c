/* token_linear: a linear layer applied to every token (row of the last axis)
 * with one weight [out_f, w] shared over the tokens: (c, h, w) -> (c, h,
 * out_f). The linear kernels with one row per token. Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    if (nd->o.linear.out_f <= 0) return BT_ERR_BAD_SIZE;
    if (nd->o.linear.has_bias != 0 && nd->o.linear.has_bias != 1) return BT_ERR_BAD_PARAM;
    nd->c = src->c; nd->h = src->h; nd->w = nd->o.linear.out_f;
    return BT_OK;
}

static int param_count(const bt_node *nd) { return nd->o.linear.has_bias ? 2 : 1; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    if (which == 0) return (size_t)nd->o.linear.out_f * (size_t)op_src(g, nd, 0)->w;
    return (size_t)nd->o.linear.out_f;
}

static int tokens(const bt_op_ctx *c) { return c->rows * op_node(c)->c * op_node(c)->h; }
static int in_f(const bt_op_ctx *c) { return op_src(c->g, op_node(c), 0)->w; }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_linear_forward_f32(c->out, c->in[0], c->param[0], c->param[1], tokens(c), in_f(c),
                                 op_node(c)->o.linear.out_f);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_linear_backward_input_f32(c->din[0], c->dout, c->param[0], tokens(c), in_f(c),
                                        op_node(c)->o.linear.out_f);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    return bt_linear_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], tokens(c), in_f(c),
                                         op_node(c)->o.linear.out_f);
}

/* LoRA: on the weight [out_f, D] */
static int lora_rows(const bt_graph *g, const bt_node *nd, int slot)
{
    (void)g;
    return slot == 0 ? nd->o.linear.out_f : 0;
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, linear, out_f),
    BT_OPT_FIELD(BT_OPT_INT, linear, has_bias),
};

const bt_op_desc bt_op_token_linear = {
    "token_linear", 1, BT_OPF_WGRAD_READS_INPUT, opts, 2, -1,
    infer, param_count, NULL, param_numel, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, lora_rows};
