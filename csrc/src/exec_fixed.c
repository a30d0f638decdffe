/* The fixed-point number format of the executor (exec_internal.h; exec.h
 * states the rules of the scales): an int16 input requantised to int8,
 * integer softmax cross-entropy, SGD on int32 masters, a scale per tensor
 * that adapts after every update. Integer arithmetic only: the float options
 * of the graph and the optimizer are decoded from their IEEE bits. */
#include "exec_internal.h"
#include "biotrain/kernels.h"

#define ACT_TOP 7   /* int8 tensors: the largest value lands in [64, 127] */
#define GRAD_TOP 24 /* int32 gradients: 7 bits of headroom */

static int8_t *t8(const bt_session *s, int t) { return (int8_t *)bt_tensor_ptr(s, t); }
static int32_t *t32(const bt_session *s, int t) { return (int32_t *)bt_tensor_ptr(s, t); }
static int frac_ok(int f) { return f >= BT_Q_FRAC_MIN && f <= BT_Q_FRAC_MAX; }

static int has_wq(const bt_graph *g, int v)
{
    return (bt_op_get(g->nodes[v].kind)->flags & BT_OPF_Q_WEIGHT_COPY) != 0;
}

/* The int8 copy of a weight sits right after its int32 master (plan.c). */
static int8_t *wq(const bt_session *s, int v)
{
    return (int8_t *)(s->arena + bt_plan_offset(s->p, s->p->nodes[v].param[0]) +
                      bt_node_param_numel(s->g, v, 0) * sizeof(int32_t));
}

/* A node's float option (eps, alpha, p), decoded; mant < 0 is refused. */
static bt_status decode_option(const bt_node *nd, int32_t *mant, int *exp)
{
    const bt_op_desc *d = bt_op_get(nd->kind);
    float value;
    bt_status st;
    *mant = 0;
    *exp = 0;
    if (d->qopt < 0) return BT_OK;
    memcpy(&value, (const uint8_t *)&nd->o + d->opts[d->qopt].offset, sizeof value);
    if ((st = bt_q_decode_f32(mant, exp, &value)) != BT_OK) return st;
    return *mant < 0 ? BT_ERR_BAD_PARAM : BT_OK;
}

static bt_status decode_sgd(bt_q_sgd_cfg *q, const bt_optim_cfg *opt)
{
    bt_status st;
    if ((st = bt_q_decode_f32(&q->lr_mant, &q->lr_exp, &opt->lr)) != BT_OK) return st;
    if ((st = bt_q_decode_f32(&q->mom_mant, &q->mom_exp, &opt->momentum)) != BT_OK) return st;
    if ((st = bt_q_decode_f32(&q->wd_mant, &q->wd_exp, &opt->weight_decay)) != BT_OK) return st;
    return bt_q_sgd_check(q);
}

static bt_status check(const bt_graph *g, const bt_plan *p, const bt_optim_cfg *opt)
{
    bt_q_sgd_cfg q;
    int32_t m;
    int e, v;
    bt_status st;
    if (opt->kind != BT_OPTIM_SGD) return BT_ERR_UNSUPPORTED;
    if ((st = decode_sgd(&q, opt)) != BT_OK) return st;
    if (q.mom_mant != 0 && !p->opts.momentum) return BT_ERR_BAD_PARAM;
    for (v = 1; v < g->n_nodes; ++v)
        if ((st = decode_option(&g->nodes[v], &m, &e)) != BT_OK) return st;
    return BT_OK;
}

static void setup(bt_session *s)
{
    bt_fixed_state *fx = &s->fx;
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v) {
        fx->out_frac[v] = 4;
        fx->dout_frac[v] = 8;
        fx->wq_frac[v] = 7;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            fx->param_frac[v][k] = BT_FIXED_DEFAULT_PARAM_FRAC;
            fx->grad_frac[v][k] = 24;
            fx->mom_frac[v][k] = 24;
        }
        (void)decode_option(&s->g->nodes[v], &fx->qopt_mant[v], &fx->qopt_exp[v]); /* checked in check() */
    }
}

