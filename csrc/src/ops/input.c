/* input: node 0, the sample as the caller gives it (bt_graph_init). The
 * executor loads it; it has no kernels of its own. */
#include "op_internal.h"

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    (void)g; (void)nd;
    return BT_ERR_UNSUPPORTED; /* only bt_graph_init makes an input */
}

static bt_status none(const bt_op_ctx *c)
{
    (void)c;
    return BT_ERR_UNSUPPORTED;
}

static const bt_op_kernels k_none = {none, NULL, NULL};

const bt_op_desc bt_op_input = {
    "input", 0, 0, NULL, 0, -1, infer, NULL, NULL, NULL, NULL, NULL, {&k_none, &k_none}, NULL};
