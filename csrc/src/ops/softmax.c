/* softmax: over the last axis (each row of w values); its backward
 * s * (dy - sum(dy * s)) reads the forward output. Float32. */
#include "op_internal.h"

static int rows_of(const bt_op_ctx *c) { return c->rows * op_node(c)->c * op_node(c)->h; }

static bt_status fwd_f32(const bt_op_ctx *c)
{
    return bt_softmax_forward_f32(c->out, c->in[0], rows_of(c), op_node(c)->w);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_softmax_backward_f32(c->din[0], c->dout, c->out, rows_of(c), op_node(c)->w);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

const bt_op_desc bt_op_softmax = {
    "softmax", 1, BT_OPF_INPLACE | BT_OPF_DIN_OVER_DOUT | BT_OPF_BWD_READS_OUTPUT, NULL, 0, -1,
    op_infer_same_shape, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
