/* A session's state as one portable blob (exec.h: bt_session_save_state):
 * everything the next step reads, so that a run can stop and continue
 * elsewhere (another process, the MCU) with the same bits.
 *
 * Layout, every field a little-endian 32-bit word:
 *   magic "BTSS", layout version, dtype, a hash of the graph and the plan
 *   (kinds, shapes, options, trainable flags, tensor sizes: another model's
 *   blob is refused), n_nodes, the payload's word count
 *   step count (2 words), beta1^t, beta2^t (float bits), the generator (4),
 *   the optimizer settings (kind, lr, momentum, weight decay, beta1, beta2,
 *   eps as float bits)
 *   fixed point only, per node: out, dout and wq scales, the two windows and
 *   their counts, per parameter slot the param, grad and momentum scales;
 *   then the saturation count (2 words)
 *   every parameter, then every optimizer buffer, in node and slot order
 *   (float bits or int32 values). */
#include "exec_internal.h"
#include "biotrain/bt_math.h"

#define STATE_MAGIC 0x53535442u /* "BTSS" */
#define STATE_VERSION 1u
#define HEAD_WORDS 6u
#define FIXED_NODE_WORDS (7u + 3u * BT_MAX_PARAMS_PER_NODE)

/* ---------------------------------------------------------------- words */
static void put(uint8_t *b, size_t *at, uint32_t w)
{
    b[*at] = (uint8_t)(w & 0xffu);
    b[*at + 1] = (uint8_t)((w >> 8) & 0xffu);
    b[*at + 2] = (uint8_t)((w >> 16) & 0xffu);
    b[*at + 3] = (uint8_t)((w >> 24) & 0xffu);
    *at += 4;
}

static uint32_t get(const uint8_t *b, size_t *at)
{
    uint32_t w = (uint32_t)b[*at] | ((uint32_t)b[*at + 1] << 8) | ((uint32_t)b[*at + 2] << 16) |
                 ((uint32_t)b[*at + 3] << 24);
    *at += 4;
    return w;
}

static uint32_t fbits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static float bitsf(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* The identity of the model and its plan: what must agree for a blob to fit. */
static uint32_t model_hash(const bt_session *s)
{
    uint32_t h = BT_FNV_INIT;
    int v, k;
    h = bt_fnv_word(h, (uint32_t)s->g->n_nodes);
    for (v = 0; v < s->g->n_nodes; ++v) {
        const bt_node *nd = &s->g->nodes[v];
        const uint8_t *o = (const uint8_t *)&nd->o;
        size_t i;
        h = bt_fnv_word(h, (uint32_t)nd->kind);
        h = bt_fnv_word(h, (uint32_t)nd->n_inputs);
        for (k = 0; k < nd->n_inputs; ++k) h = bt_fnv_word(h, (uint32_t)nd->inputs[k]);
        h = bt_fnv_word(h, (uint32_t)nd->c);
        h = bt_fnv_word(h, (uint32_t)nd->h);
        h = bt_fnv_word(h, (uint32_t)nd->w);
        /* a whole trained node hashes as before masks (1) */
        h = bt_fnv_word(h, (uint32_t)(nd->trainable == BT_TRAIN_ALL ? 1 : nd->trainable));
        for (i = 0; i < sizeof nd->o; ++i) h = bt_fnv_byte(h, o[i]);
        for (k = 0; k < nd->n_lora; ++k) {
            uint32_t bits;
            memcpy(&bits, &nd->lora[k].alpha, sizeof bits);
            h = bt_fnv_word(h, (uint32_t)nd->lora[k].slot);
            h = bt_fnv_word(h, (uint32_t)nd->lora[k].rank);
            h = bt_fnv_word(h, bits);
        }
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const bt_plan_node *pn = &s->p->nodes[v];
            h = bt_fnv_word(h, (uint32_t)(pn->param[k] >= 0));
            h = bt_fnv_word(h, (uint32_t)(pn->pgrad[k] >= 0));
            h = bt_fnv_word(h, (uint32_t)(pn->opt_m[k] >= 0));
            h = bt_fnv_word(h, (uint32_t)(pn->opt_v[k] >= 0));
        }
    }
    h = bt_fnv_word(h, (uint32_t)s->p->opts.optimizer);
    return h;
}

static size_t tensor_words(const bt_session *s)
{
    size_t n = 0;
    int v, k;
    for (v = 0; v < s->g->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const bt_plan_node *pn = &s->p->nodes[v];
            const size_t cnt = bt_node_param_numel(s->g, v, k);
            if (pn->param[k] >= 0) n += cnt;
            if (pn->opt_m[k] >= 0) n += cnt;
            if (pn->opt_v[k] >= 0) n += cnt;
        }
    return n;
}

