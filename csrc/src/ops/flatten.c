/* flatten: a sample as c*h*w features. A view: it shares its input's buffer
 * (and, in fixed point, its scale); its backward copies only when the
 * planner gave its input gradient another buffer (a fan-out). */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    nd->c = (int)bt_node_numel(op_src(g, nd, 0)); nd->h = 1; nd->w = 1;
    return BT_OK;
}

static bt_status fwd(const bt_op_ctx *c)
{
    /* the planner gives it its input's buffer (no copy); a caller with two buffers gets a copy */
    op_copy(c->out, c->in[0], op_count(c), c->dtype);
    return BT_OK;
}

static bt_status bwd_in(const bt_op_ctx *c, int k)
{
    (void)k;
    op_copy(c->din[0], c->dout, op_count(c), c->dtype);
    return BT_OK;
}

static const bt_op_kernels k_any = {fwd, bwd_in, NULL};

const bt_op_desc bt_op_flatten = {
    "flatten", 1, BT_OPF_VIEW, NULL, 0, -1, infer, NULL, NULL, NULL, NULL, NULL, {&k_any, &k_any}, NULL};
