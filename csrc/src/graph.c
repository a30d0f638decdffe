/* Graph building: appends nodes with their per-sample output shapes and
 * checks each against its input. No memory is planned here (see plan.c). */
#include <string.h>
#include "biotrain/graph.h"

const char *bt_op_name(bt_op_kind k)
{
    static const char *names[BT_OP_COUNT_] = {
        "input", "conv2d", "linear", "groupnorm", "batchnorm", "relu", "elu", "gelu",
        "avgpool2d", "maxpool2d", "global_avgpool", "add", "flatten", "dropout"};
    if ((int)k < 0 || k >= BT_OP_COUNT_) return "unknown";
    return names[k];
}

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

/* Reserves the next node reading `n_in` earlier nodes. */
static bt_status new_node(bt_graph *g, bt_node **out, bt_op_kind kind, const int *inputs, int n_in,
                          const char *name)
{
    bt_node *nd;
    int i;
    if (!g || !out) return BT_ERR_NULL_POINTER;
    if (g->n_nodes < 1) return BT_ERR_STATE;
    if (g->n_nodes >= BT_MAX_NODES) return BT_ERR_CAPACITY;
    for (i = 0; i < n_in; ++i)
        if (inputs[i] < 0 || inputs[i] >= g->n_nodes) return BT_ERR_BAD_PARAM;
    nd = &g->nodes[g->n_nodes];
    memset(nd, 0, sizeof *nd);
    nd->kind = kind;
    nd->n_inputs = n_in;
    for (i = 0; i < n_in; ++i) nd->inputs[i] = inputs[i];
    if (name) {
        strncpy(nd->name, name, BT_NAME_LEN - 1);
        nd->name[BT_NAME_LEN - 1] = '\0';
    }
    *out = nd;
    return BT_OK;
}

static bt_status commit(bt_graph *g, int *id)
{
    if (id) *id = g->n_nodes;
    g->n_nodes++;
    return BT_OK;
}

static const bt_node *in_node(const bt_graph *g, int input) { return &g->nodes[input]; }

bt_status bt_graph_conv2d(bt_graph *g, int *id, int input, const bt_conv2d_opts *o, const char *name)
{
    bt_node *nd;
    bt_conv2d_shape s;
    int ho, wo;
    bt_status st;
    if (!o) return BT_ERR_NULL_POINTER;
    if ((st = new_node(g, &nd, BT_OP_CONV2D, &input, 1, name)) != BT_OK) return st;
    nd->o.conv = *o;
    bt_node_conv2d_shape(g, g->n_nodes, 1, &s);
    if ((st = bt_conv2d_check(&s, &ho, &wo)) != BT_OK) return st;
    nd->c = o->c_out; nd->h = ho; nd->w = wo;
    return commit(g, id);
}

bt_status bt_graph_linear(bt_graph *g, int *id, int input, const bt_linear_opts *o, const char *name)
{
    bt_node *nd;
    bt_status st;
    if (!o) return BT_ERR_NULL_POINTER;
    if (o->out_f <= 0) return BT_ERR_BAD_SIZE;
    if ((st = new_node(g, &nd, BT_OP_LINEAR, &input, 1, name)) != BT_OK) return st;
    nd->o.linear = *o;
    nd->c = o->out_f; nd->h = 1; nd->w = 1;
    return commit(g, id);
}

static bt_status add_norm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name,
                          bt_op_kind kind)
{
    bt_node *nd;
    const bt_node *src;
    bt_status st;
    if (!o) return BT_ERR_NULL_POINTER;
    if (!(o->eps > 0.0f)) return BT_ERR_BAD_PARAM;
    if (kind == BT_OP_BATCHNORM && !(o->momentum >= 0.0f && o->momentum <= 1.0f))
        return BT_ERR_BAD_PARAM;
    if (kind == BT_OP_BATCHNORM && !o->affine) return BT_ERR_UNSUPPORTED; /* always affine, as PyTorch's default */
    if ((st = new_node(g, &nd, kind, &input, 1, name)) != BT_OK) return st;
    src = in_node(g, input);
    if (kind == BT_OP_GROUPNORM) {
        if (o->groups <= 0) return BT_ERR_BAD_SIZE;
        if (src->c % o->groups != 0) return BT_ERR_GROUPS;
    }
    nd->o.norm = *o;
    nd->c = src->c; nd->h = src->h; nd->w = src->w;
    return commit(g, id);
}

bt_status bt_graph_groupnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name)
{
    return add_norm(g, id, input, o, name, BT_OP_GROUPNORM);
}

bt_status bt_graph_batchnorm(bt_graph *g, int *id, int input, const bt_norm_opts *o, const char *name)
{
    return add_norm(g, id, input, o, name, BT_OP_BATCHNORM);
}

/* Ops whose output has the input's shape. */
static bt_status add_same_shape(bt_graph *g, int input, bt_op_kind kind, const char *name,
                                bt_node **made)
{
    bt_node *nd;
    const bt_node *src;
    bt_status st;
    if ((st = new_node(g, &nd, kind, &input, 1, name)) != BT_OK) return st;
    src = in_node(g, input);
    nd->c = src->c; nd->h = src->h; nd->w = src->w;
    if (made) *made = nd;
    return BT_OK;
}

bt_status bt_graph_relu(bt_graph *g, int *id, int input, const char *name)
{
    bt_status st = add_same_shape(g, input, BT_OP_RELU, name, NULL);
    return st == BT_OK ? commit(g, id) : st;
}

