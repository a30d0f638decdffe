/* The executor: forward, loss, backward in reverse order, optimizer update,
 * over the arena offsets of a plan. The schedule steps named here are the
 * planner's (plan.h), so the plan check below can poison every buffer that
 * the plan says is dead at a step. */
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/bt_math.h"

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
        if (b->first <= step && step <= b->last)
            ASAN_UNPOISON_MEMORY_REGION(s->arena + b->offset, b->bytes);
    }
}
static void plan_check_end(const bt_session *s) { ASAN_UNPOISON_MEMORY_REGION(s->arena, s->arena_bytes); }
#else
#define plan_check_step(s, step) ((void)0)
#define plan_check_end(s) ((void)0)
#endif

/* Finite check by the bits, inline: it runs over every input value of a step. */
static int finite_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) != 0x7f800000u;
}

#define STEP_FWD(i) (i)
#define STEP_LOSS(n) (n)
#define STEP_BWD(n, i) (2 * (n) - (i))
#define STEP_OPT(n) (2 * (n))

static float *tensor_f32(const bt_session *s, int t)
{
    return t < 0 ? NULL : (float *)(void *)(s->arena + bt_plan_offset(s->p, t));
}

static void *tensor_raw(const bt_session *s, int t)
{
    return t < 0 ? NULL : (void *)(s->arena + bt_plan_offset(s->p, t));
}


bt_status bt_session_init(bt_session *s, const bt_graph *g, const bt_plan *p, void *arena,
                          size_t arena_bytes, const bt_optim_cfg *opt, uint64_t seed)
{
    bt_status st;
    if (!s || !g || !p || !arena || !opt) return BT_ERR_NULL_POINTER;
    if (arena_bytes < p->peak_bytes) return BT_ERR_ARENA_TOO_SMALL;
    if ((st = bt_optim_check(opt)) != BT_OK) return st;
    if (opt->kind != p->opts.optimizer) return BT_ERR_BAD_PARAM;
    if (opt->kind == BT_OPTIM_SGD && opt->momentum != 0.0f && !p->opts.momentum) return BT_ERR_BAD_PARAM;
    memset(s, 0, sizeof *s);
    s->g = g; s->p = p;
    s->arena = (uint8_t *)arena;
    s->arena_bytes = arena_bytes;
    s->opt = *opt;
    s->opt_state.beta1_pow = 1.0f;
    s->opt_state.beta2_pow = 1.0f;
    s->error_node = -1;
    bt_rng_seed(&s->rng, seed, 0x62696f7472u);
    /* Only the planned bytes: the plan check proves nothing else is touched. */
    memset(arena, 0, p->peak_bytes);
    return BT_OK;
}

