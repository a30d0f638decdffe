/* mhsa: multi-head self-attention over a token sequence (c = 1, h = S
 * tokens, w = D features), float32 only (attention.h has the math).
 *
 * Parameters, in slot order with the absent ones skipped: in_proj weight
 * [3D, D], in_proj bias [3D] (qkv_bias), out_proj weight [D, D], out_proj
 * bias [D] (out_bias); all trainable.
 *
 * Saved: QKV [rows, S, 3D] and the head outputs [rows, S, D] (also the
 * forward's own intermediates, so kept in inference too), then only when the
 * backward runs either each query row's max and sum of exponentials
 * [rows, H, S, 2] or, keep_probs, the whole map [rows, H, S, S], and the
 * backward's scratch (attention.h: O(S hd + H S), no map), which the planner
 * keeps at the backward step alone.
 *
 * The backward turns the saved QKV and head outputs into their gradients, in
 * place; the weight gradient runs before the input gradient (exec.c), so
 * when this node's weights train (its gradient buffers exist) the input
 * gradient finds that done, and does it itself otherwise. The input gradient
 * reads neither the input nor the output gradient after that: it may
 * overwrite the latter. */
#include "op_internal.h"

#define TRY(expr) do { bt_status st_ = (expr); if (st_ != BT_OK) return st_; } while (0)

enum { P_WQKV = 0, P_BQKV, P_WO, P_BO, P_COUNT_ };

static int param_count(const bt_node *nd)
{
    return 2 + (nd->o.mhsa.qkv_bias ? 1 : 0) + (nd->o.mhsa.out_bias ? 1 : 0);
}

/* the role (P_*) of parameter slot `which` */
static int slot_role(const bt_node *nd, int which)
{
    int role, k = 0;
    for (role = 0; role < P_COUNT_; ++role) {
        if (role == P_BQKV && !nd->o.mhsa.qkv_bias) continue;
        if (role == P_BO && !nd->o.mhsa.out_bias) continue;
        if (k++ == which) return role;
    }
    return -1;
}

static void shape_of(const bt_node *nd, int rows, bt_mhsa_shape *sh)
{
    sh->n = rows;
    sh->s = nd->h;
    sh->d = nd->w;
    sh->heads = nd->o.mhsa.heads;
    sh->rope = nd->o.mhsa.rope;
}

static bt_status infer(const bt_graph *g, bt_node *nd)
{
    const bt_mhsa_opts *o = &nd->o.mhsa;
    const bt_node *src = op_src(g, nd, 0);
    bt_mhsa_shape sh;
    if (src->c != 1) return BT_ERR_SHAPE_MISMATCH; /* not a (1, S, D) token sequence */
    if ((o->qkv_bias | o->out_bias | o->keep_probs | o->rope) & ~1) return BT_ERR_BAD_PARAM;
    if (o->heads <= 0) return BT_ERR_BAD_SIZE;
    nd->c = 1; nd->h = src->h; nd->w = src->w;
    shape_of(nd, 1, &sh);
    return bt_mhsa_check_shape(&sh); /* heads divide D, an even head size with RoPE */
}

static size_t param_numel(const bt_graph *g, const bt_node *nd, int which)
{
    const size_t D = (size_t)op_src(g, nd, 0)->w;
    switch (slot_role(nd, which)) {
    case P_WQKV: return 3 * D * D;
    case P_BQKV: return 3 * D;
    case P_WO: return D * D;
    case P_BO: return D;
    default: return 0;
    }
}

/* LoRA: on the in-projection [3D, D] (q, k and v together, as PEFT adapts
 * nn.MultiheadAttention) and on the out-projection [D, D] */
static int lora_rows(const bt_graph *g, const bt_node *nd, int slot)
{
    const int D = op_src(g, nd, 0)->w;
    if (slot < 0 || slot >= param_count(nd)) return 0;
    switch (slot_role(nd, slot)) {
    case P_WQKV: return 3 * D;
    case P_WO: return D;
    default: return 0;
    }
}

