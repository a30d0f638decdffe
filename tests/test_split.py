"""The 8-core split (biotrain/port.h bt_port_parallel_for): on the host the
workers run one after another, so 8 simulated workers, in ascending and in
descending order, must give exactly the bits of one worker (and the same
saturation statistics) for every pass of the split kernels. A worker that
wrote another's element, or read an element another worker had still to
write, would change the result in one of the two orders.

The program is compiled with the core and the host port, with the strict
flags, and prints the first difference it finds."""
import glob
import os
import shutil
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CC = shutil.which("gcc") or shutil.which("cc")

PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "biotrain/kernels.h"
#include "biotrain/port.h"

#define MAXN 20000
static int8_t in[MAXN], dout[MAXN], w[4096], out[3][MAXN], din[3][MAXN];
static int32_t bias[64], dw[3][4096], db[3][64];
static bt_q_stats st[3][3];
static unsigned lcg = 1u;
static int8_t rnd(void) { lcg = lcg * 1664525u + 1013904223u; return (int8_t)((int)(lcg >> 24) - 128 + ((lcg >> 24) == 0)); }

static int run(const bt_conv2d_shape *s, int cfg, int bias_on)
{
    bt_status a, b, c;
    static const int workers[3] = {1, 8, 8}, reverse[3] = {0, 0, 1};
    bt_port_set_workers(workers[cfg], reverse[cfg]);
    memset(out[cfg], 0x55, sizeof out[cfg]);
    memset(din[cfg], 0x55, sizeof din[cfg]);
    memset(dw[cfg], 0, sizeof dw[cfg]);
    memset(db[cfg], 0, sizeof db[cfg]);
    memset(st[cfg], 0, sizeof st[cfg]);
    /* scales chosen so that some values saturate: the statistics are compared too */
    a = bt_conv2d_forward_q7(out[cfg], 2, &st[cfg][0], in, 5, w, 6, bias_on ? bias : NULL, 11, s);
    b = bt_conv2d_backward_input_q7(din[cfg], 2, &st[cfg][1], dout, 5, w, 6, s);
    c = bt_conv2d_backward_weight_q7(dw[cfg], 4, bias_on ? db[cfg] : NULL, 2, &st[cfg][2], dout, 5, in, 5, s);
    bt_port_set_workers(1, 0);
    return a != BT_OK || b != BT_OK || c != BT_OK;
}

int main(void)
{
    /* n, c_in, h, w, c_out, kh, kw, stride, pad, dil, groups: the zoo's shapes, plus odd ones */
    static const bt_conv2d_shape shapes[] = {
        {1, 1, 8, 190, 8, 8, 1, 1, 1, 0, 0, 1, 1, 1},    /* spatial Cx1 */
        {1, 8, 1, 300, 8, 1, 64, 1, 1, 0, 0, 1, 1, 8},   /* depthwise temporal 1x64 */
        {2, 8, 1, 214, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1},    /* pointwise, batch 2 */
        {1, 4, 1, 120, 16, 1, 16, 1, 1, 0, 7, 1, 1, 1},  /* dense 4->16, 1x16, padded */
        {1, 3, 5, 37, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1},     /* 5 channels over 8 workers, strides */
        {1, 16, 1, 50, 32, 1, 8, 1, 2, 0, 3, 1, 2, 16},  /* grouped, dilated */
    };
    int i, k, bad = 0;
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    for (i = 0; i < MAXN; ++i) { in[i] = rnd(); dout[i] = rnd(); }
    for (i = 0; i < 4096; ++i) w[i] = rnd();
    for (i = 0; i < 64; ++i) bias[i] = (int32_t)rnd() * 1000;
    for (i = 0; i < ns; ++i) {
        const int bias_on = i % 2;
        for (k = 0; k < 3; ++k)
            if (run(&shapes[i], k, bias_on)) { printf("shape %d config %d: kernel failed\n", i, k); return 2; }
        for (k = 1; k < 3; ++k) {
            if (memcmp(out[0], out[k], sizeof out[0])) { printf("shape %d config %d: forward differs\n", i, k); bad = 1; }
            if (memcmp(din[0], din[k], sizeof din[0])) { printf("shape %d config %d: input grad differs\n", i, k); bad = 1; }
            if (memcmp(dw[0], dw[k], sizeof dw[0]) || memcmp(db[0], db[k], sizeof db[0])) {
                printf("shape %d config %d: weight grad differs\n", i, k); bad = 1; }
            if (memcmp(st[0], st[k], sizeof st[0])) { printf("shape %d config %d: stats differ\n", i, k); bad = 1; }
        }
        printf("shape %d: saturated %lu %lu %lu\n", i, (unsigned long)st[0][0].saturated,
               (unsigned long)st[0][1].saturated, (unsigned long)st[0][2].saturated);
    }
    printf(bad ? "FAIL\n" : "OK\n");
    return bad;
}
"""


def _build(tmp_path):
    assert CC, "a C compiler is required"
    src = tmp_path / "split.c"
    src.write_text(PROGRAM)
    exe = tmp_path / "split"
    core = sorted(glob.glob(os.path.join(ROOT, "csrc", "src", "**", "*.c"), recursive=True))
    cmd = [CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-O1",
           "-I", os.path.join(ROOT, "csrc", "include"), str(src), *core,
           os.path.join(ROOT, "csrc", "port", "host", "port_host.c"), "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return exe


def test_chunks_cover_once():
    # the split of [0, n) the ports use: contiguous, disjoint, complete (mirrors bt_port_chunk)
    for n in range(0, 40):
        for workers in range(1, 9):
            seen = []
            for i in range(workers):
                q, r = divmod(n, workers)
                b = i * q + min(i, r)
                seen += list(range(b, b + q + (1 if i < r else 0)))
            assert seen == list(range(n))


def test_fixed_conv_eight_workers_identical(tmp_path):
    exe = _build(tmp_path)
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=60)
    print(r.stdout)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
    # the statistics comparison is not vacuous: some values saturate
    assert any(int(x) > 0 for line in r.stdout.splitlines() if line.startswith("shape")
               for x in line.split()[-3:])


FLOAT_PROGRAM = r"""
#include <stdio.h>
#include <string.h>
#include "biotrain/kernels.h"
#include "biotrain/port.h"

