/* The executor: one schedule walk for both number formats (exec.h). The
 * schedule steps named here are the planner's (plan_internal.h), so the plan
 * check below can poison every buffer that the plan says is dead at a step. */
#include "exec_internal.h"
#include "biotrain/kernels.h"

#if defined(BT_PLAN_CHECK)
/* Sanitizer build: before each schedule step, everything in the arena that the
 * plan says is not live is poisoned, so an op touching a byte outside its
 * planned tensors is reported by AddressSanitizer. */
#include <sanitizer/asan_interface.h>
static void plan_check_step(const bt_session *s, int step)
{
    int i;
    ASAN_POISON_MEMORY_REGION(s->arena, s->arena_bytes);
    for (i = 0; i < s->p->n_buffers; ++i) {
        const bt_buffer *b = &s->p->buffers[i];
        if (b->first <= step && step <= b->last) ASAN_UNPOISON_MEMORY_REGION(s->arena + b->offset, b->bytes);
    }
}
static void plan_check_end(const bt_session *s) { ASAN_UNPOISON_MEMORY_REGION(s->arena, s->arena_bytes); }
#else
#define plan_check_step(s, step) ((void)0)
#define plan_check_end(s) ((void)0)
#endif

#if defined(BT_ONLY_FIXED)
#define FORMAT_F32 ((const bt_exec_format *)(0 * sizeof bt_exec_f32))
#else
#define FORMAT_F32 (&bt_exec_f32)
#endif
#if defined(BT_ONLY_F32)
#define FORMAT_FIXED ((const bt_exec_format *)(0 * sizeof bt_exec_fixed))
#else
#define FORMAT_FIXED (&bt_exec_fixed)
#endif

const bt_exec_format *bt_exec_format_for(bt_dtype dt)
{
    static const bt_exec_format *const formats[BT_DTYPE_COUNT_] = {FORMAT_F32, FORMAT_FIXED};
    return ((int)dt >= 0 && dt < BT_DTYPE_COUNT_) ? formats[dt] : NULL;
}

static const bt_exec_format *fmt(const bt_session *s) { return bt_exec_format_for(s->dtype); }

/* ------------------------------------------------------------------ setup */
bt_status bt_session_init(bt_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                          size_t arena_bytes, const bt_optim_cfg *opt, uint64_t seed)
{
    const bt_exec_format *f;
    bt_status st;
    int v;
    if (!s || !g || !p || !arena || !opt) return BT_ERR_NULL_POINTER;
    if (arena_bytes < p->peak_bytes) return BT_ERR_ARENA_TOO_SMALL;
    if (((uintptr_t)arena & (BT_ARENA_ALIGN - 1)) != 0) return BT_ERR_BAD_PARAM;
    if (p->opts.dtype != BT_DTYPE_F32 && p->opts.dtype != BT_DTYPE_FIXED) return BT_ERR_BAD_PARAM;
    if (opt->kind != p->opts.optimizer) return BT_ERR_BAD_PARAM;
    /* every op has the kernels its part of the step needs, in the plan's format */
    for (v = 1; v < g->n_nodes; ++v) {
        const bt_op_desc *d = bt_op_get(g->nodes[v].kind);
        const bt_op_kernels *k = d ? d->kernels[p->opts.dtype] : NULL;
        if (!k || !k->forward) return BT_ERR_UNSUPPORTED;
        if (p->nodes[v].run_backward && !k->backward_input) return BT_ERR_UNSUPPORTED;
        if (p->nodes[v].weight_grad && !k->backward_weight) return BT_ERR_UNSUPPORTED;
    }
    if (!(f = bt_exec_format_for(p->opts.dtype))) return BT_ERR_UNSUPPORTED;
    if ((st = f->check(g, p, opt)) != BT_OK) return st;
    memset(s, 0, sizeof *s);
    s->g = g; s->p = p;
    s->arena = (uint8_t *)arena;
    s->arena_bytes = arena_bytes;
    s->dtype = p->opts.dtype;
    s->opt = *opt;
    s->opt_state.beta1_pow = 1.0f;
    s->opt_state.beta2_pow = 1.0f;
    s->adapt = 1;
    s->error_node = -1;
    bt_rng_seed(&s->rng, seed, 0x62696f7472u);
    /* Only the planned bytes: the plan check proves nothing else is touched. */
    memset(arena, 0, p->peak_bytes);
    f->setup(s);
    f->opt_changed(s);
    return BT_OK;
}

static int node_ok(const bt_session *s, int node, int which)
{
    return s && node >= 0 && node < s->g->n_nodes && which >= 0 && which < BT_MAX_PARAMS_PER_NODE;
}

