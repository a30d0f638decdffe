/* elu: x for x > 0, alpha (e^x - 1) otherwise. Its backward reads the
 * forward output (dy/dx = y + alpha below 0), so it runs in place. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    if (!(nd->o.alpha >= 0.0f)) return BT_ERR_BAD_PARAM;
    return op_infer_same_shape(g, nd);
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_elu_forward_f32(c->out, c->in[0], op_count(c), op_node(c)->o.alpha);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_elu_backward_f32(c->din[0], c->dout, c->out, op_count(c), op_node(c)->o.alpha);
}

static bt_status fwd_q7(const bt_op_ctx *c)
{
    return bt_elu_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], op_count(c), c->qopt_mant,
                             c->qopt_exp);
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_elu_backward_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->out, c->out_frac,
                              op_count(c), c->qopt_mant, c->qopt_exp);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, NULL};

static const bt_opt_field opts[] = {BT_OPT_SCALAR(BT_OPT_FLOAT, alpha)};

const bt_op_desc bt_op_elu = {
    "elu", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT | BT_OPF_BWD_READS_OUTPUT, opts, 1, 0,
    infer, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, NULL};
