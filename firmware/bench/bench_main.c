/* Per-kernel instruction benchmark: for every convolution and linear layer of
 * the table in bt_bench_layers.c, runs the forward, the weight gradient and
 * the input gradient once each on deterministic pseudo-random data and prints
 * the retired instructions of each call (minstret under QEMU -icount shift=0):
 *
 *   bench model=<name> target=<t> dtype=<float32|fixed> counter=<unit> overhead=<n>
 *   layer <i> <name> forward=<n> weight=<n> input=<n>     (0: the step does not run that pass)
 *   done status=0
 *
 * The counter's own cost (two back-to-back reads) is subtracted. The fixed
 * build (BT_BENCH_FIXED=1) runs the q7 kernels with fixed scales. */
#include <stdint.h>
#include <stdio.h>
#include "biotrain/kernels.h"
#include "biotrain/kernels.h"
#include "biotrain/port.h"
#include "bt_bench.h"
#include "bt_bench_layers.h" /* BT_BENCH_FIXED, BT_BENCH_MAX_IN, _OUT, _W, _C */

#ifndef BT_FW_TARGET_NAME
#define BT_FW_TARGET_NAME "unknown"
#endif

#if BT_BENCH_FIXED
typedef int8_t act_t;
typedef int32_t grad_t;
#else
typedef float act_t;
typedef float grad_t;
#endif

static act_t buf_in[BT_BENCH_MAX_IN], buf_din[BT_BENCH_MAX_IN];
static act_t buf_out[BT_BENCH_MAX_OUT], buf_dout[BT_BENCH_MAX_OUT];
static act_t buf_w[BT_BENCH_MAX_W];
static grad_t buf_dw[BT_BENCH_MAX_W];
static grad_t buf_bias[BT_BENCH_MAX_C], buf_dbias[BT_BENCH_MAX_C];

static uint32_t lcg = 12345u;
static int next_small(void)
{
    lcg = lcg * 1664525u + 1013904223u;
    return (int)((lcg >> 24) & 63u) - 32; /* [-32, 31] */
}

static void fill_act(act_t *p, int n)
{
    int i;
    for (i = 0; i < n; ++i) {
#if BT_BENCH_FIXED
        p[i] = (int8_t)next_small();
#else
        p[i] = (float)next_small() * (1.0f / 64.0f);
#endif
    }
}

static void fill_grad(grad_t *p, int n)
{
    int i;
    for (i = 0; i < n; ++i) p[i] = (grad_t)0;
}

static uint32_t overhead;

static uint32_t since(uint64_t t0)
{
    uint64_t d = bt_port_counter() - t0;
    return d > overhead ? (uint32_t)(d - overhead) : 0u;
}

static int fail(const char *what, int layer, bt_status st)
{
    printf("FAIL %s layer %d: %s (status %d)\n", what, layer, bt_status_str(st), (int)st);
    return 1;
}