static void opt_changed(bt_session *s) { (void)decode_sgd(&s->fx.sgd, &s->opt); /* checked in check() */ }

/* ------------------------------------------------------------ a pass */
/* Every scale in range (a caller may have written a master's scale). */
static bt_status check_scales(const bt_session *s, int x_frac)
{
    const bt_fixed_state *fx = &s->fx;
    int v, k;
    if (!frac_ok(x_frac)) return BT_ERR_BAD_PARAM;
    for (v = 0; v < s->g->n_nodes; ++v) {
        if (!frac_ok(fx->out_frac[v]) || !frac_ok(fx->dout_frac[v])) return BT_ERR_BAD_PARAM;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (s->p->nodes[v].param[k] >= 0 &&
                (!frac_ok(fx->param_frac[v][k]) || !frac_ok(fx->grad_frac[v][k]) || !frac_ok(fx->mom_frac[v][k])))
                return BT_ERR_BAD_PARAM;
    }
    return BT_OK;
}

static void reset_stats(bt_fixed_state *fx)
{
    memset(fx->out_st, 0, sizeof fx->out_st);
    memset(fx->dout_st, 0, sizeof fx->dout_st);
    memset(fx->grad_st, 0, sizeof fx->grad_st);
    memset(fx->param_st, 0, sizeof fx->param_st);
    memset(fx->out_seen, 0, sizeof fx->out_seen);
    memset(fx->dout_seen, 0, sizeof fx->dout_seen);
}

/* The int8 weight copies from the masters, each with the scale that puts its
 * largest magnitude in [64, 127]. */
static bt_status refresh_weights(bt_session *s)
{
    int v;
    bt_status st;
    for (v = 1; v < s->g->n_nodes; ++v) {
        size_t numel;
        const int32_t *m;
        if (!has_wq(s->g, v)) continue;
        numel = bt_node_param_numel(s->g, v, 0);
        m = t32(s, s->p->nodes[v].param[0]);
        s->fx.wq_frac[v] = bt_q_frac_adapt(s->fx.param_frac[v][0], bt_q31_absmax(m, numel), ACT_TOP);
        st = bt_requant_q31_to_q7(wq(s, v), s->fx.wq_frac[v], NULL, m, s->fx.param_frac[v][0], (int)numel);
        if (st != BT_OK) return st;
    }
    return BT_OK;
}

static bt_status begin(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch)
{
    int i;
    bt_status st;
    (void)x;
    if (labels)
        for (i = 0; i < batch; ++i)
            if (labels[i] < 0 || labels[i] >= s->g->classes) return BT_ERR_LABEL;
    if ((st = check_scales(s, x_frac)) != BT_OK) return st;
    reset_stats(&s->fx);
    return refresh_weights(s);
}

static bt_status load_input(bt_session *s, const void *x, int x_frac, int rows)
{
    s->fx.out_seen[0] = 1;
    return bt_requant_q15_to_q7(t8(s, s->p->nodes[0].out), s->fx.out_frac[0], &s->fx.out_st[0], (const int16_t *)x,
                                x_frac, rows * (int)bt_node_numel(&s->g->nodes[0]));
}

