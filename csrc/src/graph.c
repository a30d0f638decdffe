/* Graph building: appends nodes with their per-sample output shapes, each
 * checked against its inputs by its op's descriptor (ops.h). No memory is
 * planned here (see plan.c). */
#include <string.h>
#include "biotrain/graph.h"

void bt_node_conv2d_shape(const bt_graph *g, int node, int rows, bt_conv2d_shape *cs)
{
    const bt_node *nd = &g->nodes[node];
    const bt_node *src = &g->nodes[nd->inputs[0]];
    const bt_conv2d_opts *o = &nd->o.conv;
    cs->n = rows; cs->c_in = src->c; cs->h_in = src->h; cs->w_in = src->w;
    cs->c_out = o->c_out; cs->k_h = o->k_h; cs->k_w = o->k_w;
    cs->stride_h = o->stride_h; cs->stride_w = o->stride_w;
    cs->pad_h = o->pad_h; cs->pad_w = o->pad_w; cs->dil_h = o->dil_h; cs->dil_w = o->dil_w;
    cs->groups = o->groups;
}

void bt_node_pool2d_shape(const bt_graph *g, int node, int rows, bt_pool2d_shape *ps)
{
    const bt_node *nd = &g->nodes[node];
    const bt_node *src = &g->nodes[nd->inputs[0]];
    ps->n = rows; ps->c = src->c; ps->h_in = src->h; ps->w_in = src->w;
    if (nd->kind == BT_OP_GLOBAL_AVGPOOL) {
        ps->k_h = src->h; ps->k_w = src->w; ps->stride_h = src->h; ps->stride_w = src->w;
        ps->pad_h = 0; ps->pad_w = 0;
        return;
    }
    ps->k_h = nd->o.pool.k_h; ps->k_w = nd->o.pool.k_w;
    ps->stride_h = nd->o.pool.stride_h; ps->stride_w = nd->o.pool.stride_w;
    ps->pad_h = nd->o.pool.pad_h; ps->pad_w = nd->o.pool.pad_w;
}

size_t bt_node_numel(const bt_node *nd)
{
    return (size_t)nd->c * (size_t)nd->h * (size_t)nd->w;
}

bt_status bt_graph_init(bt_graph *g, int c, int h, int w)
{
    bt_node *nd;
    if (!g) return BT_ERR_NULL_POINTER;
    if (c <= 0 || h <= 0 || w <= 0) return BT_ERR_BAD_SIZE;
    memset(g, 0, sizeof *g);
    nd = &g->nodes[0];
    nd->kind = BT_OP_INPUT;
    nd->c = c; nd->h = h; nd->w = w;
    strcpy(nd->name, "input");
    g->n_nodes = 1;
    return BT_OK;
}

bt_status bt_graph_add_node(bt_graph *g, int *id, bt_op_kind kind, const int *inputs, int n_inputs,
                            const bt_node_opts *opts, const char *name)
{
    const bt_op_desc *d = bt_op_get(kind);
    bt_node nd;
    bt_status st;
    int i;
    if (!g || (n_inputs > 0 && !inputs)) return BT_ERR_NULL_POINTER;
    if (!d || kind == BT_OP_INPUT) return BT_ERR_UNSUPPORTED;
    if (g->n_nodes < 1) return BT_ERR_STATE;
    if (g->n_nodes >= BT_MAX_NODES) return BT_ERR_CAPACITY;
    if (n_inputs != d->n_inputs) return BT_ERR_BAD_PARAM;
    for (i = 0; i < n_inputs; ++i)
        if (inputs[i] < 0 || inputs[i] >= g->n_nodes) return BT_ERR_BAD_PARAM;
    /* built aside and checked whole: a refused node leaves the graph as it was */
    memset(&nd, 0, sizeof nd);
    nd.kind = kind;
    nd.n_inputs = n_inputs;
    for (i = 0; i < n_inputs; ++i) nd.inputs[i] = inputs[i];
    if (opts) nd.o = *opts;
    if (name) {
        strncpy(nd.name, name, BT_NAME_LEN - 1);
        nd.name[BT_NAME_LEN - 1] = '\0';
    }
    if ((st = d->infer(g, &nd)) != BT_OK) return st;
    if (nd.c <= 0 || nd.h <= 0 || nd.w <= 0) return BT_ERR_BAD_SIZE;
    g->nodes[g->n_nodes] = nd;
    if (id) *id = g->n_nodes;
    g->n_nodes++;
    return BT_OK;
}

/* ---------------------------------------------------------------- shorthands */
static bt_status add1(bt_graph *g, int *id, bt_op_kind kind, int input, const bt_node_opts *o, const char *name)
{
    return bt_graph_add_node(g, id, kind, &input, 1, o, name);
}

