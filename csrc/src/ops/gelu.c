/* gelu: x Phi(x), in the exact (erf) form or the tanh form (option exact),
 * each with the derivative of its own form; its backward reads the forward
 * input. Float32 only. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    if (nd->o.exact != 0 && nd->o.exact != 1) return BT_ERR_BAD_PARAM;
    return op_infer_same_shape(g, nd);
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    if (op_node(c)->o.exact) return bt_gelu_erf_forward_f32(c->out, c->in[0], op_count(c));
    return bt_gelu_forward_f32(c->out, c->in[0], op_count(c));
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    (void)k;
    if (op_node(c)->o.exact) return bt_gelu_erf_backward_f32(c->din[0], c->dout, c->in[0], op_count(c));
    return bt_gelu_backward_f32(c->din[0], c->dout, c->in[0], op_count(c));
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, NULL};

static const bt_opt_field opts[] = {BT_OPT_SCALAR(BT_OPT_INT, exact)};

const bt_op_desc bt_op_gelu = {
    "gelu", 1, BT_OPF_BWD_READS_INPUT | BT_OPF_DIN_OVER_DOUT, opts, 1, -1,
    infer, NULL, NULL, NULL, NULL, NULL, {BT_KERNELS_F32(k_f32), NULL}, NULL};