static void fill(bt_session *s, bt_op_ctx *c, bt_ctx_mode mode)
{
    bt_fixed_state *fx = &s->fx;
    const bt_node *nd = &s->g->nodes[c->node];
    const int v = c->node, ov = bt_tensor_owner(s->g, v);
    int k;
    c->out_frac = fx->out_frac[ov];
    c->dout_frac = fx->dout_frac[ov];
    for (k = 0; k < nd->n_inputs; ++k) {
        const int ou = bt_tensor_owner(s->g, nd->inputs[k]);
        c->in_frac[k] = fx->out_frac[ou];
        c->din_frac[k] = fx->dout_frac[ou];
        c->din_st[k] = &fx->dout_st[ou];
        if (mode == BT_CTX_BACKWARD && c->din[k]) fx->dout_seen[ou] = 1;
    }
    for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
        c->param_frac[k] = fx->param_frac[v][k];
        c->grad_frac[k] = fx->grad_frac[v][k];
    }
    c->grad_st = &fx->grad_st[v][0];
    if (has_wq(s->g, v)) {
        c->wq = wq(s, v);
        c->wq_frac = fx->wq_frac[v];
    }
    c->qopt_mant = fx->qopt_mant[v];
    c->qopt_exp = fx->qopt_exp[v];
    if (mode == BT_CTX_FORWARD) {
        c->out_st = &fx->out_st[ov];
        fx->out_seen[ov] = 1;
    }
}

static bt_status loss(bt_session *s, int rows, int batch, int backward)
{
    const int n = s->g->n_nodes, last = bt_tensor_owner(s->g, n - 1);
    const int32_t *lab = (const int32_t *)bt_tensor_ptr(s, s->p->labels);
    int16_t *probs = (int16_t *)bt_tensor_ptr(s, s->p->probs);
    int32_t mb = 0;
    bt_status st = bt_cross_entropy_forward_q7(&mb, probs, t8(s, s->p->nodes[n - 1].out), s->fx.out_frac[last], lab,
                                               rows, s->g->classes);
    if (st != BT_OK) return st;
    s->fx.loss_sum += (int64_t)mb * rows;
    if (!backward) return BT_OK;
    s->fx.dout_seen[last] = 1;
    return bt_cross_entropy_backward_q7(t8(s, s->p->nodes[n - 1].dout), s->fx.dout_frac[last], &s->fx.dout_st[last],
                                        probs, lab, batch, rows, s->g->classes);
}

static void loss_done(bt_session *s, int batch)
{
    s->last_loss.f32 = 0.0f;
    s->last_loss.q = (int32_t)bt_q_clamp(bt_q_div_round(s->fx.loss_sum, batch), BT_Q31_MAX, NULL);
    s->last_loss.frac = BT_Q_LOSS_FRAC;
}

static bt_status accumulate(bt_session *s, int u, const void *din, int count)
{
    const int ou = bt_tensor_owner(s->g, u);
    return bt_accumulate_q7(t8(s, s->p->nodes[u].dout), s->fx.dout_frac[ou], &s->fx.dout_st[ou], (const int8_t *)din,
                            s->fx.dout_frac[ou], count);
}

static bt_status grads_ok(const bt_session *s)
{
    (void)s; /* integers: always finite */
    return BT_OK;
}

static bt_status update(bt_session *s)
{
    bt_fixed_state *fx = &s->fx;
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
            st = bt_sgd_update_q31(w, fx->param_frac[v][k], t32(s, pn->opt_m[k]), fx->mom_frac[v][k],
                                   &fx->param_st[v][k], t32(s, pn->pgrad[k]), fx->grad_frac[v][k], cnt, &fx->sgd);
            if (st != BT_OK) return st;
            if (pn->opt_m[k] >= 0) fx->mom_frac[v][k] = fx->grad_frac[v][k];
            /* keep a bit of headroom above the master: halve a tensor that passes 2^30 */
            if (bt_q31_absmax(w, cnt) > (1u << 30) && fx->param_frac[v][k] > BT_Q_FRAC_MIN) {
                for (i = 0; i < cnt; ++i) w[i] = (int32_t)bt_q_shift_round(w[i], 1);
                fx->param_frac[v][k] -= 1;
            }
        }
    }
    s->opt_state.step++;
    return BT_OK;
}