bt_status bt_graph_conv2d(bt_graph *g, int *id, int input, const bt_conv2d_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.conv = *o;
    return add1(g, id, BT_OP_CONV2D, input, &no, name);
}

bt_status bt_graph_linear(bt_graph *g, int *id, int input, const bt_linear_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.linear = *o;
    return add1(g, id, BT_OP_LINEAR, input, &no, name);
}

bt_status bt_graph_groupnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.norm = *o;
    return add1(g, id, BT_OP_GROUPNORM, input, &no, name);
}

bt_status bt_graph_batchnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.norm = *o;
    return add1(g, id, BT_OP_BATCHNORM, input, &no, name);
}

bt_status bt_graph_relu(bt_graph *g, int *id, int input, const char *name)
{
    return add1(g, id, BT_OP_RELU, input, NULL, name);
}

bt_status bt_graph_elu(bt_graph *g, int *id, int input, float alpha, const char *name)
{
    bt_node_opts no;
    memset(&no, 0, sizeof no);
    no.alpha = alpha;
    return add1(g, id, BT_OP_ELU, input, &no, name);
}

bt_status bt_graph_gelu(bt_graph *g, int *id, int input, const char *name)
{
    return add1(g, id, BT_OP_GELU, input, NULL, name);
}

bt_status bt_graph_dropout(bt_graph *g, int *id, int input, float p, const char *name)
{
    bt_node_opts no;
    memset(&no, 0, sizeof no);
    no.p = p;
    return add1(g, id, BT_OP_DROPOUT, input, &no, name);
}

bt_status bt_graph_avgpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.pool = *o;
    return add1(g, id, BT_OP_AVGPOOL2D, input, &no, name);
}

bt_status bt_graph_maxpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name)
{
    bt_node_opts no;
    if (!o) return BT_ERR_NULL_POINTER;
    memset(&no, 0, sizeof no);
    no.pool = *o;
    return add1(g, id, BT_OP_MAXPOOL2D, input, &no, name);
}

bt_status bt_graph_global_avgpool(bt_graph *g, int *id, int input, const char *name)
{
    return add1(g, id, BT_OP_GLOBAL_AVGPOOL, input, NULL, name);
}

bt_status bt_graph_add(bt_graph *g, int *id, int a, int b, const char *name)
{
    int ins[2];
    ins[0] = a; ins[1] = b;
    return bt_graph_add_node(g, id, BT_OP_ADD, ins, 2, NULL, name);
}

bt_status bt_graph_flatten(bt_graph *g, int *id, int input, const char *name)
{
    return add1(g, id, BT_OP_FLATTEN, input, NULL, name);
}

/* ---------------------------------------------------------------- the rest */
bt_status bt_graph_finish(bt_graph *g)
{
    int i, j, used;
    if (!g) return BT_ERR_NULL_POINTER;
    if (g->n_nodes < 2) return BT_ERR_STATE;
    /* Every node but the last must feed another: a dangling branch would get no gradient. */
    for (i = 0; i < g->n_nodes - 1; ++i) {
        used = 0;
        for (j = i + 1; j < g->n_nodes && !used; ++j) {
            int k;
            for (k = 0; k < g->nodes[j].n_inputs; ++k)
                if (g->nodes[j].inputs[k] == i) used = 1;
        }
        if (!used) return BT_ERR_SHAPE_MISMATCH;
    }
    g->classes = (int)bt_node_numel(&g->nodes[g->n_nodes - 1]);
    return BT_OK;
}

bt_status bt_graph_set_trainable(bt_graph *g, int node, int trainable)
{
    if (!g) return BT_ERR_NULL_POINTER;
    if (node < 0 || node >= g->n_nodes) return BT_ERR_BAD_PARAM;
    g->nodes[node].trainable = trainable ? BT_TRAIN_ALL : 0;
    return BT_OK;
}

/* A mask may leave a weight of the op frozen only if an adapter covers it or
 * no weight of the node trains: the kernels write every weight gradient of a
 * node whose weight gradient runs. */
static int mask_ok(const bt_graph *g, int node, int mask)
{
    const bt_node *nd = &g->nodes[node];
    const bt_op_desc *d = bt_op_get(nd->kind);
    const int base = bt_node_base_param_count(g, node);
    int k, any = 0, frozen_weight = 0;
    if (mask & ~((1 << bt_node_param_count(g, node)) - 1) & BT_TRAIN_ALL) return 0;
    for (k = 0; k < bt_node_param_count(g, node); ++k)
        if (mask & (1 << k)) any = 1;
    for (k = 0; k < base; ++k)
        if (d->lora_rows && d->lora_rows(g, nd, k) > 0 && !(mask & (1 << k)) && bt_node_lora_of(g, node, k) < 0)
            frozen_weight = 1;
    return !(any && frozen_weight);
}