float *bt_session_param(bt_session *s, int node, int which, size_t *numel)
{
    int t;
    if (!s || node < 0 || node >= s->g->n_nodes || which < 0 || which >= BT_MAX_PARAMS_PER_NODE)
        return NULL;
    t = s->p->nodes[node].param[which];
    if (t < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    return tensor_f32(s, t);
}

float *bt_session_grad(bt_session *s, int node, int which, size_t *numel)
{
    int t;
    if (!s || node < 0 || node >= s->g->n_nodes || which < 0 || which >= BT_MAX_PARAMS_PER_NODE)
        return NULL;
    t = s->p->nodes[node].pgrad[which];
    if (t < 0) return NULL;
    if (numel) *numel = bt_node_param_numel(s->g, node, which);
    return tensor_f32(s, t);
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
    if (!s) return BT_ERR_NULL_POINTER;
    if (!(lr >= 0.0f) || !bt_isfinitef(lr)) return BT_ERR_BAD_PARAM;
    s->opt.lr = lr;
    return BT_OK;
}

/* Forward of node v into `out` (its planned output, or a recompute buffer). */
static bt_status forward_node(bt_session *s, int v, int rows, int train, float *out)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[v];
    const bt_plan_node *pn = &s->p->nodes[v];
    const float *in = tensor_f32(s, s->p->nodes[nd->inputs[0]].out);
    int count = rows * (int)bt_node_numel(nd);
    int hw = nd->h * nd->w;
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, v, rows, &cs);
        return bt_conv2d_forward_f32(out, in, tensor_f32(s, pn->param[0]), tensor_f32(s, pn->param[1]), &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_forward_f32(out, in, tensor_f32(s, pn->param[0]), tensor_f32(s, pn->param[1]), rows,
                                     (int)bt_node_numel(&g->nodes[nd->inputs[0]]), nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_forward_f32(out, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd), in,
                                        tensor_f32(s, pn->param[0]), tensor_f32(s, pn->param[1]), rows,
                                        nd->c, hw, nd->o.norm.groups, nd->o.norm.eps);
    case BT_OP_BATCHNORM:
        if (train)
            return bt_batchnorm_forward_train_f32(out, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd),
                                                  tensor_f32(s, pn->param[2]), tensor_f32(s, pn->param[3]),
                                                  in, tensor_f32(s, pn->param[0]), tensor_f32(s, pn->param[1]),
                                                  rows, nd->c, hw, nd->o.norm.momentum, nd->o.norm.eps);
        return bt_batchnorm_forward_eval_f32(out, in, tensor_f32(s, pn->param[2]), tensor_f32(s, pn->param[3]),
                                             tensor_f32(s, pn->param[0]), tensor_f32(s, pn->param[1]), rows,
                                             nd->c, hw, nd->o.norm.eps);
    case BT_OP_RELU:
        if (train && pn->mask >= 0)
            return bt_relu_forward_mask_f32(out, (uint32_t *)tensor_raw(s, pn->mask), in, count);
        return bt_relu_forward_f32(out, in, count);
    case BT_OP_ELU: return bt_elu_forward_f32(out, in, count, nd->o.alpha);
    case BT_OP_GELU: return bt_gelu_forward_f32(out, in, count);
    case BT_OP_AVGPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, v, rows, &ps);
        return bt_avgpool2d_forward_f32(out, in, &ps);
    }
    case BT_OP_MAXPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, v, rows, &ps);
        return bt_maxpool2d_forward_f32(out, (int32_t *)tensor_raw(s, pn->argmax), in, &ps);
    }
    case BT_OP_GLOBAL_AVGPOOL: {
        const bt_node *src = &g->nodes[nd->inputs[0]];
        return bt_global_avgpool_forward_f32(out, in, rows, src->c, src->h * src->w);
    }
    case BT_OP_ADD:
        return bt_add_forward_f32(out, in, tensor_f32(s, s->p->nodes[nd->inputs[1]].out), count);
    case BT_OP_FLATTEN:
        return BT_OK; /* a view: the planner gave it its input's buffer */
    case BT_OP_DROPOUT:
        if (train && nd->o.p > 0.0f)
            return bt_dropout_forward_f32(out, (uint8_t *)tensor_raw(s, pn->mask), in, count, nd->o.p, &s->rng);
        if (out != in) memmove(out, in, (size_t)count * sizeof(float));
        return BT_OK;
    default:
        return BT_ERR_UNSUPPORTED;
    }
}

