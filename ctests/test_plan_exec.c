/* Graph, planner and executor in plain C.
 * Built with -DBT_PLAN_CHECK under AddressSanitizer, the executor poisons every
 * arena byte the plan says is dead at each schedule step, so any op reading or
 * writing outside its planned tensors is a sanitizer report. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/exec.h"

static int failures = 0;
#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

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
    EXPECT(bt_graph_init(&g, 1, channels, samples) == BT_OK);
#define NORM(name) (norm_batch ? bt_graph_batchnorm(&g, &x, x, &nrm, name) : bt_graph_groupnorm(&g, &x, x, &nrm, name))
    EXPECT(bt_graph_conv2d(&g, &x, 0, &spatial, "spatial") == BT_OK);
    EXPECT(NORM("norm1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &temporal, "temporal") == BT_OK);
    EXPECT(NORM("norm2") == BT_OK);
    EXPECT(bt_graph_relu(&g, &x, x, "relu1") == BT_OK);
    EXPECT(bt_graph_avgpool2d(&g, &x, x, &pool, "pool1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &dw, "depthwise") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &pw, "pointwise") == BT_OK);
    EXPECT(NORM("norm3") == BT_OK);
    EXPECT(bt_graph_relu(&g, &x, x, "relu2") == BT_OK);
    EXPECT(bt_graph_avgpool2d(&g, &x, x, &pool, "pool2") == BT_OK);
    EXPECT(bt_graph_flatten(&g, &x, x, "flatten") == BT_OK);
    EXPECT(bt_graph_linear(&g, &x, x, &fc, "classifier") == BT_OK);
    EXPECT(bt_graph_finish(&g) == BT_OK);
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
    EXPECT(bt_graph_init(&g, 4, 1, 64) == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &a, 0, &c, "c1") == BT_OK);
    EXPECT(bt_graph_groupnorm(&g, &b, a, &nrm, "n1") == BT_OK);
    EXPECT(bt_graph_gelu(&g, &b, b, "g1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &b, b, &c, "c2") == BT_OK);
    EXPECT(bt_graph_add(&g, &s, a, b, "skip") == BT_OK);
    EXPECT(bt_graph_elu(&g, &s, s, 1.0f, "e1") == BT_OK);
    EXPECT(bt_graph_dropout(&g, &s, s, 0.25f, "drop") == BT_OK);
    EXPECT(bt_graph_maxpool2d(&g, &s, s, &mp, "mp") == BT_OK);
    EXPECT(bt_graph_flatten(&g, &s, s, "flat") == BT_OK);
    EXPECT(bt_graph_linear(&g, &s, s, &fc, "fc") == BT_OK);
    EXPECT(bt_graph_finish(&g) == BT_OK);
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

static void run_training(int batch, int micro, bt_optim_kind kind, const char *what)
{
    bt_plan_opts po;
    bt_optim_cfg oc;
    bt_session s, s2;
    uint8_t *arena, *arena2;
    float *x;
    int32_t *y;
    int i, step, numel = (int)bt_node_numel(&g.nodes[0]);
    float loss = 0.0f, first = 0.0f;
    uint32_t before;
    memset(&po, 0, sizeof po);
    po.micro_batch = micro; po.optimizer = kind; po.momentum = 1; po.reuse = 1;
    oc.kind = kind; oc.lr = kind == BT_OPTIM_ADAM ? 1e-2f : 5e-2f; oc.momentum = kind == BT_OPTIM_SGD ? 0.9f : 0.0f;
    oc.weight_decay = 1e-4f; oc.beta1 = 0.9f; oc.beta2 = 0.999f; oc.eps = 1e-8f;
    EXPECT(bt_plan_build(&plan, &g, &po) == BT_OK);
    arena = (uint8_t *)malloc(plan.peak_bytes);
    arena2 = (uint8_t *)malloc(plan.peak_bytes);
    x = (float *)malloc(sizeof(float) * (size_t)numel * (size_t)batch);
    y = (int32_t *)malloc(sizeof(int32_t) * (size_t)batch);
    /* an arena one byte short is refused */
    EXPECT(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes - 1, &oc, 1) == BT_ERR_ARENA_TOO_SMALL);
    EXPECT(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes, &oc, 1) == BT_OK);
    init_params(&s);
    /* a twin session steps through the split API: grad then update */
    EXPECT(bt_session_init(&s2, &g, &plan, arena2, plan.peak_bytes, &oc, 1) == BT_OK);
    copy_params(&s2, &s);
    for (i = 0; i < numel * batch; ++i) x[i] = frand();
    for (i = 0; i < batch; ++i) y[i] = i % g.classes;
    for (step = 0; step < 8; ++step) {
        bt_status st = bt_train_step(&s, &loss, x, y, batch);
        EXPECT(st == BT_OK);
        if (st != BT_OK) { fprintf(stderr, "%s: step failed: %s at node %d\n", what, bt_status_str(st), s.error_node); break; }
        if (step == 0) first = loss;
        {
            float loss2 = 0.0f;
            EXPECT(bt_grad_step(&s2, &loss2, x, y, batch) == BT_OK);
            EXPECT(bt_apply_update(&s2) == BT_OK);
            EXPECT(loss2 == loss);
            EXPECT(bt_session_param_checksum(&s2) == bt_session_param_checksum(&s));
        }
    }
    /* a non-finite gradient is refused by the update and changes nothing */
    {
        int v = 1;
        size_t n = 0;
        uint32_t c2;
        float *gr = NULL;
        EXPECT(bt_grad_step(&s2, &loss, x, y, batch) == BT_OK);
        c2 = bt_session_param_checksum(&s2);
        while (v < g.n_nodes && !(gr = bt_session_grad(&s2, v, 0, &n))) ++v; /* the first trainable layer */
        EXPECT(gr != NULL && n > 0);
        if (gr) gr[n - 1] = INFINITY;
        EXPECT(bt_apply_update(&s2) == BT_ERR_DIVERGED);
        EXPECT(bt_session_param_checksum(&s2) == c2);
        EXPECT(bt_session_grad(&s2, 0, 0, &n) == NULL); /* the input node has no gradient */
        EXPECT(bt_session_n_trainable(&s2) > 0);
    }
    EXPECT(loss < first); /* fitting one fixed batch: the loss falls */
    /* bad batches are refused and leave the parameters unchanged */
    before = bt_session_param_checksum(&s);
    x[3] = NAN;
    EXPECT(bt_train_step(&s, &loss, x, y, batch) == BT_ERR_NONFINITE);
    x[3] = 0.0f;
    y[0] = g.classes;
    EXPECT(bt_train_step(&s, &loss, x, y, batch) == BT_ERR_LABEL);
    y[0] = 0;
    EXPECT(bt_train_step(&s, &loss, NULL, y, batch) == BT_ERR_NULL_POINTER);
    EXPECT(bt_train_step(NULL, &loss, x, y, batch) == BT_ERR_NULL_POINTER);
    EXPECT(bt_grad_step(NULL, &loss, x, y, batch) == BT_ERR_NULL_POINTER);
    EXPECT(bt_apply_update(NULL) == BT_ERR_NULL_POINTER);
    EXPECT(bt_session_param_checksum(&s) == before);
    {
        float *logits = (float *)malloc(sizeof(float) * (size_t)g.classes * (size_t)batch);
        EXPECT(bt_forward(&s, logits, x, batch) == BT_OK);
        for (i = 0; i < g.classes * batch; ++i) EXPECT(isfinite(logits[i]));
        free(logits);
    }
    printf("%s: peak %lu B, live peak %lu B, naive %lu B, first loss %.4f, loss after 8 steps %.4f\n", what,
           (unsigned long)plan.peak_bytes, (unsigned long)plan.live_peak_bytes, (unsigned long)plan.naive_bytes,
           (double)first, (double)loss);
    free(arena); free(arena2); free(x); free(y);
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
    /* bad graphs */
    {
        bt_conv2d_opts bad = {6, 1, 3, 1, 1, 0, 0, 1, 1, 4, 0};
        int id;
        bt_plan_opts po;
        memset(&po, 0, sizeof po); /* micro_batch 0 is refused */
        po.reuse = 1;
        EXPECT(bt_graph_init(&g, 4, 1, 16) == BT_OK);
        EXPECT(bt_graph_conv2d(&g, &id, 0, &bad, "bad") == BT_ERR_GROUPS);
        EXPECT(bt_graph_conv2d(&g, &id, 5, &bad, "bad") == BT_ERR_BAD_PARAM);
        EXPECT(bt_graph_init(&g, 0, 1, 16) == BT_ERR_BAD_SIZE);
        EXPECT(bt_graph_init(NULL, 1, 1, 16) == BT_ERR_NULL_POINTER);
        build_residual();
        EXPECT(bt_plan_build(&plan, &g, &po) == BT_ERR_BAD_SIZE);
    }
    if (failures) {
        fprintf(stderr, "%d failures\n", failures);
        return 1;
    }
    printf("test_plan_exec: all passed\n");
    return 0;
}