bt_status bt_graph_set_trainable_mask(bt_graph *g, int node, int mask)
{
    if (!g) return BT_ERR_NULL_POINTER;
    if (node < 0 || node >= g->n_nodes || mask < 0 || mask > BT_TRAIN_ALL) return BT_ERR_BAD_PARAM;
    if (mask != BT_TRAIN_ALL && !mask_ok(g, node, mask)) return BT_ERR_BAD_PARAM;
    g->nodes[node].trainable = mask;
    return BT_OK;
}

int bt_node_base_param_count(const bt_graph *g, int node)
{
    const bt_op_desc *d = bt_op_get(g->nodes[node].kind);
    return d && d->param_count ? d->param_count(&g->nodes[node]) : 0;
}

int bt_node_param_count(const bt_graph *g, int node)
{
    return bt_node_base_param_count(g, node) + 2 * g->nodes[node].n_lora;
}

int bt_node_lora_of(const bt_graph *g, int node, int slot)
{
    int j;
    for (j = 0; j < g->nodes[node].n_lora; ++j)
        if (g->nodes[node].lora[j].slot == slot) return j;
    return -1;
}

int bt_node_lora_rows(const bt_graph *g, int node, int slot)
{
    const bt_op_desc *d = bt_op_get(g->nodes[node].kind);
    if (!d || !d->lora_rows || slot < 0 || slot >= bt_node_base_param_count(g, node)) return 0;
    return d->lora_rows(g, &g->nodes[node], slot);
}

bt_status bt_graph_add_lora(bt_graph *g, int node, int slot, int rank, float alpha)
{
    bt_node *nd;
    size_t numel;
    int rows, cols;
    if (!g) return BT_ERR_NULL_POINTER;
    if (node <= 0 || node >= g->n_nodes) return BT_ERR_BAD_PARAM;
    nd = &g->nodes[node];
    if ((rows = bt_node_lora_rows(g, node, slot)) <= 0) return BT_ERR_UNSUPPORTED;
    if (bt_node_lora_of(g, node, slot) >= 0) return BT_ERR_STATE;
    if (nd->n_lora >= BT_MAX_LORA || bt_node_param_count(g, node) + 2 > BT_MAX_PARAMS_PER_NODE)
        return BT_ERR_CAPACITY;
    numel = bt_node_param_numel(g, node, slot);
    if (numel % (size_t)rows) return BT_ERR_SHAPE_MISMATCH;
    cols = (int)(numel / (size_t)rows);
    if (rank < 1 || rank > rows || rank > cols) return BT_ERR_BAD_PARAM;
    if (!(alpha > 0.0f) || alpha > 3.0e38f) return BT_ERR_BAD_PARAM; /* NaN fails the first test */
    nd->lora[nd->n_lora].slot = slot;
    nd->lora[nd->n_lora].rank = rank;
    nd->lora[nd->n_lora].alpha = alpha;
    nd->n_lora++;
    return BT_OK;
}

int bt_node_trainable_params(const bt_graph *g, int node)
{
    const bt_op_desc *d = bt_op_get(g->nodes[node].kind);
    if (!d || !d->param_count) return 0;
    return d->trainable_count ? d->trainable_count(&g->nodes[node]) : d->param_count(&g->nodes[node]);
}

size_t bt_node_param_numel(const bt_graph *g, int node, int which)
{
    const bt_op_desc *d = bt_op_get(g->nodes[node].kind);
    const int base = bt_node_base_param_count(g, node);
    if (which < 0 || which >= bt_node_param_count(g, node) || !d->param_numel) return 0;
    if (which >= base) {
        const bt_lora *a = &g->nodes[node].lora[(which - base) / 2];
        const size_t rows = (size_t)bt_node_lora_rows(g, node, a->slot);
        const size_t cols = d->param_numel(g, &g->nodes[node], a->slot) / rows;
        return (size_t)a->rank * ((which - base) % 2 == 0 ? cols : rows);   /* A [r, cols], B [rows, r] */
    }
    return d->param_numel(g, &g->nodes[node], which);
}

int bt_node_param_trains(const bt_graph *g, int node, int which)
{
    const bt_node *nd = &g->nodes[node];
    if (which < 0 || which >= bt_node_param_count(g, node) || !(nd->trainable & (1 << which))) return 0;
    return which >= bt_node_base_param_count(g, node) || which < bt_node_trainable_params(g, node);
}
