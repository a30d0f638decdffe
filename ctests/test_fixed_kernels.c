/* Fixed-point kernels and executor in plain C: the rounding and saturation
 * rules on hand-computed values, the documented refusals (nothing written),
 * and whole training runs of a small MI-BMInet-like graph and a residual
 * graph through the fixed-point executor. Built by tests/test_c_programs.py
 * with -DBT_PLAN_CHECK under AddressSanitizer, so every arena byte the plan
 * says is dead at a step is poisoned while the fixed-point executor runs it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/kernels.h"
#include "bt_test.h"

static void test_rules(void)
{
    int32_t m;
    int e;
    float one = 1.0f, tenth = 0.1f;
    /* round half to even, symmetric */
    CHECK(bt_q_shift_round(1, 1) == 0 && bt_q_shift_round(3, 1) == 2 && bt_q_shift_round(5, 1) == 2);
    CHECK(bt_q_shift_round(-1, 1) == 0 && bt_q_shift_round(-3, 1) == -2 && bt_q_shift_round(-5, 1) == -2);
    CHECK(bt_q_shift_round(7, 2) == 2 && bt_q_shift_round(-7, 2) == -2 && bt_q_shift_round(6, 2) == 2);
    CHECK(bt_q_shift_round(5, -3) == 40 && bt_q_shift_round((int64_t)1 << 60, -5) == BT_Q_BIG);
    CHECK(bt_q_shift_round(-((int64_t)1 << 60), -5) == -BT_Q_BIG);
    CHECK(bt_q_div_round(7, 2) == 4 && bt_q_div_round(5, 2) == 2 && bt_q_div_round(-7, 2) == -4);
    CHECK(bt_q_div_round(14, 5) == 3 && bt_q_div_round(-14, 5) == -3 && bt_q_div_round(12, 5) == 2);
    CHECK(bt_q_isqrt64(0) == 0 && bt_q_isqrt64(15) == 3 && bt_q_isqrt64(16) == 4);
    CHECK(bt_q_isqrt64(0xffffffffffffffffULL) == 0xffffffffULL);
    {
        bt_q_stats st = {0, 0};
        CHECK(bt_q_clamp(200, 127, &st) == 127 && bt_q_clamp(-200, 127, &st) == -127);
        CHECK(bt_q_clamp(-5, 127, &st) == -5 && st.saturated == 2 && st.absmax == 200);
    }
    CHECK(bt_q_exp_neg_q30(0, 4) == (1 << 30));
    CHECK(bt_q_exp_neg_q30(-16, 4) > 395000000 && bt_q_exp_neg_q30(-16, 4) < 395010000); /* e^-1 * 2^30 */
    CHECK(bt_q_log2_q16((uint64_t)1 << 30, 30) == 0);
    CHECK(bt_q_log2_q16((uint64_t)3 << 30, 30) >= 103871 && bt_q_log2_q16((uint64_t)3 << 30, 30) <= 103873);
    CHECK(bt_q_decode_f32(&m, &e, &one) == BT_OK && m == (1 << 23) && e == 23);
    CHECK(bt_q_decode_f32(&m, &e, &tenth) == BT_OK && m == 13421773 && e == 27);
    CHECK(bt_q_frac_adapt(4, 300, 7) == 2 && bt_q_frac_adapt(4, 20, 7) == 6 && bt_q_frac_adapt(4, 0, 7) == 8);
}

