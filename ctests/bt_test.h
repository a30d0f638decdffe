/* The assertion and reporting helpers every C test program in ctests/
 * shares: a header only (tests/test_c_programs.py builds each ctests .c file as
 * a program of its own, so this must not be a .c file).
 *
 *   CHECK(cond)                 counts a check; prints FAIL file:line: cond
 *   CHECK_STATUS(expr, want)    a bt_status that must equal want (both names printed)
 *   CHECK_NEAR(got, want, tol)  |got - want| <= tol, in double
 *   CHECK_CLOSE(got, ref, n)    bt_test_rel_err(got, ref, n) <= BT_TEST_TOL
 *   bt_test_check(ok, ...)      the function behind them, for a test that
 *                               prints its own details on failure
 *   bt_test_report(name)        prints the counts; returns the exit code (0: all passed)
 *
 * Everything is static inline; the counters live in a function-local static,
 * so a program that uses only part of this header gets no unused warnings
 * under -Wall -Wextra -Werror. FAIL lines go to stdout (the harness shows it
 * on a failure); after BT_TEST_MAX_PRINTED of them the rest are only counted. */
#ifndef BT_TEST_H
#define BT_TEST_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include "biotrain/status.h"

#define BT_TEST_MAX_PRINTED 50
/* The relative tolerance of the float32 kernels against double references. */
#define BT_TEST_TOL 1e-5

typedef struct {
    long checks;
    long failures;
} bt_test_counters;

static inline bt_test_counters *bt_test_counts(void)
{
    static bt_test_counters c = {0, 0};
    return &c;
}

/* Counts one check; on failure prints it (up to BT_TEST_MAX_PRINTED lines).
 * Returns ok, so a caller can add its own details. */
static inline int bt_test_check(int ok, const char *file, int line, const char *what)
{
    bt_test_counters *c = bt_test_counts();
    ++c->checks;
    if (!ok) {
        if (c->failures < BT_TEST_MAX_PRINTED) printf("FAIL %s:%d: %s\n", file, line, what);
        ++c->failures;
        fflush(stdout);
    }
    return ok;
}

static inline int bt_test_check_status(bt_status got, bt_status want, const char *file, int line,
                                       const char *what)
{
    const int ok = got == want;
    if (!bt_test_check(ok, file, line, what))
        if (bt_test_counts()->failures <= BT_TEST_MAX_PRINTED)
            printf("     gave %d (%s), want %d (%s)\n", (int)got, bt_status_str(got), (int)want,
                   bt_status_str(want));
    return ok;
}

static inline int bt_test_check_near(double got, double want, double tol, const char *file, int line,
                                     const char *what)
{
    const int ok = fabs(got - want) <= tol; /* NaN fails */
    if (!bt_test_check(ok, file, line, what))
        if (bt_test_counts()->failures <= BT_TEST_MAX_PRINTED)
            printf("     got %.9g, want %.9g (tolerance %.3g)\n", got, want, tol);
    return ok;
}

/* max |got - ref| / max |ref| (absolute when ref is all zero); a NaN in got
 * gives NaN, which fails every tolerance. */
static inline double bt_test_rel_err(const float *got, const double *ref, size_t n)
{
    double diff = 0.0, scale = 0.0;
    size_t i;
    for (i = 0; i < n; ++i) {
        const double d = fabs((double)got[i] - ref[i]);
        if (d > diff || d != d) diff = d;
        if (fabs(ref[i]) > scale) scale = fabs(ref[i]);
    }
    return scale > 0.0 ? diff / scale : diff;
}

