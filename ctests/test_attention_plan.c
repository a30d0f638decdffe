/* Multi-head self-attention through the graph, the planner and the executor
 * in plain C. Built with -DBT_PLAN_CHECK under AddressSanitizer
 * (tests/test_c_programs.py), every arena byte the plan says is dead at a
 * step is poisoned while the step runs: the attention's saved tensors, its
 * backward-only scratch (one head's map) and its in-place QKV gradient must
 * stay inside what the plan gives them. Also: the one-head backward and the
 * whole-map backward train to the same bits, and refused shapes add nothing. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/attention.h"
#include "bt_test.h"

#define S 10
#define D 8
#define BATCH 3

static bt_graph g;
static bt_plan plan;

static unsigned lcg;
static float frand(void)
{
    lcg = lcg * 1103515245u + 12345u;
    return ((float)((lcg >> 8) & 0xffff) / 65536.0f - 0.5f) * 2.0f;
}

/* scale (1x1 conv) -> attention (4 heads, RoPE) -> attention (2 heads) -> flatten -> linear */
static void build(int keep_probs)
{
    bt_conv2d_opts scale = {1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1};
    bt_linear_opts fc = {4, 1};
    bt_node_opts a1, a2;
    int x, in;
    memset(&a1, 0, sizeof a1);
    memset(&a2, 0, sizeof a2);
    a1.mhsa.heads = 4; a1.mhsa.qkv_bias = 1; a1.mhsa.out_bias = 1; a1.mhsa.rope = 1;
    a1.mhsa.keep_probs = keep_probs;
    a2.mhsa.heads = 2; a2.mhsa.qkv_bias = 0; a2.mhsa.out_bias = 1; a2.mhsa.keep_probs = keep_probs;
    CHECK(bt_graph_init(&g, 1, S, D) == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, 0, &scale, "scale") == BT_OK);
    in = x;
    CHECK(bt_graph_add_node(&g, &x, BT_OP_MHSA, &in, 1, &a1, "attn1") == BT_OK);
    in = x;
    CHECK(bt_graph_add_node(&g, &x, BT_OP_MHSA, &in, 1, &a2, "attn2") == BT_OK);
    CHECK(bt_graph_flatten(&g, &x, x, "flat") == BT_OK);
    CHECK(bt_graph_linear(&g, &x, x, &fc, "fc") == BT_OK);
    CHECK(bt_graph_finish(&g) == BT_OK);
}

/* Trains `steps` steps from fixed parameters; the loss bits of each step
 * into losses[], the parameters' bytes into a checksum. */
static uint32_t train(int keep_probs, const int *trainable, int micro, float *losses, int steps)
{
    bt_plan_opts po;
    bt_optim_cfg oc;
    bt_session s;
    void *raw;
    uint8_t *arena;
    float x[BATCH * S * D];
    int32_t y[BATCH];
    int v, k, i, step;
    uint32_t sum = 0;
    build(keep_probs);
    for (v = 1; v < g.n_nodes; ++v) CHECK(bt_graph_set_trainable(&g, v, trainable[v]) == BT_OK);
    memset(&po, 0, sizeof po);
    po.micro_batch = micro; po.optimizer = BT_OPTIM_SGD; po.momentum = 1; po.reuse = 1; po.dtype = BT_DTYPE_F32;
    memset(&oc, 0, sizeof oc);
    oc.kind = BT_OPTIM_SGD; oc.lr = 5e-2f; oc.momentum = 0.9f;
    CHECK_STATUS(bt_plan_build(&plan, &g, &po), BT_OK);
    arena = (uint8_t *)bt_test_alloc_aligned(plan.peak_bytes, BT_ARENA_ALIGN, &raw);
    CHECK_STATUS(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes, &oc, 1), BT_OK);
    lcg = 4242u;
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            size_t n = 0, j;
            float *p = (float *)bt_session_param(&s, v, k, &n);
            for (j = 0; p && j < n; ++j) p[j] = 0.4f * frand();
        }
    for (i = 0; i < BATCH * S * D; ++i) x[i] = frand();
    for (i = 0; i < BATCH; ++i) y[i] = i % g.classes;
    for (step = 0; step < steps; ++step) {
        bt_value loss;
        bt_status st = bt_train_step(&s, &loss, x, 0, y, BATCH);
        CHECK_STATUS(st, BT_OK);
        if (st != BT_OK) { printf("step failed: %s at node %d\n", bt_status_str(st), s.error_node); break; }
        losses[step] = loss.f32;
    }
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            size_t n = 0, j;
            const uint8_t *p = (const uint8_t *)bt_session_param(&s, v, k, &n);
            for (j = 0; p && j < n * sizeof(float); ++j) sum = sum * 16777619u ^ p[j];
        }
    free(raw);
    return sum;
}