static void test_kernels(void)
{
    /* linear: [0.5 1 1.5] . [[1 1 1], [-2 0 1]] = [3, 0.5], bias [0.5, -1] (1 fractional bit) */
    {
        const int8_t x[3] = {1, 2, 3}, w[6] = {1, 1, 1, -2, 0, 1};
        const int32_t b[2] = {1, -2};
        int8_t y[2] = {99, 99};
        bt_q_stats st = {0, 0};
        CHECK(bt_linear_forward_q7(y, 1, &st, x, 1, w, 0, b, 1, 1, 3, 2) == BT_OK);
        CHECK(y[0] == 7 && y[1] == -1); /* 3.5 and -0.5 with 1 fractional bit */
        /* a bias of 2^30 with no fractional bits cannot be aligned to 20 bits: refused, y untouched */
        {
            const int32_t big[2] = {1 << 30, 0};
            CHECK(bt_linear_forward_q7(y, 1, &st, x, 10, w, 10, big, 0, 1, 3, 2) == BT_ERR_OVERFLOW);
            CHECK(y[0] == 7 && y[1] == -1);
        }
        CHECK(bt_linear_forward_q7(y, BT_Q_FRAC_MAX + 1, &st, x, 0, w, 0, NULL, 0, 1, 3, 2) == BT_ERR_BAD_PARAM);
    }
    /* groupnorm of [1, -1] (M = 2, no eps): x_hat = +-1.0 exactly, y = +-64 at 6 fractional bits */
    {
        const int8_t x[2] = {1, -1};
        int8_t y[2];
        int32_t mean, rstd;
        CHECK(bt_groupnorm_forward_q7(y, 6, NULL, &mean, &rstd, x, 0, NULL, 0, NULL, 0, 1, 2, 1, 1, 0, 0) == BT_OK);
        CHECK(y[0] == 64 && y[1] == -64 && mean == 0);
        CHECK((rstd & 0x1ffffff) == (1 << 24) && (rstd >> 25) == 29);
    }
    /* average pool of 5 with one rounding, max pool picks the first maximum */
    {
        const int8_t x[10] = {1, 1, 1, 1, 3, 4, 9, 9, -2, 0};
        int8_t y[2];
        int32_t am[2];
        bt_pool2d_shape ps = {1, 1, 1, 10, 1, 5, 1, 5, 0, 0};
        CHECK(bt_avgpool2d_forward_q7(y, 1, NULL, x, 0, &ps) == BT_OK);
        CHECK(y[0] == 3 && y[1] == 8); /* 14/5 = 2.8 -> 3; 40/5 = 8 */
        CHECK(bt_maxpool2d_forward_q7(y, 0, NULL, am, x, 0, &ps) == BT_OK);
        CHECK(y[0] == 3 && y[1] == 9 && am[0] == 4 && am[1] == 6);
    }
    /* softmax cross-entropy of equal logits: p = 1/2, loss = ln 2 */
    {
        const int8_t z[2] = {5, 5};
        const int32_t lab[1] = {1};
        int16_t p[2];
        int8_t d[2];
        int32_t loss = 0;
        CHECK(bt_cross_entropy_forward_q7(&loss, p, z, 4, lab, 1, 2) == BT_OK);
        CHECK(p[0] == 8192 && p[1] == 8192 && loss >= 45425 && loss <= 45426); /* ln 2 * 2^16 = 45426.1 */
        CHECK(bt_cross_entropy_backward_q7(d, 8, NULL, p, lab, 1, 1, 2) == BT_OK);
        CHECK(d[0] == 127 && d[1] == -127); /* +-0.5 * 2^8 = 128: saturated */
        CHECK(bt_cross_entropy_forward_q7(&loss, p, z, 4, lab, 1, 1) == BT_ERR_LABEL);
    }
    /* a reduction too long for int32 (131072 int8 products) is refused */
    {
        static int8_t big[131072];
        int8_t y[1] = {42};
        memset(big, 1, sizeof big);
        CHECK(bt_linear_forward_q7(y, 0, NULL, big, 0, big, 0, NULL, 0, 1, 131072, 1) == BT_ERR_OVERFLOW);
        CHECK(y[0] == 42);
        CHECK(bt_linear_forward_q7(y, -20, NULL, big, 0, big, 0, NULL, 0, 1, 131071, 1) == BT_OK);
        CHECK(y[0] == 0); /* 131071 * 2^-20 = 0.125 -> 0 */
    }
    /* SGD: a tiny step still moves the int32 master */
    {
        int32_t w[1] = {1 << 24}, buf[1] = {0};
        const int32_t g[1] = {1 << 10};
        bt_q_sgd_cfg cfg = {0, 0, 0, 0, 0, 0};
        float lr = 1e-3f, mom = 0.9f;
        bt_q_decode_f32(&cfg.lr_mant, &cfg.lr_exp, &lr);
        bt_q_decode_f32(&cfg.mom_mant, &cfg.mom_exp, &mom);
        CHECK(bt_sgd_update_q31(w, 24, buf, 20, NULL, g, 20, 1, &cfg) == BT_OK);
        CHECK(w[0] == (1 << 24) - 16 && buf[0] == (1 << 10)); /* 1e-3 * 2^-10 * 2^24 = 16.4 -> 16 */
    }
}

