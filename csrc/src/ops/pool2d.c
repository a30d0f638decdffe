/* The pool2d ops: avgpool2d, maxpool2d (saving the argmax of each window for
 * its backward) and global_avgpool (the average pool whose window is the
 * whole plane: the same kernel in both formats). No parameters. */
#include "op_internal.h"

static bt_status infer_pool(const bt_graph *g, bt_node *nd)
{
    const bt_node *src = op_src(g, nd, 0);
    bt_pool2d_shape s;
    int ho, wo;
    bt_status st;
    s.n = 1; s.c = src->c; s.h_in = src->h; s.w_in = src->w;
    s.k_h = nd->o.pool.k_h; s.k_w = nd->o.pool.k_w;
    s.stride_h = nd->o.pool.stride_h; s.stride_w = nd->o.pool.stride_w;
    s.pad_h = nd->o.pool.pad_h; s.pad_w = nd->o.pool.pad_w;
    if ((st = bt_pool2d_check(&s, &ho, &wo)) != BT_OK) return st;
    nd->c = src->c; nd->h = ho; nd->w = wo;
    return BT_OK;
}

static bt_status infer_global(const bt_graph *g, bt_node *nd)
{
    nd->c = op_src(g, nd, 0)->c; nd->h = 1; nd->w = 1;
    return BT_OK;
}

static int saved_argmax(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    (void)g; (void)dt;
    out[0].name = "argmax"; out[0].bytes = bt_node_numel(nd) * sizeof(int32_t) * (size_t)rows;
    out[0].backward_only = 0;
    return 1;
}

static void shape(const bt_op_ctx *c, bt_pool2d_shape *ps) { bt_node_pool2d_shape(c->g, c->node, c->rows, ps); }

/* ---- average (and global average) */
static bt_status avg_fwd_f32(const bt_op_ctx *c)
{
    bt_pool2d_shape ps;
    shape(c, &ps);
    return bt_avgpool2d_forward_f32(c->out, c->in[0], &ps);
}

static bt_status avg_bwd_f32(const bt_op_ctx *c, int k)
{
    bt_pool2d_shape ps;
    (void)k;
    shape(c, &ps);
    return bt_avgpool2d_backward_f32(c->din[0], c->dout, &ps);
}

static bt_status avg_fwd_q7(const bt_op_ctx *c)
{
    bt_pool2d_shape ps;
    shape(c, &ps);
    return bt_avgpool2d_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], &ps);
}

static bt_status avg_bwd_q7(const bt_op_ctx *c, int k)
{
    bt_pool2d_shape ps;
    (void)k;
    shape(c, &ps);
    return bt_avgpool2d_backward_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, &ps);
}

/* ---- max */
static bt_status max_fwd_f32(const bt_op_ctx *c)
{
    bt_pool2d_shape ps;
    shape(c, &ps);
    return bt_maxpool2d_forward_f32(c->out, c->saved[0], c->in[0], &ps);
}

static bt_status max_bwd_f32(const bt_op_ctx *c, int k)
{
    bt_pool2d_shape ps;
    (void)k;
    shape(c, &ps);
    return bt_maxpool2d_backward_f32(c->din[0], c->dout, c->saved[0], &ps);
}

static bt_status max_fwd_q7(const bt_op_ctx *c)
{
    bt_pool2d_shape ps;
    shape(c, &ps);
    return bt_maxpool2d_forward_q7(c->out, c->out_frac, c->out_st, c->saved[0], c->in[0], c->in_frac[0], &ps);
}

static bt_status max_bwd_q7(const bt_op_ctx *c, int k)
{
    bt_pool2d_shape ps;
    (void)k;
    shape(c, &ps);
    return bt_maxpool2d_backward_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->saved[0],
                                    &ps);
}

static const bt_op_kernels avg_f32 = {avg_fwd_f32, avg_bwd_f32, NULL};
static const bt_op_kernels avg_q7 = {avg_fwd_q7, avg_bwd_q7, NULL};
static const bt_op_kernels max_f32 = {max_fwd_f32, max_bwd_f32, NULL};
static const bt_op_kernels max_q7 = {max_fwd_q7, max_bwd_q7, NULL};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, pool, k_h),      BT_OPT_FIELD(BT_OPT_INT, pool, k_w),
    BT_OPT_FIELD(BT_OPT_INT, pool, stride_h), BT_OPT_FIELD(BT_OPT_INT, pool, stride_w),
    BT_OPT_FIELD(BT_OPT_INT, pool, pad_h),    BT_OPT_FIELD(BT_OPT_INT, pool, pad_w),
};

const bt_op_desc bt_op_avgpool2d = {
    "avgpool2d", 1, 0, opts, 6, -1, infer_pool, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(avg_f32), BT_KERNELS_Q7(avg_q7)}, NULL};
const bt_op_desc bt_op_maxpool2d = {
    "maxpool2d", 1, 0, opts, 6, -1, infer_pool, NULL, NULL, NULL, saved_argmax, NULL, {BT_KERNELS_F32(max_f32), BT_KERNELS_Q7(max_q7)}, NULL};
const bt_op_desc bt_op_global_avgpool = {
    "global_avgpool", 1, 0, NULL, 0, -1, infer_global, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(avg_f32), BT_KERNELS_Q7(avg_q7)}, NULL};
