/* Fixed-point kernels and executor in plain C: the rounding and saturation
 * rules on hand-computed values, the documented refusals (nothing written),
 * and whole training runs of a small MI-BMInet-like graph and a residual
 * graph through the fixed-point executor. Built by tests/test_c_programs.py
 * with -DBT_PLAN_CHECK under AddressSanitizer, so every arena byte the plan
 * says is dead at a step is poisoned while the fixed-point executor runs it. */
#include <stdio.h>
#include <string.h>
#include "biotrain/exec_fixed.h"
#include "biotrain/kernels_fixed.h"

static int failures = 0;
#define EXPECT(cond)                                                         \
    do {                                                                     \
        if (!(cond)) {                                                       \
            fprintf(stderr, "%s:%d: expected %s\n", __FILE__, __LINE__, #cond); \
            failures++;                                                      \
        }                                                                    \
    } while (0)

static void test_rules(void)
{
    int32_t m;
    int e;
    float one = 1.0f, tenth = 0.1f;
    /* round half to even, symmetric */
    EXPECT(bt_q_shift_round(1, 1) == 0 && bt_q_shift_round(3, 1) == 2 && bt_q_shift_round(5, 1) == 2);
    EXPECT(bt_q_shift_round(-1, 1) == 0 && bt_q_shift_round(-3, 1) == -2 && bt_q_shift_round(-5, 1) == -2);
    EXPECT(bt_q_shift_round(7, 2) == 2 && bt_q_shift_round(-7, 2) == -2 && bt_q_shift_round(6, 2) == 2);
    EXPECT(bt_q_shift_round(5, -3) == 40 && bt_q_shift_round((int64_t)1 << 60, -5) == BT_Q_BIG);
    EXPECT(bt_q_shift_round(-((int64_t)1 << 60), -5) == -BT_Q_BIG);
    EXPECT(bt_q_div_round(7, 2) == 4 && bt_q_div_round(5, 2) == 2 && bt_q_div_round(-7, 2) == -4);
    EXPECT(bt_q_div_round(14, 5) == 3 && bt_q_div_round(-14, 5) == -3 && bt_q_div_round(12, 5) == 2);
    EXPECT(bt_q_isqrt64(0) == 0 && bt_q_isqrt64(15) == 3 && bt_q_isqrt64(16) == 4);
    EXPECT(bt_q_isqrt64(0xffffffffffffffffULL) == 0xffffffffULL);
    {
        bt_q_stats st = {0, 0};
        EXPECT(bt_q_clamp(200, 127, &st) == 127 && bt_q_clamp(-200, 127, &st) == -127);
        EXPECT(bt_q_clamp(-5, 127, &st) == -5 && st.saturated == 2 && st.absmax == 200);
    }
    EXPECT(bt_q_exp_neg_q30(0, 4) == (1 << 30));
    EXPECT(bt_q_exp_neg_q30(-16, 4) > 395000000 && bt_q_exp_neg_q30(-16, 4) < 395010000); /* e^-1 * 2^30 */
    EXPECT(bt_q_log2_q16((uint64_t)1 << 30, 30) == 0);
    EXPECT(bt_q_log2_q16((uint64_t)3 << 30, 30) >= 103871 && bt_q_log2_q16((uint64_t)3 << 30, 30) <= 103873);
    EXPECT(bt_q_decode_f32(&m, &e, &one) == BT_OK && m == (1 << 23) && e == 23);
    EXPECT(bt_q_decode_f32(&m, &e, &tenth) == BT_OK && m == 13421773 && e == 27);
    EXPECT(bt_q_frac_adapt(4, 300, 7) == 2 && bt_q_frac_adapt(4, 20, 7) == 6 && bt_q_frac_adapt(4, 0, 7) == 8);
}

static void test_kernels(void)
{
    /* linear: [0.5 1 1.5] . [[1 1 1], [-2 0 1]] = [3, 0.5], bias [0.5, -1] (1 fractional bit) */
    {
        const int8_t x[3] = {1, 2, 3}, w[6] = {1, 1, 1, -2, 0, 1};
        const int32_t b[2] = {1, -2};
        int8_t y[2] = {99, 99};
        bt_q_stats st = {0, 0};
        EXPECT(bt_linear_forward_q7(y, 1, &st, x, 1, w, 0, b, 1, 1, 3, 2) == BT_OK);
        EXPECT(y[0] == 7 && y[1] == -1); /* 3.5 and -0.5 with 1 fractional bit */
        /* a bias of 2^30 with no fractional bits cannot be aligned to 20 bits: refused, y untouched */
        {
            const int32_t big[2] = {1 << 30, 0};
            EXPECT(bt_linear_forward_q7(y, 1, &st, x, 10, w, 10, big, 0, 1, 3, 2) == BT_ERR_OVERFLOW);
            EXPECT(y[0] == 7 && y[1] == -1);
        }
        EXPECT(bt_linear_forward_q7(y, BT_Q_FRAC_MAX + 1, &st, x, 0, w, 0, NULL, 0, 1, 3, 2) == BT_ERR_BAD_PARAM);
    }
    /* groupnorm of [1, -1] (M = 2, no eps): x_hat = +-1.0 exactly, y = +-64 at 6 fractional bits */
    {
        const int8_t x[2] = {1, -1};
        int8_t y[2];
        int32_t mean, rstd;
        EXPECT(bt_groupnorm_forward_q7(y, 6, NULL, &mean, &rstd, x, 0, NULL, 0, NULL, 0, 1, 2, 1, 1, 0, 0) == BT_OK);
        EXPECT(y[0] == 64 && y[1] == -64 && mean == 0);
        EXPECT((rstd & 0x1ffffff) == (1 << 24) && (rstd >> 25) == 29);
    }
    /* average pool of 5 with one rounding, max pool picks the first maximum */
    {
        const int8_t x[10] = {1, 1, 1, 1, 3, 4, 9, 9, -2, 0};
        int8_t y[2];
        int32_t am[2];
        bt_pool2d_shape ps = {1, 1, 1, 10, 1, 5, 1, 5, 0, 0};
        EXPECT(bt_avgpool2d_forward_q7(y, 1, NULL, x, 0, &ps) == BT_OK);
        EXPECT(y[0] == 3 && y[1] == 8); /* 14/5 = 2.8 -> 3; 40/5 = 8 */
        EXPECT(bt_maxpool2d_forward_q7(y, 0, NULL, am, x, 0, &ps) == BT_OK);
        EXPECT(y[0] == 3 && y[1] == 9 && am[0] == 4 && am[1] == 6);
    }
    /* softmax cross-entropy of equal logits: p = 1/2, loss = ln 2 */
    {
        const int8_t z[2] = {5, 5};
        const int32_t lab[1] = {1};
        int16_t p[2];
        int8_t d[2];
        int32_t loss = 0;
        EXPECT(bt_cross_entropy_forward_q7(&loss, p, z, 4, lab, 1, 2) == BT_OK);
        EXPECT(p[0] == 8192 && p[1] == 8192 && loss >= 45425 && loss <= 45426); /* ln 2 * 2^16 = 45426.1 */
        EXPECT(bt_cross_entropy_backward_q7(d, 8, NULL, p, lab, 1, 1, 2) == BT_OK);
        EXPECT(d[0] == 127 && d[1] == -127); /* +-0.5 * 2^8 = 128: saturated */
        EXPECT(bt_cross_entropy_forward_q7(&loss, p, z, 4, lab, 1, 1) == BT_ERR_LABEL);
    }
    /* a reduction too long for int32 (131072 int8 products) is refused */
    {
        static int8_t big[131072];
        int8_t y[1] = {42};
        memset(big, 1, sizeof big);
        EXPECT(bt_linear_forward_q7(y, 0, NULL, big, 0, big, 0, NULL, 0, 1, 131072, 1) == BT_ERR_OVERFLOW);
        EXPECT(y[0] == 42);
        EXPECT(bt_linear_forward_q7(y, -20, NULL, big, 0, big, 0, NULL, 0, 1, 131071, 1) == BT_OK);
        EXPECT(y[0] == 0); /* 131071 * 2^-20 = 0.125 -> 0 */
    }
    /* SGD: a tiny step still moves the int32 master */
    {
        int32_t w[1] = {1 << 24}, buf[1] = {0};
        const int32_t g[1] = {1 << 10};
        bt_q_sgd_cfg cfg = {0, 0, 0, 0, 0, 0};
        float lr = 1e-3f, mom = 0.9f;
        bt_q_decode_f32(&cfg.lr_mant, &cfg.lr_exp, &lr);
        bt_q_decode_f32(&cfg.mom_mant, &cfg.mom_exp, &mom);
        EXPECT(bt_sgd_update_q31(w, 24, buf, 20, NULL, g, 20, 1, &cfg) == BT_OK);
        EXPECT(w[0] == (1 << 24) - 16 && buf[0] == (1 << 10)); /* 1e-3 * 2^-10 * 2^24 = 16.4 -> 16 */
    }
}

/* ------------------------------------------------------------ executor */
static bt_graph g;
static bt_plan plan;
static uint64_t arena[200000 / 8]; /* uint64_t: aligned for every element type */
static bt_fixed_session sess;

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
    EXPECT(bt_graph_init(&g, 1, channels, samples) == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, 0, &spatial, "spatial") == BT_OK);
    EXPECT(bt_graph_groupnorm(&g, &x, x, &nrm, "norm1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &temporal, "temporal") == BT_OK);
    EXPECT(bt_graph_groupnorm(&g, &x, x, &nrm, "norm2") == BT_OK);
    EXPECT(bt_graph_relu(&g, &x, x, "relu1") == BT_OK);
    EXPECT(bt_graph_avgpool2d(&g, &x, x, &pool, "pool1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &dw, "depthwise") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &x, x, &pw, "pointwise") == BT_OK);
    EXPECT(bt_graph_groupnorm(&g, &x, x, &nrm, "norm3") == BT_OK);
    EXPECT(bt_graph_relu(&g, &x, x, "relu2") == BT_OK);
    EXPECT(bt_graph_avgpool2d(&g, &x, x, &pool, "pool2") == BT_OK);
    EXPECT(bt_graph_flatten(&g, &x, x, "flatten") == BT_OK);
    EXPECT(bt_graph_linear(&g, &x, x, &fc, "classifier") == BT_OK);
    EXPECT(bt_graph_finish(&g) == BT_OK);
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
    EXPECT(bt_graph_init(&g, 4, 1, 64) == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &a, 0, &c, "c1") == BT_OK);
    EXPECT(bt_graph_groupnorm(&g, &b, a, &nrm, "n1") == BT_OK);
    EXPECT(bt_graph_relu(&g, &b, b, "r1") == BT_OK);
    EXPECT(bt_graph_conv2d(&g, &b, b, &c, "c2") == BT_OK);
    EXPECT(bt_graph_add(&g, &s, a, b, "skip") == BT_OK);
    EXPECT(bt_graph_relu(&g, &s, s, "r2") == BT_OK);
    EXPECT(bt_graph_maxpool2d(&g, &s, s, &mp, "mp") == BT_OK);
    EXPECT(bt_graph_flatten(&g, &s, s, "flat") == BT_OK);
    EXPECT(bt_graph_linear(&g, &s, s, &fc, "fc") == BT_OK);
    EXPECT(bt_graph_finish(&g) == BT_OK);
    for (i = 1; i < g.n_nodes; ++i) bt_graph_set_trainable(&g, i, 1);
}

/* Masters from a fixed pseudo-random pattern: about +-0.25 at 24 fractional bits,
 * groupnorm scales 1.0. */
static void load_params(bt_fixed_session *s)
{
    int v, k;
    for (v = 1; v < g.n_nodes; ++v)
        for (k = 0; k < 2; ++k) {
            size_t n = 0, i;
            int *frac = NULL;
            int32_t *p = bt_fixed_session_param(s, v, k, &n, &frac);
            if (!p) continue;
            for (i = 0; i < n; ++i)
                p[i] = g.nodes[v].kind == BT_OP_GROUPNORM ? (k == 0 ? (1 << 22) : 0) : (int32_t)rnd16(32000) * 128;
            *frac = g.nodes[v].kind == BT_OP_GROUPNORM ? 22 : 24;
        }
}

static int32_t run(int steps, int batch, int sample_numel, uint32_t *checksum, int32_t *first_loss)
{
    static int16_t x[8 * 1 * 8 * 400];
    int32_t labels[8], loss = 0;
    bt_q_sgd_cfg cfg;
    float lr = 0.05f, mom = 0.9f, wd = 1e-3f;
    int i, step;
    bt_q_decode_f32(&cfg.lr_mant, &cfg.lr_exp, &lr);
    bt_q_decode_f32(&cfg.mom_mant, &cfg.mom_exp, &mom);
    bt_q_decode_f32(&cfg.wd_mant, &cfg.wd_exp, &wd);
    EXPECT(bt_fixed_session_init(&sess, &g, &plan, arena, sizeof arena, &cfg, 5u) == BT_OK);
    lcg = 7u;
    load_params(&sess);
    for (i = 0; i < batch; ++i) labels[i] = i % g.classes;
    /* class-dependent offsets in noise: learnable */
    for (i = 0; i < batch * sample_numel; ++i)
        x[i] = (int16_t)(rnd16(2000) + (labels[i / sample_numel] == 1 ? 3000 : -1000) * ((i % 7) == 0));
    EXPECT(bt_fixed_calibrate(&sess, x, 12, labels, batch, 3) == BT_OK);
    for (step = 0; step < steps; ++step) {
        EXPECT(bt_fixed_train_step(&sess, &loss, x, 12, labels, batch) == BT_OK);
        if (step == 0) *first_loss = loss;
    }
    *checksum = bt_fixed_session_checksum(&sess);
    return loss;
}

static void test_executor(void)
{
    bt_plan_opts po = {1, BT_OPTIM_SGD, 1, 1, BT_DTYPE_FIXED};
    uint32_t c1 = 0, c2 = 0;
    int32_t l1, l2, f1 = 0, f2 = 0;
    /* the planner's figure: MI-BMInet at 8 x 1900, full, micro-batch 1, fixed point */
    build_mibminet_like(8, 1900, 2);
    EXPECT(bt_plan_build(&plan, &g, &po) == BT_OK);
    EXPECT(plan.peak_bytes <= 120000);
    printf("fixed-point MI-BMInet 8x1900 peak: %lu bytes\n", (unsigned long)plan.peak_bytes);

    build_mibminet_like(8, 400, 2);
    EXPECT(bt_plan_build(&plan, &g, &po) == BT_OK);
    EXPECT(plan.peak_bytes <= sizeof arena);
    l1 = run(12, 4, 8 * 400, &c1, &f1);
    l2 = run(12, 4, 8 * 400, &c2, &f2);
    EXPECT(l1 == l2 && c1 == c2 && f1 == f2); /* the same run gives the same bits */
    EXPECT(l1 < f1);                          /* and it learns */
    printf("mibminet-like 8x400: loss %d -> %d (Q16), checksum %08x, saturated %lu\n", (int)f1, (int)l1,
           (unsigned)c1, (unsigned long)sess.saturated_total);
    {
        /* a refused step changes nothing */
        static int16_t x[8 * 400];
        int32_t bad[1] = {5}, loss = 0;
        uint32_t before = bt_fixed_session_checksum(&sess);
        memset(x, 0, sizeof x);
        EXPECT(bt_fixed_train_step(&sess, &loss, x, 12, bad, 1) == BT_ERR_LABEL);
        EXPECT(bt_fixed_train_step(&sess, &loss, x, BT_Q_FRAC_MAX + 1, bad, 1) == BT_ERR_LABEL);
        EXPECT(bt_fixed_session_checksum(&sess) == before);
    }
    {
        /* inference gives int8 logits with their scale */
        static int16_t x[2 * 8 * 400];
        int8_t logits[4];
        int frac = -99;
        memset(x, 0, sizeof x);
        EXPECT(bt_fixed_forward(&sess, logits, &frac, x, 12, 2) == BT_OK);
        EXPECT(frac >= BT_Q_FRAC_MIN && frac <= BT_Q_FRAC_MAX);
    }

    build_residual();
    po.micro_batch = 2;
    EXPECT(bt_plan_build(&plan, &g, &po) == BT_OK);
    l1 = run(10, 3, 4 * 64, &c1, &f1);
    l2 = run(10, 3, 4 * 64, &c2, &f2);
    EXPECT(l1 == l2 && c1 == c2 && l1 < f1);
    printf("residual: loss %d -> %d (Q16), checksum %08x\n", (int)f1, (int)l1, (unsigned)c1);

    /* a float32 plan, or Adam, is refused by the fixed-point session */
    po.dtype = BT_DTYPE_F32;
    EXPECT(bt_plan_build(&plan, &g, &po) == BT_OK);
    {
        bt_q_sgd_cfg cfg = {1, 10, 0, 0, 0, 0};
        EXPECT(bt_fixed_session_init(&sess, &g, &plan, arena, sizeof arena, &cfg, 5u) == BT_ERR_BAD_PARAM);
    }
}

int main(void)
{
    test_rules();
    test_kernels();
    test_executor();
    if (failures) {
        fprintf(stderr, "%d failure(s)\n", failures);
        return 1;
    }
    printf("all fixed-point checks passed\n");
    return 0;
}
