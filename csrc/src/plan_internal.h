/* Between the planner's two parts (internal, not installed): plan.c, which
 * knows the ops and decides lifetimes and sharing, and arena.c, which knows
 * nothing of ops and turns tensor groups into placed buffers. */
#ifndef BIOTRAIN_PLAN_INTERNAL_H
#define BIOTRAIN_PLAN_INTERNAL_H

#include "biotrain/plan.h"

/* The schedule steps of one micro-batch (plan.h). */
#define BT_STEP_FWD(i) (i)
#define BT_STEP_LOSS(n) (n)
#define BT_STEP_BWD(n, i) (2 * (n) - (i))
#define BT_STEP_OPT(n) (2 * (n))

/* Tensors under construction: a union-find of groups that share one buffer,
 * each group with the first and last step of any member. */
typedef struct {
    bt_plan *p;
    int parent[BT_MAX_TENSORS];
    int gfirst[BT_MAX_TENSORS], glast[BT_MAX_TENSORS]; /* per group root */
} bt_plan_builder;

void bt_pb_init(bt_plan_builder *b, bt_plan *p);
/* A new tensor alone in its group; its id, or -1 when the table is full. */
int bt_pb_add(bt_plan_builder *b, int node, bt_tensor_role role, int index, bt_tensor_kind kind, size_t bytes,
              int first, int last);
/* Extends a tensor (not yet merged) to live until `step`. */
void bt_pb_set_last(bt_plan_builder *b, int t, int step);
/* Moves a tensor (not yet merged) to be born at `step`. */
void bt_pb_set_first(bt_plan_builder *b, int t, int step);
/* Puts two tensors into one group (one buffer), whatever their lifetimes. */
void bt_pb_merge(bt_plan_builder *b, int keep, int other);
/* Puts `t` into the group of `old` if everything in that group is dead when
 * `t` is born (an op overwriting its dying operand in place); 1 if it did. */
int bt_pb_try_alias(bt_plan_builder *b, int t, int old);
/* Buffers from the groups, their offsets in the arena (largest first, into
 * the lowest gap; or one after another without reuse) and the accounting. */
bt_status bt_pb_finish(bt_plan_builder *b);

#endif