#define MAXN 40000
#define SENT 12345.0f
static float in[MAXN], dout[MAXN], w[8192], bias[64];
static float out[3][MAXN], din[3][MAXN], dw[3][8192], db[3][64];
static float o1[MAXN], d1[MAXN], w1[8192], b1[64];
static unsigned lcg = 7u;
static float rnd(void) { lcg = lcg * 1664525u + 1013904223u; return (float)((int)(lcg >> 8) - (1 << 23)) / (float)(1 << 23); }
static void fill(float *p, size_t n, float v) { size_t i; for (i = 0; i < n; ++i) p[i] = v; }

/* Elements [0, total) in rows of `row` values, grouped as n samples of c
 * channels: 1 if every row of a channel in [cb, ce) equals ref and every
 * other row is still SENT. */
static int owns(const float *got, const float *ref, int n, int c, size_t row, int cb, int ce)
{
    int s, ch;
    size_t i;
    for (s = 0; s < n; ++s)
        for (ch = 0; ch < c; ++ch) {
            const float *g = got + ((size_t)s * c + ch) * row, *r = ref + ((size_t)s * c + ch) * row;
            for (i = 0; i < row; ++i) {
                if (ch >= cb && ch < ce) { if (memcmp(&g[i], &r[i], sizeof(float))) return 0; }
                else if (g[i] != SENT) return 0;
            }
        }
    return 1;
}

