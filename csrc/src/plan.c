/* The static memory planner; plan.h describes the schedule and the rules. */
#include <string.h>
#include "biotrain/plan.h"

#define STEP_FWD(i) (i)
#define STEP_LOSS(n) (n)
#define STEP_BWD(n, i) (2 * (n) - (i))
#define STEP_OPT(n) (2 * (n))

const char *bt_kind_name(bt_tensor_kind k)
{
    static const char *names[BT_KIND_COUNT_] = {"parameters", "gradients", "optimizer state",
                                                "input", "activations", "activation gradients",
                                                "scratch"};
    if ((int)k < 0 || k >= BT_KIND_COUNT_) return "unknown";
    return names[k];
}

const char *bt_role_name(bt_tensor_role r)
{
    static const char *names[BT_ROLE_COUNT_] = {"out", "grad_out", "param", "param_grad", "opt_m",
                                                "opt_v", "mean", "rstd", "mask", "argmax",
                                                "grad_scratch", "labels", "probs", "recomputed"};
    if ((int)r < 0 || r >= BT_ROLE_COUNT_) return "unknown";
    return names[r];
}

/* ------------------------------------------------------------ union-find */
static int uf_find(int *parent, int x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

typedef struct {
    bt_plan *p;
    const bt_graph *g;
    int parent[BT_MAX_TENSORS];
    int gfirst[BT_MAX_TENSORS], glast[BT_MAX_TENSORS]; /* per group root */
    int n;                                             /* node count */
} builder;

static int add_tensor(builder *b, int node, bt_tensor_role role, int index, bt_tensor_kind kind,
                      size_t bytes, int first, int last)
{
    bt_plan *p = b->p;
    bt_tensor *t;
    int id;
    if (p->n_tensors >= BT_MAX_TENSORS) return -1;
    id = p->n_tensors++;
    t = &p->tensors[id];
    t->node = node; t->role = role; t->index = index; t->kind = kind;
    t->bytes = bytes; t->first = first; t->last = last; t->buffer = -1;
    b->parent[id] = id;
    b->gfirst[id] = first;
    b->glast[id] = last;
    return id;
}

static void merge(builder *b, int keep, int other)
{
    int ra = uf_find(b->parent, keep), rb = uf_find(b->parent, other);
    if (ra == rb) return;
    b->parent[rb] = ra;
    if (b->gfirst[rb] < b->gfirst[ra]) b->gfirst[ra] = b->gfirst[rb];
    if (b->glast[rb] > b->glast[ra]) b->glast[ra] = b->glast[rb];
}

/* Puts `t` (born at its first step) into the buffer of `old` if everything in
 * that buffer is dead after that step: the op then overwrites it in place. */
static int try_alias(builder *b, int t, int old)
{
    int r, rt;
    if (t < 0 || old < 0 || !b->p->opts.reuse) return 0;
    r = uf_find(b->parent, old);
    rt = uf_find(b->parent, t);
    if (r == rt) return 0;
    if (b->glast[r] != b->gfirst[rt]) return 0;
    merge(b, old, t);
    return 1;
}

static void set_last(builder *b, int t, int step)
{
    if (t < 0) return;
    if (step > b->p->tensors[t].last) b->p->tensors[t].last = step;
    if (step > b->glast[t]) b->glast[t] = step; /* not merged yet: t is its own root */
}

/* Does the backward of node c read its input activation? */
static int saves_input(const bt_graph *g, const bt_plan *p, int c)
{
    const bt_node *nd = &g->nodes[c];
    if (!p->nodes[c].run_backward) return 0;
    switch (nd->kind) {
    case BT_OP_CONV2D:
    case BT_OP_LINEAR: return p->nodes[c].weight_grad;
    case BT_OP_GROUPNORM:
    case BT_OP_BATCHNORM:
    case BT_OP_GELU: return 1;
    default: return 0;
    }
}

/* May this op's input gradient overwrite its output gradient (same shape, elementwise)? */
static int din_over_dout(bt_op_kind k, int slot)
{
    switch (k) {
    case BT_OP_RELU: case BT_OP_ELU: case BT_OP_GELU: case BT_OP_DROPOUT:
    case BT_OP_GROUPNORM: case BT_OP_BATCHNORM: return 1;
    case BT_OP_ADD: return slot == 0;
    default: return 0;
    }
}

/* Bytes of a parameter tensor. float32: the values. Fixed point
 * (kernels_fixed.h): an int32 master copy, followed for conv and linear
 * weights by the int8 copy their kernels read (padded to 4 bytes). Gradients
 * and optimizer state are 4 bytes an element in both (float32 or int32). */
static size_t param_bytes(const bt_graph *g, int v, int k, int dtype)
{
    size_t numel = bt_node_param_numel(g, v, k);
    bt_op_kind kind = g->nodes[v].kind;
    if (dtype != BT_DTYPE_FIXED) return numel * sizeof(float);
    if (k == 0 && (kind == BT_OP_CONV2D || kind == BT_OP_LINEAR))
        return numel * sizeof(int32_t) + ((numel + 3) & ~(size_t)3);
    return numel * sizeof(int32_t);
}

/* Is u a conv cheap enough to run again at the backward of its only reader c,
 * with its own input still alive then (kept for u's weight gradient)? */
static int can_recompute(const bt_graph *g, const bt_plan *p, const builder *b, int u, int c)
{
    const bt_node *nu = &g->nodes[u];
    const bt_node *src;
    int v, k, readers = 0;
    long macs;
    (void)b;
    if (nu->kind != BT_OP_CONV2D) return 0;
    if (g->nodes[c].kind != BT_OP_GROUPNORM && g->nodes[c].kind != BT_OP_BATCHNORM) return 0;
    src = &g->nodes[nu->inputs[0]];
    macs = (long)(src->c / nu->o.conv.groups) * nu->o.conv.k_h * nu->o.conv.k_w;
    if (macs > BT_RECOMPUTE_MAX_MACS) return 0;
    for (v = u + 1; v < g->n_nodes; ++v)
        for (k = 0; k < g->nodes[v].n_inputs; ++k)
            if (g->nodes[v].inputs[k] == u) readers++;
    if (readers != 1) return 0;
    /* u's input must outlive c's backward: u's weight gradient keeps it to bwd(u) > bwd(c) */
    return p->nodes[u].weight_grad && p->tensors[p->nodes[nu->inputs[0]].out].last >= STEP_BWD(g->n_nodes, c);
}

static size_t align_up(size_t x) { return (x + (BT_ARENA_ALIGN - 1)) & ~(size_t)(BT_ARENA_ALIGN - 1); }

static bt_status place_buffers(bt_plan *p)
{
    int order[BT_MAX_TENSORS];
    int placed[BT_MAX_TENSORS];
    int n_placed = 0, i, j, k;
    size_t peak = 0;
    for (i = 0; i < p->n_buffers; ++i) order[i] = i;
    /* Largest first (ties: earlier first) — insertion sort, n is small. */
    for (i = 1; i < p->n_buffers; ++i) {
        int x = order[i];
        j = i - 1;
        while (j >= 0 && (p->buffers[order[j]].bytes < p->buffers[x].bytes ||
                          (p->buffers[order[j]].bytes == p->buffers[x].bytes &&
                           p->buffers[order[j]].first > p->buffers[x].first))) {
            order[j + 1] = order[j];
            --j;
        }
        order[j + 1] = x;
    }
    for (i = 0; i < p->n_buffers; ++i) {
        bt_buffer *bf = &p->buffers[order[i]];
        int conflicts[BT_MAX_TENSORS];
        int n_conf = 0;
        size_t offset = 0, need = align_up(bf->bytes);
        if (!p->opts.reuse) {
            bf->offset = align_up(peak);
            peak = bf->offset + bf->bytes;
            continue;
        }
        for (j = 0; j < n_placed; ++j) {
            const bt_buffer *o = &p->buffers[placed[j]];
            if (o->first <= bf->last && bf->first <= o->last) conflicts[n_conf++] = placed[j];
        }
        /* sort conflicts by offset */
        for (j = 1; j < n_conf; ++j) {
            int x = conflicts[j];
            k = j - 1;
            while (k >= 0 && p->buffers[conflicts[k]].offset > p->buffers[x].offset) {
                conflicts[k + 1] = conflicts[k];
                --k;
            }
            conflicts[k + 1] = x;
        }
        for (j = 0; j < n_conf; ++j) {
            const bt_buffer *o = &p->buffers[conflicts[j]];
            if (o->offset >= offset + need) break; /* the gap before o fits */
            if (align_up(o->offset + o->bytes) > offset) offset = align_up(o->offset + o->bytes);
        }
        bf->offset = offset;
        if (offset + bf->bytes > peak) peak = offset + bf->bytes;
        placed[n_placed++] = order[i];
    }
    p->peak_bytes = peak;
    return BT_OK;
}

size_t bt_plan_offset(const bt_plan *p, int tensor)
{
    return p->buffers[p->tensors[tensor].buffer].offset;
}

size_t bt_plan_live_bytes(const bt_plan *p, int step)
{
    size_t live = 0;
    int i;
    for (i = 0; i < p->n_buffers; ++i)
        if (p->buffers[i].first <= step && step <= p->buffers[i].last) live += p->buffers[i].bytes;
    return live;
}

#define TRY(expr) do { if ((expr) < 0) return BT_ERR_CAPACITY; } while (0)

bt_status bt_plan_build(bt_plan *p, const bt_graph *g, const bt_plan_opts *opts)
{
    static builder b; /* large; static keeps it off a small MCU stack */
    int n, v, k, c, m, i;
    int T[BT_MAX_NODES];
    size_t f = sizeof(float);
    /* element bytes of activations, activation gradients and probabilities:
     * float32, or int8 / int8 / int16 in fixed point */
    size_t fa = f, fg = f, fprob = f;
    bt_status st = BT_OK;
    if (!p || !g || !opts) return BT_ERR_NULL_POINTER;
    if (g->n_nodes < 2 || g->classes <= 0) return BT_ERR_STATE;
    if (opts->micro_batch <= 0) return BT_ERR_BAD_SIZE;
    if (opts->optimizer != BT_OPTIM_SGD && opts->optimizer != BT_OPTIM_ADAM) return BT_ERR_BAD_PARAM;
    if (opts->dtype != BT_DTYPE_F32 && opts->dtype != BT_DTYPE_FIXED) return BT_ERR_BAD_PARAM;
    if (opts->dtype == BT_DTYPE_FIXED) { fa = sizeof(int8_t); fg = sizeof(int8_t); fprob = sizeof(int16_t); }
    memset(p, 0, sizeof *p);
    memset(&b, 0, sizeof b);
    b.p = p; b.g = g;
    p->opts = *opts;
    n = b.n = g->n_nodes;
    m = opts->micro_batch;
    p->n_steps = STEP_OPT(n) + 1;

    /* 1. What runs: gradient flows through v iff something at or above v trains. */
    for (v = 0; v < n; ++v) {
        const bt_node *nd = &g->nodes[v];
        bt_plan_node *pn = &p->nodes[v];
        int trains = nd->trainable && bt_node_trainable_params(g, v) > 0;
        if (nd->kind == BT_OP_BATCHNORM) p->has_batchnorm = 1;
        T[v] = trains;
        for (k = 0; k < nd->n_inputs; ++k) T[v] = T[v] || T[nd->inputs[k]];
        pn->run_backward = (v > 0) && T[v];
        pn->weight_grad = trains;
        pn->out = pn->dout = pn->mean = pn->rstd = pn->mask = pn->argmax = -1;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            pn->param[k] = pn->pgrad[k] = pn->opt_m[k] = pn->opt_v[k] = -1;
        for (k = 0; k < BT_MAX_NODE_INPUTS; ++k) {
            pn->din[k] = -1;
            pn->din_accumulate[k] = 0;
            pn->bwd_in[k] = -1;
            pn->recompute[k] = -1;
        }
    }
    if (p->has_batchnorm && g->nodes[0].kind != BT_OP_INPUT) return BT_ERR_STATE;

    /* 2. Tensors with their first and (for now) last steps. */
    for (v = 0; v < n; ++v) {
        const bt_node *nd = &g->nodes[v];
        bt_plan_node *pn = &p->nodes[v];
        size_t numel = bt_node_numel(nd);
        int np = bt_node_param_count(g, v), ntr = bt_node_trainable_params(g, v);
        int whole_last = STEP_OPT(n);
        for (k = 0; k < np; ++k) {
            size_t pb = bt_node_param_numel(g, v, k) * f;
            TRY(pn->param[k] = add_tensor(&b, v, BT_ROLE_PARAM, k, BT_KIND_PARAM,
                                          param_bytes(g, v, k, opts->dtype), 0, whole_last));
            if (pn->weight_grad && k < ntr) {
                TRY(pn->pgrad[k] = add_tensor(&b, v, BT_ROLE_PGRAD, k, BT_KIND_GRAD, pb, 0, whole_last));
                if (opts->optimizer == BT_OPTIM_ADAM) {
                    TRY(pn->opt_m[k] = add_tensor(&b, v, BT_ROLE_OPT_M, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                    TRY(pn->opt_v[k] = add_tensor(&b, v, BT_ROLE_OPT_V, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                } else if (opts->momentum) {
                    TRY(pn->opt_m[k] = add_tensor(&b, v, BT_ROLE_OPT_M, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                }
            }
        }
        /* A flatten is a view: no bytes of its own, it shares its input's buffer. */
        TRY(pn->out = add_tensor(&b, v, BT_ROLE_OUT, 0, v == 0 ? BT_KIND_INPUT : BT_KIND_ACTIVATION,
                                 nd->kind == BT_OP_FLATTEN ? 0 : numel * fa * (size_t)m,
                                 STEP_FWD(v), STEP_FWD(v)));
        {
            int saved_last = pn->run_backward ? STEP_BWD(n, v) : STEP_FWD(v);
            if (nd->kind == BT_OP_GROUPNORM) {
                size_t sb = (size_t)nd->o.norm.groups * (size_t)m * f;
                TRY(pn->mean = add_tensor(&b, v, BT_ROLE_MEAN, 0, BT_KIND_ACTIVATION, sb, STEP_FWD(v), saved_last));
                TRY(pn->rstd = add_tensor(&b, v, BT_ROLE_RSTD, 0, BT_KIND_ACTIVATION, sb, STEP_FWD(v), saved_last));
            } else if (nd->kind == BT_OP_BATCHNORM) {
                size_t sb = (size_t)nd->c * f;
                TRY(pn->mean = add_tensor(&b, v, BT_ROLE_MEAN, 0, BT_KIND_ACTIVATION, sb, STEP_FWD(v), saved_last));
                TRY(pn->rstd = add_tensor(&b, v, BT_ROLE_RSTD, 0, BT_KIND_ACTIVATION, sb, STEP_FWD(v), saved_last));
            } else if (nd->kind == BT_OP_RELU && pn->run_backward) {
                TRY(pn->mask = add_tensor(&b, v, BT_ROLE_MASK, 0, BT_KIND_ACTIVATION,
                                          bt_relu_mask_words((int)(numel * (size_t)m)) * sizeof(uint32_t),
                                          STEP_FWD(v), saved_last));
            } else if (nd->kind == BT_OP_DROPOUT) {
                TRY(pn->mask = add_tensor(&b, v, BT_ROLE_MASK, 0, BT_KIND_ACTIVATION, numel * (size_t)m,
                                          STEP_FWD(v), saved_last));
            } else if (nd->kind == BT_OP_MAXPOOL2D) {
                TRY(pn->argmax = add_tensor(&b, v, BT_ROLE_ARGMAX, 0, BT_KIND_ACTIVATION,
                                            numel * sizeof(int32_t) * (size_t)m, STEP_FWD(v), saved_last));
            }
        }
        if (pn->run_backward) {
            TRY(pn->dout = add_tensor(&b, v, BT_ROLE_DOUT, 0, BT_KIND_ACT_GRAD,
                                      nd->kind == BT_OP_FLATTEN ? 0 : numel * fg * (size_t)m,
                                      STEP_BWD(n, v), STEP_BWD(n, v)));
        }
    }
    TRY(p->labels = add_tensor(&b, -1, BT_ROLE_LABELS, 0, BT_KIND_INPUT, (size_t)m * sizeof(int32_t),
                               0, STEP_LOSS(n)));
    TRY(p->probs = add_tensor(&b, -1, BT_ROLE_PROBS, 0, BT_KIND_ACTIVATION,
                              (size_t)m * (size_t)g->classes * fprob, STEP_LOSS(n), STEP_LOSS(n)));

    /* 3. Last uses of activations; first producers of activation gradients. */
    set_last(&b, p->nodes[n - 1].out, STEP_LOSS(n));
    for (c = 1; c < n; ++c) {
        const bt_node *nd = &g->nodes[c];
        if (nd->kind == BT_OP_ELU && p->nodes[c].run_backward)
            set_last(&b, p->nodes[c].out, STEP_BWD(n, c));
        for (k = 0; k < nd->n_inputs; ++k) {
            int u = nd->inputs[k];
            set_last(&b, p->nodes[u].out, STEP_FWD(c));
            p->nodes[c].bwd_in[k] = p->nodes[u].out;
            if (!saves_input(g, p, c)) continue;
            if (opts->reuse && can_recompute(g, p, &b, u, c)) {
                /* keep the cheap conv's input instead of its output; run it again */
                TRY(p->nodes[c].bwd_in[k] = add_tensor(&b, c, BT_ROLE_RECOMPUTED, k, BT_KIND_ACTIVATION,
                                                       p->tensors[p->nodes[u].out].bytes,
                                                       STEP_BWD(n, c), STEP_BWD(n, c)));
                p->nodes[c].recompute[k] = u;
            } else {
                set_last(&b, p->nodes[u].out, STEP_BWD(n, c));
            }
        }
    }
    if (p->nodes[n - 1].run_backward) {
        bt_tensor *t = &p->tensors[p->nodes[n - 1].dout];
        t->first = STEP_LOSS(n);
        b.gfirst[p->nodes[n - 1].dout] = t->first;
    }
    /* Backward order is c = n-1 .. 1: the first consumer to run writes the
     * input's gradient, later ones write a scratch and add it in. */
    for (c = n - 1; c >= 1; --c) {
        const bt_node *nd = &g->nodes[c];
        if (!p->nodes[c].run_backward) continue;
        for (k = 0; k < nd->n_inputs; ++k) {
            int u = nd->inputs[k];
            int du = p->nodes[u].dout;
            bt_tensor *t;
            if (!p->nodes[u].run_backward || du < 0) continue;
            t = &p->tensors[du];
            if (t->first == t->last && t->first == STEP_BWD(n, u)) {
                /* nobody wrote it yet: this consumer produces it */
                t->first = STEP_BWD(n, c);
                b.gfirst[du] = t->first;
                p->nodes[c].din[k] = du;
            } else {
                int s;
                TRY(s = add_tensor(&b, c, BT_ROLE_DIN_SCRATCH, k, BT_KIND_SCRATCH,
                                   t->bytes ? t->bytes : bt_node_numel(&g->nodes[u]) * fg * (size_t)m,
                                   STEP_BWD(n, c), STEP_BWD(n, c)));
                p->nodes[c].din[k] = s;
                p->nodes[c].din_accumulate[k] = 1;
            }
        }
    }

    /* 4. Buffer sharing. Views first (always), then in-place reuse in schedule order. */
    for (v = 1; v < n; ++v) {
        if (g->nodes[v].kind != BT_OP_FLATTEN) continue;
        merge(&b, p->nodes[g->nodes[v].inputs[0]].out, p->nodes[v].out);
        if (p->nodes[v].dout >= 0 && p->nodes[g->nodes[v].inputs[0]].dout >= 0 &&
            p->nodes[v].din[0] == p->nodes[g->nodes[v].inputs[0]].dout)
            merge(&b, p->nodes[v].dout, p->nodes[g->nodes[v].inputs[0]].dout);
    }
    if (opts->reuse) {
        /* forward: elementwise ops over their dying input */
        for (v = 1; v < n; ++v) {
            const bt_node *nd = &g->nodes[v];
            if (nd->kind == BT_OP_RELU || nd->kind == BT_OP_ELU || nd->kind == BT_OP_DROPOUT) {
                if (nd->inputs[0] != 0) try_alias(&b, p->nodes[v].out, p->nodes[nd->inputs[0]].out);
            } else if (nd->kind == BT_OP_ADD) {
                if (!(nd->inputs[0] != 0 && try_alias(&b, p->nodes[v].out, p->nodes[nd->inputs[0]].out)) &&
                    nd->inputs[1] != 0)
                    try_alias(&b, p->nodes[v].out, p->nodes[nd->inputs[1]].out);
            }
        }
        /* loss: the logits' gradient over the saved probabilities */
        if (p->nodes[n - 1].dout >= 0) try_alias(&b, p->nodes[n - 1].dout, p->probs);
        /* backward, in schedule order: an input gradient over the activation it
         * replaces, or over this op's output gradient */
        for (c = n - 1; c >= 1; --c) {
            const bt_node *nd = &g->nodes[c];
            if (!p->nodes[c].run_backward) continue;
            for (k = 0; k < nd->n_inputs; ++k) {
                int t = p->nodes[c].din[k];
                if (t < 0 || p->nodes[c].din_accumulate[k] || nd->kind == BT_OP_FLATTEN) continue;
                if (try_alias(&b, t, p->nodes[c].bwd_in[k])) continue;
                if (din_over_dout(nd->kind, k)) try_alias(&b, t, p->nodes[c].dout);
            }
        }
    }

    /* 5. Buffers from groups; accounting. */
    {
        int root_buf[BT_MAX_TENSORS];
        for (i = 0; i < p->n_tensors; ++i) root_buf[i] = -1;
        for (i = 0; i < p->n_tensors; ++i) {
            int r = uf_find(b.parent, i);
            bt_tensor *t = &p->tensors[i];
            if (root_buf[r] < 0) {
                root_buf[r] = p->n_buffers++;
                p->buffers[root_buf[r]].first = b.gfirst[r];
                p->buffers[root_buf[r]].last = b.glast[r];
                p->buffers[root_buf[r]].bytes = 0;
            }
            t->buffer = root_buf[r];
            if (t->bytes > p->buffers[t->buffer].bytes) p->buffers[t->buffer].bytes = t->bytes;
            p->total_by_kind[t->kind] += t->bytes;
            p->naive_bytes += t->bytes;
        }
    }
    if ((st = place_buffers(p)) != BT_OK) return st;
    {
        int s;
        size_t best = 0;
        for (s = 0; s < p->n_steps; ++s) {
            size_t live = bt_plan_live_bytes(p, s);
            if (live > best) { best = live; p->peak_step = s; }
        }
        p->live_peak_bytes = best;
        /* Attribute each live buffer to the member alive at the peak step that was born last. */
        for (i = 0; i < p->n_buffers; ++i) {
            const bt_buffer *bf = &p->buffers[i];
            int owner = -1;
            if (!(bf->first <= p->peak_step && p->peak_step <= bf->last)) continue;
            for (k = 0; k < p->n_tensors; ++k) {
                const bt_tensor *t = &p->tensors[k];
                if (t->buffer != i || t->bytes == 0) continue;
                if (t->first <= p->peak_step && p->peak_step <= t->last &&
                    (owner < 0 || t->first >= p->tensors[owner].first))
                    owner = k;
            }
            if (owner < 0) { /* between members: count it as the buffer's first tensor */
                for (k = 0; k < p->n_tensors && owner < 0; ++k)
                    if (p->tensors[k].buffer == i && p->tensors[k].bytes) owner = k;
            }
            if (owner >= 0) p->live_by_kind[p->tensors[owner].kind] += bf->bytes;
        }
    }
    return BT_OK;
}
