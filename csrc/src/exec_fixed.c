/* The fixed-point executor: exec.c's schedule (forward, loss, backward in
 * reverse order, optimizer update) over a fixed-point plan, with the q7
 * kernels and a per-tensor scale that adapts after every step
 * (exec_fixed.h states the rules). Integer arithmetic only. */
#include <string.h>
#include "biotrain/exec_fixed.h"

#if defined(BT_PLAN_CHECK)
/* Sanitizer build: everything the plan says is dead at a step is poisoned
 * while that step runs (as exec.c does). */
#include <sanitizer/asan_interface.h>
static void plan_check_step(const bt_fixed_session *s, int step)
{
    int i;
    ASAN_POISON_MEMORY_REGION(s->arena, s->arena_bytes);
    for (i = 0; i < s->p->n_buffers; ++i) {
        const bt_buffer *b = &s->p->buffers[i];
        if (b->first <= step && step <= b->last) ASAN_UNPOISON_MEMORY_REGION(s->arena + b->offset, b->bytes);
    }
}
static void plan_check_end(const bt_fixed_session *s) { ASAN_UNPOISON_MEMORY_REGION(s->arena, s->arena_bytes); }
#else
#define plan_check_step(s, step) ((void)0)
#define plan_check_end(s) ((void)0)
#endif

#define STEP_FWD(i) (i)
#define STEP_LOSS(n) (n)
#define STEP_BWD(n, i) (2 * (n) - (i))
#define STEP_OPT(n) (2 * (n))

#define ACT_TOP 7   /* int8 tensors: the largest value lands in [64, 127] */
#define GRAD_TOP 24 /* int32 gradients: 7 bits of headroom */

static void *traw(const bt_fixed_session *s, int t)
{
    return t < 0 ? NULL : (void *)(s->arena + bt_plan_offset(s->p, t));
}
static int8_t *t8(const bt_fixed_session *s, int t) { return (int8_t *)traw(s, t); }
static int16_t *t16(const bt_fixed_session *s, int t) { return (int16_t *)traw(s, t); }
static int32_t *t32(const bt_fixed_session *s, int t) { return (int32_t *)traw(s, t); }

/* A flatten is a view of its input: the tensor (and its scale) belong to the
 * first node up the chain that is not a flatten. */
static int owner(const bt_graph *g, int v)
{
    while (v > 0 && g->nodes[v].kind == BT_OP_FLATTEN) v = g->nodes[v].inputs[0];
    return v;
}

static int has_wq(bt_op_kind k) { return k == BT_OP_CONV2D || k == BT_OP_LINEAR; }

/* The int8 copy of a conv/linear weight sits right after its int32 master (plan.c). */
static int8_t *wq(const bt_fixed_session *s, int v)
{
    return (int8_t *)(s->arena + bt_plan_offset(s->p, s->p->nodes[v].param[0]) +
                      bt_node_param_numel(s->g, v, 0) * sizeof(int32_t));
}