/* ------------------------------------------------------------ executor */
static bt_graph g;
static bt_plan plan;
#define ARENA_BYTES 200000
static uint8_t *arena, *arena2; /* BT_ARENA_ALIGN-aligned, ARENA_BYTES each */
static bt_session sess, sess2;

static unsigned lcg = 99u;
static int16_t rnd16(int amp)
{
    lcg = lcg * 1103515245u + 12345u;
    return (int16_t)((int)((lcg >> 8) % (unsigned)(2 * amp + 1)) - amp);
}

static void build_mibminet_like(int channels, int samples, int classes)
{
    bt_conv2d_opts spatial = {8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    bt_conv2d_opts temporal = {8, 1, 64, 1, 1, 0, 0, 1, 1, 8, 0};
    bt_conv2d_opts dw = {8, 1, 16, 1, 1, 0, 0, 1, 1, 8, 0};
    bt_conv2d_opts pw = {8, 1, 1, 1, 1, 0, 0, 1, 1, 1, 0};
    bt_norm_opts nrm = {1, 1, 1e-5f, 0.1f};
    bt_pool_opts pool = {1, 8, 1, 8, 0, 0};
    bt_linear_opts fc = {0, 1};
    int x, i;
    spatial.k_h = channels;
    fc.out_f = classes;
    CHECK(bt_graph_init(&g, 1, channels, samples) == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, 0, &spatial, "spatial") == BT_OK);
    CHECK(bt_graph_groupnorm(&g, &x, x, &nrm, "norm1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &temporal, "temporal") == BT_OK);
    CHECK(bt_graph_groupnorm(&g, &x, x, &nrm, "norm2") == BT_OK);
    CHECK(bt_graph_relu(&g, &x, x, "relu1") == BT_OK);
    CHECK(bt_graph_avgpool2d(&g, &x, x, &pool, "pool1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &dw, "depthwise") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &x, x, &pw, "pointwise") == BT_OK);
    CHECK(bt_graph_groupnorm(&g, &x, x, &nrm, "norm3") == BT_OK);
    CHECK(bt_graph_relu(&g, &x, x, "relu2") == BT_OK);
    CHECK(bt_graph_avgpool2d(&g, &x, x, &pool, "pool2") == BT_OK);
    CHECK(bt_graph_flatten(&g, &x, x, "flatten") == BT_OK);
    CHECK(bt_graph_linear(&g, &x, x, &fc, "classifier") == BT_OK);
    CHECK(bt_graph_finish(&g) == BT_OK);
    for (i = 1; i < g.n_nodes; ++i) bt_graph_set_trainable(&g, i, 1);
}

/* A residual block: c1 feeds the branch and the add (a fan-out), then maxpool. */
static void build_residual(void)
{
    bt_conv2d_opts c = {8, 1, 3, 1, 1, 0, 1, 1, 1, 1, 0};
    bt_norm_opts nrm = {2, 1, 1e-5f, 0.1f};
    bt_pool_opts mp = {1, 4, 1, 4, 0, 0};
    bt_linear_opts fc = {3, 1};
    int a, b, s, i;
    CHECK(bt_graph_init(&g, 4, 1, 64) == BT_OK);
    CHECK(bt_graph_conv2d(&g, &a, 0, &c, "c1") == BT_OK);
    CHECK(bt_graph_groupnorm(&g, &b, a, &nrm, "n1") == BT_OK);
    CHECK(bt_graph_relu(&g, &b, b, "r1") == BT_OK);
    CHECK(bt_graph_conv2d(&g, &b, b, &c, "c2") == BT_OK);
    CHECK(bt_graph_add(&g, &s, a, b, "skip") == BT_OK);
    CHECK(bt_graph_relu(&g, &s, s, "r2") == BT_OK);
    CHECK(bt_graph_maxpool2d(&g, &s, s, &mp, "mp") == BT_OK);
    CHECK(bt_graph_flatten(&g, &s, s, "flat") == BT_OK);
    CHECK(bt_graph_linear(&g, &s, s, &fc, "fc") == BT_OK);
    CHECK(bt_graph_finish(&g) == BT_OK);
    for (i = 1; i < g.n_nodes; ++i) bt_graph_set_trainable(&g, i, 1);
}

/* Masters from a fixed pseudo-random pattern: about +-0.25 at 24 fractional bits,
 * groupnorm scales 1.0. */
static void load_params(bt_session *s)
{
    int v, k;
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < 2; ++k) {
            size_t n = 0, i;
            const int frac = g.nodes[v].kind == BT_OP_GROUPNORM ? 22 : 24;
            int32_t *p = (int32_t *)bt_session_param(s, v, k, &n);
            if (!p) continue;
            for (i = 0; i < n; ++i)
                p[i] = g.nodes[v].kind == BT_OP_GROUPNORM ? (k == 0 ? (1 << 22) : 0) : (int32_t)rnd16(32000) * 128;
            CHECK(bt_session_set_frac(s, v, BT_FRAC_PARAM, k, frac) == BT_OK);
            CHECK(bt_session_frac(s, v, BT_FRAC_PARAM, k) == frac);
        }
}

static bt_optim_cfg sgd_cfg(void)
{
    bt_optim_cfg c;
    memset(&c, 0, sizeof c);
    c.kind = BT_OPTIM_SGD;
    c.lr = 0.05f;
    c.momentum = 0.9f;
    c.weight_decay = 1e-3f;
    return c;
}

/* The training input of run(): class-dependent offsets in noise, learnable. */
static int16_t run_x[8 * 1 * 8 * 400];
static int32_t run_labels[8];

/* A whole run on s: init, masters, calibration, `steps` steps, each one
 * bt_train_step or (split) bt_grad_step then bt_apply_update. */
static int32_t run(bt_session *s, uint8_t *ar, int steps, int batch, int sample_numel, uint32_t *checksum,
                   int32_t *first_loss, int split)
{
    bt_optim_cfg cfg = sgd_cfg();
    bt_value loss;
    int i, step;
    memset(&loss, 0, sizeof loss);
    CHECK(bt_session_init(s, &g, &plan, ar, ARENA_BYTES, &cfg, 5u) == BT_OK);
    CHECK(s->dtype == BT_DTYPE_FIXED);
    lcg = 7u;
    load_params(s);
    for (i = 0; i < batch; ++i) run_labels[i] = i % g.classes;
    for (i = 0; i < batch * sample_numel; ++i)
        run_x[i] = (int16_t)(rnd16(2000) + (run_labels[i / sample_numel] == 1 ? 3000 : -1000) * ((i % 7) == 0));
    CHECK(bt_calibrate(s, run_x, 12, run_labels, batch, 3) == BT_OK);
    for (step = 0; step < steps; ++step) {
        if (split) {
            CHECK(bt_grad_step(s, &loss, run_x, 12, run_labels, batch) == BT_OK);
            CHECK(bt_apply_update(s) == BT_OK);
        } else {
            CHECK(bt_train_step(s, &loss, run_x, 12, run_labels, batch) == BT_OK);
        }
        CHECK(loss.frac == BT_Q_LOSS_FRAC);
        if (step == 0) *first_loss = loss.q;
    }
    *checksum = bt_session_checksum(s);
    return loss.q;
}

/* The state blob, fixed point: sess2 (another seed) loads sess's blob and
 * then both hold and continue with the same bits, scales and adaptation
 * windows included; a truncated or corrupted blob is refused and changes
 * nothing. Returns the blob (need bytes, the caller frees it). */
static uint8_t *check_state(int batch, size_t *blob_len)
{
    const size_t need = bt_session_state_bytes(&sess);
    const size_t node1 = BT_TEST_W_BODY + BT_TEST_W_NODE_WORDS; /* the first word of node 1's scales */
    const uint32_t one_bits = 0x3f800000u, nan_bits = 0x7fc00000u;
    uint8_t *blob = (uint8_t *)malloc(need), *again = (uint8_t *)malloc(need);
    bt_optim_cfg cfg = sgd_cfg();
    bt_value l1, l2;
    size_t len = 0;
    int step;
    CHECK(need > 4u * (BT_TEST_W_BODY + (size_t)g.n_nodes * BT_TEST_W_NODE_WORDS) && need % 4 == 0);
    memset(blob, 0xa5, need);
    CHECK_STATUS(bt_session_save_state(&sess, blob, need - 4, &len), BT_ERR_WORKSPACE);
    CHECK(blob[0] == 0xa5 && len == 0);
    CHECK_STATUS(bt_session_save_state(&sess, blob, need, &len), BT_OK);
    CHECK(len == need && bt_test_get_word(blob, BT_TEST_W_DTYPE) == (uint32_t)BT_DTYPE_FIXED);
    CHECK(bt_test_get_word(blob, BT_TEST_W_PAYLOAD) == need / 4 - BT_TEST_HEAD_WORDS);
    CHECK(bt_test_get_word(blob, node1) == (uint32_t)bt_session_frac(&sess, 1, BT_FRAC_OUT, 0));

    CHECK_STATUS(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 1234u), BT_OK);
    CHECK(bt_session_checksum(&sess2) != bt_session_checksum(&sess));
    CHECK(bt_session_state_checksum(&sess2) != bt_session_state_checksum(&sess));
    CHECK_REFUSED_LOAD(&sess2, blob, need, -1, 0, need - 4, BT_ERR_CORRUPT); /* truncated */
    CHECK_REFUSED_LOAD(&sess2, blob, need, -1, 0, need - 3, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, -1, 0, 4u * BT_TEST_HEAD_WORDS, BT_ERR_CORRUPT); /* the header alone */
    CHECK_REFUSED_LOAD(&sess2, blob, need, -1, 0, 3, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, -1, 0, need + 4, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_MAGIC, 0u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_VERSION, 2u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_DTYPE, (uint32_t)BT_DTYPE_F32, need, BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_HASH, bt_test_get_word(blob, BT_TEST_W_HASH) + 1u, need,
                       BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_PAYLOAD, 0u, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_OPT_KIND, (uint32_t)BT_OPTIM_ADAM, need, BT_ERR_SHAPE_MISMATCH);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_LR, nan_bits, need, BT_ERR_CORRUPT);
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_MOMENTUM, one_bits, need, BT_ERR_CORRUPT); /* momentum 1 */
    CHECK_REFUSED_LOAD(&sess2, blob, need, node1, (uint32_t)(BT_Q_FRAC_MAX + 1), need, BT_ERR_CORRUPT); /* out scale */
    CHECK_REFUSED_LOAD(&sess2, blob, need, node1 + 1, (uint32_t)(BT_Q_FRAC_MIN - 1), need, BT_ERR_CORRUPT); /* dout */
    CHECK_REFUSED_LOAD(&sess2, blob, need, node1 + 5, 256u, need, BT_ERR_CORRUPT); /* a window count */
    CHECK_REFUSED_LOAD(&sess2, blob, need, node1 + 7, 1000u, need, BT_ERR_CORRUPT); /* a master's scale */
    CHECK_REFUSED_LOAD(&sess2, blob, need, BT_TEST_W_BODY + (size_t)g.n_nodes * BT_TEST_W_NODE_WORDS - 1,
                       (uint32_t)(BT_Q_FRAC_MAX + 1), need, BT_ERR_CORRUPT); /* the last node's last scale */

    CHECK_STATUS(bt_session_load_state(&sess2, blob, need), BT_OK);
    CHECK(bt_session_checksum(&sess2) == bt_session_checksum(&sess));
    CHECK(bt_session_state_checksum(&sess2) == bt_session_state_checksum(&sess));
    CHECK(sess2.opt_state.step == sess.opt_state.step && sess2.fx.saturated_total == sess.fx.saturated_total);
    CHECK_STATUS(bt_session_save_state(&sess2, again, need, &len), BT_OK);
    CHECK(len == need && memcmp(again, blob, need) == 0);
    /* the resumed session continues with the same bits, past a scale growth window */
    for (step = 0; step < BT_FIXED_GROW_STEPS + 1; ++step) {
        CHECK_STATUS(bt_train_step(&sess, &l1, run_x, 12, run_labels, batch), BT_OK);
        CHECK_STATUS(bt_train_step(&sess2, &l2, run_x, 12, run_labels, batch), BT_OK);
        CHECK(l1.q == l2.q && l1.frac == l2.frac);
    }
    CHECK(bt_session_checksum(&sess2) == bt_session_checksum(&sess));
    CHECK(bt_session_state_checksum(&sess2) == bt_session_state_checksum(&sess));
    free(again);
    *blob_len = need;
    return blob;
}