#define CHECK(cond) ((void)bt_test_check((cond) ? 1 : 0, __FILE__, __LINE__, #cond))
#define CHECK_STATUS(expr, want) ((void)bt_test_check_status((expr), (want), __FILE__, __LINE__, #expr " == " #want))
#define CHECK_NEAR(got, want, tol) \
    ((void)bt_test_check_near((double)(got), (double)(want), (double)(tol), __FILE__, __LINE__, #got " ~ " #want))
#define CHECK_CLOSE(got, ref, n) CHECK(bt_test_rel_err((got), (ref), (size_t)(n)) <= BT_TEST_TOL)

/* Prints "<name>: N checks, M failures" (and "all passed" when M is 0);
 * returns the exit code: 0 when every check passed, 1 otherwise. */
static inline int bt_test_report(const char *name)
{
    const bt_test_counters *c = bt_test_counts();
    if (c->failures)
        printf("%s: %ld checks, %ld failures\n", name, c->checks, c->failures);
    else
        printf("%s: %ld checks, all passed\n", name, c->checks);
    fflush(stdout);
    return c->failures ? 1 : 0;
}

/* A heap block of `bytes` whose start is a multiple of `align` (a power of
 * two), freed with free(*raw). When malloc's block is aligned already it is
 * exactly `bytes` long, so AddressSanitizer sees any access past the end. */
static inline void *bt_test_alloc_aligned(size_t bytes, size_t align, void **raw)
{
    const uintptr_t mask = (uintptr_t)(align - 1);
    uint8_t *p = (uint8_t *)malloc(bytes ? bytes : 1);
    size_t pad = 0;
    if (p && ((uintptr_t)p & mask) != 0) {
        free(p);
        p = (uint8_t *)malloc(bytes + align);
        if (p) pad = (size_t)((align - ((uintptr_t)p & mask)) & mask);
    }
    if (!p) {
        printf("out of memory\n");
        exit(2);
    }
    *raw = p;
    return p + pad;
}


/* ---------------------------------------------------------- sessions
 * Available when biotrain/exec.h was included before this header. */
#if defined(BIOTRAIN_EXEC_H)
#include <string.h>

/* A copy of a session and of its planned arena bytes, to prove that a
 * refused call changed nothing. */
typedef struct {
    bt_session s;
    uint8_t *arena;
} bt_test_snapshot;

static inline void bt_test_snap_take(bt_test_snapshot *sn, const bt_session *s)
{
    memcpy(&sn->s, s, sizeof *s);
    sn->arena = (uint8_t *)malloc(s->p->peak_bytes ? s->p->peak_bytes : 1);
    if (sn->arena) memcpy(sn->arena, s->arena, s->p->peak_bytes);
}

static inline int bt_test_snap_same(const bt_test_snapshot *sn, const bt_session *s)
{
    return sn->arena && memcmp(&sn->s, s, sizeof *s) == 0 && memcmp(sn->arena, s->arena, s->p->peak_bytes) == 0;
}

static inline void bt_test_snap_free(bt_test_snapshot *sn)
{
    free(sn->arena);
    sn->arena = NULL;
}

/* Words of a state blob (little-endian, session_state.c's layout): the
 * header (magic, version, dtype, model hash, n_nodes, payload words), the
 * step (2), the beta powers (2), the generator (4), the optimizer (kind, lr,
 * momentum, weight decay, beta1, beta2, eps); then, fixed point, per node
 * BT_TEST_W_NODE_WORDS words (out, dout, wq scales, two windows, their two
 * counts, per parameter slot the param, grad and momentum scales); float32
 * goes straight to the tensors. */
#define BT_TEST_W_MAGIC 0
#define BT_TEST_W_VERSION 1
#define BT_TEST_W_DTYPE 2
#define BT_TEST_W_HASH 3
#define BT_TEST_W_PAYLOAD 5
#define BT_TEST_W_OPT_KIND 14
#define BT_TEST_W_LR 15
#define BT_TEST_W_MOMENTUM 16
#define BT_TEST_W_BODY 21 /* the first per-node word (fixed) or tensor word (float32) */
#define BT_TEST_W_NODE_WORDS (7 + 3 * BT_MAX_PARAMS_PER_NODE)
#define BT_TEST_HEAD_WORDS 6

static inline void bt_test_put_word(uint8_t *b, size_t word, uint32_t w)
{
    b[4 * word] = (uint8_t)(w & 0xffu);
    b[4 * word + 1] = (uint8_t)((w >> 8) & 0xffu);
    b[4 * word + 2] = (uint8_t)((w >> 16) & 0xffu);
    b[4 * word + 3] = (uint8_t)((w >> 24) & 0xffu);
}

static inline uint32_t bt_test_get_word(const uint8_t *b, size_t word)
{
    return (uint32_t)b[4 * word] | ((uint32_t)b[4 * word + 1] << 8) | ((uint32_t)b[4 * word + 2] << 16) |
           ((uint32_t)b[4 * word + 3] << 24);
}

/* Loads a copy of blob (need bytes) with word `word` replaced by w (word < 0:
 * as it is), passing `len` bytes: the status must be `want` and the session
 * (struct and arena) unchanged. */
static inline int bt_test_refused_load(bt_session *r, const uint8_t *blob, size_t need, long word, uint32_t w,
                                       size_t len, bt_status want, const char *file, int line)
{
    uint8_t *bad = (uint8_t *)calloc(need + 8, 1);
    bt_test_snapshot sn;
    bt_status st;
    int ok;
    if (!bad) {
        printf("out of memory\n");
        exit(2);
    }
    memcpy(bad, blob, need);
    if (word >= 0) bt_test_put_word(bad, (size_t)word, w);
    bt_test_snap_take(&sn, r);
    st = bt_session_load_state(r, bad, len);
    ok = st == want && bt_test_snap_same(&sn, r);
    if (!bt_test_check(ok, file, line, "a refused state blob leaves the session as it was"))
        printf("     word %ld = 0x%08lx, %lu bytes: %s, want %s%s\n", word, (unsigned long)w, (unsigned long)len,
               bt_status_str(st), bt_status_str(want), st == want ? " (but the session changed)" : "");
    bt_test_snap_free(&sn);
    free(bad);
    return ok;
}
#define CHECK_REFUSED_LOAD(r, blob, need, word, w, len, want) \
    ((void)bt_test_refused_load((r), (blob), (need), (long)(word), (uint32_t)(w), (len), (want), __FILE__, __LINE__))

#endif /* BIOTRAIN_EXEC_H */

#endif
