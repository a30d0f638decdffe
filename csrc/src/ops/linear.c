/* linear: a fully connected layer over the flattened sample (in_f = c*h*w of
 * its input). Parameters: weight [out_f, in_f] (PyTorch's layout), bias
 * [out_f] (has_bias). Its weight gradient reads the input. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    (void)g;
    if (nd->o.linear.out_f <= 0) return BT_ERR_BAD_SIZE;
    nd->c = nd->o.linear.out_f; nd->h = 1; nd->w = 1;
    return BT_OK;
}

static int param_count(const bt_node *nd) { return nd->o.linear.has_bias ? 2 : 1; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    if (which == 0) return (size_t)nd->o.linear.out_f * bt_node_numel(op_src(g, nd, 0));
    return (size_t)nd->o.linear.out_f;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_linear_forward_f32(c->out, c->in[0], c->param[0], c->param[1], c->rows, op_in_numel(c, 0),
                                 op_node(c)->o.linear.out_f);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_linear_backward_input_f32(c->din[0], c->dout, c->param[0], c->rows, op_in_numel(c, 0),
                                        op_node(c)->o.linear.out_f);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    return bt_linear_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], c->rows, op_in_numel(c, 0),
                                         op_node(c)->o.linear.out_f);
}

static bt_status fwd_q7(const bt_op_ctx *c)
{
    return bt_linear_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], c->wq, c->wq_frac,
                                c->param[1], c->param_frac[1], c->rows, op_in_numel(c, 0),
                                op_node(c)->o.linear.out_f);
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_linear_backward_input_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->wq,
                                       c->wq_frac, c->rows, op_in_numel(c, 0), op_node(c)->o.linear.out_f);
}

static bt_status bwd_w_q7(const bt_op_ctx *c)
{
    return bt_linear_backward_weight_q7(c->pgrad[0], c->grad_frac[0], c->pgrad[1], c->grad_frac[1], c->grad_st,
                                        c->dout, c->dout_frac, c->in[0], c->in_frac[0], c->rows, op_in_numel(c, 0),
                                        op_node(c)->o.linear.out_f);
}

/* LoRA: on the weight [out_f, in_f] */
static int lora_rows(const bt_graph *g, const bt_node *nd, int slot)
{
    (void)g;
    return slot == 0 ? nd->o.linear.out_f : 0;
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, bwd_w_q7};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, linear, out_f),
    BT_OPT_FIELD(BT_OPT_INT, linear, has_bias),
};

const bt_op_desc bt_op_linear = {
    "linear", 1, BT_OPF_WGRAD_READS_INPUT | BT_OPF_Q_WEIGHT_COPY, opts, 2, -1,
    infer, param_count, NULL, param_numel, NULL, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, lora_rows};
