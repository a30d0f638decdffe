/* seq_pool: CCT's sequence pooling of a (1, S, D) sequence -> (1, 1, D):
 * attention weights a = softmax over tokens of (x w + b), out = sum a x.
 * Parameters weight [D] and bias [1]; saves a [S] per sample; its backward
 * reads the input. Float32. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    if (src->c != 1) return BT_ERR_SHAPE_MISMATCH;
    nd->c = 1; nd->h = 1; nd->w = src->w;
    return BT_OK;
}

static int param_count(const bt_node *nd) { (void)nd; return 2; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    (void)g;
    return which == 0 ? (size_t)nd->w : 1u;
}

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    (void)dt;
    out[0].name = "attn";
    out[0].bytes = (size_t)rows * (size_t)op_src(g, nd, 0)->h * sizeof(float);
    out[0].backward_only = 0;
    return 1;
}

static int seq(const bt_op_ctx *c) { return op_src(c->g, op_node(c), 0)->h; }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_seq_pool_forward_f32(c->out, c->saved[0], c->in[0], c->param[0], c->param[1], c->rows, seq(c),
                                   op_node(c)->w);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_seq_pool_backward_input_f32(c->din[0], c->dout, c->in[0], c->saved[0], c->param[0], c->rows, seq(c),
                                          op_node(c)->w);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    return bt_seq_pool_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], c->saved[0], c->param[0],
                                           c->rows, seq(c), op_node(c)->w);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

const bt_op_desc bt_op_seq_pool = {
    "seq_pool", 1, BT_OPF_BWD_READS_INPUT, NULL, 0, -1,
    infer, param_count, NULL, param_numel, saved, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