int main(void)
{
    static const bt_conv2d_shape shapes[] = {
        {1, 1, 8, 190, 8, 8, 1, 1, 1, 0, 0, 1, 1, 1},    /* spatial Cx1 */
        {1, 8, 1, 300, 8, 1, 64, 1, 1, 0, 32, 1, 1, 8},  /* depthwise temporal 1x64 */
        {2, 8, 1, 214, 8, 1, 1, 1, 1, 0, 0, 1, 1, 1},    /* pointwise, batch 2 */
        {1, 4, 1, 120, 16, 1, 16, 1, 1, 0, 7, 1, 1, 1},  /* dense 4->16, 1x16, padded */
        {1, 3, 5, 37, 5, 3, 3, 2, 2, 1, 1, 1, 1, 1},     /* 5 channels over 8 workers, strides */
        {1, 16, 1, 50, 32, 1, 8, 1, 2, 0, 3, 1, 2, 16},  /* grouped, dilated */
        {2, 6, 4, 33, 12, 3, 5, 1, 1, 1, 2, 1, 1, 3},    /* 3 groups of 2 -> 4 */
    };
    const int ns = (int)(sizeof shapes / sizeof shapes[0]);
    int i, k, id, bad = 0;
    for (i = 0; i < MAXN; ++i) { in[i] = rnd(); dout[i] = rnd(); }
    for (i = 0; i < 8192; ++i) w[i] = rnd();
    for (i = 0; i < 64; ++i) bias[i] = rnd();
    for (i = 0; i < ns; ++i) {
        const bt_conv2d_shape *s = &shapes[i];
        int ho, wo;
        size_t nw;
        bt_conv2d_check(s, &ho, &wo);
        nw = (size_t)s->c_out * (s->c_in / s->groups) * s->k_h * s->k_w;
        /* 1 worker, 8 ascending, 8 descending: the same bits */
        for (k = 0; k < 3; ++k) {
            bt_port_set_workers(k == 0 ? 1 : 8, k == 2);
            fill(out[k], MAXN, SENT); fill(din[k], MAXN, SENT); fill(dw[k], 8192, SENT); fill(db[k], 64, SENT);
            if (bt_conv2d_forward_f32(out[k], in, w, i % 2 ? bias : NULL, s) ||
                bt_conv2d_backward_input_f32(din[k], dout, w, s) ||
                bt_conv2d_backward_weight_f32(dw[k], db[k], dout, in, s)) { printf("shape %d: kernel failed\n", i); return 2; }
        }
        bt_port_set_workers(1, 0);
        for (k = 1; k < 3; ++k)
            if (memcmp(out[0], out[k], sizeof out[0]) || memcmp(din[0], din[k], sizeof din[0]) ||
                memcmp(dw[0], dw[k], sizeof dw[0]) || memcmp(db[0], db[k], sizeof db[0])) {
                printf("shape %d config %d: differs from one worker\n", i, k); bad = 1; }
        /* each of the 8 workers alone writes exactly its own channels */
        for (id = 0; id < 8; ++id) {
            int cb, ce, ib, ie;
            bt_port_chunk(s->c_out, 8, id, &cb, &ce);
            bt_port_chunk(s->c_in, 8, id, &ib, &ie);
            bt_port_set_workers(8, 0);
            bt_port_set_only_worker(id);
            fill(o1, MAXN, SENT); fill(d1, MAXN, SENT); fill(w1, 8192, SENT); fill(b1, 64, SENT);
            bt_conv2d_forward_f32(o1, in, w, i % 2 ? bias : NULL, s);
            bt_conv2d_backward_input_f32(d1, dout, w, s);
            bt_conv2d_backward_weight_f32(w1, b1, dout, in, s);
            bt_port_set_only_worker(-1);
            bt_port_set_workers(1, 0);
            if (!owns(o1, out[0], s->n, s->c_out, (size_t)ho * wo, cb, ce) ||
                !owns(d1, din[0], s->n, s->c_in, (size_t)s->h_in * s->w_in, ib, ie) ||
                !owns(w1, dw[0], 1, s->c_out, nw / s->c_out, cb, ce) || !owns(b1, db[0], 1, s->c_out, 1, cb, ce)) {
                printf("shape %d worker %d: wrote outside its channels or missed some\n", i, id); bad = 1; }
        }
        printf("shape %d: ok so far %d\n", i, !bad);
    }
    printf(bad ? "FAIL\n" : "OK\n");
    return bad;
}
"""


def test_float_conv_eight_workers_identical_and_disjoint(tmp_path):
    """The float conv kernels split over channels: 8 workers in either order give
    one worker's bits, and each worker run alone writes exactly its own chunk of
    channels (output, input or weight rows) and leaves every other one untouched,
    so no element is computed by two workers and none by no worker."""
    src = tmp_path / "split_f32.c"
    src.write_text(FLOAT_PROGRAM)
    exe = tmp_path / "split_f32"
    core = sorted(glob.glob(os.path.join(ROOT, "csrc", "src", "**", "*.c"), recursive=True))
    cmd = [CC, "-std=c99", "-pedantic", "-Wall", "-Wextra", "-Werror", "-ffp-contract=off", "-O1",
           "-I", os.path.join(ROOT, "csrc", "include"), str(src), *core,
           os.path.join(ROOT, "csrc", "port", "host", "port_host.c"), "-lm", "-o", str(exe)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    r = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    print(r.stdout)
    assert r.returncode == 0 and r.stdout.strip().endswith("OK"), r.stdout + r.stderr