static int bench_layer(int i)
{
    const bt_bench_layer *L = &bt_bench_layers[i];
    uint32_t t_fwd = 0, t_w = 0, t_in = 0;
    uint64_t t0;
    bt_status st;
    int n_in, n_out, n_w, n_c;
    if (L->kind == BT_BENCH_CONV) {
        const bt_conv2d_shape *s = &L->conv;
        int ho, wo;
        st = bt_conv2d_check(s, &ho, &wo);
        if (st != BT_OK) return fail("shape", i, st);
        n_in = s->n * s->c_in * s->h_in * s->w_in;
        n_out = s->n * s->c_out * ho * wo;
        n_w = s->c_out * (s->c_in / s->groups) * s->k_h * s->k_w;
        n_c = s->c_out;
    } else {
        n_in = L->n * L->in_f;
        n_out = L->n * L->out_f;
        n_w = L->out_f * L->in_f;
        n_c = L->out_f;
    }
    fill_act(buf_in, n_in);
    fill_act(buf_dout, n_out);
    fill_act(buf_w, n_w);
    fill_grad(buf_dw, n_w);
    fill_grad(buf_bias, n_c);
    fill_grad(buf_dbias, n_c);
    /* forward */
    t0 = bt_port_counter();
#if BT_BENCH_FIXED
    if (L->kind == BT_BENCH_CONV)
        st = bt_conv2d_forward_q7(buf_out, 3, NULL, buf_in, 5, buf_w, 6, L->bias ? buf_bias : NULL, 11, &L->conv);
    else
        st = bt_linear_forward_q7(buf_out, 3, NULL, buf_in, 5, buf_w, 6, L->bias ? buf_bias : NULL, 11, L->n,
                                  L->in_f, L->out_f);
#else
    if (L->kind == BT_BENCH_CONV)
        st = bt_conv2d_forward_f32(buf_out, buf_in, buf_w, L->bias ? buf_bias : NULL, &L->conv);
    else
        st = bt_linear_forward_f32(buf_out, buf_in, buf_w, L->bias ? buf_bias : NULL, L->n, L->in_f, L->out_f);
#endif
    t_fwd = since(t0);
    if (st != BT_OK) return fail("forward", i, st);
    if (L->weight_grad) {
        t0 = bt_port_counter();
#if BT_BENCH_FIXED
        if (L->kind == BT_BENCH_CONV)
            st = bt_conv2d_backward_weight_q7(buf_dw, 12, L->bias ? buf_dbias : NULL, 8, NULL, buf_dout, 5,
                                              buf_in, 5, &L->conv);
        else
            st = bt_linear_backward_weight_q7(buf_dw, 12, L->bias ? buf_dbias : NULL, 8, NULL, buf_dout, 5,
                                              buf_in, 5, L->n, L->in_f, L->out_f);
#else
        if (L->kind == BT_BENCH_CONV)
            st = bt_conv2d_backward_weight_f32(buf_dw, L->bias ? buf_dbias : NULL, buf_dout, buf_in, &L->conv);
        else
            st = bt_linear_backward_weight_f32(buf_dw, L->bias ? buf_dbias : NULL, buf_dout, buf_in, L->n,
                                               L->in_f, L->out_f);
#endif
        t_w = since(t0);
        if (st != BT_OK) return fail("weight", i, st);
    }
    if (L->input_grad) {
        t0 = bt_port_counter();
#if BT_BENCH_FIXED
        if (L->kind == BT_BENCH_CONV)
            st = bt_conv2d_backward_input_q7(buf_din, 4, NULL, buf_dout, 5, buf_w, 6, &L->conv);
        else
            st = bt_linear_backward_input_q7(buf_din, 4, NULL, buf_dout, 5, buf_w, 6, L->n, L->in_f, L->out_f);
#else
        if (L->kind == BT_BENCH_CONV)
            st = bt_conv2d_backward_input_f32(buf_din, buf_dout, buf_w, &L->conv);
        else
            st = bt_linear_backward_input_f32(buf_din, buf_dout, buf_w, L->n, L->in_f, L->out_f);
#endif
        t_in = since(t0);
        if (st != BT_OK) return fail("input", i, st);
    }
    printf("layer %d %s forward=%lu weight=%lu input=%lu\n", i, L->name, (unsigned long)t_fwd, (unsigned long)t_w,
           (unsigned long)t_in);
    return 0;
}

int main(void)
{
    int i;
    uint64_t t0 = bt_port_counter();
    overhead = (uint32_t)(bt_port_counter() - t0);
    printf("bench model=%s target=%s dtype=%s counter=%s overhead=%lu\n", bt_bench_model, BT_FW_TARGET_NAME,
           BT_BENCH_FIXED ? "fixed" : "float32", bt_port_counter_unit(), (unsigned long)overhead);
    for (i = 0; i < bt_bench_n_layers; ++i)
        if (bench_layer(i)) return 1;
    printf("done status=0\n");
    return 0;
}
