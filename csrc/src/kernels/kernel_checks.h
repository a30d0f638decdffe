/* Argument checks shared by the kernel files (internal, not installed).
 *
 * Every kernel checks before it writes anything, so on a bad status the
 * outputs are untouched. Tensors index with int: a tensor may hold at most
 * INT_MAX elements (larger ones are BT_ERR_BAD_SIZE), which keeps int32
 * indices (maxpool's argmax) and 32-bit size_t targets safe. */
#ifndef BIOTRAIN_KERNEL_CHECKS_H
#define BIOTRAIN_KERNEL_CHECKS_H

#include <limits.h>
#include <stddef.h>
#include "biotrain/status.h"

/* Return `status` from the enclosing function unless `cond` holds. */
#define BT_REQUIRE(cond, status)         \
    do {                                 \
        if (!(cond)) return (status);    \
    } while (0)

/* Return BT_ERR_NULL_POINTER if `p` is NULL. */
#define BT_REQUIRE_PTR(p) BT_REQUIRE((p) != NULL, BT_ERR_NULL_POINTER)

/* Evaluate a bt_status expression and return it unless it is BT_OK. */
#define BT_TRY(expr)                                   \
    do {                                               \
        bt_status bt_try_status_ = (expr);             \
        if (bt_try_status_ != BT_OK) return bt_try_status_; \
    } while (0)

/* 1 if every size is positive and their product fits in an int (pass 1 for
 * unused trailing dimensions), else 0. */
static inline int bt_sizes_ok(int a, int b, int c, int d)
{
    long long p;
    if (a <= 0 || b <= 0 || c <= 0 || d <= 0) return 0;
    p = (long long)a * b;
    if (p > INT_MAX) return 0;
    p *= c;
    if (p > INT_MAX) return 0;
    p *= d;
    return p <= INT_MAX;
}

#endif
