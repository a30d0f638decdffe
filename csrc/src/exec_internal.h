/* Between the executor's schedule walk (exec.c) and its number formats
 * (exec_f32.c, exec_fixed.c); internal, not installed. A format says how the
 * input enters, how an op's scales reach its kernel, how the loss, the
 * gradient accumulation and the update are done, and what its checksums
 * cover. Everything else (the schedule, the micro-batches, the plan check,
 * the dropout stream) is exec.c's, once. */
#ifndef BIOTRAIN_EXEC_INTERNAL_H
#define BIOTRAIN_EXEC_INTERNAL_H

#include <string.h>
#include "biotrain/exec.h"
#include "plan_internal.h"

/* What a context is filled for. */
typedef enum {
    BT_CTX_FORWARD = 0,   /* the planned forward: records statistics */
    BT_CTX_RECOMPUTE,     /* a forward run again into a backward's buffer: records nothing */
    BT_CTX_BACKWARD
} bt_ctx_mode;

typedef struct {
    /* Checks the graph, plan and optimizer before the session is touched. */
    bt_status (*check)(const bt_graph *g, const bt_plan *p, const bt_optim_cfg *opt);
    /* Sets up the format's state in a zeroed session. */
    void (*setup)(bt_session *s);
    /* s->opt has changed (it passed check): the format's copy of it. */
    void (*opt_changed)(bt_session *s);
    /* Checks a batch (labels may be NULL) and prepares a pass over it; on a
     * bad status nothing has changed. */
    bt_status (*begin)(bt_session *s, const void *x, int x_frac, const int32_t *labels, int batch);
    /* Writes `rows` samples of x into node 0's output. */
    bt_status (*load_input)(bt_session *s, const void *x, int x_frac, int rows);
    /* The format's part of an op's context. */
    void (*fill)(bt_session *s, bt_op_ctx *c, bt_ctx_mode mode);
    /* The loss of one micro-batch (labels already in the plan's buffer),
     * added to the step's sum; with `backward`, the logits' gradient too. */
    bt_status (*loss)(bt_session *s, int rows, int batch, int backward);
    /* The step's mean loss from the sum, into s->last_loss. */
    void (*loss_done)(bt_session *s, int batch);
    /* acc (the output gradient of node u) += din, for a fan-out. */
    bt_status (*accumulate)(bt_session *s, int u, const void *din, int count);
    /* Refuses gradients that cannot be applied (float32: not finite). */
    bt_status (*grads_ok)(const bt_session *s);
    bt_status (*update)(bt_session *s);
    /* After a step's update, or a calibration pass (`immediate`). */
    void (*after_update)(bt_session *s, int immediate);
    /* After an inference pass. */
    void (*after_forward)(bt_session *s);
    /* Bytes of one logit. */
    size_t logit_bytes;
    uint32_t (*checksum)(const bt_session *s);
    uint32_t (*state_checksum)(const bt_session *s);
} bt_exec_format;

extern const bt_exec_format bt_exec_f32;
extern const bt_exec_format bt_exec_fixed;
/* The format of a dtype; NULL for one this build leaves out (BT_ONLY_F32, BT_ONLY_FIXED: ops.h). */
const bt_exec_format *bt_exec_format_for(bt_dtype dt);

/* ---- shared by the formats */
static inline void *bt_tensor_ptr(const bt_session *s, int t)
{
    return t < 0 ? NULL : (void *)(s->arena + bt_plan_offset(s->p, t));
}

/* A view (flatten) shares its input's tensor: the node that owns it. */
static inline int bt_tensor_owner(const bt_graph *g, int v)
{
    while (v > 0 && (bt_op_get(g->nodes[v].kind)->flags & BT_OPF_VIEW)) v = g->nodes[v].inputs[0];
    return v;
}

static inline uint32_t bt_fnv_byte(uint32_t h, uint8_t b) { return (h ^ b) * 16777619u; }
/* a 32-bit word as its little-endian bytes, whatever the host */
static inline uint32_t bt_fnv_word(uint32_t h, uint32_t w)
{
    int i;
    for (i = 0; i < 4; ++i) h = bt_fnv_byte(h, (uint8_t)((w >> (8 * i)) & 0xffu));
    return h;
}
static inline uint32_t bt_fnv_u64(uint32_t h, uint64_t w)
{
    h = bt_fnv_word(h, (uint32_t)(w & 0xffffffffu));
    return bt_fnv_word(h, (uint32_t)(w >> 32));
}
#define BT_FNV_INIT 2166136261u

/* the dropout generator, last in both state checksums */
static inline uint32_t bt_fnv_rng(uint32_t h, const bt_rng *r) { return bt_fnv_u64(bt_fnv_u64(h, r->state), r->inc); }

#endif
