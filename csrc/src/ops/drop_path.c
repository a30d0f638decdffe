/* drop_path: stochastic depth on a residual branch: in training each sample
 * is kept whole with probability 1 - p (scaled by 1/(1 - p)) or zeroed; the
 * identity in inference. One draw per sample from the session's generator.
 * Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    if (!(nd->o.p >= 0.0f && nd->o.p < 1.0f)) return BT_ERR_BAD_PARAM;
    return op_infer_same_shape(g, nd);
}

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    (void)g; (void)nd; (void)dt;
    out[0].name = "mask"; out[0].bytes = (size_t)rows; out[0].backward_only = 0;
    return 1;
}

static int per(const bt_op_ctx *c) { return (int)bt_node_numel(op_node(c)); }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const float p = op_node(c)->o.p;
    if (c->train && p > 0.0f) return bt_drop_path_forward_f32(c->out, c->saved[0], c->in[0], c->rows, per(c), p, c->rng);
    op_copy(c->out, c->in[0], op_count(c), c->dtype);
    return BT_OK;
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const float p = op_node(c)->o.p;
    (void)k;
    if (p > 0.0f) return bt_drop_path_backward_f32(c->din[0], c->dout, c->saved[0], c->rows, per(c), p);
    op_copy(c->din[0], c->dout, op_count(c), c->dtype);
    return BT_OK;
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

static const bt_opt_field opts[] = {BT_OPT_SCALAR(BT_OPT_FLOAT, p)};

const bt_op_desc bt_op_drop_path = {
    "drop_path", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT, opts, 1, 0,
    infer, NULL, NULL, NULL, saved, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
