/* The float32 number format of the executor (exec_internal.h): the input
 * copied in, softmax cross-entropy, SGD or Adam, a finite check before any
 * update. */
#include "exec_internal.h"
#include "biotrain/kernels.h"
#include "biotrain/bt_math.h"

/* Finite check by the bits, inline: it runs over every input value of a step. */
static int finite_bits(float x)
{
    uint32_t u;
    memcpy(&u, &x, sizeof u);
    return (u & 0x7f800000u) != 0x7f800000u;
}

static float *tf(const bt_session *s, int t) { return (float *)bt_tensor_ptr(s, t); }

static bt_status check(const bt_graph *g, const bt_plan *p, const bt_optim_cfg *opt)
{
    bt_status st;
    (void)g;
    if ((st = bt_optim_check(opt)) != BT_OK) return st;
    if (opt->kind == BT_OPTIM_SGD && opt->momentum != 0.0f && !p->opts.momentum) return BT_ERR_BAD_PARAM;
    return BT_OK;
}

static void setup(bt_session *s) { (void)s; }
static void opt_changed(bt_session *s) { (void)s; }

static bt_status begin(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch)
{
    const float *xf = (const float *)x;
    size_t i, total = (size_t)batch * bt_node_numel(&s->g->nodes[0]);
    (void)x_frac;
    for (i = 0; i < total; ++i)
        if (!finite_bits(xf[i])) return BT_ERR_NONFINITE;
    if (labels)
        for (i = 0; i < (size_t)batch; ++i)
            if (labels[i] < 0 || labels[i] >= s->g->classes) return BT_ERR_LABEL;
    return BT_OK;
}

static bt_status load_input(bt_session *s, const void *x, int x_frac, int rows)
{
    (void)x_frac;
    memcpy(tf(s, s->p->nodes[0].out), x, (size_t)rows * bt_node_numel(&s->g->nodes[0]) * sizeof(float));
    return BT_OK;
}

static void fill(bt_session *s, bt_op_ctx *c, bt_ctx_mode mode)
{
    (void)s; (void)c; (void)mode; /* float32 kernels take no scales */
}

static bt_status loss(bt_session *s, int rows, int batch, int backward)
{
    const int n = s->g->n_nodes;
    const int32_t *lab = (const int32_t *)bt_tensor_ptr(s, s->p->labels);
    float *probs = tf(s, s->p->probs), mb = 0.0f;
    const float share = (float)rows / (float)batch;
    bt_status st = bt_cross_entropy_forward_f32(&mb, probs, tf(s, s->p->nodes[n - 1].out), lab, rows, s->g->classes);
    if (st != BT_OK) return st;
    s->loss_sum += mb * share;
    if (!backward) return BT_OK;
    return bt_cross_entropy_backward_f32(tf(s, s->p->nodes[n - 1].dout), probs, lab, share, rows, s->g->classes);
}

static void loss_done(bt_session *s, int batch)
{
    (void)batch;
    s->last_loss.f32 = s->loss_sum;
    s->last_loss.q = 0;
    s->last_loss.frac = 0;
}

static bt_status accumulate(bt_session *s, int u, const void *din, int count)
{
    return bt_accumulate_f32(tf(s, s->p->nodes[u].dout), (const float *)din, count);
}

static bt_status grads_ok(const bt_session *s)
{
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].pgrad[k];
            const float *gr;
            size_t cnt;
            if (t < 0) continue;
            gr = tf(s, t);
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i)
                if (!finite_bits(gr[i])) return BT_ERR_DIVERGED;
        }
    return BT_OK;
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
                st = bt_adam_update_f32(tf(s, pn->param[k]), tf(s, pn->opt_m[k]), tf(s, pn->opt_v[k]),
                                        tf(s, pn->pgrad[k]), cnt, &s->opt, &s->opt_state);
            else
                st = bt_sgd_update_f32(tf(s, pn->param[k]), tf(s, pn->opt_m[k]), tf(s, pn->pgrad[k]), cnt, &s->opt);
            if (st != BT_OK) return st;
        }
    }
    return BT_OK;
}

static void after_update(bt_session *s, int immediate) { (void)s; (void)immediate; }
static void after_forward(bt_session *s) { (void)s; }

static uint32_t checksum(const bt_session *s)
{
    uint32_t h = BT_FNV_INIT;
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].param[k];
            const uint8_t *bytes;
            size_t nb;
            if (t < 0) continue;
            bytes = (const uint8_t *)bt_tensor_ptr(s, t);
            nb = bt_node_param_numel(s->g, v, k) * sizeof(float);
            for (i = 0; i < nb; ++i) h = bt_fnv_byte(h, bytes[i]);
        }
    return h;
}

static uint32_t bits_of(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static uint32_t state_checksum(const bt_session *s)
{
    uint32_t h = BT_FNV_INIT;
    int v, k, mo;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k)
            for (mo = 0; mo < 2; ++mo) {
                const int t = mo == 0 ? s->p->nodes[v].opt_m[k] : s->p->nodes[v].opt_v[k];
                const float *m;
                size_t cnt;
                if (t < 0) continue;
                m = tf(s, t);
                cnt = bt_node_param_numel(s->g, v, k);
                for (i = 0; i < cnt; ++i) h = bt_fnv_word(h, bits_of(m[i]));
            }
    h = bt_fnv_u64(h, (uint64_t)s->opt_state.step);
    h = bt_fnv_word(h, bits_of(s->opt_state.beta1_pow));
    h = bt_fnv_word(h, bits_of(s->opt_state.beta2_pow));
    return bt_fnv_rng(h, &s->rng);
}

const bt_exec_format bt_exec_f32 = {
    check, setup, opt_changed, begin, load_input, fill, loss, loss_done, accumulate, grads_ok, update,
    after_update, after_forward, sizeof(float), checksum, state_checksum};