/* The input gradient of slot k of node c, written to `din`. */
static bt_status backward_input(bt_session *s, int c, int k, float *din, int rows)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    const bt_node *src = &g->nodes[nd->inputs[k]];
    const float *dout = tensor_f32(s, pn->dout);
    const float *in = tensor_f32(s, pn->bwd_in[k]);
    const float *out = tensor_f32(s, pn->out);
    int count = rows * (int)bt_node_numel(nd);
    int hw = nd->h * nd->w;
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, c, rows, &cs);
        return bt_conv2d_backward_input_f32(din, dout, tensor_f32(s, pn->param[0]), &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_backward_input_f32(din, dout, tensor_f32(s, pn->param[0]), rows,
                                            (int)bt_node_numel(src), nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_backward_input_f32(din, dout, in, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd),
                                               tensor_f32(s, pn->param[0]), rows, nd->c, hw, nd->o.norm.groups);
    case BT_OP_BATCHNORM:
        return bt_batchnorm_backward_input_f32(din, dout, in, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd),
                                               tensor_f32(s, pn->param[0]), rows, nd->c, hw);
    case BT_OP_RELU:
        return bt_relu_backward_mask_f32(din, dout, (const uint32_t *)tensor_raw(s, pn->mask), count);
    case BT_OP_ELU: return bt_elu_backward_f32(din, dout, out, count, nd->o.alpha);
    case BT_OP_GELU: return bt_gelu_backward_f32(din, dout, in, count);
    case BT_OP_AVGPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, c, rows, &ps);
        return bt_avgpool2d_backward_f32(din, dout, &ps);
    }
    case BT_OP_MAXPOOL2D: {
        bt_pool2d_shape ps;
        bt_node_pool2d_shape(g, c, rows, &ps);
        return bt_maxpool2d_backward_f32(din, dout, (const int32_t *)tensor_raw(s, pn->argmax), &ps);
    }
    case BT_OP_GLOBAL_AVGPOOL:
        return bt_global_avgpool_backward_f32(din, dout, rows, src->c, src->h * src->w);
    case BT_OP_ADD:
        return bt_add_backward_f32(din, NULL, dout, count);
    case BT_OP_FLATTEN:
        if (din != dout) memmove(din, dout, (size_t)count * sizeof(float));
        return BT_OK;
    case BT_OP_DROPOUT:
        if (nd->o.p > 0.0f)
            return bt_dropout_backward_f32(din, dout, (const uint8_t *)tensor_raw(s, pn->mask), count, nd->o.p);
        if (din != dout) memmove(din, dout, (size_t)count * sizeof(float));
        return BT_OK;
    default:
        return BT_ERR_UNSUPPORTED;
    }
}

static bt_status backward_weight(bt_session *s, int c, int rows)
{
    const bt_graph *g = s->g;
    const bt_node *nd = &g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    const float *dout = tensor_f32(s, pn->dout);
    const float *in = tensor_f32(s, pn->bwd_in[0]);
    int hw = nd->h * nd->w;
    switch (nd->kind) {
    case BT_OP_CONV2D: {
        bt_conv2d_shape cs;
        bt_node_conv2d_shape(g, c, rows, &cs);
        return bt_conv2d_backward_weight_f32(tensor_f32(s, pn->pgrad[0]), tensor_f32(s, pn->pgrad[1]), dout,
                                             in, &cs);
    }
    case BT_OP_LINEAR:
        return bt_linear_backward_weight_f32(tensor_f32(s, pn->pgrad[0]), tensor_f32(s, pn->pgrad[1]), dout, in,
                                             rows, (int)bt_node_numel(&g->nodes[nd->inputs[0]]),
                                             nd->o.linear.out_f);
    case BT_OP_GROUPNORM:
        return bt_groupnorm_backward_weight_f32(tensor_f32(s, pn->pgrad[0]), tensor_f32(s, pn->pgrad[1]), dout,
                                                in, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd), rows,
                                                nd->c, hw, nd->o.norm.groups);
    case BT_OP_BATCHNORM:
        return bt_batchnorm_backward_weight_f32(tensor_f32(s, pn->pgrad[0]), tensor_f32(s, pn->pgrad[1]), dout,
                                                in, tensor_f32(s, pn->mean), tensor_f32(s, pn->rstd), rows,
                                                nd->c, hw);
    default:
        return BT_OK;
    }
}

static bt_status backward_node(bt_session *s, int c, int rows)
{
    const bt_node *nd = &s->g->nodes[c];
    const bt_plan_node *pn = &s->p->nodes[c];
    bt_status st;
    int k;
    for (k = 0; k < nd->n_inputs; ++k)
        if (pn->recompute[k] >= 0 &&
            (st = forward_node(s, pn->recompute[k], rows, 1, tensor_f32(s, pn->bwd_in[k]))) != BT_OK)
            return st;
    /* Weight gradient first: an input gradient may overwrite the activation it reads. */
    if (pn->weight_grad && (st = backward_weight(s, c, rows)) != BT_OK) return st;
    for (k = 0; k < nd->n_inputs; ++k) {
        float *din = tensor_f32(s, pn->din[k]);
        if (!din) continue;
        if ((st = backward_input(s, c, k, din, rows)) != BT_OK) return st;
        if (pn->din_accumulate[k]) {
            const bt_node *src = &s->g->nodes[nd->inputs[k]];
            st = bt_accumulate_f32(tensor_f32(s, s->p->nodes[nd->inputs[k]].dout), din,
                                   rows * (int)bt_node_numel(src));
            if (st != BT_OK) return st;
        }
    }
    return BT_OK;
}