bt_status bt_fixed_session_init(bt_fixed_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                                size_t arena_bytes, const bt_q_sgd_cfg *opt, uint64_t seed)
{
    bt_status st;
    int v, k;
    int32_t em[BT_MAX_NODES];
    int ee[BT_MAX_NODES];
    if (!s || !g || !p || !arena || !opt) return BT_ERR_NULL_POINTER;
    if (p->opts.dtype != BT_DTYPE_FIXED) return BT_ERR_BAD_PARAM;
    if (p->opts.optimizer != BT_OPTIM_SGD) return BT_ERR_UNSUPPORTED;
    if (arena_bytes < p->peak_bytes) return BT_ERR_ARENA_TOO_SMALL;
    if ((st = bt_q_sgd_check(opt)) != BT_OK) return st;
    if (opt->mom_mant != 0 && !p->opts.momentum) return BT_ERR_BAD_PARAM;
    /* every op checked (and its float option decoded) before *s is touched */
    for (v = 1; v < g->n_nodes; ++v) {
        const bt_node *nd = &g->nodes[v];
        const float *opt_f = NULL;
        em[v] = 0;
        ee[v] = 0;
        switch (nd->kind) {
        case BT_OP_CONV2D: case BT_OP_LINEAR: case BT_OP_RELU: case BT_OP_AVGPOOL2D:
        case BT_OP_MAXPOOL2D: case BT_OP_GLOBAL_AVGPOOL: case BT_OP_ADD: case BT_OP_FLATTEN:
            break;
        case BT_OP_GROUPNORM: opt_f = &nd->o.norm.eps; break;
        case BT_OP_ELU: opt_f = &nd->o.alpha; break;
        case BT_OP_DROPOUT: opt_f = &nd->o.p; break;
        default:
            return BT_ERR_UNSUPPORTED;
        }
        if (opt_f) {
            if ((st = bt_q_decode_f32(&em[v], &ee[v], opt_f)) != BT_OK) return st;
            if (em[v] < 0) return BT_ERR_BAD_PARAM;
        }
    }
    memset(s, 0, sizeof *s);
    for (v = 1; v < g->n_nodes; ++v) {
        s->eps_mant[v] = em[v];
        s->eps_exp[v] = ee[v];
    }
    s->g = g;
    s->p = p;
    s->arena = (uint8_t *)arena;
    s->arena_bytes = arena_bytes;
    s->opt = *opt;
    s->adapt = 1;
    s->error_node = -1;
    bt_rng_seed(&s->rng, seed, 0x62696f7472u);
    for (v = 0; v < g->n_nodes; ++v) {
        s->out_frac[v] = 4;
        s->dout_frac[v] = 8;
        s->wq_frac[v] = 7;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            s->param_frac[v][k] = BT_FIXED_DEFAULT_PARAM_FRAC;
            s->grad_frac[v][k] = 24;
            s->mom_frac[v][k] = 24;
        }
    }
    memset(arena, 0, p->peak_bytes);
    return BT_OK;
}

int32_t *bt_fixed_session_param(bt_fixed_session *s, int node, int which, size_t *numel, int **frac)
{
    int t;
    if (!s || node < 0 || node >= s->g->n_nodes || which < 0 || which >= BT_MAX_PARAMS_PER_NODE) return NULL;
    t = s->p->nodes[node].param[which];
    if (t < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    if (frac) *frac = &s->param_frac[node][which];
    return t32(s, t);
}

bt_status bt_fixed_session_set_lr(bt_fixed_session *s, int32_t lr_mant, int lr_exp)
{
    bt_q_sgd_cfg c;
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    c = s->opt;
    c.lr_mant = lr_mant;
    c.lr_exp = lr_exp;
    if ((st = bt_q_sgd_check(&c)) != BT_OK) return st;
    s->opt = c;
    return BT_OK;
}

/* ------------------------------------------------------------------ steps */
static int frac_ok(int f) { return f >= BT_Q_FRAC_MIN && f <= BT_Q_FRAC_MAX; }

/* Every scale in range (a caller may have written a master's scale). */
static bt_status check_scales(const bt_fixed_session *s, int x_frac)
{
    int v, k;
    if (!frac_ok(x_frac)) return BT_ERR_BAD_PARAM;
    for (v = 0; v < s->g->n_nodes; ++v) {
        if (!frac_ok(s->out_frac[v]) || !frac_ok(s->dout_frac[v])) return BT_ERR_BAD_PARAM;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (s->p->nodes[v].param[k] >= 0 &&
                (!frac_ok(s->param_frac[v][k]) || !frac_ok(s->grad_frac[v][k]) || !frac_ok(s->mom_frac[v][k])))
                return BT_ERR_BAD_PARAM;
    }
    return BT_OK;
}

static bt_status check_labels(const bt_fixed_session *s, const int32_t *labels, int batch)
{
    int i;
    for (i = 0; i < batch; ++i)
        if (labels[i] < 0 || labels[i] >= s->g->classes) return BT_ERR_LABEL;
    return BT_OK;
}

/* The int8 weight copies from the masters, each with the scale that puts its
 * largest magnitude in [64, 127]. */
static bt_status refresh_weights(bt_fixed_session *s)
{
    int v;
    bt_status st;
    for (v = 1; v < s->g->n_nodes; ++v) {
        size_t numel;
        const int32_t *m;
        if (!has_wq(s->g->nodes[v].kind)) continue;
        numel = bt_node_param_numel(s->g, v, 0);
        m = t32(s, s->p->nodes[v].param[0]);
        s->wq_frac[v] = bt_q_frac_adapt(s->param_frac[v][0], bt_q31_absmax(m, numel), ACT_TOP);
        st = bt_requant_q31_to_q7(wq(s, v), s->wq_frac[v], NULL, m, s->param_frac[v][0], (int)numel);
        if (st != BT_OK) return st;
    }
    return BT_OK;
}

static void reset_stats(bt_fixed_session *s)
{
    memset(s->out_st, 0, sizeof s->out_st);
    memset(s->dout_st, 0, sizeof s->dout_st);
    memset(s->grad_st, 0, sizeof s->grad_st);
    memset(s->param_st, 0, sizeof s->param_st);
    memset(s->out_seen, 0, sizeof s->out_seen);
    memset(s->dout_seen, 0, sizeof s->dout_seen);
}

static void count_saturations(bt_fixed_session *s)
{
    int v, k;
    uint64_t total = 0;
    for (v = 0; v < s->g->n_nodes; ++v) {
        total += s->out_st[v].saturated + s->dout_st[v].saturated;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) total += s->grad_st[v][k].saturated + s->param_st[v][k].saturated;
    }
    s->saturated_last = total > 0xffffffffu ? 0xffffffffu : (uint32_t)total;
    s->saturated_total += total;
}

