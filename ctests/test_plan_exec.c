/* Graph, planner and executor in plain C.
 * Built with -DBT_PLAN_CHECK under AddressSanitizer, the executor poisons every
 * arena byte the plan says is dead at each schedule step, so any op reading or
 * writing outside its planned tensors is a sanitizer report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/exec.h"
#include "bt_test.h"

static bt_graph g;
static bt_plan plan;

static unsigned lcg = 12345u;
static float frand(void)
{
    lcg = lcg * 1103515245u + 12345u;
    return ((float)((lcg >> 8) & 0xffff) / 65536.0f - 0.5f) * 2.0f;
}

static void build_mibminet(int norm_batch, int channels, int samples)
{
    bt_conv2d_opts spatial = {8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    bt_conv2d_opts temporal = {8, 1, 64, 1, 1, 0, 0, 1, 1, 8, 0};
    bt_conv2d_opts dw = {8, 1, 16, 1, 1, 0, 0, 1, 1, 8, 0};
    bt_conv2d_opts pw = {8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    bt_norm_opts nrm = {1, 1, 1e-5f, 0.1f};
    bt_pool_opts pool = {1, 8, 1, 8, 0, 0};
    bt_linear_opts fc = {2, 1};
    int x;
    spatial.k_h = channels;
    CHECK(bt_graph_init(&g, 1, channels, samples) == BT_OK);
#define NORM(name) (norm_batch ? bt_graph_batchnorm(&g, &x, x, &nrm, name) : bt_graph_groupnorm(&g, &x, x, &nrm, name))
    CHECK(bt_graph_conv2d(&g, &x, 0, &spatial, "spatial") == BT_OK);
    CHECK(NORM("norm1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &temporal, "temporal") == BT_OK);
    CHECK(NORM("norm2") == BT_OK);
    CHECK(bt_graph_relu(&g, &x, x, "relu1") == BT_OK);
    CHECK(bt_graph_avgpool2d(&g, &x, x, &pool, "pool1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &dw, "depthwise") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &pw, "pointwise") == BT_OK);
    CHECK(NORM("norm3") == BT_OK);
    CHECK(bt_graph_relu(&g, &x, x, "relu2") == BT_OK);
    CHECK(bt_graph_avgpool2d(&g, &x, x, &pool, "pool2") == BT_OK);
    CHECK(bt_graph_flatten(&g, &x, x, "flatten") == BT_OK);
    CHECK(bt_graph_linear(&g, &x, x, &fc, "classifier") == BT_OK);
    CHECK(bt_graph_finish(&g) == BT_OK);
#undef NORM
}

/* A residual block with a fan-out (c1 feeds both the branch and the add), maxpool, dropout. */
static void build_residual(void)
{
    bt_conv2d_opts c = {8, 1, 3, 1, 1, 0, 1, 1, 1, 1, 1};
    bt_norm_opts nrm = {2, 1, 1e-5f, 0.1f};
    bt_pool_opts mp = {1, 4, 1, 4, 0, 0};
    bt_linear_opts fc = {3, 1};
    int a, b, s;
    CHECK(bt_graph_init(&g, 4, 1, 64) == BT_OK);
    CHECK(bt_graph_conv2d(&g, &a, 0, &c, "c1") == BT_OK);
    CHECK(bt_graph_groupnorm(&g, &b, a, &nrm, "n1") == BT_OK);
    CHECK(bt_graph_gelu(&g, &b, b, "g1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &b, b, &c, "c2") == BT_OK);
    CHECK(bt_graph_add(&g, &s, a, b, "skip") == BT_OK);
    CHECK(bt_graph_elu(&g, &s, s, 1.0f, "e1") == BT_OK);
    CHECK(bt_graph_dropout(&g, &s, s, 0.25f, "drop") == BT_OK);
    CHECK(bt_graph_maxpool2d(&g, &s, s, &mp, "mp") == BT_OK);
    CHECK(bt_graph_flatten(&g, &s, s, "flat") == BT_OK);
    CHECK(bt_graph_linear(&g, &s, s, &fc, "fc") == BT_OK);
    CHECK(bt_graph_finish(&g) == BT_OK);
}

static void init_params(bt_session *s)
{
    int v, k;
    for (v = 0; v < g.n_nodes; ++v)
        for (k = 0; k < 4; ++k) {
            size_t n = 0, i;
            float *p = bt_session_param(s, v, k, &n);
            if (!p) continue;
            for (i = 0; i < n; ++i) p[i] = (k == 3) ? 1.0f : (k == 0 && g.nodes[v].kind != BT_OP_CONV2D && g.nodes[v].kind != BT_OP_LINEAR) ? 1.0f : 0.3f * frand();
        }
}

static void copy_params(bt_session *dst, bt_session *src)
{
    int v, k;
    for (v = 0; v < g.n_nodes; ++v)
        for (k = 0; k < 4; ++k) {
            size_t n = 0;
            float *p = bt_session_param(src, v, k, &n);
            if (p) memcpy(bt_session_param(dst, v, k, NULL), p, n * sizeof(float));
        }
}

/* The state blob, float32: a fresh session (another seed, zero parameters)
 * that loads s's blob holds the same bits and continues with them; a
 * truncated or corrupted blob is refused and changes nothing. */
static void check_state(bt_session *s, const bt_optim_cfg *oc, const float *x, const int32_t *y, int batch)
{
    const size_t need = bt_session_state_bytes(s);
    void *raw;
    uint8_t *arena = (uint8_t *)bt_test_alloc_aligned(plan.peak_bytes, BT_ARENA_ALIGN, &raw);
    uint8_t *blob = (uint8_t *)malloc(need), *again = (uint8_t *)malloc(need);
    const uint32_t nan_bits = 0x7fc00000u, inf_bits = 0x7f800000u;
    bt_session r;
    size_t len = 0;
    bt_value l1, l2;
    CHECK(need > 4u * BT_TEST_W_BODY && need % 4 == 0);
    CHECK(bt_session_state_bytes(NULL) == 0);
    memset(blob, 0xa5, need);
    CHECK_STATUS(bt_session_save_state(s, blob, need - 1, &len), BT_ERR_WORKSPACE);
    CHECK(blob[0] == 0xa5 && blob[need - 1] == 0xa5 && len == 0); /* nothing written */
    CHECK_STATUS(bt_session_save_state(NULL, blob, need, &len), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_session_save_state(s, NULL, need, &len), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_session_save_state(s, blob, need, &len), BT_OK);
    CHECK(len == need);
    CHECK(bt_test_get_word(blob, BT_TEST_W_MAGIC) == 0x53535442u && bt_test_get_word(blob, BT_TEST_W_DTYPE) == (uint32_t)BT_DTYPE_F32);
    CHECK(bt_test_get_word(blob, BT_TEST_W_PAYLOAD) == need / 4 - BT_TEST_HEAD_WORDS);

    CHECK_STATUS(bt_session_init(&r, &g, &plan, arena, plan.peak_bytes, oc, 777), BT_OK);
    CHECK(bt_session_checksum(&r) != bt_session_checksum(s));
    CHECK(bt_session_state_checksum(&r) != bt_session_state_checksum(s));
    /* refused, nothing changed */
    CHECK_STATUS(bt_session_load_state(&r, NULL, need), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_session_load_state(NULL, blob, need), BT_ERR_NULL_POINTER);
    CHECK_REFUSED_LOAD(&r, blob, need, -1, 0, need - 4, BT_ERR_CORRUPT);   /* truncated by a word */
    CHECK_REFUSED_LOAD(&r, blob, need, -1, 0, need - 1, BT_ERR_CORRUPT);   /* by a byte */
    CHECK_REFUSED_LOAD(&r, blob, need, -1, 0, need + 4, BT_ERR_CORRUPT);   /* a word too long */
    CHECK_REFUSED_LOAD(&r, blob, need, -1, 0, 20, BT_ERR_CORRUPT);         /* shorter than the header */
    CHECK_REFUSED_LOAD(&r, blob, need, -1, 0, 0, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_MAGIC, 0x53535443u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_VERSION, 99u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_DTYPE, (uint32_t)BT_DTYPE_FIXED, need, BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_HASH, bt_test_get_word(blob, BT_TEST_W_HASH) ^ 1u, need, BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_PAYLOAD, bt_test_get_word(blob, BT_TEST_W_PAYLOAD) + 1u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_OPT_KIND, oc->kind == BT_OPTIM_SGD ? BT_OPTIM_ADAM : BT_OPTIM_SGD, need,
            BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_LR, nan_bits, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&r, blob, need, BT_TEST_W_BODY, inf_bits, need, BT_ERR_CORRUPT); /* the first parameter */
    CHECK_REFUSED_LOAD(&r, blob, need, (long)(need / 4 - 1), nan_bits, need, BT_ERR_CORRUPT); /* the last word */
    /* the round trip */
    CHECK_STATUS(bt_session_load_state(&r, blob, need), BT_OK);
    CHECK(bt_session_checksum(&r) == bt_session_checksum(s));
    CHECK(bt_session_state_checksum(&r) == bt_session_state_checksum(s));
    CHECK(r.opt_state.step == s->opt_state.step && r.opt_state.beta1_pow == s->opt_state.beta1_pow &&
          r.opt_state.beta2_pow == s->opt_state.beta2_pow);
    CHECK_STATUS(bt_session_save_state(&r, again, need, &len), BT_OK);
    CHECK(len == need && memcmp(again, blob, need) == 0);
    /* and the next step gives the same bits in both */
    CHECK_STATUS(bt_train_step(s, &l1, x, 0, y, batch), BT_OK);
    CHECK_STATUS(bt_train_step(&r, &l2, x, 0, y, batch), BT_OK);
    CHECK(memcmp(&l1.f32, &l2.f32, sizeof l1.f32) == 0);
    CHECK(bt_session_checksum(&r) == bt_session_checksum(s));
    CHECK(bt_session_state_checksum(&r) == bt_session_state_checksum(s));
    free(raw); free(blob); free(again);
}

static void run_training(int batch, int micro, bt_optim_kind kind, const char *what)
{
    bt_plan_opts po;
    bt_optim_cfg oc;
    bt_session s, s2;
    void *raw, *raw2;
    uint8_t *arena, *arena2;
    float *x;
    int32_t *y;
    int i, step, numel = (int)bt_node_numel(&g.nodes[0]);
    bt_value loss, first;
    uint32_t before;
    memset(&po, 0, sizeof po);
    memset(&loss, 0, sizeof loss);
    memset(&first, 0, sizeof first);
    po.micro_batch = micro; po.optimizer = kind; po.momentum = 1; po.reuse = 1; po.dtype = BT_DTYPE_F32;
    oc.kind = kind; oc.lr = kind == BT_OPTIM_ADAM ? 1e-2f : 5e-2f; oc.momentum = kind == BT_OPTIM_SGD ? 0.9f : 0.0f;
    oc.weight_decay = 1e-4f; oc.beta1 = 0.9f; oc.beta2 = 0.999f; oc.eps = 1e-8f;
    CHECK_STATUS(bt_plan_build(&plan, &g, &po), BT_OK);
    arena = (uint8_t *)bt_test_alloc_aligned(plan.peak_bytes, BT_ARENA_ALIGN, &raw);
    arena2 = (uint8_t *)bt_test_alloc_aligned(plan.peak_bytes, BT_ARENA_ALIGN, &raw2);
    x = (float *)malloc(sizeof(float) * (size_t)numel * (size_t)batch);
    y = (int32_t *)malloc(sizeof(int32_t) * (size_t)batch);
    /* an arena one byte short, or misaligned, is refused */
    CHECK_STATUS(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes - 1, &oc, 1), BT_ERR_ARENA_TOO_SMALL);
    CHECK_STATUS(bt_session_init(&s, &g, &plan, arena + 1, plan.peak_bytes, &oc, 1), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes, &oc, 1), BT_OK);
    init_params(&s);
    /* a float32 session has no scales */
    CHECK(bt_session_frac(&s, 1, BT_FRAC_PARAM, 0) == 0);
    CHECK_STATUS(bt_session_set_frac(&s, 1, BT_FRAC_PARAM, 0, 8), BT_ERR_UNSUPPORTED);
    /* a twin session steps through the split API: grad then update */
    CHECK_STATUS(bt_session_init(&s2, &g, &plan, arena2, plan.peak_bytes, &oc, 1), BT_OK);
    copy_params(&s2, &s);
    for (i = 0; i < numel * batch; ++i) x[i] = frand();
    for (i = 0; i < batch; ++i) y[i] = i % g.classes;
    for (step = 0; step < 8; ++step) {
        bt_status st = bt_train_step(&s, &loss, x, 0, y, batch);
        CHECK_STATUS(st, BT_OK);
        if (st != BT_OK) { printf("%s: step failed: %s at node %d\n", what, bt_status_str(st), s.error_node); break; }
        if (step == 0) first = loss;
        {
            bt_value loss2;
            memset(&loss2, 0, sizeof loss2);
            CHECK_STATUS(bt_grad_step(&s2, &loss2, x, 0, y, batch), BT_OK);
            CHECK_STATUS(bt_apply_update(&s2), BT_OK);
            CHECK(loss2.f32 == loss.f32);
            CHECK(bt_session_checksum(&s2) == bt_session_checksum(&s));
            CHECK(bt_session_state_checksum(&s2) == bt_session_state_checksum(&s));
        }
    }
    /* a non-finite gradient is refused by the update and changes nothing */
    {
        int v = 1;
        size_t n = 0;
        uint32_t c2;
        float *gr = NULL;
        CHECK_STATUS(bt_grad_step(&s2, &loss, x, 0, y, batch), BT_OK);
        c2 = bt_session_checksum(&s2);
        while (v < g.n_nodes && !(gr = (float *)bt_session_grad(&s2, v, 0, &n))) ++v; /* the first trainable layer */
        CHECK(gr != NULL && n > 0);
        if (gr) gr[n - 1] = INFINITY;
        CHECK_STATUS(bt_apply_update(&s2), BT_ERR_DIVERGED);
        CHECK(bt_session_checksum(&s2) == c2);
        CHECK(bt_session_grad(&s2, 0, 0, &n) == NULL); /* the input node has no gradient */
        CHECK(bt_session_n_trainable(&s2) > 0);
    }
    CHECK(loss.f32 < first.f32); /* fitting one fixed batch: the loss falls */
    /* bad batches are refused and leave the parameters unchanged */
    before = bt_session_checksum(&s);
    x[3] = NAN;
    CHECK_STATUS(bt_train_step(&s, &loss, x, 0, y, batch), BT_ERR_NONFINITE);
    x[3] = 0.0f;
    y[0] = g.classes;
    CHECK_STATUS(bt_train_step(&s, &loss, x, 0, y, batch), BT_ERR_LABEL);
    y[0] = 0;
    CHECK_STATUS(bt_train_step(&s, &loss, NULL, 0, y, batch), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_train_step(NULL, &loss, x, 0, y, batch), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_grad_step(NULL, &loss, x, 0, y, batch), BT_ERR_NULL_POINTER);
    CHECK_STATUS(bt_apply_update(NULL), BT_ERR_NULL_POINTER);
    CHECK(bt_session_checksum(&s) == before);
    {
        float *logits = (float *)malloc(sizeof(float) * (size_t)g.classes * (size_t)batch);
        CHECK_STATUS(bt_forward(&s, logits, NULL, x, 0, batch), BT_OK);
        for (i = 0; i < g.classes * batch; ++i) CHECK(isfinite(logits[i]));
        free(logits);
    }
    printf("%s: peak %lu B, live peak %lu B, naive %lu B, first loss %.4f, loss after 8 steps %.4f\n", what,
           (unsigned long)plan.peak_bytes, (unsigned long)plan.live_peak_bytes, (unsigned long)plan.naive_bytes,
           (double)first.f32, (double)loss.f32);
    check_state(&s, &oc, x, y, batch);
    free(raw); free(raw2); free(x); free(y);
}