bt_status bt_graph_elu(bt_graph *g, int *id, int input, float alpha, const char *name)
{
    bt_node *nd = NULL;
    bt_status st;
    if (!(alpha >= 0.0f)) return BT_ERR_BAD_PARAM;
    st = add_same_shape(g, input, BT_OP_ELU, name, &nd);
    if (st != BT_OK) return st;
    nd->o.alpha = alpha;
    return commit(g, id);
}

bt_status bt_graph_gelu(bt_graph *g, int *id, int input, const char *name)
{
    bt_status st = add_same_shape(g, input, BT_OP_GELU, name, NULL);
    return st == BT_OK ? commit(g, id) : st;
}

bt_status bt_graph_dropout(bt_graph *g, int *id, int input, float p, const char *name)
{
    bt_node *nd = NULL;
    bt_status st;
    if (!(p >= 0.0f && p < 1.0f)) return BT_ERR_BAD_PARAM;
    st = add_same_shape(g, input, BT_OP_DROPOUT, name, &nd);
    if (st != BT_OK) return st;
    nd->o.p = p;
    return commit(g, id);
}

static bt_status add_pool(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name,
                          bt_op_kind kind)
{
    bt_node *nd;
    bt_pool2d_shape s;
    int ho, wo;
    bt_status st;
    if (!o) return BT_ERR_NULL_POINTER;
    if ((st = new_node(g, &nd, kind, &input, 1, name)) != BT_OK) return st;
    nd->o.pool = *o;
    bt_node_pool2d_shape(g, g->n_nodes, 1, &s);
    if ((st = bt_pool2d_check(&s, &ho, &wo)) != BT_OK) return st;
    nd->c = g->nodes[input].c; nd->h = ho; nd->w = wo;
    return commit(g, id);
}

bt_status bt_graph_avgpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name)
{
    return add_pool(g, id, input, o, name, BT_OP_AVGPOOL2D);
}

bt_status bt_graph_maxpool2d(bt_graph *g, int *id, int input, const bt_pool_opts *o, const char *name)
{
    return add_pool(g, id, input, o, name, BT_OP_MAXPOOL2D);
}

bt_status bt_graph_global_avgpool(bt_graph *g, int *id, int input, const char *name)
{
    bt_node *nd;
    bt_status st;
    if ((st = new_node(g, &nd, BT_OP_GLOBAL_AVGPOOL, &input, 1, name)) != BT_OK) return st;
    nd->c = in_node(g, input)->c; nd->h = 1; nd->w = 1;
    return commit(g, id);
}

bt_status bt_graph_add(bt_graph *g, int *id, int a, int b, const char *name)
{
    bt_node *nd;
    int ins[2];
    bt_status st;
    ins[0] = a; ins[1] = b;
    if ((st = new_node(g, &nd, BT_OP_ADD, ins, 2, name)) != BT_OK) return st;
    if (g->nodes[a].c != g->nodes[b].c || g->nodes[a].h != g->nodes[b].h ||
        g->nodes[a].w != g->nodes[b].w)
        return BT_ERR_SHAPE_MISMATCH;
    nd->c = g->nodes[a].c; nd->h = g->nodes[a].h; nd->w = g->nodes[a].w;
    return commit(g, id);
}

bt_status bt_graph_flatten(bt_graph *g, int *id, int input, const char *name)
{
    bt_node *nd;
    bt_status st;
    if ((st = new_node(g, &nd, BT_OP_FLATTEN, &input, 1, name)) != BT_OK) return st;
    nd->c = (int)bt_node_numel(in_node(g, input)); nd->h = 1; nd->w = 1;
    return commit(g, id);
}

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
    g->nodes[node].trainable = trainable ? 1 : 0;
    return BT_OK;
}

static size_t in_numel(const bt_graph *g, const bt_node *nd)
{
    return bt_node_numel(&g->nodes[nd->inputs[0]]);
}

int bt_node_param_count(const bt_graph *g, int node)
{
    const bt_node *nd = &g->nodes[node];
    switch (nd->kind) {
    case BT_OP_CONV2D: return nd->o.conv.has_bias ? 2 : 1;
    case BT_OP_LINEAR: return nd->o.linear.has_bias ? 2 : 1;
    case BT_OP_GROUPNORM: return nd->o.norm.affine ? 2 : 0;
    case BT_OP_BATCHNORM: return 4; /* weight, bias, running mean, running var */
    default: return 0;
    }
}

int bt_node_trainable_params(const bt_graph *g, int node)
{
    const bt_node *nd = &g->nodes[node];
    if (nd->kind == BT_OP_BATCHNORM) return 2; /* the running statistics get no gradient */
    return bt_node_param_count(g, node);
}

size_t bt_node_param_numel(const bt_graph *g, int node, int which)
{
    const bt_node *nd = &g->nodes[node];
    const bt_node *src;
    if (which < 0 || which >= bt_node_param_count(g, node)) return 0;
    src = &g->nodes[nd->inputs[0]];
    switch (nd->kind) {
    case BT_OP_CONV2D:
        if (which == 0)
            return (size_t)nd->o.conv.c_out * (size_t)(src->c / nd->o.conv.groups) *
                   (size_t)nd->o.conv.k_h * (size_t)nd->o.conv.k_w;
        return (size_t)nd->o.conv.c_out;
    case BT_OP_LINEAR:
        if (which == 0) return (size_t)nd->o.linear.out_f * in_numel(g, nd);
        return (size_t)nd->o.linear.out_f;
    case BT_OP_GROUPNORM:
    case BT_OP_BATCHNORM:
        return (size_t)nd->c;
    default:
        return 0;
    }
}