static size_t payload_words(const bt_session *s)
{
    size_t n = 2u + 2u + 4u + 7u + tensor_words(s);
    if (s->dtype == BT_DTYPE_FIXED) n += (size_t)s->g->n_nodes * FIXED_NODE_WORDS + 2u;
    return n;
}

size_t bt_session_state_bytes(const bt_session *s)
{
    return s ? 4u * (HEAD_WORDS + payload_words(s)) : 0;
}

/* The parameter and optimizer tensors in order (per node and slot: the
 * parameter, its first and its second moment); *idx walks them. */
static int next_tensor(const bt_session *s, int *idx, int *tensor, size_t *cnt)
{
    const int total = s->g->n_nodes * BT_MAX_PARAMS_PER_NODE * 3;
    for (; *idx < total; ++*idx) {
        const int v = *idx / (BT_MAX_PARAMS_PER_NODE * 3), k = (*idx / 3) % BT_MAX_PARAMS_PER_NODE;
        const int which = *idx % 3;
        const bt_plan_node *pn = &s->p->nodes[v];
        const int t = which == 0 ? pn->param[k] : which == 1 ? pn->opt_m[k] : pn->opt_v[k];
        if (t < 0) continue;
        *tensor = t;
        *cnt = bt_node_param_numel(s->g, v, k);
        ++*idx;
        return 1;
    }
    return 0;
}

bt_status bt_session_save_state(const bt_session *s, void *buf, size_t cap, size_t *len)
{
    uint8_t *b = (uint8_t *)buf;
    const size_t need = bt_session_state_bytes(s);
    size_t at = 0, i, cnt;
    int walk = 0;
    int v, k, t;
    if (!s || !buf) return BT_ERR_NULL_POINTER;
    if (cap < need) return BT_ERR_WORKSPACE;
    put(b, &at, STATE_MAGIC);
    put(b, &at, STATE_VERSION);
    put(b, &at, (uint32_t)s->dtype);
    put(b, &at, model_hash(s));
    put(b, &at, (uint32_t)s->g->n_nodes);
    put(b, &at, (uint32_t)payload_words(s));
    put(b, &at, (uint32_t)((uint64_t)s->opt_state.step & 0xffffffffu));
    put(b, &at, (uint32_t)((uint64_t)s->opt_state.step >> 32));
    put(b, &at, fbits(s->opt_state.beta1_pow));
    put(b, &at, fbits(s->opt_state.beta2_pow));
    put(b, &at, (uint32_t)(s->rng.state & 0xffffffffu));
    put(b, &at, (uint32_t)(s->rng.state >> 32));
    put(b, &at, (uint32_t)(s->rng.inc & 0xffffffffu));
    put(b, &at, (uint32_t)(s->rng.inc >> 32));
    put(b, &at, (uint32_t)s->opt.kind);
    put(b, &at, fbits(s->opt.lr));
    put(b, &at, fbits(s->opt.momentum));
    put(b, &at, fbits(s->opt.weight_decay));
    put(b, &at, fbits(s->opt.beta1));
    put(b, &at, fbits(s->opt.beta2));
    put(b, &at, fbits(s->opt.eps));
    if (s->dtype == BT_DTYPE_FIXED) {
        const bt_fixed_state *fx = &s->fx;
        for (v = 0; v < s->g->n_nodes; ++v) {
            put(b, &at, (uint32_t)fx->out_frac[v]);
            put(b, &at, (uint32_t)fx->dout_frac[v]);
            put(b, &at, (uint32_t)fx->wq_frac[v]);
            put(b, &at, fx->out_win[v]);
            put(b, &at, fx->dout_win[v]);
            put(b, &at, fx->out_win_n[v]);
            put(b, &at, fx->dout_win_n[v]);
            for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
                put(b, &at, (uint32_t)fx->param_frac[v][k]);
                put(b, &at, (uint32_t)fx->grad_frac[v][k]);
                put(b, &at, (uint32_t)fx->mom_frac[v][k]);
            }
        }
        put(b, &at, (uint32_t)(fx->saturated_total & 0xffffffffu));
        put(b, &at, (uint32_t)(fx->saturated_total >> 32));
    }
    while (next_tensor(s, &walk, &t, &cnt)) {
        const uint8_t *src = (const uint8_t *)bt_tensor_ptr(s, t);
        for (i = 0; i < cnt; ++i) {
            uint32_t word;
            memcpy(&word, src + 4 * i, 4); /* float bits or int32: the same four bytes */
            put(b, &at, word);
        }
    }
    if (len) *len = at;
    return BT_OK;
}

static int frac_ok(uint32_t w)
{
    const int f = (int)(int32_t)w;
    return f >= BT_Q_FRAC_MIN && f <= BT_Q_FRAC_MAX;
}

