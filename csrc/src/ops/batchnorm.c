/* batchnorm: per-channel normalisation over the batch (training) or with the
 * running statistics (inference). Its statistics need the whole batch in one
 * pass, so its plan's micro-batch is the batch. Parameters: weight, bias,
 * running mean, running var [c]; only the first two are trained. Float32
 * only: fixed-point models use groupnorm. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_norm_opts *o = &nd->o.norm;
    if (!(o->eps > 0.0f)) return BT_ERR_BAD_PARAM;
    if (!(o->momentum >= 0.0f && o->momentum <= 1.0f)) return BT_ERR_BAD_PARAM;
    if (!o->affine) return BT_ERR_UNSUPPORTED; /* always affine, as PyTorch's default */
    return op_infer_same_shape(g, nd);
}

static int param_count(const bt_node *nd) { (void)nd; return 4; }
static int trainable_count(const bt_node *nd) { (void)nd; return 2; } /* the running statistics get no gradient */

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    (void)g; (void)which;
    return (size_t)nd->c;
}

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    const size_t bytes = (size_t)nd->c * sizeof(float);
    (void)g; (void)rows; (void)dt;
    out[0].name = "mean"; out[0].bytes = bytes; out[0].backward_only = 0;
    out[1].name = "rstd"; out[1].bytes = bytes; out[1].backward_only = 0;
    return 2;
}

static int hw(const bt_op_ctx *c) { return op_node(c)->h * op_node(c)->w; }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    if (c->train)
        return bt_batchnorm_forward_train_f32(c->out, c->saved[0], c->saved[1], c->param[2], c->param[3], c->in[0],
                                              c->param[0], c->param[1], c->rows, nd->c, hw(c), nd->o.norm.momentum,
                                              nd->o.norm.eps);
    return bt_batchnorm_forward_eval_f32(c->out, c->in[0], c->param[2], c->param[3], c->param[0], c->param[1],
                                         c->rows, nd->c, hw(c), nd->o.norm.eps);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_batchnorm_backward_input_f32(c->din[0], c->dout, c->in[0], c->saved[0], c->saved[1], c->param[0],
                                           c->rows, op_node(c)->c, hw(c));
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    return bt_batchnorm_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], c->saved[0], c->saved[1],
                                            c->rows, op_node(c)->c, hw(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_FLOAT, norm, momentum),
    BT_OPT_FIELD(BT_OPT_FLOAT, norm, eps),
    BT_OPT_FIELD(BT_OPT_INT, norm, affine),
};

const bt_op_desc bt_op_batchnorm = {
    "batchnorm", 1, BT_OPF_BWD_READS_INPUT | BT_OPF_DIN_OVER_DOUT | BT_OPF_RECOMPUTE_INPUT | BT_OPF_BATCH_STATS,
    opts, 3, -1, infer, param_count, trainable_count, param_numel, saved, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
