/* layernorm: normalisation over the last axis (the D features of each token
 * of a (1, S, D) sequence; of each row of any (c, h, w) tensor), with affine
 * weight and bias [D]. Saves only the per-token mean and 1/std; the backward
 * reads the input. The kernels are groupnorm's with one row per token as a
 * sample of D channels. Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    if (!(nd->o.norm.eps > 0.0f)) return BT_ERR_BAD_PARAM;
    if (nd->o.norm.affine != 0 && nd->o.norm.affine != 1) return BT_ERR_BAD_PARAM;
    return op_infer_same_shape(g, nd);
}

static int param_count(const bt_node *nd) { return nd->o.norm.affine ? 2 : 0; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    (void)g; (void)which;
    return (size_t)nd->w;
}

static int tokens(const bt_node *nd, int rows) { return rows * nd->c * nd->h; }

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    const size_t bytes = (size_t)tokens(nd, rows) * sizeof(float);
    (void)g; (void)dt;
    out[0].name = "mean"; out[0].bytes = bytes; out[0].backward_only = 0;
    out[1].name = "rstd"; out[1].bytes = bytes; out[1].backward_only = 0;
    return 2;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_forward_f32(c->out, c->saved[0], c->saved[1], c->in[0], c->param[0], c->param[1],
                                    tokens(nd, c->rows), nd->w, 1, 1, nd->o.norm.eps);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const bt_node *nd = op_node(c);
    (void)k;
    return bt_groupnorm_backward_input_f32(c->din[0], c->dout, c->in[0], c->saved[0], c->saved[1], c->param[0],
                                           tokens(nd, c->rows), nd->w, 1, 1);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    return bt_groupnorm_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], c->saved[0], c->saved[1],
                                            tokens(nd, c->rows), nd->w, 1, 1);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, norm, affine),
    BT_OPT_FIELD(BT_OPT_FLOAT, norm, eps),
};

const bt_op_desc bt_op_layernorm = {
    "layernorm", 1, BT_OPF_DIN_OVER_DOUT | BT_OPF_BWD_READS_INPUT | BT_OPF_RECOMPUTE_INPUT, opts, 2, -1,
    infer, param_count, NULL, param_numel, saved, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