/* Forward of node v into `out`: its planned output, or (recompute, st NULL)
 * the buffer a backward reads a cheap conv's output from. The recomputed
 * values are the same bits: same input, weights and scales within a step. */
static bt_status forward_node(bt_fixed_session *s, int v, int rows, int train, int8_t *out, bt_q_stats *st)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[v];
    const bt_plan_node *pn = &s->p->nodes[v];
    const int u = nd->inputs[0], ov = owner(g, v);
    const int8_t *in = t8(s, s->p->nodes[u].out);
    const int fi = s->out_frac[owner(g, u)], fo = s->out_frac[ov];
    const int count = rows * (int)bt_node_numel(nd);
    if (st) s->out_seen[ov] = 1;
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, v, rows, &cs);
        return bt_conv2d_forward_q7(out, fo, st, in, fi, wq(s, v), s->wq_frac[v], t32(s, pn->param[1]),
                                    s->param_frac[v][1], &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_forward_q7(out, fo, st, in, fi, wq(s, v), s->wq_frac[v], t32(s, pn->param[1]),
                                    s->param_frac[v][1], rows, (int)bt_node_numel(&g->nodes[u]), nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_forward_q7(out, fo, st, t32(s, pn->mean), t32(s, pn->rstd), in, fi, t32(s, pn->param[0]),
                                       s->param_frac[v][0], t32(s, pn->param[1]), s->param_frac[v][1], rows, nd->c,
                                       nd->h * nd->w, nd->o.norm.groups, s->eps_mant[v], s->eps_exp[v]);
    case BT_OP_RELU:
        if (train && pn->mask >= 0)
            return bt_relu_forward_mask_q7(out, fo, st, (uint32_t *)traw(s, pn->mask), in, fi, count);
        return bt_relu_forward_q7(out, fo, st, in, fi, count);
    case BT_OP_ELU:
        return bt_elu_forward_q7(out, fo, st, in, fi, count, s->eps_mant[v], s->eps_exp[v]);
    case BT_OP_AVGPOOL2D:
    case BT_OP_GLOBAL_AVGPOOL: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, v, rows, &ps);
        return bt_avgpool2d_forward_q7(out, fo, st, in, fi, &ps);
    }
    case BT_OP_MAXPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, v, rows, &ps);
        return bt_maxpool2d_forward_q7(out, fo, st, t32(s, pn->argmax), in, fi, &ps);
    }
    case BT_OP_ADD: {
        const int u2 = nd->inputs[1];
        return bt_add_forward_q7(out, fo, st, in, fi, t8(s, s->p->nodes[u2].out), s->out_frac[owner(g, u2)], count);
    }
    case BT_OP_FLATTEN:
        return BT_OK; /* a view: the planner gave it its input's buffer */
    case BT_OP_DROPOUT:
        if (train && s->eps_mant[v] != 0)
            return bt_dropout_forward_q7(out, fo, st, (uint8_t *)traw(s, pn->mask), in, fi, count, s->eps_mant[v],
                                         s->eps_exp[v], &s->rng);
        return bt_requant_q7(out, fo, st, in, fi, count); /* inference, or p = 0: the identity */
    default:
        return BT_ERR_UNSUPPORTED;
    }
}

