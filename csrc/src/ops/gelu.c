/* gelu, tanh form; its backward reads the forward input. Float32 only. */
#include "op_internal.h"

static bt_status fwd_f32(const bt_op_ctx *c) { return bt_gelu_forward_f32(c->out, c->in[0], op_count(c)); }

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    return bt_gelu_backward_f32(c->din[0], c->dout, c->in[0], op_count(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

const bt_op_desc bt_op_gelu = {
    "gelu", 1, BT_OPF_BWD_READS_INPUT | BT_OPF_DIN_OVER_DOUT, NULL, 0, -1,
    op_infer_same_shape, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}};
