/* The static memory planner's op-aware part: the lifetimes and the sharing
 * of every tensor of one training step, read from each op's descriptor
 * (ops.h). plan.h describes the schedule and the rules; arena.c places the
 * buffers. */
#include <string.h>
#include "plan_internal.h"

const char *bt_plan_tensor_role(const bt_plan *p, const bt_graph *g, int tensor)
{
    const bt_tensor *t;
    if (!p || tensor < 0 || tensor >= p->n_tensors) return "unknown";
    t = &p->tensors[tensor];
    if (t->role == BT_ROLE_SAVED && g && t->node >= 0 && t->node < g->n_nodes) {
        bt_saved_spec sp[BT_MAX_SAVED];
        const bt_op_desc *d = bt_op_get(g->nodes[t->node].kind);
        memset(sp, 0, sizeof sp);
        if (d && d->saved && t->index < d->saved(g, &g->nodes[t->node], 1, p->opts.dtype, sp))
            return sp[t->index].name;
    }
    return bt_role_name(t->role);
}

/* Does the backward of node c read its input activations? */
static int saves_input(const bt_graph *g, const bt_plan *p, int c)
{
    const unsigned f = bt_op_get(g->nodes[c].kind)->flags;
    if (!p->nodes[c].run_backward) return 0;
    if (f & BT_OPF_BWD_READS_INPUT) return 1;
    return (f & BT_OPF_WGRAD_READS_INPUT) && p->nodes[c].weight_grad;
}

/* Bytes of a parameter tensor. float32: the values. Fixed point (qmath.h):
 * an int32 master copy, followed, for an op that keeps one (conv, linear),
 * by the int8 copy of its weight that its kernels read (padded to 4 bytes).
 * Gradients and optimizer state are 4 bytes an element in both (float32 or
 * int32). */
static size_t param_bytes(const bt_graph *g, int v, int k, bt_dtype dtype)
{
    size_t numel = bt_node_param_numel(g, v, k);
    if (dtype != BT_DTYPE_FIXED) return numel * sizeof(float);
    if (k == 0 && (bt_op_get(g->nodes[v].kind)->flags & BT_OPF_Q_WEIGHT_COPY))
        return numel * sizeof(int32_t) + ((numel + 3) & ~(size_t)3);
    return numel * sizeof(int32_t);
}

/* Is u cheap enough to run again at the backward of its only reader c, with
 * its own input still alive then (kept for u's weight gradient)? */
static int can_recompute(const bt_graph *g, const bt_plan *p, int u, int c)
{
    const bt_op_desc *du = bt_op_get(g->nodes[u].kind);
    int v, k, readers = 0;
    long macs;
    if (!du->recompute_macs || !(bt_op_get(g->nodes[c].kind)->flags & BT_OPF_RECOMPUTE_INPUT)) return 0;
    macs = du->recompute_macs(g, &g->nodes[u]);
    if (macs < 0 || macs > BT_RECOMPUTE_MAX_MACS || g->nodes[u].n_lora) return 0;
    for (v = u + 1; v < g->n_nodes; ++v)
        for (k = 0; k < g->nodes[v].n_inputs; ++k)
            if (g->nodes[v].inputs[k] == u) readers++;
    if (readers != 1) return 0;
    /* u's input must outlive c's backward: u's weight gradient keeps it to bwd(u) > bwd(c) */
    return p->nodes[u].weight_grad &&
           p->tensors[p->nodes[g->nodes[u].inputs[0]].out].last >= BT_STEP_BWD(g->n_nodes, c);
}

#define TRY(expr) do { if ((expr) < 0) return BT_ERR_CAPACITY; } while (0)