/* The gradient of input slot k of node c, written to din with the input's gradient scale. */
static bt_status backward_input(bt_fixed_session *s, int c, int k, int8_t *din, int rows)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    const int u = nd->inputs[k], ou = owner(g, u), oc = owner(g, c);
    const int8_t *dout = t8(s, pn->dout);
    const int8_t *in = t8(s, pn->bwd_in[k]);
    const int8_t *out = t8(s, pn->out);
    const int fdin = s->dout_frac[ou], fdout = s->dout_frac[oc], fi = s->out_frac[ou];
    bt_q_stats *st = &s->dout_st[ou];
    const int count = rows * (int)bt_node_numel(nd);
    s->dout_seen[ou] = 1;
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, c, rows, &cs);
        return bt_conv2d_backward_input_q7(din, fdin, st, dout, fdout, wq(s, c), s->wq_frac[c], &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_backward_input_q7(din, fdin, st, dout, fdout, wq(s, c), s->wq_frac[c], rows,
                                           (int)bt_node_numel(&g->nodes[u]), nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_backward_input_q7(din, fdin, st, dout, fdout, in, fi, t32(s, pn->mean), t32(s, pn->rstd),
                                              t32(s, pn->param[0]), s->param_frac[c][0], rows, nd->c, nd->h * nd->w,
                                              nd->o.norm.groups);
    case BT_OP_RELU:
        if (pn->mask >= 0) return bt_relu_backward_mask_q7(din, fdin, st, dout, fdout, (const uint32_t *)traw(s, pn->mask), count);
        return bt_relu_backward_q7(din, fdin, st, dout, fdout, out, count);
    case BT_OP_ELU:
        return bt_elu_backward_q7(din, fdin, st, dout, fdout, out, s->out_frac[oc], count, s->eps_mant[c],
                                  s->eps_exp[c]);
    case BT_OP_AVGPOOL2D:
    case BT_OP_GLOBAL_AVGPOOL: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, c, rows, &ps);
        return bt_avgpool2d_backward_q7(din, fdin, st, dout, fdout, &ps);
    }
    case BT_OP_MAXPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, c, rows, &ps);
        return bt_maxpool2d_backward_q7(din, fdin, st, dout, fdout, t32(s, pn->argmax), &ps);
    }
    case BT_OP_DROPOUT:
        if (s->eps_mant[c] != 0)
            return bt_dropout_backward_q7(din, fdin, st, dout, fdout, (const uint8_t *)traw(s, pn->mask), count,
                                          s->eps_mant[c], s->eps_exp[c]);
        return bt_requant_q7(din, fdin, st, dout, fdout, count);
    case BT_OP_ADD:
        return bt_requant_q7(din, fdin, st, dout, fdout, count);
    case BT_OP_FLATTEN:
        /* same tensor, same scale: only a scratch (a fan-out) needs the copy */
        if (din != dout) memmove(din, dout, (size_t)count);
        return BT_OK;
    default:
        return BT_ERR_UNSUPPORTED;
    }
}

static bt_status backward_weight(bt_fixed_session *s, int c, int rows)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    const int u = nd->inputs[0];
    const int8_t *dout = t8(s, pn->dout);
    const int8_t *in = t8(s, pn->bwd_in[0]);
    const int fdout = s->dout_frac[owner(g, c)], fi = s->out_frac[owner(g, u)];
    bt_q_stats *st = &s->grad_st[c][0];
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, c, rows, &cs);
        return bt_conv2d_backward_weight_q7(t32(s, pn->pgrad[0]), s->grad_frac[c][0], t32(s, pn->pgrad[1]),
                                            s->grad_frac[c][1], st, dout, fdout, in, fi, &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_backward_weight_q7(t32(s, pn->pgrad[0]), s->grad_frac[c][0], t32(s, pn->pgrad[1]),
                                            s->grad_frac[c][1], st, dout, fdout, in, fi, rows,
                                            (int)bt_node_numel(&g->nodes[u]), nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_backward_weight_q7(t32(s, pn->pgrad[0]), s->grad_frac[c][0], t32(s, pn->pgrad[1]),
                                               s->grad_frac[c][1], st, dout, fdout, in, fi, t32(s, pn->mean),
                                               t32(s, pn->rstd), rows, nd->c, nd->h * nd->w, nd->o.norm.groups);
    default:
        return BT_OK;
    }
}