/* ------------------------------------------------------------ scales */
static void count_saturations(bt_session *s)
{
    bt_fixed_state *fx = &s->fx;
    int v, k;
    uint64_t total = 0;
    for (v = 0; v < s->g->n_nodes; ++v) {
        total += fx->out_st[v].saturated + fx->dout_st[v].saturated;
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            total += fx->grad_st[v][k].saturated + fx->param_st[v][k].saturated;
    }
    fx->saturated_last = total > 0xffffffffu ? 0xffffffffu : (uint32_t)total;
    fx->saturated_total += total;
}

/* The scale of an int8 tensor after a step: down at once on saturation, up
 * only after BT_FIXED_GROW_STEPS quiet steps; `immediate` (calibration)
 * moves it either way at once. */
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

static void adapt_scales(bt_session *s, int immediate)
{
    bt_fixed_state *fx = &s->fx;
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v) {
        if (bt_tensor_owner(s->g, v) != v) continue; /* a view has its input's scales */
        if (fx->out_seen[v])
            fx->out_frac[v] = adapt_act(fx->out_frac[v], fx->out_st[v].absmax, &fx->out_win[v], &fx->out_win_n[v],
                                        immediate);
        if (fx->dout_seen[v])
            fx->dout_frac[v] = adapt_act(fx->dout_frac[v], fx->dout_st[v].absmax, &fx->dout_win[v],
                                         &fx->dout_win_n[v], immediate);
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].pgrad[k];
            if (t < 0) continue;
            fx->grad_frac[v][k] =
                bt_q_frac_adapt(fx->grad_frac[v][k], bt_q31_absmax(t32(s, t), bt_node_param_numel(s->g, v, k)),
                                GRAD_TOP);
        }
    }
    /* these statistics are spent: an update without a new pass adapts nothing */
    memset(fx->out_seen, 0, sizeof fx->out_seen);
    memset(fx->dout_seen, 0, sizeof fx->dout_seen);
}

static void after_update(bt_session *s, int immediate)
{
    count_saturations(s);
    if (immediate || s->adapt) adapt_scales(s, immediate);
}

static void after_forward(bt_session *s) { count_saturations(s); }

/* ------------------------------------------------------------ checksums */
static uint32_t checksum(const bt_session *s)
{
    uint32_t h = BT_FNV_INIT;
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].param[k];
            const int32_t *w;
            size_t cnt;
            if (t < 0) continue;
            w = t32(s, t);
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i) h = bt_fnv_word(h, (uint32_t)w[i]);
            h = bt_fnv_word(h, (uint32_t)s->fx.param_frac[v][k]);
        }
    return h;
}

static uint32_t state_checksum(const bt_session *s)
{
    const bt_fixed_state *fx = &s->fx;
    uint32_t h = BT_FNV_INIT;
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v) {
        h = bt_fnv_word(h, (uint32_t)fx->out_frac[v]);
        h = bt_fnv_word(h, (uint32_t)fx->dout_frac[v]);
        h = bt_fnv_word(h, (uint32_t)fx->wq_frac[v]);
        h = bt_fnv_word(h, fx->out_win[v]);
        h = bt_fnv_word(h, fx->dout_win[v]);
        h = bt_fnv_word(h, fx->out_win_n[v]);
        h = bt_fnv_word(h, fx->dout_win_n[v]);
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            h = bt_fnv_word(h, (uint32_t)fx->grad_frac[v][k]);
            h = bt_fnv_word(h, (uint32_t)fx->mom_frac[v][k]);
        }
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].opt_m[k];
            const int32_t *m;
            size_t cnt;
            if (t < 0) continue;
            m = t32(s, t);
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i) h = bt_fnv_word(h, (uint32_t)m[i]);
        }
    }
    return bt_fnv_rng(h, &s->rng);
}

const bt_exec_format bt_exec_fixed = {
    check, setup, opt_changed, begin, load_input, fill, loss, loss_done, accumulate, grads_ok, update,
    after_update, after_forward, sizeof(int8_t), checksum, state_checksum};