bt_status bt_session_load_state(bt_session *s, const void *buf, size_t len)
{
    const uint8_t *b = (const uint8_t *)buf;
    size_t at = 0, i, cnt, body;
    int walk = 0;
    int v, k, t;
    bt_optim_cfg opt;
    uint32_t lo, hi;
    if (!s || !buf) return BT_ERR_NULL_POINTER;
    /* 1. the whole blob is checked before anything is written */
    if (len < 4u * HEAD_WORDS) return BT_ERR_CORRUPT;
    if (get(b, &at) != STATE_MAGIC || get(b, &at) != STATE_VERSION) return BT_ERR_CORRUPT;
    if (get(b, &at) != (uint32_t)s->dtype) return BT_ERR_SHAPE_MISMATCH;
    if (get(b, &at) != model_hash(s) || get(b, &at) != (uint32_t)s->g->n_nodes) return BT_ERR_SHAPE_MISMATCH;
    if (get(b, &at) != (uint32_t)payload_words(s) || len != bt_session_state_bytes(s)) return BT_ERR_CORRUPT;
    body = at;
    at += 4u * 8u;
    opt = s->opt;
    opt.kind = (bt_optim_kind)get(b, &at);
    opt.lr = bitsf(get(b, &at));
    opt.momentum = bitsf(get(b, &at));
    opt.weight_decay = bitsf(get(b, &at));
    opt.beta1 = bitsf(get(b, &at));
    opt.beta2 = bitsf(get(b, &at));
    opt.eps = bitsf(get(b, &at));
    if (opt.kind != s->opt.kind) return BT_ERR_SHAPE_MISMATCH;
    if (bt_exec_format_for(s->dtype)->check(s->g, s->p, &opt) != BT_OK)
        return BT_ERR_CORRUPT;
    if (s->dtype == BT_DTYPE_FIXED) {
        for (v = 0; v < s->g->n_nodes; ++v) {
            if (!frac_ok(get(b, &at)) || !frac_ok(get(b, &at)) || !frac_ok(get(b, &at))) return BT_ERR_CORRUPT;
            at += 8u; /* windows: any value */
            if (get(b, &at) > 255u || get(b, &at) > 255u) return BT_ERR_CORRUPT;
            for (k = 0; k < 3 * BT_MAX_PARAMS_PER_NODE; ++k)
                if (!frac_ok(get(b, &at))) return BT_ERR_CORRUPT;
        }
        at += 8u;
    } else {
        /* float parameters and moments must be finite */
        size_t at2 = at;
        while (next_tensor(s, &walk, &t, &cnt))
            for (i = 0; i < cnt; ++i)
                if (!bt_isfinitef(bitsf(get(b, &at2)))) return BT_ERR_CORRUPT;
        walk = 0;
    }
    /* 2. write */
    at = body;
    lo = get(b, &at);
    hi = get(b, &at);
    s->opt_state.step = (unsigned long)(((uint64_t)hi << 32) | lo);
    s->opt_state.beta1_pow = bitsf(get(b, &at));
    s->opt_state.beta2_pow = bitsf(get(b, &at));
    lo = get(b, &at);
    hi = get(b, &at);
    s->rng.state = ((uint64_t)hi << 32) | lo;
    lo = get(b, &at);
    hi = get(b, &at);
    s->rng.inc = ((uint64_t)hi << 32) | lo;
    at += 4u * 7u;
    s->opt = opt;
    bt_exec_format_for(s->dtype)->opt_changed(s);
    if (s->dtype == BT_DTYPE_FIXED) {
        bt_fixed_state *fx = &s->fx;
        for (v = 0; v < s->g->n_nodes; ++v) {
            fx->out_frac[v] = (int)(int32_t)get(b, &at);
            fx->dout_frac[v] = (int)(int32_t)get(b, &at);
            fx->wq_frac[v] = (int)(int32_t)get(b, &at);
            fx->out_win[v] = get(b, &at);
            fx->dout_win[v] = get(b, &at);
            fx->out_win_n[v] = (uint8_t)get(b, &at);
            fx->dout_win_n[v] = (uint8_t)get(b, &at);
            for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
                fx->param_frac[v][k] = (int)(int32_t)get(b, &at);
                fx->grad_frac[v][k] = (int)(int32_t)get(b, &at);
                fx->mom_frac[v][k] = (int)(int32_t)get(b, &at);
            }
        }
        lo = get(b, &at);
        hi = get(b, &at);
        fx->saturated_total = ((uint64_t)hi << 32) | lo;
    }
    while (next_tensor(s, &walk, &t, &cnt)) {
        uint8_t *dst = (uint8_t *)bt_tensor_ptr(s, t);
        for (i = 0; i < cnt; ++i) {
            const uint32_t word = get(b, &at);
            memcpy(dst + 4 * i, &word, 4);
        }
    }
    return BT_OK;
}