static int saved(const bt_graph *g, const bt_node *nd, int rows, bt_dtype dt, bt_saved_spec out[BT_MAX_SAVED])
{
    const size_t S = (size_t)nd->h, D = (size_t)nd->w, H = (size_t)nd->o.mhsa.heads, R = (size_t)rows;
    const int keep = nd->o.mhsa.keep_probs;
    bt_mhsa_shape sh;
    (void)g; (void)dt;
    shape_of(nd, rows, &sh);
    out[0].name = "qkv"; out[0].bytes = R * S * 3 * D * sizeof(float); out[0].backward_only = 0;
    out[1].name = "heads_out"; out[1].bytes = R * S * D * sizeof(float); out[1].backward_only = 0;
    if (keep) {
        out[2].name = "probs"; out[2].bytes = R * H * S * S * sizeof(float);
    } else {
        out[2].name = "row_stats"; out[2].bytes = R * H * S * 2 * sizeof(float);
    }
    out[2].backward_only = 1;
    out[3].name = "attn_scratch"; out[3].bytes = bt_mhsa_backward_workspace_size(&sh);
    out[3].backward_only = 1;
    out[3].scratch = 1;
    return 4;
}

/* the parameter (or its gradient) of a role, NULL where absent */
static void *by_role(const bt_node *nd, void *const *slots, int role)
{
    int k;
    for (k = 0; k < param_count(nd); ++k)
        if (slot_role(nd, k) == role) return slots[k];
    return NULL;
}

static bt_status fwd_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    const int keep = nd->o.mhsa.keep_probs;
    bt_mhsa_shape sh;
    shape_of(nd, c->rows, &sh);
    return bt_mhsa_forward_f32(c->out, c->saved[0], c->saved[1], (c->train && !keep) ? c->saved[2] : NULL,
                               (c->train && keep) ? c->saved[2] : NULL, c->in[0], by_role(nd, c->param, P_WQKV),
                               by_role(nd, c->param, P_BQKV), by_role(nd, c->param, P_WO),
                               by_role(nd, c->param, P_BO), &sh);
}

/* The saved QKV and head outputs become their gradients. */
static bt_status qkv_grad(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    const int keep = nd->o.mhsa.keep_probs;
    bt_mhsa_shape sh;
    shape_of(nd, c->rows, &sh);
    return bt_mhsa_backward_qkv_f32(c->saved[0], c->saved[1], keep ? c->saved[2] : NULL, c->saved[3],
                                    bt_mhsa_backward_workspace_size(&sh), keep ? NULL : c->saved[2], c->dout,
                                    by_role(nd, c->param, P_WO), &sh);
}

static bt_status bwd_w_f32(const bt_op_ctx *c)
{
    const bt_node *nd = op_node(c);
    bt_mhsa_shape sh;
    shape_of(nd, c->rows, &sh);
    /* the output projection's gradient reads the head outputs, which qkv_grad overwrites */
    TRY(bt_mhsa_backward_out_weight_f32(by_role(nd, c->pgrad, P_WO), by_role(nd, c->pgrad, P_BO), c->saved[1],
                                        c->dout, &sh));
    TRY(qkv_grad(c));
    return bt_mhsa_backward_qkv_weight_f32(by_role(nd, c->pgrad, P_WQKV), by_role(nd, c->pgrad, P_BQKV),
                                           c->saved[0], c->in[0], &sh);
}

static bt_status bwd_in_f32(const bt_op_ctx *c, int k)
{
    const bt_node *nd = op_node(c);
    bt_mhsa_shape sh;
    (void)k;
    shape_of(nd, c->rows, &sh);
    /* gradient buffers exist: the weight gradient ran first and left the QKV gradient */
    if (!c->pgrad[0]) TRY(qkv_grad(c));
    return bt_mhsa_backward_input_f32(c->din[0], c->saved[0], by_role(nd, c->param, P_WQKV), &sh);
}

static const bt_op_kernels k_f32 = {fwd_f32, bwd_in_f32, bwd_w_f32};

static const bt_opt_field opts[] = {
    BT_OPT_FIELD(BT_OPT_INT, mhsa, heads),
    BT_OPT_FIELD(BT_OPT_INT, mhsa, qkv_bias),
    BT_OPT_FIELD(BT_OPT_INT, mhsa, out_bias),
    BT_OPT_FIELD(BT_OPT_INT, mhsa, rope),
    BT_OPT_FIELD(BT_OPT_INT, mhsa, keep_probs),
};

const bt_op_desc bt_op_mhsa = {
    "mhsa", 1, BT_OPF_WGRAD_READS_INPUT | BT_OPF_DIN_OVER_DOUT, opts, 5, -1,
    infer, param_count, NULL, param_numel, saved, NULL, {BT_KERNELS_F32(k_f32), NULL}, lora_rows};
