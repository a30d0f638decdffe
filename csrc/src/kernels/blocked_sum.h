/* Deterministic float32 summation shared by the reducing kernels (internal,
 * not installed).
 *
 * Terms add up in the order they are given into a partial sum; after every
 * BT_SUM_BLOCK terms the partial sum is added to a running total and restarts
 * from zero. The rounding error then grows like BT_SUM_BLOCK + count /
 * BT_SUM_BLOCK rather than like count, and the order of the additions (hence
 * the bits of the result) depends only on the sequence of terms: the same on
 * every platform and at every optimisation level (the compiler may not
 * reassociate float additions). */
#ifndef BIOTRAIN_BLOCKED_SUM_H
#define BIOTRAIN_BLOCKED_SUM_H

#define BT_SUM_BLOCK 64

typedef struct {
    float total; /* sum of the completed blocks, in order */
    float part;  /* sum of the current block */
    int k;       /* terms in the current block */
} bt_bsum;

static inline void bt_bsum_init(bt_bsum *s)
{
    s->total = 0.0f;
    s->part = 0.0f;
    s->k = 0;
}

static inline void bt_bsum_add(bt_bsum *s, float v)
{
    s->part += v;
    if (++s->k == BT_SUM_BLOCK) {
        s->total += s->part;
        s->part = 0.0f;
        s->k = 0;
    }
}

static inline float bt_bsum_get(const bt_bsum *s) { return s->total + s->part; }

/* Lane sums: the same guarantees in an order a vector unit can follow.
 * Over a run of terms i = 0 .. m-1, term i goes into lane i % BT_SUM_LANES
 * (each lane starting from zero); after every BT_SUM_CHUNK terms, and at the
 * end of the run, the lanes are folded in a fixed tree (lane l += lane
 * l + w for w = 8, 4, 2, 1) and lane 0 is added to the caller's running
 * total. The error grows like BT_SUM_CHUNK / BT_SUM_LANES + m / BT_SUM_CHUNK,
 * and the bits depend only on the terms, as with bt_bsum. */
#define BT_SUM_LANES 16
#define BT_SUM_CHUNK 1024

static inline float bt_lanes_fold(const float *l)
{
    /* written out: a loop over w invites compilers to vectorise the fold */
    const float a0 = l[0] + l[8], a1 = l[1] + l[9], a2 = l[2] + l[10], a3 = l[3] + l[11];
    const float a4 = l[4] + l[12], a5 = l[5] + l[13], a6 = l[6] + l[14], a7 = l[7] + l[15];
    const float b0 = a0 + a4, b1 = a1 + a5, b2 = a2 + a6, b3 = a3 + a7;
    return (b0 + b2) + (b1 + b3);
}

/* The operands of a lane sum's terms. */
typedef struct {
    const float *a, *b;
    float w, mu, r;
} bt_lane_args;

/* Defines a function NAME(const bt_lane_args *p, size_t m, float *s) that
 * adds T (an expression of the size_t i and of a, b, w, mu, r from p) over
 * i = 0 .. m-1 to *s, in the lane order above. One sum per function and not
 * inlined: compilers then keep the lanes in vector registers. */
#if defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8 && (defined(__riscv) || defined(__arm__))
#define BT_LANE_NOINLINE __attribute__((noinline))
/* no vector unit: the 16 lanes fit the 32 float registers once unrolled */
#define BT_LANE_LOOP _Pragma("GCC unroll 16")
#elif defined(__GNUC__) && !defined(__clang__) && __GNUC__ >= 8
#define BT_LANE_NOINLINE __attribute__((noinline))
/* keeps the loop over the lanes a loop, which is what gets vectorised;
 * unrolled, the lanes end up spread over scalar registers */
#define BT_LANE_LOOP _Pragma("GCC unroll 1")
#elif defined(__GNUC__)
#define BT_LANE_NOINLINE __attribute__((noinline))
#define BT_LANE_LOOP
#else
#define BT_LANE_NOINLINE
#define BT_LANE_LOOP
#endif
#define BT_DEFINE_LANE_SUM(NAME, T)                                                          \
    static BT_LANE_NOINLINE void NAME(const bt_lane_args *p, size_t m, float *s)          \
    {                                                                                     \
        const float *a = p->a, *b = p->b;                                                 \
        const float w = p->w, mu = p->mu, r = p->r;                                       \
        size_t c0 = 0, e, j;                                                              \
        float t = *s;                                                                     \
        (void)a; (void)b; (void)w; (void)mu; (void)r;                                     \
        while (c0 < m) {                                                                  \
            float lane[BT_SUM_LANES];                                                     \
            int k;                                                                        \
            e = m - c0 > BT_SUM_CHUNK ? c0 + BT_SUM_CHUNK : m;                            \
            for (k = 0; k < BT_SUM_LANES; ++k) lane[k] = 0.0f;                            \
            for (j = c0; j + BT_SUM_LANES <= e; j += BT_SUM_LANES) {                      \
                BT_LANE_LOOP                                                              \
                for (k = 0; k < BT_SUM_LANES; ++k) {                                      \
                    const size_t i = j + (size_t)k;                                       \
                    lane[k] += (T);                                                       \
                }                                                                         \
            }                                                                             \
            for (k = 0; j + (size_t)k < e; ++k) {                                         \
                const size_t i = j + (size_t)k;                                           \
                lane[k] += (T);                                                           \
            }                                                                             \
            t += bt_lanes_fold(lane);                                                     \
            c0 = e;                                                                       \
        }                                                                                 \
        *s = t;                                                                           \
    }

#endif
