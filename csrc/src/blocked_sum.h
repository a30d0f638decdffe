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

#endif