bt_status bt_plan_build(bt_plan *p, const bt_graph *g, const bt_plan_opts *opts)
{
    static bt_plan_builder b; /* large; static keeps it off a small MCU stack */
    int n, v, k, c, m;
    int T[BT_MAX_NODES];
    size_t f = sizeof(float);
    /* element bytes of activations, activation gradients and probabilities:
     * float32, or int8 / int8 / int16 in fixed point */
    size_t fa = f, fg = f, fprob = f;
    if (!p || !g || !opts) return BT_ERR_NULL_POINTER;
    if (g->n_nodes < 2 || g->classes <= 0) return BT_ERR_STATE;
    if (opts->micro_batch <= 0) return BT_ERR_BAD_SIZE;
    if (opts->optimizer != BT_OPTIM_SGD && opts->optimizer != BT_OPTIM_ADAM) return BT_ERR_BAD_PARAM;
    if (opts->dtype != BT_DTYPE_F32 && opts->dtype != BT_DTYPE_FIXED) return BT_ERR_BAD_PARAM;
    for (v = 0; v < g->n_nodes; ++v)
        if (!bt_op_get(g->nodes[v].kind)) return BT_ERR_UNSUPPORTED;
    if (opts->dtype == BT_DTYPE_FIXED) { fa = sizeof(int8_t); fg = sizeof(int8_t); fprob = sizeof(int16_t); }
    memset(p, 0, sizeof *p);
    bt_pb_init(&b, p);
    p->opts = *opts;
    n = g->n_nodes;
    m = opts->micro_batch;
    p->n_steps = BT_STEP_OPT(n) + 1;

    /* 1. What runs: gradient flows through v iff something at or above v trains. */
    for (v = 0; v < n; ++v) {
        const bt_node *nd = &g->nodes[v];
        bt_plan_node *pn = &p->nodes[v];
        int trains = 0;
        for (k = 0; k < bt_node_param_count(g, v); ++k) trains = trains || bt_node_param_trains(g, v, k);
        /* adapters: float32 only (the effective weight is formed in float) */
        if (nd->n_lora && opts->dtype != BT_DTYPE_F32) return BT_ERR_UNSUPPORTED;
        if (bt_op_get(nd->kind)->flags & BT_OPF_BATCH_STATS) p->has_batchnorm = 1;
        T[v] = trains;
        for (k = 0; k < nd->n_inputs; ++k) T[v] = T[v] || T[nd->inputs[k]];
        pn->run_backward = (v > 0) && T[v];
        pn->weight_grad = trains;
        pn->out = pn->dout = -1;
        for (k = 0; k < BT_MAX_SAVED; ++k) pn->saved[k] = -1;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            pn->param[k] = pn->pgrad[k] = pn->opt_m[k] = pn->opt_v[k] = -1;
        for (k = 0; k < BT_MAX_LORA; ++k) pn->lora_weight[k] = pn->lora_weight_bwd[k] = pn->lora_grad[k] = -1;
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
        const bt_op_desc *d = bt_op_get(nd->kind);
        bt_plan_node *pn = &p->nodes[v];
        size_t numel = bt_node_numel(nd);
        int np = bt_node_param_count(g, v), j;
        int whole_last = BT_STEP_OPT(n);
        for (k = 0; k < np; ++k) {
            size_t pb = bt_node_param_numel(g, v, k) * f;
            TRY(pn->param[k] = bt_pb_add(&b, v, BT_ROLE_PARAM, k, BT_KIND_PARAM,
                                         param_bytes(g, v, k, opts->dtype), 0, whole_last));
            if (pn->weight_grad && bt_node_param_trains(g, v, k)) {
                TRY(pn->pgrad[k] = bt_pb_add(&b, v, BT_ROLE_PGRAD, k, BT_KIND_GRAD, pb, 0, whole_last));
                if (opts->optimizer == BT_OPTIM_ADAM) {
                    TRY(pn->opt_m[k] = bt_pb_add(&b, v, BT_ROLE_OPT_M, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                    TRY(pn->opt_v[k] = bt_pb_add(&b, v, BT_ROLE_OPT_V, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                } else if (opts->momentum) {
                    TRY(pn->opt_m[k] = bt_pb_add(&b, v, BT_ROLE_OPT_M, k, BT_KIND_OPT_STATE, pb, 0, whole_last));
                }
            }
        }
        /* An adapted weight: W + (alpha / r) B A formed at the forward and again
         * at the backward (cheaper than keeping it between), with its
         * gradient at the backward; both live at that one step. */
        for (j = 0; j < nd->n_lora; ++j) {
            const size_t wb = bt_node_param_numel(g, v, nd->lora[j].slot) * sizeof(float);
            TRY(pn->lora_weight[j] = bt_pb_add(&b, v, BT_ROLE_LORA_WEIGHT, j, BT_KIND_SCRATCH, wb, BT_STEP_FWD(v),
                                               BT_STEP_FWD(v)));
            if (pn->run_backward)
                TRY(pn->lora_weight_bwd[j] = bt_pb_add(&b, v, BT_ROLE_LORA_WEIGHT, j, BT_KIND_SCRATCH, wb,
                                                       BT_STEP_BWD(n, v), BT_STEP_BWD(n, v)));
            if (pn->weight_grad)
                TRY(pn->lora_grad[j] = bt_pb_add(&b, v, BT_ROLE_LORA_GRAD, j, BT_KIND_SCRATCH, wb,
                                                 BT_STEP_BWD(n, v), BT_STEP_BWD(n, v)));
        }
        /* A view has no bytes of its own: it shares its input's buffer (step 4). */
        TRY(pn->out = bt_pb_add(&b, v, BT_ROLE_OUT, 0, v == 0 ? BT_KIND_INPUT : BT_KIND_ACTIVATION,
                                (d->flags & BT_OPF_VIEW) ? 0 : numel * fa * (size_t)m, BT_STEP_FWD(v),
                                BT_STEP_FWD(v)));
        if (d->saved) {
            bt_saved_spec sp[BT_MAX_SAVED];
            int ns, j;
            const int saved_last = pn->run_backward ? BT_STEP_BWD(n, v) : BT_STEP_FWD(v);
            memset(sp, 0, sizeof sp);
            ns = d->saved(g, nd, m, opts->dtype, sp);
            for (j = 0; j < ns; ++j) {
                if ((sp[j].backward_only || sp[j].scratch) && !pn->run_backward) continue;
                if (sp[j].scratch) {
                    /* the backward's working memory: live at that one step */
                    TRY(pn->saved[j] = bt_pb_add(&b, v, BT_ROLE_SAVED, j, BT_KIND_SCRATCH, sp[j].bytes,
                                                 BT_STEP_BWD(n, v), BT_STEP_BWD(n, v)));
                    continue;
                }
                TRY(pn->saved[j] = bt_pb_add(&b, v, BT_ROLE_SAVED, j, BT_KIND_ACTIVATION, sp[j].bytes,
                                             BT_STEP_FWD(v), saved_last));
            }
            pn->n_saved = ns;
        }
        if (pn->run_backward) {
            TRY(pn->dout = bt_pb_add(&b, v, BT_ROLE_DOUT, 0, BT_KIND_ACT_GRAD,
                                     (d->flags & BT_OPF_VIEW) ? 0 : numel * fg * (size_t)m, BT_STEP_BWD(n, v),
                                     BT_STEP_BWD(n, v)));
        }
    }
    TRY(p->labels = bt_pb_add(&b, -1, BT_ROLE_LABELS, 0, BT_KIND_INPUT, (size_t)m * sizeof(int32_t), 0,
                              BT_STEP_LOSS(n)));
    TRY(p->probs = bt_pb_add(&b, -1, BT_ROLE_PROBS, 0, BT_KIND_ACTIVATION,
                             (size_t)m * (size_t)g->classes * fprob, BT_STEP_LOSS(n), BT_STEP_LOSS(n)));

    /* 3. Last uses of activations; first producers of activation gradients. */
    bt_pb_set_last(&b, p->nodes[n - 1].out, BT_STEP_LOSS(n));
    for (c = 1; c < n; ++c) {
        const bt_node *nd = &g->nodes[c];
        if ((bt_op_get(nd->kind)->flags & BT_OPF_BWD_READS_OUTPUT) && p->nodes[c].run_backward)
            bt_pb_set_last(&b, p->nodes[c].out, BT_STEP_BWD(n, c));
        for (k = 0; k < nd->n_inputs; ++k) {
            int u = nd->inputs[k];
            bt_pb_set_last(&b, p->nodes[u].out, BT_STEP_FWD(c));
            p->nodes[c].bwd_in[k] = p->nodes[u].out;
            if (!saves_input(g, p, c)) continue;
            if (opts->reuse && can_recompute(g, p, u, c)) {
                /* keep the cheap producer's input instead of its output; run it again */
                TRY(p->nodes[c].bwd_in[k] = bt_pb_add(&b, c, BT_ROLE_RECOMPUTED, k, BT_KIND_ACTIVATION,
                                                      p->tensors[p->nodes[u].out].bytes, BT_STEP_BWD(n, c),
                                                      BT_STEP_BWD(n, c)));
                p->nodes[c].recompute[k] = u;
            } else {
                bt_pb_set_last(&b, p->nodes[u].out, BT_STEP_BWD(n, c));
            }
        }
    }
    if (p->nodes[n - 1].run_backward) bt_pb_set_first(&b, p->nodes[n - 1].dout, BT_STEP_LOSS(n));
    /* Backward order is c = n-1 .. 1 and, within a node, the last input slot
     * first (the executor's order): the first consumer to run writes the
     * input's gradient, later ones write a scratch and add it in. */
    for (c = n - 1; c >= 1; --c) {
        const bt_node *nd = &g->nodes[c];
        if (!p->nodes[c].run_backward) continue;
        for (k = nd->n_inputs - 1; k >= 0; --k) {
            int u = nd->inputs[k];
            int du = p->nodes[u].dout;
            bt_tensor *t;
            if (!p->nodes[u].run_backward || du < 0) continue;
            t = &p->tensors[du];
            if (t->first == t->last && t->first == BT_STEP_BWD(n, u)) {
                /* nobody wrote it yet: this consumer produces it */
                bt_pb_set_first(&b, du, BT_STEP_BWD(n, c));
                p->nodes[c].din[k] = du;
            } else {
                int s;
                TRY(s = bt_pb_add(&b, c, BT_ROLE_DIN_SCRATCH, k, BT_KIND_SCRATCH,
                                  t->bytes ? t->bytes : bt_node_numel(&g->nodes[u]) * fg * (size_t)m,
                                  BT_STEP_BWD(n, c), BT_STEP_BWD(n, c)));
                p->nodes[c].din[k] = s;
                p->nodes[c].din_accumulate[k] = 1;
            }
        }
    }

    /* 4. Buffer sharing. Views first (always), then in-place reuse in schedule order. */
    for (v = 1; v < n; ++v) {
        const int u = g->nodes[v].inputs[0];
        if (!(bt_op_get(g->nodes[v].kind)->flags & BT_OPF_VIEW)) continue;
        bt_pb_merge(&b, p->nodes[u].out, p->nodes[v].out);
        if (p->nodes[v].dout >= 0 && p->nodes[u].dout >= 0 && p->nodes[v].din[0] == p->nodes[u].dout)
            bt_pb_merge(&b, p->nodes[v].dout, p->nodes[u].dout);
    }
    if (opts->reuse) {
        /* forward: an op that may run in place over a dying input (not the
         * caller's input, node 0) */
        for (v = 1; v < n; ++v) {
            const bt_node *nd = &g->nodes[v];
            if (!(bt_op_get(nd->kind)->flags & BT_OPF_INPLACE)) continue;
            for (k = 0; k < nd->n_inputs; ++k)
                if (nd->inputs[k] != 0 && bt_pb_try_alias(&b, p->nodes[v].out, p->nodes[nd->inputs[k]].out)) break;
        }
        /* loss: the logits' gradient over the saved probabilities */
        if (p->nodes[n - 1].dout >= 0) bt_pb_try_alias(&b, p->nodes[n - 1].dout, p->probs);
        /* backward, in schedule order: an input gradient over the activation it
         * replaces, or over this op's output gradient */
        for (c = n - 1; c >= 1; --c) {
            const bt_node *nd = &g->nodes[c];
            const unsigned fl = bt_op_get(nd->kind)->flags;
            if (!p->nodes[c].run_backward) continue;
            for (k = 0; k < nd->n_inputs; ++k) {
                int t = p->nodes[c].din[k];
                if (t < 0 || p->nodes[c].din_accumulate[k] || (fl & BT_OPF_VIEW)) continue;
                if (bt_pb_try_alias(&b, t, p->nodes[c].bwd_in[k])) continue;
                if ((fl & BT_OPF_DIN_OVER_DOUT) && k == 0) bt_pb_try_alias(&b, t, p->nodes[c].dout);
            }
        }
    }

    /* 5. Buffers, offsets and the accounting (arena.c). */
    return bt_pb_finish(&b);
}