static bt_status backward_node(bt_fixed_session *s, int c, int rows)
{
    const bt_node *nd = &s->g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    bt_status st;
    int k;
    for (k = 0; k < nd->n_inputs; ++k)
        if (pn->recompute[k] >= 0 &&
            (st = forward_node(s, pn->recompute[k], rows, 1, t8(s, pn->bwd_in[k]), NULL)) != BT_OK)
            return st;
    /* Weight gradient first: an input gradient may overwrite the activation it
     * reads. Input slots last to first: slot 0's gradient may overwrite this
     * op's output gradient in place (plan.c), and in fixed point it is a
     * rescaled copy, so the other slot must read the output gradient before. */
    if (pn->weight_grad && (st = backward_weight(s, c, rows)) != BT_OK) return st;
    for (k = nd->n_inputs - 1; k >= 0; --k) {
        int8_t *din = t8(s, pn->din[k]);
        if (!din) continue;
        if ((st = backward_input(s, c, k, din, rows)) != BT_OK) return st;
        if (pn->din_accumulate[k]) {
            const int u = nd->inputs[k], ou = owner(s->g, u);
            st = bt_accumulate_q7(t8(s, s->p->nodes[u].dout), s->dout_frac[ou], &s->dout_st[ou], din,
                                  s->dout_frac[ou], rows * (int)bt_node_numel(&s->g->nodes[u]));
            if (st != BT_OK) return st;
        }
    }
    return BT_OK;
}

static bt_status forward_pass(bt_fixed_session *s, const int16_t *x, int x_frac, int rows, int train)
{
    int v, n = s->g->n_nodes;
    bt_status st;
    plan_check_step(s, 0);
    s->out_seen[0] = 1;
    st = bt_requant_q15_to_q7(t8(s, s->p->nodes[0].out), s->out_frac[0], &s->out_st[0], x, x_frac,
                              rows * (int)bt_node_numel(&s->g->nodes[0]));
    if (st != BT_OK) { s->error_node = 0; return st; }
    for (v = 1; v < n; ++v) {
        plan_check_step(s, STEP_FWD(v));
        st = forward_node(s, v, rows, train, t8(s, s->p->nodes[v].out), &s->out_st[owner(s->g, v)]);
        if (st != BT_OK) { s->error_node = v; return st; }
    }
    return BT_OK;
}

static int any_trainable(const bt_fixed_session *s)
{
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (s->p->nodes[v].pgrad[k] >= 0) return 1;
    return 0;
}

/* Zeroed gradients, then forward, loss and backward over every micro-batch;
 * *total gets the summed Q16 loss of the rows. */
