/* The planner's op-agnostic part: tensor groups, buffers, their placement in
 * the arena and the accounting (plan_internal.h). Nothing here knows an op. */
#include <string.h>
#include "plan_internal.h"

const char *bt_kind_name(bt_tensor_kind k)
{
    static const char *names[BT_KIND_COUNT_] = {"parameters", "gradients", "optimizer state",
                                                "input", "activations", "activation gradients",
                                                "scratch"};
    if ((int)k < 0 || k >= BT_KIND_COUNT_) return "unknown";
    return names[k];
}

const char *bt_role_name(bt_tensor_role r)
{
    static const char *names[BT_ROLE_COUNT_] = {"out", "grad_out", "param", "param_grad", "opt_m",
                                                "opt_v", "saved", "grad_scratch", "labels", "probs",
                                                "recomputed", "lora_weight", "lora_weight_grad"};
    if ((int)r < 0 || r >= BT_ROLE_COUNT_) return "unknown";
    return names[r];
}

/* ------------------------------------------------------------ groups */
static int uf_find(int *parent, int x)
{
    while (parent[x] != x) {
        parent[x] = parent[parent[x]];
        x = parent[x];
    }
    return x;
}

void bt_pb_init(bt_plan_builder *b, bt_plan *p)
{
    memset(b, 0, sizeof *b);
    b->p = p;
}

int bt_pb_add(bt_plan_builder *b, int node, bt_tensor_role role, int index, bt_tensor_kind kind, size_t bytes,
              int first, int last)
{
    bt_plan *p = b->p;
    bt_tensor *t;
    int id;
    if (p->n_tensors >= BT_MAX_TENSORS) return -1;
    id = p->n_tensors++;
    t = &p->tensors[id];
    t->node = node; t->role = role; t->index = index; t->kind = kind;
    t->bytes = bytes; t->first = first; t->last = last; t->buffer = -1;
    b->parent[id] = id;
    b->gfirst[id] = first;
    b->glast[id] = last;
    return id;
}

void bt_pb_set_last(bt_plan_builder *b, int t, int step)
{
    if (t < 0) return;
    if (step > b->p->tensors[t].last) b->p->tensors[t].last = step;
    if (step > b->glast[t]) b->glast[t] = step; /* not merged yet: t is its own root */
}

void bt_pb_set_first(bt_plan_builder *b, int t, int step)
{
    if (t < 0) return;
    b->p->tensors[t].first = step;
    b->gfirst[t] = step;
}

void bt_pb_merge(bt_plan_builder *b, int keep, int other)
{
    int ra = uf_find(b->parent, keep), rb = uf_find(b->parent, other);
    if (ra == rb) return;
    b->parent[rb] = ra;
    if (b->gfirst[rb] < b->gfirst[ra]) b->gfirst[ra] = b->gfirst[rb];
    if (b->glast[rb] > b->glast[ra]) b->glast[ra] = b->glast[rb];
}

int bt_pb_try_alias(bt_plan_builder *b, int t, int old)
{
    int r, rt;
    if (t < 0 || old < 0 || !b->p->opts.reuse) return 0;
    r = uf_find(b->parent, old);
    rt = uf_find(b->parent, t);
    if (r == rt) return 0;
    if (b->glast[r] != b->gfirst[rt]) return 0;
    bt_pb_merge(b, old, t);
    return 1;
}

/* ------------------------------------------------------------ placement */
static size_t align_up(size_t x) { return (x + (BT_ARENA_ALIGN - 1)) & ~(size_t)(BT_ARENA_ALIGN - 1); }

