/* conv2d: dense, grouped, depthwise, pointwise and dilated convolution over
 * NCHW samples. Parameters: weight [c_out, c_in/groups, k_h, k_w], bias
 * [c_out] (has_bias). Its weight gradient reads the input; a cheap one (few
 * multiply-adds per output, e.g. a spatial Cx1 conv) may be run again at the
 * backward of the norm that reads it instead of keeping its output. */
#include "op_internal.h"

static void shape_of(const bt_graph *g, const bt_node *nd, int rows, bt_conv2d_shape *cs)
{
    const bt_node *src = op_src(g, nd, 0);
    const bt_conv2d_opts *o = &nd->o.conv;
    cs->n = rows; cs->c_in = src->c; cs->h_in = src->h; cs->w_in = src->w;
    cs->c_out = o->c_out; cs->k_h = o->k_h; cs->k_w = o->k_w;
    cs->stride_h = o->stride_h; cs->stride_w = o->stride_w;
    cs->pad_h = o->pad_h; cs->pad_w = o->pad_w; cs->dil_h = o->dil_h; cs->dil_w = o->dil_w;
    cs->groups = o->groups;
}

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    bt_conv2d_shape s;
    int ho, wo;
    bt_status st;
    shape_of(g, nd, 1, &s);
    if ((st = bt_conv2d_check(&s, &ho, &wo)) != BT_OK) return st;
    nd->c = nd->o.conv.c_out; nd->h = ho; nd->w = wo;
    return BT_OK;
}

static int param_count(const bt_node *nd) { return nd->o.conv.has_bias ? 2 : 1; }

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    const bt_conv2d_opts *o = &nd->o.conv;
    if (which == 0)
        return (size_t)o->c_out * (size_t)(op_src(g, nd, 0)->c / o->groups) * (size_t)o->k_h * (size_t)o->k_w;
    return (size_t)o->c_out;
}

static long recompute_macs(const bt_graph *g, const bt_node *nd)
{
    const bt_conv2d_opts *o = &nd->o.conv;
    return (long)(op_src(g, nd, 0)->c / o->groups) * o->k_h * o->k_w;
}

/* ---- float32 */
static bt_status fwd_f32(const bt_op_ctx *c)
{
    bt_conv2d_shape cs;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_forward_f32(c->out, c->in[0], c->param[0], c->param[1], &cs);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    bt_conv2d_shape cs;
    (void)k;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_backward_input_f32(c->din[0], c->dout, c->param[0], &cs);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    bt_conv2d_shape cs;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_backward_weight_f32(c->pgrad[0], c->pgrad[1], c->dout, c->in[0], &cs);
}

/* ---- fixed point: the int8 weight copy, an int32 bias */
static bt_status fwd_q7(const bt_op_ctx *c)
{
    bt_conv2d_shape cs;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], c->wq, c->wq_frac,
                                c->param[1], c->param_frac[1], &cs);
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    bt_conv2d_shape cs;
    (void)k;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_backward_input_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->wq,
                                       c->wq_frac, &cs);
}

static bt_status bwd_w_q7(const bt_op_ctx *c)
{
    bt_conv2d_shape cs;
    shape_of(c->g, op_node(c), c->rows, &cs);
    return bt_conv2d_backward_weight_q7(c->pgrad[0], c->grad_frac[0], c->pgrad[1], c->grad_frac[1], c->grad_st,
                                        c->dout, c->dout_frac, c->in[0], c->in_frac[0], &cs);
}

/* LoRA: on the weight [c_out, c_in * k_h * k_w] of an ungrouped convolution
 * (PEFT's Conv2d adapter: A a k_h x k_w convolution to rank channels, B a
 * pointwise one back) */
static int lora_rows(const bt_graph *g, const bt_node *nd, int slot)
{
    (void)g;
    return (slot == 0 && nd->o.conv.groups == 1) ? nd->o.conv.c_out : 0;
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, bwd_w_q7};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, conv, c_out),    BT_OPT_FIELD(BT_OPT_INT, conv, k_h),
    BT_OPT_FIELD(BT_OPT_INT, conv, k_w),      BT_OPT_FIELD(BT_OPT_INT, conv, stride_h),
    BT_OPT_FIELD(BT_OPT_INT, conv, stride_w), BT_OPT_FIELD(BT_OPT_INT, conv, pad_h),
    BT_OPT_FIELD(BT_OPT_INT, conv, pad_w),    BT_OPT_FIELD(BT_OPT_INT, conv, dil_h),
    BT_OPT_FIELD(BT_OPT_INT, conv, dil_w),    BT_OPT_FIELD(BT_OPT_INT, conv, groups),
    BT_OPT_FIELD(BT_OPT_INT, conv, has_bias),
};

const bt_op_desc bt_op_conv2d = {
    "conv2d", 1, BT_OPF_WGRAD_READS_INPUT | BT_OPF_Q_WEIGHT_COPY, opts, (int)(sizeof opts / sizeof opts[0]), -1,
    infer, param_count, NULL, param_numel, NULL, recompute_macs, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, lora_rows};
