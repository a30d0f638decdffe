/* LoRA adapters in plain C, under the sanitizers with the plan check: an
 * adapted attention, per-token linear and head train without
 * touching their frozen weights or any byte outside the plan; the adapted
 * layers compute with W + (alpha / r) B A (checked against the merged
 * weights in a graph without adapters); refusals leave the graph as it was. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/kernels.h"
#include "bt_test.h"

#define S 6
#define D 8
#define R 2
#define BATCH 4

static unsigned lcg = 777u;
static float frand(void)
{
    lcg = lcg * 1103515245u + 12345u;
    return ((float)((lcg >> 8) & 0xffff) / 65536.0f - 0.5f) * 2.0f;
}

static void build_tokens(bt_graph *g)
{
    bt_node_opts a, t;
    bt_linear_opts fc = {3, 1};
    int x, in;
    memset(&a, 0, sizeof a);
    memset(&t, 0, sizeof t);
    a.mhsa.heads = 2; a.mhsa.qkv_bias = 1; a.mhsa.out_bias = 1;
    t.linear.out_f = D; t.linear.has_bias = 1;
    CHECK(bt_graph_init(g, 1, S, D) == BT_OK);
    in = 0;
    CHECK(bt_graph_add_node(g, &x, BT_OP_MHSA, &in, 1, &a, "attn") == BT_OK);        /* node 1 */
    in = x;
    CHECK(bt_graph_add_node(g, &x, BT_OP_TOKEN_LINEAR, &in, 1, &t, "fc1") == BT_OK); /* node 2 */
    CHECK(bt_graph_flatten(g, &x, x, "flat") == BT_OK);                              /* node 3 */
    CHECK(bt_graph_linear(g, &x, x, &fc, "head") == BT_OK);                          /* node 4 */
    CHECK(bt_graph_finish(g) == BT_OK);
}

static bt_graph g, gm;
static bt_plan plan, plan_m;

static void fill(bt_session *s, const bt_graph *gr, unsigned seed)
{
    int v, k;
    lcg = seed;
    for (v = 1; v < gr->n_nodes; ++v)
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            size_t n = 0, j;
            float *p = (float *)bt_session_param(s, v, k, &n);
            for (j = 0; p && j < n; ++j) p[j] = 0.3f * frand();
        }
}

