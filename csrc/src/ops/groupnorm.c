/* groupnorm: normalisation over groups of channels of each sample (LayerNorm
 * over channels is groups = 1), batch-independent, so gradients can be
 * accumulated one sample at a time. Saves only mean and 1/std per sample and
 * group; the backward reads the input (which a cheap conv may recompute).
 * Parameters: weight and bias [c] (affine). */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_norm_opts *o = &nd->o.norm;
    if (!(o->eps > 0.0f)) return BT_ERR_BAD_PARAM;
    if (o->groups <= 0) return BT_ERR_BAD_SIZE;
    if (op_src(g, nd, 0)->c % o->groups != 0) return BT_ERR_GROUPS;
    return op_infer_same_shape(g, nd);
}

static int param_count(const bt_node *nd) { return nd->o.norm.affine ? 2 : 0; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    (void)g; (void)which;
    return (size_t)nd->c;
}

/* mean and rstd [rows, groups]: float32, or int32 in fixed point */
static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    const size_t bytes = (size_t)nd->o.norm.groups * (size_t)rows * 4u;
    (void)g; (void)dt;
    out[0].name = "mean"; out[0].bytes = bytes; out[0].backward_only = 0;
    out[1].name = "rstd"; out[1].bytes = bytes; out[1].backward_only = 0;
    return 2;
}

static int hw(const bt_op_ctx *c) { return op_node(c)->h * op_node(c)->w; }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_forward_f32(c->out, c->saved[0], c->saved[1], c->in[0], c->param[0], c->param[1], c->rows,
                                    nd->c, hw(c), nd->o.norm.groups, nd->o.norm.eps);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const bt_node *nd = op_node(c);
    (void)k;
    return bt_groupnorm_backward_input_f32(c->din[0], c->dout, c->in[0], c->saved[0], c->saved[1], c->param[0],
                                           c->rows, nd->c, hw(c), nd->o.norm.groups);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], c->saved[0], c->saved[1],
                                            c->rows, nd->c, hw(c), nd->o.norm.groups);
}

static bt_status fwd_q7(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_forward_q7(c->out, c->out_frac, c->out_st, c->saved[0], c->saved[1], c->in[0], c->in_frac[0],
                                   c->param[0], c->param_frac[0], c->param[1], c->param_frac[1], c->rows, nd->c,
                                   hw(c), nd->o.norm.groups, c->qopt_mant, c->qopt_exp);
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    const bt_node *nd = op_node(c);
    (void)k;
    return bt_groupnorm_backward_input_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->in[0],
                                          c->in_frac[0], c->saved[0], c->saved[1], c->param[0], c->param_frac[0],
                                          c->rows, nd->c, hw(c), nd->o.norm.groups);
}

static bt_status bwd_w_q7(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_backward_weight_q7(c->pgrad[0], c->grad_frac[0], c->pgrad[1], c->grad_frac[1], c->grad_st,
                                           c->dout, c->dout_frac, c->in[0], c->in_frac[0], c->saved[0], c->saved[1],
                                           c->rows, nd->c, hw(c), nd->o.norm.groups);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, bwd_w_q7};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, norm, groups),
    BT_OPT_FIELD(BT_OPT_INT, norm, affine),
    BT_OPT_FIELD(BT_OPT_FLOAT, norm, eps),
};

const bt_op_desc bt_op_groupnorm = {
    "groupnorm", 1, BT_OPF_BWD_READS_INPUT | BT_OPF_DIN_OVER_DOUT | BT_OPF_RECOMPUTE_INPUT, opts, 3, 2,
    infer, param_count, NULL, param_numel, saved, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, NULL};