static bt_status accumulate_batch(bt_fixed_session *s, int64_t *total, const int16_t *x, int x_frac,
                                  const int32_t *labels, int batch)
{
    const bt_graph *g = s->g;
    const bt_plan *p = s->p;
    const int n = g->n_nodes, last = owner(g, n - 1), train = any_trainable(s);
    int v, k, start;
    bt_status st;
    *total = 0;
    for (v = 0; v < n; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (p->nodes[v].pgrad[k] >= 0)
                memset(t32(s, p->nodes[v].pgrad[k]), 0, bt_node_param_numel(g, v, k) * sizeof(int32_t));
    for (start = 0; start < batch; start += p->opts.micro_batch) {
        const int rows = batch - start < p->opts.micro_batch ? batch - start : p->opts.micro_batch;
        int32_t *lab = t32(s, p->labels);
        int16_t *probs = t16(s, p->probs);
        int32_t mb_loss = 0;
        if ((st = forward_pass(s, x + (size_t)start * bt_node_numel(&g->nodes[0]), x_frac, rows, 1)) != BT_OK)
            return st;
        plan_check_step(s, STEP_LOSS(n));
        memcpy(lab, labels + start, (size_t)rows * sizeof(int32_t));
        st = bt_cross_entropy_forward_q7(&mb_loss, probs, t8(s, p->nodes[n - 1].out), s->out_frac[last], lab, rows,
                                         g->classes);
        if (st != BT_OK) { s->error_node = n - 1; return st; }
        *total += (int64_t)mb_loss * rows;
        if (!train) continue;
        s->dout_seen[last] = 1;
        st = bt_cross_entropy_backward_q7(t8(s, p->nodes[n - 1].dout), s->dout_frac[last], &s->dout_st[last], probs,
                                          lab, batch, rows, g->classes);
        if (st != BT_OK) { s->error_node = n - 1; return st; }
        for (v = n - 1; v >= 1; --v) {
            if (!p->nodes[v].run_backward) continue;
            plan_check_step(s, STEP_BWD(n, v));
            if ((st = backward_node(s, v, rows)) != BT_OK) { s->error_node = v; return st; }
        }
    }
    return BT_OK;
}

/* The scale of an int8 tensor after a step (exec_fixed.h): down at once on
 * saturation, up only after BT_FIXED_GROW_STEPS quiet steps; `immediate`
 * (calibration) moves it either way at once. */
static int adapt_act(int frac, uint32_t absmax, uint32_t *win, uint8_t *n, int immediate)
{
    int f;
    if (immediate || absmax > BT_Q7_MAX) {
        *win = 0;
        *n = 0;
        return bt_q_frac_adapt(frac, absmax, ACT_TOP);
    }
    if (absmax > *win) *win = absmax;
    if (++*n < BT_FIXED_GROW_STEPS) return frac;
    f = bt_q_frac_adapt(frac, *win, ACT_TOP);
    *win = 0;
    *n = 0;
    return f;
}

static void adapt_scales(bt_fixed_session *s, int immediate)
{
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v) {
        if (v > 0 && s->g->nodes[v].kind == BT_OP_FLATTEN) continue;
        if (s->out_seen[v])
            s->out_frac[v] = adapt_act(s->out_frac[v], s->out_st[v].absmax, &s->out_win[v], &s->out_win_n[v], immediate);
        if (s->dout_seen[v])
            s->dout_frac[v] =
                adapt_act(s->dout_frac[v], s->dout_st[v].absmax, &s->dout_win[v], &s->dout_win_n[v], immediate);
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].pgrad[k];
            if (t < 0) continue;
            s->grad_frac[v][k] = bt_q_frac_adapt(
                s->grad_frac[v][k], bt_q31_absmax(t32(s, t), bt_node_param_numel(s->g, v, k)), GRAD_TOP);
        }
    }
}

static bt_status update(bt_fixed_session *s)
{
    int v, k;
    bt_status st;
    for (v = 0; v < s->g->n_nodes; ++v) {
        const bt_plan_node *pn = &s->p->nodes[v];
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            size_t cnt, i;
            int32_t *w;
            if (pn->pgrad[k] < 0) continue;
            cnt = bt_node_param_numel(s->g, v, k);
            w = t32(s, pn->param[k]);
            st = bt_sgd_update_q31(w, s->param_frac[v][k], t32(s, pn->opt_m[k]), s->mom_frac[v][k],
                                   &s->param_st[v][k], t32(s, pn->pgrad[k]), s->grad_frac[v][k], cnt, &s->opt);
            if (st != BT_OK) return st;
            if (pn->opt_m[k] >= 0) s->mom_frac[v][k] = s->grad_frac[v][k];
            /* keep a bit of headroom above the master: halve a tensor that passes 2^30 */
            if (bt_q31_absmax(w, cnt) > (1u << 30) && s->param_frac[v][k] > BT_Q_FRAC_MIN) {
                for (i = 0; i < cnt; ++i) w[i] = (int32_t)bt_q_shift_round(w[i], 1);
                s->param_frac[v][k] -= 1;
            }
        }
    }
    s->steps++;
    return BT_OK;
}