static void check_training(void)
{
    static const int full[6] = {0, 1, 1, 1, 0, 1};
    static const int frozen_attn2[6] = {0, 1, 1, 0, 0, 1};  /* attn2's input gradient without its weight gradient */
    static const int head_only[6] = {0, 0, 0, 0, 0, 1};     /* no attention backward at all */
    const int *cases[3];
    int c, i;
    cases[0] = full; cases[1] = frozen_attn2; cases[2] = head_only;
    for (c = 0; c < 3; ++c) {
        float l0[4], l1[4];
        uint32_t a = train(0, cases[c], 2, l0, 4), b = train(1, cases[c], 2, l1, 4);
        CHECK(a == b);
        for (i = 0; i < 4; ++i) CHECK(memcmp(&l0[i], &l1[i], sizeof(float)) == 0);
        CHECK(l0[3] < l0[0]);
        /* micro-batches of one accumulate to a gradient within rounding of one of two */
        {
            float l2[4];
            train(0, cases[c], 1, l2, 4);
            CHECK_NEAR(l2[0], l0[0], 1e-5);
        }
    }
}

static void check_refusals(void)
{
    bt_node_opts o;
    const int in = 0;
    int id = -1;
    memset(&o, 0, sizeof o);
    CHECK(bt_graph_init(&g, 1, S, D) == BT_OK);
    o.mhsa.heads = 3;                                    /* does not divide 8 */
    CHECK_STATUS(bt_graph_add_node(&g, &id, BT_OP_MHSA, &in, 1, &o, "a"), BT_ERR_GROUPS);
    o.mhsa.heads = 8; o.mhsa.rope = 1;                   /* head size 1: odd */
    CHECK_STATUS(bt_graph_add_node(&g, &id, BT_OP_MHSA, &in, 1, &o, "a"), BT_ERR_BAD_PARAM);
    o.mhsa.heads = 0; o.mhsa.rope = 0;
    CHECK_STATUS(bt_graph_add_node(&g, &id, BT_OP_MHSA, &in, 1, &o, "a"), BT_ERR_BAD_SIZE);
    CHECK(g.n_nodes == 1);
    CHECK(bt_graph_init(&g, 2, S, D) == BT_OK);          /* not a (1, S, D) sequence */
    o.mhsa.heads = 2;
    CHECK_STATUS(bt_graph_add_node(&g, &id, BT_OP_MHSA, &in, 1, &o, "a"), BT_ERR_SHAPE_MISMATCH);
    CHECK(g.n_nodes == 1);
}

static void check_kernel_refusals(void)
{
    bt_mhsa_shape sh = {1, 4, 4, 2, 0};
    float qkv[4 * 12], before[4 * 12], ws[64], attn[16], attn0[16], dy[16], wo[16], st[16];
    const size_t need = (4 + 2 * 4 + 4 * 2 + 2 * 2) * sizeof(float);
    int i;
    for (i = 0; i < 48; ++i) qkv[i] = before[i] = (float)i;
    for (i = 0; i < 16; ++i) attn[i] = attn0[i] = dy[i] = wo[i] = st[i] = 1.0f;
    CHECK(bt_mhsa_backward_workspace_size(&sh) == need);
    CHECK_STATUS(bt_mhsa_backward_qkv_f32(qkv, attn, NULL, ws, need - 4, st, dy, wo, &sh), BT_ERR_WORKSPACE);
    CHECK_STATUS(bt_mhsa_backward_qkv_f32(qkv, attn, NULL, ws, sizeof ws, NULL, dy, wo, &sh), BT_ERR_NULL_POINTER);
    sh.heads = 3;
    CHECK_STATUS(bt_mhsa_backward_qkv_f32(qkv, attn, NULL, ws, sizeof ws, st, dy, wo, &sh), BT_ERR_GROUPS);
    CHECK(bt_mhsa_backward_workspace_size(&sh) == 0);
    sh.heads = 4; sh.rope = 1;                         /* head size 1 */
    CHECK_STATUS(bt_mhsa_backward_qkv_f32(qkv, attn, NULL, ws, sizeof ws, st, dy, wo, &sh), BT_ERR_BAD_PARAM);
    CHECK(memcmp(qkv, before, sizeof qkv) == 0 && memcmp(attn, attn0, sizeof attn) == 0);
}

int main(void)
{
    check_training();
    check_refusals();
    check_kernel_refusals();
    return bt_test_report("test_attention_plan");
}