static void check_training_and_merge(void)
{
    bt_plan_opts po;
    bt_optim_cfg oc;
    bt_session s, sm;
    void *raw, *raw_m;
    uint8_t *arena, *arena_m;
    float x[BATCH * S * D], frozen[3 * D * D], logits[BATCH * 3], logits_m[BATCH * 3];
    int32_t y[BATCH];
    int i, step, v, k;
    size_t n;
    build_tokens(&g);
    CHECK_STATUS(bt_graph_add_lora(&g, 1, 0, R, 4.0f), BT_OK);   /* in_proj */
    CHECK_STATUS(bt_graph_add_lora(&g, 1, 2, R, 4.0f), BT_OK);   /* out_proj */
    CHECK_STATUS(bt_graph_add_lora(&g, 2, 0, R, 4.0f), BT_OK);
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, R, 4.0f), BT_OK);
    CHECK(bt_node_param_count(&g, 1) == 8 && bt_node_param_count(&g, 2) == 4);
    CHECK(bt_node_param_numel(&g, 1, 4) == (size_t)R * D && bt_node_param_numel(&g, 1, 5) == (size_t)3 * D * R);
    /* adapters only */
    CHECK_STATUS(bt_graph_set_trainable_mask(&g, 1, 0xF0), BT_OK);
    CHECK_STATUS(bt_graph_set_trainable_mask(&g, 2, 0x0C), BT_OK);
    CHECK_STATUS(bt_graph_set_trainable_mask(&g, 4, 0x0C | 0x02), BT_OK);  /* and the head's bias */
    memset(&po, 0, sizeof po);
    po.micro_batch = 2; po.optimizer = BT_OPTIM_ADAM; po.reuse = 1; po.dtype = BT_DTYPE_F32;
    memset(&oc, 0, sizeof oc);
    oc.kind = BT_OPTIM_ADAM; oc.lr = 1e-2f; oc.beta1 = 0.9f; oc.beta2 = 0.999f; oc.eps = 1e-8f;
    CHECK_STATUS(bt_plan_build(&plan, &g, &po), BT_OK);
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < bt_node_param_count(&g, v); ++k)
            CHECK((plan.nodes[v].pgrad[k] >= 0) == bt_node_param_trains(&g, v, k));
    CHECK(plan.nodes[1].pgrad[0] < 0 && plan.nodes[1].pgrad[2] < 0 && plan.nodes[1].pgrad[4] >= 0);
    arena = (uint8_t *)bt_test_alloc_aligned(plan.peak_bytes, BT_ARENA_ALIGN, &raw);
    CHECK_STATUS(bt_session_init(&s, &g, &plan, arena, plan.peak_bytes, &oc, 1), BT_OK);
    fill(&s, &g, 99u);
    memcpy(frozen, bt_session_param(&s, 1, 0, &n), sizeof frozen);
    lcg = 5u;
    for (i = 0; i < BATCH * S * D; ++i) x[i] = frand();
    for (i = 0; i < BATCH; ++i) y[i] = i % 3;
    for (step = 0; step < 5; ++step) {
        bt_value loss;
        bt_status st = bt_train_step(&s, &loss, x, 0, y, BATCH);
        CHECK_STATUS(st, BT_OK);
        if (st != BT_OK) { printf("step failed at node %d\n", s.error_node); break; }
    }
    CHECK(memcmp(frozen, bt_session_param(&s, 1, 0, &n), sizeof frozen) == 0);
    CHECK_STATUS(bt_forward(&s, logits, NULL, x, 0, BATCH), BT_OK);

    /* the same network without adapters, with the merged weights */
    build_tokens(&gm);
    CHECK_STATUS(bt_plan_build(&plan_m, &gm, &po), BT_OK);
    arena_m = (uint8_t *)bt_test_alloc_aligned(plan_m.peak_bytes, BT_ARENA_ALIGN, &raw_m);
    CHECK_STATUS(bt_session_init(&sm, &gm, &plan_m, arena_m, plan_m.peak_bytes, &oc, 1), BT_OK);
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < bt_node_base_param_count(&g, v); ++k) {
            size_t nn = 0;
            const float *src = (const float *)bt_session_param(&s, v, k, &nn);
            float *dst = (float *)bt_session_param(&sm, v, k, NULL);
            int j = bt_node_lora_of(&g, v, k);
            if (j < 0) {
                memcpy(dst, src, nn * sizeof(float));
            } else {
                const int base = bt_node_base_param_count(&g, v), rows = bt_node_lora_rows(&g, v, k);
                CHECK_STATUS(bt_lora_merge_f32(dst, src, (const float *)bt_session_param(&s, v, base + 2 * j, NULL),
                                               (const float *)bt_session_param(&s, v, base + 2 * j + 1, NULL),
                                               4.0f / R, rows, (int)(nn / (size_t)rows), R), BT_OK);
            }
        }
    CHECK_STATUS(bt_forward(&sm, logits_m, NULL, x, 0, BATCH), BT_OK);
    CHECK(memcmp(logits, logits_m, sizeof logits) == 0);
    free(raw);
    free(raw_m);
}

static void check_refusals(void)
{
    bt_graph before;
    bt_plan_opts po;
    build_tokens(&g);
    memcpy(&before, &g, sizeof g);
    CHECK_STATUS(bt_graph_add_lora(&g, 3, 0, 1, 1.0f), BT_ERR_UNSUPPORTED);   /* flatten: no weight */
    CHECK_STATUS(bt_graph_add_lora(&g, 2, 1, 1, 1.0f), BT_ERR_UNSUPPORTED);   /* a bias */
    CHECK_STATUS(bt_graph_add_lora(&g, 1, 1, 1, 1.0f), BT_ERR_UNSUPPORTED);   /* attention's in_proj bias */
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, 4, 1.0f), BT_ERR_BAD_PARAM);     /* rank above min(3, 48) */
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, 0, 1.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, 1, 0.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_graph_add_lora(&g, 0, 0, 1, 1.0f), BT_ERR_BAD_PARAM);     /* the input */
    CHECK_STATUS(bt_graph_add_lora(&g, 9, 0, 1, 1.0f), BT_ERR_BAD_PARAM);
    CHECK_STATUS(bt_graph_set_trainable_mask(&g, 4, 0x02), BT_ERR_BAD_PARAM); /* bias without the weight */
    CHECK_STATUS(bt_graph_set_trainable_mask(&g, 4, 0x10), BT_ERR_BAD_PARAM); /* no such slot */
    CHECK(memcmp(&before, &g, sizeof g) == 0);
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, 1, 1.0f), BT_OK);
    CHECK_STATUS(bt_graph_add_lora(&g, 4, 0, 1, 1.0f), BT_ERR_STATE);
    /* adapters train in float32 only */
    memset(&po, 0, sizeof po);
    po.micro_batch = 1; po.optimizer = BT_OPTIM_SGD; po.dtype = BT_DTYPE_FIXED;
    CHECK_STATUS(bt_plan_build(&plan, &g, &po), BT_ERR_UNSUPPORTED);
}

int main(void)
{
    check_training_and_merge();
    check_refusals();
    return bt_test_report("test_lora");
}