static bt_status begin(bt_fixed_session *s, const int16_t *x, int x_frac, const int32_t *labels, int batch)
{
    bt_status st;
    s->error_node = -1;
    if (!x) return BT_ERR_NULL_POINTER;
    if (batch <= 0) return BT_ERR_BAD_SIZE;
    if (labels && (st = check_labels(s, labels, batch)) != BT_OK) return st;
    if ((st = check_scales(s, x_frac)) != BT_OK) return st;
    reset_stats(s);
    return refresh_weights(s);
}

bt_status bt_fixed_calibrate(bt_fixed_session *s, const int16_t *x, int x_frac, const int32_t *labels,
                             int batch, int rounds)
{
    int r;
    int64_t total;
    bt_status st = BT_OK;
    if (!s || !x || !labels) return BT_ERR_NULL_POINTER;
    if (rounds < 1) return BT_ERR_BAD_SIZE;
    for (r = 0; r < rounds; ++r) {
        if ((st = begin(s, x, x_frac, labels, batch)) != BT_OK) break;
        if ((st = accumulate_batch(s, &total, x, x_frac, labels, batch)) != BT_OK) break;
        count_saturations(s);
        adapt_scales(s, 1);
    }
    plan_check_end(s);
    return st;
}

bt_status bt_fixed_train_step(bt_fixed_session *s, int32_t *loss, const int16_t *x, int x_frac,
                              const int32_t *labels, int batch)
{
    int64_t total = 0;
    bt_status st;
    if (!s || !x || !labels) return BT_ERR_NULL_POINTER;
    if ((st = begin(s, x, x_frac, labels, batch)) != BT_OK) return st;
    if ((st = accumulate_batch(s, &total, x, x_frac, labels, batch)) != BT_OK) goto done;
    plan_check_step(s, STEP_OPT(s->g->n_nodes));
    if (any_trainable(s) && (st = update(s)) != BT_OK) goto done;
    s->last_loss = (int32_t)bt_q_clamp(bt_q_div_round(total, batch), BT_Q31_MAX, NULL);
    if (loss) *loss = s->last_loss;
    count_saturations(s);
    if (s->adapt) adapt_scales(s, 0);
done:
    plan_check_end(s);
    return st;
}

bt_status bt_fixed_forward(bt_fixed_session *s, int8_t *logits, int *logits_frac, const int16_t *x,
                           int x_frac, int n)
{
    int start, last;
    bt_status st;
    if (!s || !logits || !x) return BT_ERR_NULL_POINTER;
    if ((st = begin(s, x, x_frac, NULL, n)) != BT_OK) return st;
    last = s->g->n_nodes - 1;
    for (start = 0; start < n; start += s->p->opts.micro_batch) {
        const int rows = n - start < s->p->opts.micro_batch ? n - start : s->p->opts.micro_batch;
        st = forward_pass(s, x + (size_t)start * bt_node_numel(&s->g->nodes[0]), x_frac, rows, 0);
        if (st != BT_OK) { plan_check_end(s); return st; }
        plan_check_step(s, STEP_LOSS(s->g->n_nodes));
        memcpy(logits + (size_t)start * (size_t)s->g->classes, t8(s, s->p->nodes[last].out),
               (size_t)rows * (size_t)s->g->classes);
    }
    if (logits_frac) *logits_frac = s->out_frac[owner(s->g, last)];
    count_saturations(s);
    plan_check_end(s);
    return BT_OK;
}

static uint32_t fnv_word(uint32_t h, uint32_t w)
{
    int i;
    for (i = 0; i < 4; ++i) {
        h ^= (w >> (8 * i)) & 0xffu; /* little-endian bytes, whatever the host */
        h *= 16777619u;
    }
    return h;
}

uint32_t bt_fixed_session_checksum(const bt_fixed_session *s)
{
    uint32_t h = 2166136261u;
    int v, k;
    size_t i;
    if (!s) return 0;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].param[k];
            const int32_t *w;
            size_t cnt;
            if (t < 0) continue;
            w = t32(s, t);
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i) h = fnv_word(h, (uint32_t)w[i]);
            h = fnv_word(h, (uint32_t)s->param_frac[v][k]);
        }
    return h;
}