static void set_all_trainable(int t);

/* The generic builder (bt_graph_add_node) gives the graph the typed
 * shorthands give, and refuses a bad node leaving the graph as it was; the
 * op table's names round-trip. */
static void test_generic_graph(void)
{
    static bt_graph g2;
    bt_node_opts conv, nrm, mp, fc, elu, drop;
    bt_plan p1, p2;
    bt_plan_opts po;
    int a, b, s2, ins[2], k, v;
    bt_op_kind found;
    memset(&conv, 0, sizeof conv); memset(&nrm, 0, sizeof nrm); memset(&mp, 0, sizeof mp);
    memset(&fc, 0, sizeof fc); memset(&elu, 0, sizeof elu); memset(&drop, 0, sizeof drop);
    conv.conv.c_out = 8; conv.conv.k_h = 1; conv.conv.k_w = 3; conv.conv.stride_h = 1; conv.conv.stride_w = 1;
    conv.conv.pad_w = 1; conv.conv.dil_h = 1; conv.conv.dil_w = 1; conv.conv.groups = 1; conv.conv.has_bias = 1;
    nrm.norm.groups = 2; nrm.norm.affine = 1; nrm.norm.eps = 1e-5f; nrm.norm.momentum = 0.1f;
    mp.pool.k_h = 1; mp.pool.k_w = 4; mp.pool.stride_h = 1; mp.pool.stride_w = 4;
    fc.linear.out_f = 3; fc.linear.has_bias = 1;
    elu.alpha = 1.0f;
    drop.p = 0.25f;
    build_residual(); /* into g, through the shorthands */
    CHECK_STATUS(bt_graph_init(&g2, 4, 1, 64), BT_OK);
    ins[0] = 0;
    CHECK_STATUS(bt_graph_add_node(&g2, &a, BT_OP_CONV2D, ins, 1, &conv, "c1"), BT_OK);
    ins[0] = a;
    CHECK_STATUS(bt_graph_add_node(&g2, &b, BT_OP_GROUPNORM, ins, 1, &nrm, "n1"), BT_OK);
    ins[0] = b;
    CHECK_STATUS(bt_graph_add_node(&g2, &b, BT_OP_GELU, ins, 1, NULL, "g1"), BT_OK);
    ins[0] = b;
    CHECK_STATUS(bt_graph_add_node(&g2, &b, BT_OP_CONV2D, ins, 1, &conv, "c2"), BT_OK);
    ins[0] = a; ins[1] = b;
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_ADD, ins, 2, NULL, "skip"), BT_OK);
    ins[0] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_ELU, ins, 1, &elu, "e1"), BT_OK);
    ins[0] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_DROPOUT, ins, 1, &drop, "drop"), BT_OK);
    ins[0] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_MAXPOOL2D, ins, 1, &mp, "mp"), BT_OK);
    ins[0] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_FLATTEN, ins, 1, NULL, "flat"), BT_OK);
    /* refused: wrong input count, an input not yet in the graph, the input op, an unknown op */
    ins[0] = s2; ins[1] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &k, BT_OP_LINEAR, ins, 2, &fc, "fc"), BT_ERR_BAD_PARAM);
    ins[0] = g2.n_nodes;
    CHECK_STATUS(bt_graph_add_node(&g2, &k, BT_OP_LINEAR, ins, 1, &fc, "fc"), BT_ERR_BAD_PARAM);
    ins[0] = s2;
    CHECK_STATUS(bt_graph_add_node(&g2, &k, BT_OP_INPUT, ins, 1, NULL, "in"), BT_ERR_UNSUPPORTED);
    CHECK_STATUS(bt_graph_add_node(&g2, &k, BT_OP_COUNT_, ins, 1, NULL, "x"), BT_ERR_UNSUPPORTED);
    CHECK_STATUS(bt_graph_add_node(&g2, &k, BT_OP_LINEAR, NULL, 1, &fc, "fc"), BT_ERR_NULL_POINTER);
    CHECK(g2.n_nodes == g.n_nodes - 1);
    CHECK_STATUS(bt_graph_add_node(&g2, &s2, BT_OP_LINEAR, ins, 1, &fc, "fc"), BT_OK);
    CHECK_STATUS(bt_graph_finish(&g2), BT_OK);
    for (v = 1; v < g2.n_nodes; ++v) bt_graph_set_trainable(&g2, v, 1);
    set_all_trainable(1);
    CHECK(g2.n_nodes == g.n_nodes && g2.classes == g.classes);
    for (v = 0; v < g.n_nodes && v < g2.n_nodes; ++v)
        CHECK(memcmp(&g.nodes[v], &g2.nodes[v], sizeof g.nodes[v]) == 0);
    memset(&po, 0, sizeof po);
    po.micro_batch = 2; po.optimizer = BT_OPTIM_ADAM; po.reuse = 1;
    CHECK_STATUS(bt_plan_build(&p1, &g, &po), BT_OK);
    CHECK_STATUS(bt_plan_build(&p2, &g2, &po), BT_OK);
    CHECK(p1.peak_bytes == p2.peak_bytes && p1.n_tensors == p2.n_tensors && p1.n_buffers == p2.n_buffers);
    /* the op table */
    for (k = 0; k < (int)BT_OP_COUNT_; ++k) {
        const bt_op_desc *d = bt_op_get((bt_op_kind)k);
        CHECK(d != NULL && strcmp(d->name, bt_op_name((bt_op_kind)k)) == 0);
        CHECK_STATUS(bt_op_find(&found, bt_op_name((bt_op_kind)k)), BT_OK);
        CHECK(found == (bt_op_kind)k);
    }
    CHECK(bt_op_get(BT_OP_COUNT_) == NULL && strcmp(bt_op_name(BT_OP_COUNT_), "unknown") == 0);
    CHECK(bt_op_find(&found, "no such op") != BT_OK);
}