static void test_executor(void)
{
    bt_plan_opts po = {1, BT_OPTIM_SGD, 1, 1, BT_DTYPE_FIXED};
    uint32_t c1 = 0, c2 = 0, c3 = 0;
    int32_t l1, l2, l3, f1 = 0, f2 = 0, f3 = 0;
    void *raw, *raw2;
    uint8_t *blob;
    size_t blob_len = 0;
    arena = (uint8_t *)bt_test_alloc_aligned(ARENA_BYTES, BT_ARENA_ALIGN, &raw);
    arena2 = (uint8_t *)bt_test_alloc_aligned(ARENA_BYTES, BT_ARENA_ALIGN, &raw2);
    /* the planner's figure: MI-BMInet at 8 x 1900, full, micro-batch 1, fixed point */
    build_mibminet_like(8, 1900, 2);
    CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
    CHECK(plan.peak_bytes <= 120000);
    printf("fixed-point MI-BMInet 8x1900 peak: %lu bytes\n", (unsigned long)plan.peak_bytes);

    build_mibminet_like(8, 400, 2);
    CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
    CHECK(plan.peak_bytes <= ARENA_BYTES);
    l1 = run(&sess, arena, 12, 4, 8 * 400, &c1, &f1, 0);
    l2 = run(&sess, arena, 12, 4, 8 * 400, &c2, &f2, 0);
    CHECK(l1 == l2 && c1 == c2 && f1 == f2); /* the same run gives the same bits */
    CHECK(l1 < f1);                          /* and it learns */
    /* the split step, grad then update, gives the bits of the step */
    l3 = run(&sess2, arena2, 12, 4, 8 * 400, &c3, &f3, 1);
    CHECK(l3 == l1 && c3 == c1 && f3 == f1);
    CHECK(bt_session_state_checksum(&sess2) == bt_session_state_checksum(&sess));
    printf("mibminet-like 8x400: loss %d -> %d (Q16), checksum %08x, saturated %lu\n", (int)f1, (int)l1,
           (unsigned)c1, (unsigned long)sess.fx.saturated_total);
    {
        /* a refused step changes nothing */
        static int16_t x[8 * 400];
        int32_t bad[1] = {5}, good[1] = {1};
        bt_value loss;
        const uint32_t before = bt_session_checksum(&sess), sbefore = bt_session_state_checksum(&sess);
        memset(x, 0, sizeof x);
        CHECK(bt_train_step(&sess, &loss, x, 12, bad, 1) == BT_ERR_LABEL);
        CHECK(bt_train_step(&sess, &loss, x, BT_Q_FRAC_MAX + 1, bad, 1) == BT_ERR_LABEL);
        CHECK(bt_train_step(&sess, &loss, x, BT_Q_FRAC_MAX + 1, good, 1) == BT_ERR_BAD_PARAM);
        CHECK(bt_grad_step(&sess, &loss, x, 12, bad, 1) == BT_ERR_LABEL);
        CHECK(bt_train_step(&sess, &loss, NULL, 12, good, 1) == BT_ERR_NULL_POINTER);
        CHECK(bt_calibrate(&sess, x, 12, bad, 1, 1) == BT_ERR_LABEL);
        CHECK(bt_session_checksum(&sess) == before);
        CHECK(bt_session_state_checksum(&sess) == sbefore);
        /* scales are refused out of range or for a tensor the node does not have */
        CHECK(bt_session_set_frac(&sess, 1, BT_FRAC_PARAM, 0, BT_Q_FRAC_MAX + 1) == BT_ERR_BAD_PARAM);
        CHECK(bt_session_set_frac(&sess, 1, BT_FRAC_PARAM, 3, 8) == BT_ERR_BAD_PARAM);
        CHECK(bt_session_set_frac(&sess, g.n_nodes, BT_FRAC_OUT, 0, 8) == BT_ERR_BAD_PARAM);
        CHECK(bt_session_checksum(&sess) == before);
    }
    {
        /* inference gives int8 logits with their scale */
        static int16_t x[2 * 8 * 400];
        int8_t logits[4];
        int frac = -99;
        memset(x, 0, sizeof x);
        CHECK(bt_forward(&sess, logits, &frac, x, 12, 2) == BT_OK);
        CHECK(frac >= BT_Q_FRAC_MIN && frac <= BT_Q_FRAC_MAX);
        CHECK(frac == bt_session_frac(&sess, g.n_nodes - 1, BT_FRAC_OUT, 0));
    }
    blob = check_state(4, &blob_len);

    build_residual();
    po.micro_batch = 2;
    CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
    l1 = run(&sess, arena, 10, 3, 4 * 64, &c1, &f1, 0);
    l2 = run(&sess, arena, 10, 3, 4 * 64, &c2, &f2, 0);
    CHECK(l1 == l2 && c1 == c2 && l1 < f1);
    l3 = run(&sess2, arena2, 10, 3, 4 * 64, &c3, &f3, 1);
    CHECK(l3 == l1 && c3 == c1 && f3 == f1);
    printf("residual: loss %d -> %d (Q16), checksum %08x\n", (int)f1, (int)l1, (unsigned)c1);
    /* another model's blob is refused */
    CHECK(blob != NULL);
    if (blob) CHECK_REFUSED_LOAD(&sess, blob, blob_len, -1, 0, blob_len, BT_ERR_SHAPE_MISMATCH);
    free(blob);

    /* The fixed-point format runs SGD only: a fixed plan for Adam is refused
     * by the session, and so is an optimizer other than the plan's, a
     * momentum without its buffer or a misaligned arena. */
    {
        bt_optim_cfg cfg = sgd_cfg(), adam = sgd_cfg();
        adam.kind = BT_OPTIM_ADAM; adam.lr = 1e-3f; adam.momentum = 0.0f;
        adam.beta1 = 0.9f; adam.beta2 = 0.999f; adam.eps = 1e-8f;
        CHECK(bt_session_init(&sess2, &g, &plan, arena2 + 1, ARENA_BYTES - 1, &cfg, 5u) == BT_ERR_BAD_PARAM);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, plan.peak_bytes - 1, &cfg, 5u) == BT_ERR_ARENA_TOO_SMALL);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &adam, 5u) == BT_ERR_BAD_PARAM);
        po.optimizer = BT_OPTIM_ADAM;
        CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &adam, 5u) == BT_ERR_UNSUPPORTED);
        po.optimizer = BT_OPTIM_SGD;
        po.momentum = 0;
        CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 5u) == BT_ERR_BAD_PARAM);
        cfg.momentum = 0.0f;
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 5u) == BT_OK);
        po.momentum = 1;
    }
    /* ops without a fixed-point kernel (GELU, batchnorm) are refused before any step */
    {
        bt_optim_cfg cfg = sgd_cfg();
        bt_norm_opts nrm = {1, 1, 1e-5f, 0.1f};
        bt_linear_opts fc = {2, 1};
        int x;
        CHECK(bt_graph_init(&g, 2, 1, 8) == BT_OK);
        CHECK(bt_graph_gelu(&g, &x, 0, "gelu") == BT_OK);
        CHECK(bt_graph_linear(&g, &x, x, &fc, "fc") == BT_OK);
        CHECK(bt_graph_finish(&g) == BT_OK);
        bt_graph_set_trainable(&g, x, 1);
        CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 5u) == BT_ERR_UNSUPPORTED);
        CHECK(bt_graph_init(&g, 2, 1, 8) == BT_OK);
        CHECK(bt_graph_batchnorm(&g, &x, 0, &nrm, "bn") == BT_OK);
        CHECK(bt_graph_linear(&g, &x, x, &fc, "fc") == BT_OK);
        CHECK(bt_graph_finish(&g) == BT_OK);
        bt_graph_set_trainable(&g, x, 1);
        po.micro_batch = 4;
        CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 5u) == BT_ERR_UNSUPPORTED);
    }
    /* a float32 plan makes a float32 session: no scales, float input */
    {
        bt_optim_cfg cfg = sgd_cfg();
        build_residual();
        po.dtype = BT_DTYPE_F32;
        CHECK(bt_plan_build(&plan, &g, &po) == BT_OK);
        CHECK(bt_session_init(&sess2, &g, &plan, arena2, ARENA_BYTES, &cfg, 5u) == BT_OK);
        CHECK(sess2.dtype == BT_DTYPE_F32);
        CHECK(bt_session_set_frac(&sess2, 1, BT_FRAC_PARAM, 0, 8) == BT_ERR_UNSUPPORTED);
        CHECK(bt_session_frac(&sess2, 1, BT_FRAC_PARAM, 0) == 0);
        CHECK(bt_calibrate(&sess2, run_x, 12, run_labels, 1, 1) == BT_OK); /* nothing to calibrate */
    }
    free(raw);
    free(raw2);
}

int main(void)
{
    test_rules();
    test_kernels();
    test_executor();
    return bt_test_report("test_fixed_kernels");
}
