/* relu: max(0, x). In training it saves one bit per element for its
 * backward instead of its output, so it may overwrite its input and its
 * input gradient may overwrite its output gradient. */
#include "op_internal.h"

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    (void)g; (void)dt;
    out[0].name = "mask";
    out[0].bytes = bt_relu_mask_words((int)(bt_node_numel(nd) * (size_t)rows)) * sizeof(uint32_t);
    out[0].backward_only = 1;
    return 1;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    if (c->train && c->saved[0]) return bt_relu_forward_mask_f32(c->out, c->saved[0], c->in[0], op_count(c));
    return bt_relu_forward_f32(c->out, c->in[0], op_count(c));
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    if (c->saved[0]) return bt_relu_backward_mask_f32(c->din[0], c->dout, c->saved[0], op_count(c));
    return bt_relu_backward_f32(c->din[0], c->dout, c->out, op_count(c));
}

static bt_status fwd_q7(const bt_op_ctx *c)
{
    if (c->train && c->saved[0])
        return bt_relu_forward_mask_q7(c->out, c->out_frac, c->out_st, c->saved[0], c->in[0], c->in_frac[0],
                                       op_count(c));
    return bt_relu_forward_q7(c->out, c->out_frac, c->out_st, c->in[0], c->in_frac[0], op_count(c));
}

static bt_status bwd_in_q7(const bt_op_ctx *c, int k)
{
    (void)k;
    if (c->saved[0])
        return bt_relu_backward_mask_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->saved[0],
                                        op_count(c));
    return bt_relu_backward_q7(c->din[0], c->din_frac[0], c->din_st[0], c->dout, c->dout_frac, c->out, op_count(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};
static const bt_op_kernels k_q7 = {fwd_q7, bwd_in_q7, NULL};

const bt_op_desc bt_op_relu = {
    "relu", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT, NULL, 0, -1,
    op_infer_same_shape, NULL, NULL, NULL, saved, NULL, {BT_KERNELS_F32(k_f32), BT_KERNELS_Q7(k_q7)}, NULL};