static void place_buffers(bt_plan *p)
{
    int order[BT_MAX_TENSORS];
    int placed[BT_MAX_TENSORS];
    int n_placed = 0, i, j, k;
    size_t peak = 0;
    for (i = 0; i < p->n_buffers; ++i) order[i] = i;
    /* Largest first (ties: earlier first) — insertion sort, n is small. */
    for (i = 1; i < p->n_buffers; ++i) {
        int x = order[i];
        j = i - 1;
        while (j >= 0 && (p->buffers[order[j]].bytes < p->buffers[x].bytes ||
                          (p->buffers[order[j]].bytes == p->buffers[x].bytes &&
                           p->buffers[order[j]].first > p->buffers[x].first))) {
            order[j + 1] = order[j];
            --j;
        }
        order[j + 1] = x;
    }
    for (i = 0; i < p->n_buffers; ++i) {
        bt_buffer *bf = &p->buffers[order[i]];
        int conflicts[BT_MAX_TENSORS];
        int n_conf = 0;
        size_t offset = 0, need = align_up(bf->bytes);
        if (!p->opts.reuse) {
            bf->offset = align_up(peak);
            peak = bf->offset + bf->bytes;
            continue;
        }
        for (j = 0; j < n_placed; ++j) {
            const bt_buffer *o = &p->buffers[placed[j]];
            if (o->first <= bf->last && bf->first <= o->last) conflicts[n_conf++] = placed[j];
        }
        /* sort conflicts by offset */
        for (j = 1; j < n_conf; ++j) {
            int x = conflicts[j];
            k = j - 1;
            while (k >= 0 && p->buffers[conflicts[k]].offset > p->buffers[x].offset) {
                conflicts[k + 1] = conflicts[k];
                --k;
            }
            conflicts[k + 1] = x;
        }
        for (j = 0; j < n_conf; ++j) {
            const bt_buffer *o = &p->buffers[conflicts[j]];
            if (o->offset >= offset + need) break; /* the gap before o fits */
            if (align_up(o->offset + o->bytes) > offset) offset = align_up(o->offset + o->bytes);
        }
        bf->offset = offset;
        if (offset + bf->bytes > peak) peak = offset + bf->bytes;
        placed[n_placed++] = order[i];
    }
    p->peak_bytes = peak;
}

size_t bt_plan_offset(const bt_plan *p, int tensor)
{
    return p->buffers[p->tensors[tensor].buffer].offset;
}

size_t bt_plan_live_bytes(const bt_plan *p, int step)
{
    size_t live = 0;
    int i;
    for (i = 0; i < p->n_buffers; ++i)
        if (p->buffers[i].first <= step && step <= p->buffers[i].last) live += p->buffers[i].bytes;
    return live;
}

bt_status bt_pb_finish(bt_plan_builder *b)
{
    bt_plan *p = b->p;
    int root_buf[BT_MAX_TENSORS];
    int i, k, s;
    size_t best = 0;
    /* one buffer per group: as large as its largest member, alive from the
     * first step of any member to the last */
    for (i = 0; i < p->n_tensors; ++i) root_buf[i] = -1;
    for (i = 0; i < p->n_tensors; ++i) {
        int r = uf_find(b->parent, i);
        bt_tensor *t = &p->tensors[i];
        if (root_buf[r] < 0) {
            root_buf[r] = p->n_buffers++;
            p->buffers[root_buf[r]].first = b->gfirst[r];
            p->buffers[root_buf[r]].last = b->glast[r];
            p->buffers[root_buf[r]].bytes = 0;
        }
        t->buffer = root_buf[r];
        if (t->bytes > p->buffers[t->buffer].bytes) p->buffers[t->buffer].bytes = t->bytes;
        p->total_by_kind[t->kind] += t->bytes;
        p->naive_bytes += t->bytes;
    }
    place_buffers(p);
    for (s = 0; s < p->n_steps; ++s) {
        size_t live = bt_plan_live_bytes(p, s);
        if (live > best) { best = live; p->peak_step = s; }
    }
    p->live_peak_bytes = best;
    /* Attribute each live buffer to the member alive at the peak step that was born last. */
    for (i = 0; i < p->n_buffers; ++i) {
        const bt_buffer *bf = &p->buffers[i];
        int owner = -1;
        if (!(bf->first <= p->peak_step && p->peak_step <= bf->last)) continue;
        for (k = 0; k < p->n_tensors; ++k) {
            const bt_tensor *t = &p->tensors[k];
            if (t->buffer != i || t->bytes == 0) continue;
            if (t->first <= p->peak_step && p->peak_step <= t->last &&
                (owner < 0 || t->first >= p->tensors[owner].first))
                owner = k;
        }
        if (owner < 0) { /* between members: count it as the buffer's first tensor */
            for (k = 0; k < p->n_tensors && owner < 0; ++k)
                if (p->tensors[k].buffer == i && p->tensors[k].bytes) owner = k;
        }
        if (owner >= 0) p->live_by_kind[p->tensors[owner].kind] += bf->bytes;
    }
    return BT_OK;
}
