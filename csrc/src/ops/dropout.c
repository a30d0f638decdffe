/* dropout: inverted dropout in training (keep with probability 1 - p, scale
 * by 1/(1 - p)), the identity in inference. Its mask comes from the
 * session's generator with integer arithmetic, the same in both formats. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    if (!(nd->o.p >= 0.0f && nd->o.p < 1.0f)) return BT_ERR_BAD_PARAM;
    return op_infer_same_shape(g, nd);
}

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    (void)g; (void)dt;
    out[0].name = "mask"; out[0].bytes = bt_node_numel(nd) * (size_t)rows; out[0].backward_only = 0;
    return 1;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const float p = op_node(c)->o.p;
    if (c->train && p > 0.0f) return bt_dropout_forward_f32(c->out, c->saved[0], c->in[0], op_count(c), p, c->rng);
    op_copy(c->out, c->in[0], op_count(c), c->dtype);
    return BT_OK;
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const float p = op_node(c)->o.p;
    (void)k;
    if (p > 0.0f) return bt_dropout_backward_f32(c->din[0], c->dout, c->saved[0], op_count(c), p);
    op_copy(c->din[0], c->dout, op_count(c), c->dtype);
    return BT_OK;
}

/* p = 0, or inference: the identity, rescaled to the output's scale */
static bt_status fwd_q7(const bt_op_ctx *c)
{
    if (c->train && c->qopt_mant != 0)
        return bt_dropout_forward_q7(c->out, c->out_frac, c->out_st, c->saved[0], c->in[0], c->in_frac[0],
                                     op_count(c), c->qopt_mant, c->qopt_exp, c->rng);
    return bt_requant_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], op_count(c));
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    (void)k;
    if (c->qopt_mant != 0)
        return bt_dropout_backward_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->saved[0],
                                      op_count(c), c->qopt_mant, c->qopt_exp);
    return bt_requant_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, op_count(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, NULL};

static const bt_opt_field opts[] = {BT_OPT_SCALAR(BT_OPT_FLOAT, p)};

const bt_op_desc bt_op_dropout = {
    "dropout", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT, opts, 1, 0,
    infer, NULL, NULL, NULL, saved, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, NULL};