static bt_status check_batch(const bt_session *s, const float *x, const int32_t *labels, int batch)
{
    size_t i, total;
    if (batch <= 0) return BT_ERR_BAD_SIZE;
    total = (size_t)batch * bt_node_numel(&s->g->nodes[0]);
    for (i = 0; i < total; ++i)
        if (!finite_bits(x[i])) return BT_ERR_NONFINITE;
    if (labels)
        for (i = 0; i < (size_t)batch; ++i)
            if (labels[i] < 0 || labels[i] >= s->g->classes) return BT_ERR_LABEL;
    return BT_OK;
}

static bt_status forward_pass(bt_session *s, const float *x, int rows, int train)
{
    int v, n = s->g->n_nodes;
    bt_status st;
    plan_check_step(s, 0);
    memcpy(tensor_f32(s, s->p->nodes[0].out), x, (size_t)rows * bt_node_numel(&s->g->nodes[0]) * sizeof(float));
    for (v = 1; v < n; ++v) {
        plan_check_step(s, STEP_FWD(v));
        st = forward_node(s, v, rows, train, tensor_f32(s, s->p->nodes[v].out));
        if (st != BT_OK) { s->error_node = v; return st; }
    }
    return BT_OK;
}

static int grads_finite(const bt_session *s)
{
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            int t = s->p->nodes[v].pgrad[k];
            const float *gr;
            size_t cnt;
            if (t < 0) continue;
            gr = tensor_f32(s, t);
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i)
                if (!finite_bits(gr[i])) return 0;
        }
    return 1;
}

static bt_status update(bt_session *s)
{
    int v, k;
    bt_status st;
    s->opt_state.step++;
    s->opt_state.beta1_pow *= s->opt.beta1;
    s->opt_state.beta2_pow *= s->opt.beta2;
    for (v = 0; v < s->g->n_nodes; ++v) {
        const bt_plan_node *pn = &s->p->nodes[v];
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            size_t cnt;
            if (pn->pgrad[k] < 0) continue;
            cnt = bt_node_param_numel(s->g, v, k);
            if (s->opt.kind == BT_OPTIM_ADAM)
                st = bt_adam_update_f32(tensor_f32(s, pn->param[k]), tensor_f32(s, pn->opt_m[k]),
                                        tensor_f32(s, pn->opt_v[k]), tensor_f32(s, pn->pgrad[k]), cnt, &s->opt,
                                        &s->opt_state);
            else
                st = bt_sgd_update_f32(tensor_f32(s, pn->param[k]), tensor_f32(s, pn->opt_m[k]),
                                       tensor_f32(s, pn->pgrad[k]), cnt, &s->opt);
            if (st != BT_OK) return st;
        }
    }
    return BT_OK;
}

/* Forward and backward over the batch: the mean gradient lands in the
 * gradient buffers (zeroed first). Nothing is updated. *any_trainable says
 * whether there was any gradient to compute. */