void *bt_session_param(bt_session *s, int node, int which, size_t *numel)
{
    if (!node_ok(s, node, which) || s->p->nodes[node].param[which] < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    return bt_tensor_ptr(s, s->p->nodes[node].param[which]);
}

void *bt_session_grad(bt_session *s, int node, int which, size_t *numel)
{
    if (!node_ok(s, node, which) || s->p->nodes[node].pgrad[which] < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    return bt_tensor_ptr(s, s->p->nodes[node].pgrad[which]);
}

void *bt_session_opt_state(bt_session *s, int node, int which, int moment, size_t *numel)
{
    int t;
    if (!node_ok(s, node, which) || moment < 0 || moment > 1) return NULL;
    t = moment == 0 ? s->p->nodes[node].opt_m[which] : s->p->nodes[node].opt_v[which];
    if (t < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    return bt_tensor_ptr(s, t);
}

static int *frac_slot(bt_session *s, int node, bt_frac_kind kind, int which)
{
    bt_fixed_state *fx = &s->fx;
    if (!node_ok(s, node, which)) return NULL;
    switch (kind) {
    case BT_FRAC_OUT: return &fx->out_frac[node];
    case BT_FRAC_DOUT: return &fx->dout_frac[node];
    case BT_FRAC_WQ: return &fx->wq_frac[node];
    case BT_FRAC_PARAM: return s->p->nodes[node].param[which] >= 0 ? &fx->param_frac[node][which] : NULL;
    case BT_FRAC_GRAD: return s->p->nodes[node].param[which] >= 0 ? &fx->grad_frac[node][which] : NULL;
    case BT_FRAC_MOM: return s->p->nodes[node].param[which] >= 0 ? &fx->mom_frac[node][which] : NULL;
    default: return NULL;
    }
}

int bt_session_frac(const bt_session *s, int node, bt_frac_kind kind, int which)
{
    const int *f;
    if (!s || s->dtype != BT_DTYPE_FIXED) return 0;
    f = frac_slot((bt_session *)s, node, kind, which);
    return f ? *f : 0;
}

bt_status bt_session_set_frac(bt_session *s, int node, bt_frac_kind kind, int which, int frac)
{
    int *f;
    if (!s) return BT_ERR_NULL_POINTER;
    if (s->dtype != BT_DTYPE_FIXED) return BT_ERR_UNSUPPORTED;
    f = frac_slot(s, node, kind, which);
    if (!f || frac < BT_Q_FRAC_MIN || frac > BT_Q_FRAC_MAX) return BT_ERR_BAD_PARAM;
    *f = frac;
    return BT_OK;
}

bt_q_stats bt_session_stats(const bt_session *s, int node, bt_frac_kind kind)
{
    bt_q_stats z;
    z.saturated = 0; z.absmax = 0;
    if (!s || s->dtype != BT_DTYPE_FIXED || node < 0 || node >= s->g->n_nodes) return z;
    if (kind == BT_FRAC_OUT) return s->fx.out_st[node];
    if (kind == BT_FRAC_DOUT) return s->fx.dout_st[node];
    if (kind == BT_FRAC_GRAD) return s->fx.grad_st[node][0];
    return z;
}

size_t bt_session_n_trainable(const bt_session *s)
{
    size_t n = 0;
    int v, k;
    if (!s) return 0;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (s->p->nodes[v].pgrad[k] >= 0) n += bt_node_param_numel(s->g, v, k);
    return n;
}

bt_status bt_session_set_lr(bt_session *s, float lr)
{
    bt_optim_cfg c;
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    c = s->opt;
    c.lr = lr;
    if ((st = fmt(s)->check(s->g, s->p, &c)) != BT_OK) return st;
    s->opt = c;
    fmt(s)->opt_changed(s);
    return BT_OK;
}

bt_status bt_session_set_adapt(bt_session *s, int adapt)
{
    if (!s) return BT_ERR_NULL_POINTER;
    s->adapt = adapt ? 1 : 0;
    return BT_OK;
}

/* ------------------------------------------------------------------ one op */
/* The context of node v for a pass: its tensors from the plan, then the
 * format's scales. `out` overrides the forward's output (a recompute). */
static void node_ctx(bt_session *s, bt_op_ctx *c, int v, int rows, int train, bt_ctx_mode mode, void *out)
{
    const bt_node *nd = &s->g->nodes[v];
    const bt_plan_node *pn = &s->p->nodes[v];
    int k;
    memset(c, 0, sizeof *c);
    c->g = s->g; c->node = v; c->rows = rows; c->train = train; c->dtype = s->dtype;
    c->rng = &s->rng;
    for (k = 0; k < nd->n_inputs; ++k) {
        c->in[k] = bt_tensor_ptr(s, mode == BT_CTX_BACKWARD ? pn->bwd_in[k] : s->p->nodes[nd->inputs[k]].out);
        if (mode == BT_CTX_BACKWARD) c->din[k] = bt_tensor_ptr(s, pn->din[k]);
    }
    c->out = out ? out : bt_tensor_ptr(s, pn->out);
    if (mode == BT_CTX_BACKWARD) c->dout = bt_tensor_ptr(s, pn->dout);
    for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
        c->param[k] = bt_tensor_ptr(s, pn->param[k]);
        c->pgrad[k] = bt_tensor_ptr(s, pn->pgrad[k]);
    }
    for (k = 0; k < BT_MAX_SAVED; ++k) c->saved[k] = bt_tensor_ptr(s, pn->saved[k]);
    fmt(s)->fill(s, c, mode);
}

static const bt_op_kernels *kernels_of(const bt_session *s, int v)
{
    return bt_op_get(s->g->nodes[v].kind)->kernels[s->dtype];
}

/* LoRA adapters (graph.h): the kernels see each adapted weight as the
 * effective W + (alpha / r) B A, formed in `weight[j]`; at the backward its
 * gradient lands in `grad[j]` (zeroed) and goes to A and B (and to W when W
 * trains too). The op's kernels know nothing of adapters. */
#if defined(BT_ONLY_FIXED)
/* the planner refuses adapters outside float32: never reached */
static bt_status lora_enter(bt_session *s, bt_op_ctx *c, int v, const int *weight, const int *grad)
{
    (void)s; (void)c; (void)v; (void)weight; (void)grad;
    return BT_ERR_UNSUPPORTED;
}
static bt_status lora_leave(bt_session *s, const bt_op_ctx *c, int v)
{
    (void)s; (void)c; (void)v;
    return BT_ERR_UNSUPPORTED;
}
#else
static float lora_scale(const bt_lora *a) { return a->alpha / (float)a->rank; }

static bt_status lora_enter(bt_session *s, bt_op_ctx *c, int v, const int *weight, const int *grad)
{
    const bt_node *nd = &s->g->nodes[v];
    const int base = bt_node_base_param_count(s->g, v);
    bt_status st;
    int j;
    for (j = 0; j < nd->n_lora; ++j) {
        const bt_lora *a = &nd->lora[j];
        const int rows = bt_node_lora_rows(s->g, v, a->slot);
        const int cols = (int)(bt_node_param_numel(s->g, v, a->slot) / (size_t)rows);
        float *w_eff = (float *)bt_tensor_ptr(s, weight[j]);
        st = bt_lora_merge_f32(w_eff, (const float *)c->param[a->slot], (const float *)c->param[base + 2 * j],
                               (const float *)c->param[base + 2 * j + 1], lora_scale(a), rows, cols, a->rank);
        if (st != BT_OK) return st;
        c->param[a->slot] = w_eff;
        if (grad && grad[j] >= 0) {
            c->pgrad[a->slot] = bt_tensor_ptr(s, grad[j]);
            memset(c->pgrad[a->slot], 0, (size_t)rows * (size_t)cols * sizeof(float));
        }
    }
    return BT_OK;
}

static bt_status lora_leave(bt_session *s, const bt_op_ctx *c, int v)
{
    const bt_node *nd = &s->g->nodes[v];
    const bt_plan_node *pn = &s->p->nodes[v];
    const int base = bt_node_base_param_count(s->g, v);
    bt_status st;
    int j;
    for (j = 0; j < nd->n_lora; ++j) {
        const bt_lora *a = &nd->lora[j];
        const int rows = bt_node_lora_rows(s->g, v, a->slot);
        const int cols = (int)(bt_node_param_numel(s->g, v, a->slot) / (size_t)rows);
        const float *d_eff = (const float *)c->pgrad[a->slot];
        st = bt_lora_backward_f32((float *)c->pgrad[base + 2 * j], (float *)c->pgrad[base + 2 * j + 1], d_eff,
                                  (const float *)c->param[base + 2 * j], (const float *)c->param[base + 2 * j + 1],
                                  lora_scale(a), rows, cols, a->rank);
        if (st != BT_OK) return st;
        if (pn->pgrad[a->slot] >= 0 &&
            (st = bt_accumulate_f32((float *)bt_tensor_ptr(s, pn->pgrad[a->slot]), d_eff, rows * cols)) != BT_OK)
            return st;
    }
    return BT_OK;
}
#endif

/* Forward of node v into its planned output, or (recompute) into `out`. */
static bt_status forward_node(bt_session *s, int v, int rows, int train, bt_ctx_mode mode, void *out)
{
    bt_op_ctx c;
    bt_status st;
    node_ctx(s, &c, v, rows, train, mode, out);
    if (s->g->nodes[v].n_lora && (st = lora_enter(s, &c, v, s->p->nodes[v].lora_weight, NULL)) != BT_OK)
        return st;
    return kernels_of(s, v)->forward(&c);
}

static bt_status backward_node(bt_session *s, int v, int rows)
{
    const bt_node *nd = &s->g->nodes[v];
    const bt_plan_node *pn = &s->p->nodes[v];
    const bt_op_kernels *kern = kernels_of(s, v);
    bt_op_ctx c;
    bt_status st;
    int k;
    for (k = 0; k < nd->n_inputs; ++k)
        if (pn->recompute[k] >= 0 &&
            (st = forward_node(s, pn->recompute[k], rows, 1, BT_CTX_RECOMPUTE, bt_tensor_ptr(s, pn->bwd_in[k]))) !=
                BT_OK)
            return st;
    node_ctx(s, &c, v, rows, 1, BT_CTX_BACKWARD, NULL);
    if (nd->n_lora && (st = lora_enter(s, &c, v, pn->lora_weight_bwd, pn->lora_grad)) != BT_OK) return st;
    /* Weight gradient first: an input gradient may overwrite the activation
     * it reads. Input slots last to first: slot 0's gradient may overwrite
     * this op's output gradient in place (plan.c), so the other slots read it
     * before. */
    if (pn->weight_grad && (st = kern->backward_weight(&c)) != BT_OK) return st;
    if (pn->weight_grad && nd->n_lora && (st = lora_leave(s, &c, v)) != BT_OK) return st;
    for (k = nd->n_inputs - 1; k >= 0; --k) {
        if (!c.din[k]) continue;
        if ((st = kern->backward_input(&c, k)) != BT_OK) return st;
        if (pn->din_accumulate[k]) {
            const int u = nd->inputs[k];
            st = fmt(s)->accumulate(s, u, c.din[k], rows * (int)bt_node_numel(&s->g->nodes[u]));
            if (st != BT_OK) return st;
        }
    }
    return BT_OK;
}

/* ------------------------------------------------------------------ passes */
static bt_status forward_pass(bt_session *s, const void *x, int x_frac, int rows, int train)
{
    int v, n = s->g->n_nodes;
    bt_status st;
    plan_check_step(s, 0);
    if ((st = fmt(s)->load_input(s, x, x_frac, rows)) != BT_OK) { s->error_node = 0; return st; }
    for (v = 1; v < n; ++v) {
        plan_check_step(s, BT_STEP_FWD(v));
        if ((st = forward_node(s, v, rows, train, BT_CTX_FORWARD, NULL)) != BT_OK) { s->error_node = v; return st; }
    }
    return BT_OK;
}

static const uint8_t *sample_ptr(const bt_session *s, const void *x, int start)
{
    const size_t in_bytes = s->dtype == BT_DTYPE_FIXED ? sizeof(int16_t) : sizeof(float);
    return (const uint8_t *)x + (size_t)start * bt_node_numel(&s->g->nodes[0]) * in_bytes;
}

static int any_trainable(const bt_session *s)
{
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (s->p->nodes[v].pgrad[k] >= 0) return 1;
    return 0;
}

/* Checks the batch, then forward and backward over it: the mean gradient
 * lands in the (zeroed) gradient buffers. Nothing is updated. */
static bt_status grad_pass(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch)
{
    const bt_graph *g = s->g;
    const bt_plan *p = s->p;
    const int n = g->n_nodes;
    int v, k, start, train;
    bt_status st;
    s->error_node = -1;
    if (!x || !labels) return BT_ERR_NULL_POINTER;
    if (batch <= 0) return BT_ERR_BAD_SIZE;
    /* Batch statistics need the whole batch in one pass. */
    if (p->has_batchnorm && batch > p->opts.micro_batch) return BT_ERR_SHAPE_MISMATCH;
    if ((st = fmt(s)->begin(s, x, x_frac, labels, batch)) != BT_OK) return st;
    train = any_trainable(s);
    for (v = 0; v < n; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            if (p->nodes[v].pgrad[k] >= 0)
                memset(bt_tensor_ptr(s, p->nodes[v].pgrad[k]), 0, bt_node_param_numel(g, v, k) * 4u);
    s->loss_sum = 0.0f;
    s->fx.loss_sum = 0;
    for (start = 0; start < batch; start += p->opts.micro_batch) {
        const int rows = batch - start < p->opts.micro_batch ? batch - start : p->opts.micro_batch;
        if ((st = forward_pass(s, sample_ptr(s, x, start), x_frac, rows, 1)) != BT_OK) return st;
        plan_check_step(s, BT_STEP_LOSS(n));
        memcpy(bt_tensor_ptr(s, p->labels), labels + start, (size_t)rows * sizeof(int32_t));
        if ((st = fmt(s)->loss(s, rows, batch, train)) != BT_OK) { s->error_node = n - 1; return st; }
        if (!train) continue;
        for (v = n - 1; v >= 1; --v) {
            if (!p->nodes[v].run_backward) continue;
            plan_check_step(s, BT_STEP_BWD(n, v));
            if ((st = backward_node(s, v, rows)) != BT_OK) { s->error_node = v; return st; }
        }
    }
    fmt(s)->loss_done(s, batch);
    return BT_OK;
}

/* The update from whatever the gradient buffers hold (nothing to update
 * without trainable parameters), then the format's bookkeeping. */
static bt_status update_pass(bt_session *s)
{
    bt_status st;
    if (any_trainable(s)) {
        plan_check_step(s, BT_STEP_OPT(s->g->n_nodes));
        if ((st = fmt(s)->grads_ok(s)) != BT_OK) return st;
        if ((st = fmt(s)->update(s)) != BT_OK) return st;
    }
    fmt(s)->after_update(s, 0);
    return BT_OK;
}

bt_status bt_train_step(bt_session *s, bt_value *loss, const void *x, int x_frac, const int32_t *labels, int batch)
{
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    st = grad_pass(s, x, x_frac, labels, batch);
    if (st == BT_OK) st = update_pass(s);
    if (st == BT_OK && loss) *loss = s->last_loss;
    plan_check_end(s);
    return st;
}

bt_status bt_grad_step(bt_session *s, bt_value *loss, const void *x, int x_frac, const int32_t *labels, int batch)
{
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    st = grad_pass(s, x, x_frac, labels, batch);
    if (st == BT_OK && loss) *loss = s->last_loss;
    plan_check_end(s);
    return st;
}

bt_status bt_apply_update(bt_session *s)
{
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    s->error_node = -1;
    st = update_pass(s);
    plan_check_end(s);
    return st;
}

bt_status bt_calibrate(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch, int rounds)
{
    int r;
    bt_status st = BT_OK;
    if (!s || !x || !labels) return BT_ERR_NULL_POINTER;
    if (rounds < 1) return BT_ERR_BAD_SIZE;
    if (s->dtype != BT_DTYPE_FIXED) return BT_OK; /* no scales to set */
    for (r = 0; r < rounds && st == BT_OK; ++r)
        if ((st = grad_pass(s, x, x_frac, labels, batch)) == BT_OK) fmt(s)->after_update(s, 1);
    plan_check_end(s);
    return st;
}

bt_status bt_forward(bt_session *s, void *logits, int *logits_frac, const void *x, int x_frac, int n)
{
    const int classes = s ? s->g->classes : 0, last = s ? s->g->n_nodes - 1 : 0;
    int start;
    bt_status st;
    if (!s || !logits || !x) return BT_ERR_NULL_POINTER;
    s->error_node = -1;
    if (n <= 0) return BT_ERR_BAD_SIZE;
    if ((st = fmt(s)->begin(s, x, x_frac, NULL, n)) != BT_OK) return st;
    for (start = 0; start < n; start += s->p->opts.micro_batch) {
        const int rows = n - start < s->p->opts.micro_batch ? n - start : s->p->opts.micro_batch;
        st = forward_pass(s, sample_ptr(s, x, start), x_frac, rows, 0);
        if (st != BT_OK) { plan_check_end(s); return st; }
        plan_check_step(s, BT_STEP_LOSS(s->g->n_nodes));
        memcpy((uint8_t *)logits + (size_t)start * (size_t)classes * fmt(s)->logit_bytes,
               bt_tensor_ptr(s, s->p->nodes[last].out), (size_t)rows * (size_t)classes * fmt(s)->logit_bytes);
    }
    if (logits_frac) *logits_frac = bt_session_frac(s, bt_tensor_owner(s->g, last), BT_FRAC_OUT, 0);
    fmt(s)->after_forward(s);
    plan_check_end(s);
    return BT_OK;
}

uint32_t bt_session_checksum(const bt_session *s) { return s ? fmt(s)->checksum(s) : 0; }

uint32_t bt_session_state_checksum(const bt_session *s) { return s ? fmt(s)->state_checksum(s) : 0; }
