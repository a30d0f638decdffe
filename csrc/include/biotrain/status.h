/* Status codes returned by every biotrain-rt C entry point.
 * A kernel never aborts and never prints: it checks its arguments, returns a
 * distinct status, and leaves its outputs untouched when the status is not OK. */
#ifndef BIOTRAIN_STATUS_H
#define BIOTRAIN_STATUS_H

#ifdef __cplusplus
extern "C" {
#endif

typedef enum {
    BT_OK = 0,
    BT_ERR_NULL_POINTER = 1,    /* a required pointer argument is NULL */
    BT_ERR_BAD_SIZE = 2,        /* a dimension is zero or negative, or the output would be empty */
    BT_ERR_SHAPE_MISMATCH = 3,  /* shapes that must agree do not */
    BT_ERR_GROUPS = 4,          /* groups do not divide the channels */
    BT_ERR_WORKSPACE = 5,       /* workspace smaller than the _workspace_size companion asks */
    BT_ERR_LABEL = 6,           /* a class label outside [0, classes) */
    BT_ERR_NONFINITE = 7,       /* NaN or Inf in an input batch */
    BT_ERR_ARENA_TOO_SMALL = 8, /* arena smaller than the plan's peak */
    BT_ERR_UNSUPPORTED = 9,     /* an op, layer or option this build does not have */
    BT_ERR_CORRUPT = 10,        /* a serialized file or blob failed its checks */
    BT_ERR_BAD_PARAM = 11,      /* a scalar parameter out of its range (eps, p, lr, momentum) */
    BT_ERR_CAPACITY = 12,       /* a fixed-size table (nodes, tensors) is full */
    BT_ERR_STATE = 13,          /* called out of order (e.g. run before plan) */
    BT_ERR_OVERFLOW = 14,       /* fixed point: a scale that would overflow the accumulator */
    BT_ERR_DIVERGED = 15        /* a gradient became NaN or Inf: the update was not applied */
} bt_status;

/* A short, static, human-readable name for a status (never NULL). */
const char *bt_status_str(bt_status s);

#ifdef __cplusplus
}
#endif
#endif