static bt_status grad_pass(bt_session *s, float *loss, const float *x, const int32_t *labels, int batch,
                           int *any_trainable_out)
{
    const bt_graph *g;
    const bt_plan *p;
    int n, v, k, start, any_trainable = 0;
    float total = 0.0f;
    bt_status st;
    *any_trainable_out = 0;
    if (!s || !x || !labels) return BT_ERR_NULL_POINTER;
    g = s->g; p = s->p; n = g->n_nodes;
    s->error_node = -1;
    if (batch <= 0) return BT_ERR_BAD_SIZE;
    /* Batch statistics need the whole batch in one pass. */
    if (p->has_batchnorm && batch > p->opts.micro_batch) return BT_ERR_SHAPE_MISMATCH;
    if ((st = check_batch(s, x, labels, batch)) != BT_OK) return st;

    for (v = 0; v < n; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            int t = p->nodes[v].pgrad[k];
            if (t < 0) continue;
            any_trainable = *any_trainable_out = 1;
            memset(tensor_f32(s, t), 0, bt_node_param_numel(g, v, k) * sizeof(float));
        }

    for (start = 0; start < batch; start += p->opts.micro_batch) {
        int rows = batch - start < p->opts.micro_batch ? batch - start : p->opts.micro_batch;
        float mb_loss = 0.0f;
        const float *xs = x + (size_t)start * bt_node_numel(&g->nodes[0]);
        int32_t *lab = (int32_t *)tensor_raw(s, p->labels);
        float *probs = tensor_f32(s, p->probs);
        if ((st = forward_pass(s, xs, rows, 1)) != BT_OK) return st;
        plan_check_step(s, STEP_LOSS(n));
        memcpy(lab, labels + start, (size_t)rows * sizeof(int32_t));
        st = bt_cross_entropy_forward_f32(&mb_loss, probs, tensor_f32(s, p->nodes[n - 1].out), lab, rows,
                                          g->classes);
        if (st != BT_OK) return st;
        total += mb_loss * ((float)rows / (float)batch);
        if (!any_trainable) continue;
        st = bt_cross_entropy_backward_f32(tensor_f32(s, p->nodes[n - 1].dout), probs, lab,
                                           (float)rows / (float)batch, rows, g->classes);
        if (st != BT_OK) return st;
        for (v = n - 1; v >= 1; --v) {
            if (!p->nodes[v].run_backward) continue;
            plan_check_step(s, STEP_BWD(n, v));
            if ((st = backward_node(s, v, rows)) != BT_OK) { s->error_node = v; return st; }
        }
    }
    s->last_loss = total;
    if (loss) *loss = total;
    return BT_OK;
}

/* The update from whatever the gradient buffers hold. A non-finite gradient
 * (a diverging run) leaves the weights as they were. */
static bt_status update_pass(bt_session *s)
{
    plan_check_step(s, STEP_OPT(s->g->n_nodes));
    if (!grads_finite(s)) return BT_ERR_DIVERGED;
    return update(s);
}

bt_status bt_train_step(bt_session *s, float *loss, const float *x, const int32_t *labels, int batch)
{
    int any_trainable;
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    st = grad_pass(s, loss, x, labels, batch, &any_trainable);
    if (st == BT_OK && any_trainable) st = update_pass(s);
    plan_check_end(s);
    return st;
}

bt_status bt_grad_step(bt_session *s, float *loss, const float *x, const int32_t *labels, int batch)
{
    int any_trainable;
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    st = grad_pass(s, loss, x, labels, batch, &any_trainable);
    plan_check_end(s);
    return st;
}

bt_status bt_apply_update(bt_session *s)
{
    bt_status st;
    if (!s) return BT_ERR_NULL_POINTER;
    s->error_node = -1;
    if (bt_session_n_trainable(s) == 0) return BT_OK;
    st = update_pass(s);
    plan_check_end(s);
    return st;
}

bt_status bt_forward(bt_session *s, float *logits, const float *x, int n)
{
    int start, last;
    bt_status st;
    if (!s || !logits || !x) return BT_ERR_NULL_POINTER;
    s->error_node = -1;
    if ((st = check_batch(s, x, NULL, n)) != BT_OK) return st;
    last = s->g->n_nodes - 1;
    for (start = 0; start < n; start += s->p->opts.micro_batch) {
        int rows = n - start < s->p->opts.micro_batch ? n - start : s->p->opts.micro_batch;
        st = forward_pass(s, x + (size_t)start * bt_node_numel(&s->g->nodes[0]), rows, 0);
        if (st != BT_OK) { plan_check_end(s); return st; }
        plan_check_step(s, STEP_LOSS(s->g->n_nodes));
        memcpy(logits + (size_t)start * (size_t)s->g->classes, tensor_f32(s, s->p->nodes[last].out),
               (size_t)rows * (size_t)s->g->classes * sizeof(float));
    }
    plan_check_end(s);
    return BT_OK;
}

uint32_t bt_session_param_checksum(const bt_session *s)
{
    uint32_t h = 2166136261u;
    int v, k;
    size_t i;
    if (!s) return 0;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            int t = s->p->nodes[v].param[k];
            const uint8_t *bytes;
            size_t nb;
            if (t < 0) continue;
            bytes = s->arena + bt_plan_offset(s->p, t);
            nb = bt_node_param_numel(s->g, v, k) * sizeof(float);
            for (i = 0; i < nb; ++i) { h ^= bytes[i]; h *= 16777619u; }
        }
    return h;
}