static void set_all_trainable(int t)
{
    int v;
    for (v = 1; v < g.n_nodes; ++v) bt_graph_set_trainable(&g, v, t);
}

int main(void)
{
    build_mibminet(0, 8, 300);
    set_all_trainable(1);
    run_training(4, 1, BT_OPTIM_SGD, "mibminet-gn full sgd");
    run_training(4, 2, BT_OPTIM_ADAM, "mibminet-gn full adam");
    set_all_trainable(0);
    bt_graph_set_trainable(&g, g.n_nodes - 1, 1);
    run_training(4, 1, BT_OPTIM_SGD, "mibminet-gn last");
    set_all_trainable(0);
    bt_graph_set_trainable(&g, 7, 1); /* the depthwise conv in the middle */
    run_training(4, 1, BT_OPTIM_SGD, "mibminet-gn depthwise only");
    build_mibminet(1, 8, 300);
    set_all_trainable(1);
    run_training(4, 4, BT_OPTIM_SGD, "mibminet-bn full");
    build_residual();
    set_all_trainable(1);
    run_training(3, 1, BT_OPTIM_ADAM, "residual full adam");
    test_generic_graph();
    /* bad graphs */
    {
        bt_conv2d_opts bad = {6, 1, 3, 1, 1, 0, 0, 1, 1, 4, 0};
        int id;
        bt_plan_opts po;
        memset(&po, 0, sizeof po); /* micro_batch 0 is refused */
        po.reuse = 1;
        CHECK(bt_graph_init(&g, 4, 1, 16) == BT_OK);
        CHECK(bt_graph_conv2d(&g, &id, 0, &bad, "bad") == BT_ERR_GROUPS);
        CHECK(bt_graph_conv2d(&g, &id, 5, &bad, "bad") == BT_ERR_BAD_PARAM);
        CHECK(bt_graph_init(&g, 0, 1, 16) == BT_ERR_BAD_SIZE);
        CHECK(bt_graph_init(NULL, 1, 1, 16) == BT_ERR_NULL_POINTER);
        build_residual();
        CHECK(bt_plan_build(&plan, &g, &po) == BT_ERR_BAD_SIZE);
    }
    return bt_test_report("test_plan_exec");
}
