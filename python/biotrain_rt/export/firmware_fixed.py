"""Firmware export of a fixed-point trainer (:class:`~biotrain_rt.fixed.FixedTrainer`).

:func:`biotrain_rt.export.firmware` calls :func:`firmware_fixed` when the
trainer trains in ``dtype="fixed"``. The export holds the integer state of the
trainer's session, so that the MCU continues exactly where the host trainer
would:

* the int32 masters and their scales, the int32 momentum buffers;
* every other scale (activations, their gradients, the int8 weight copies,
  the weight gradients, the momentum) and the adaptation windows;
* the dropout generator's state, the step count, the integer SGD settings
  (``lr``, ``momentum``, ``weight_decay`` as mantissa and exponent);
* the training and test samples quantised to int16 with the trainer's input
  scale (chosen from the first batch, as ``FixedTrainer.step`` would, when the
  trainer has seen no data yet), their labels;
* when the trainer is not calibrated yet, the calibration its first ``step``
  would run (``calibration_rounds`` passes over the first batch): the MCU runs
  it too, before the first step.

``main.c`` runs the integer executor (``exec_fixed.h``) and prints after every
step the loss (Q16) bits, the session checksum (masters and their scales) and
a checksum of the rest of the state (``state=``: the scales, windows,
momentum and generator). Nothing on this path computes with floats.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import List, Optional

import numpy as np

from .. import _core
from ..network import PARAM_NAMES
from ..reference import fixed as qref
from .firmware import (FORMAT_VERSION, FirmwareExport, _as_samples, _c_comment, _c_layer, _c_main, _c_string,
                       _hex_rows, _int_rows, _target, core_graph_from_layers, layers_of, memory_budget)

P = 4   # BT_MAX_PARAMS_PER_NODE (plan.h): the width of the per-parameter scale tables
#: Code of the fixed-point application (the integer executor links every
#: fixed kernel, ~77 KB of functions measured on rv32imc), rounded up.
CODE_ESTIMATE_FIXED_BYTES = 96 * 1024


def _u32(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.int64).astype(np.int32)).reshape(-1).view(np.uint32)


def session_state(session, n_nodes: int) -> dict:
    """Everything a FixedSession's next step reads besides its masters, as
    plain integers (the manifest's form)."""
    sc = session.scales()
    ad = session.adapt_state()
    st = {k: np.asarray(sc[k]).astype(np.int64).reshape(-1).tolist() for k in ("out", "dout", "wq", "grad", "mom")}
    for k in ("out_win", "dout_win", "out_win_n", "dout_win_n"):
        st[k] = np.asarray(ad[k]).astype(np.int64).tolist()
    st["rng_state"], st["rng_inc"], st["steps"] = int(ad["rng_state"]), int(ad["rng_inc"]), int(ad["steps"])
    if len(st["out"]) != n_nodes or len(st["grad"]) != n_nodes * P:
        raise RuntimeError(f"export: the session's scale tables do not have {n_nodes} nodes x {P} parameters")
    return st


def _plan_options_fixed(trainer, shape, layers, trainable):
    core_plan = trainer.plan.core
    micro = int(core_plan.micro_batch)
    momentum = bool(float(trainer.optimizer.momentum) > 0)
    peak = int(trainer.plan.peak_bytes)
    g = core_graph_from_layers(shape, layers, trainable)
    # The fixed trainer does not keep its reuse flag: the one that replans to its peak.
    for reuse in (True, False):
        replan = _core.Plan(g, micro, "sgd", momentum, reuse, "fixed")
        if int(replan.peak_bytes) == peak:
            return {"micro_batch": micro, "optimizer": "sgd", "momentum": momentum, "reuse": reuse,
                    "dtype": "fixed"}, replan
    raise RuntimeError(f"export: the exported graph does not plan to the trainer's {peak} B in fixed point")


def firmware_fixed(trainer, out_dir, samples, steps: int = 10, batch_size: Optional[int] = None,
                   target: str = "rv32imc") -> FirmwareExport:
    """The fixed-point counterpart of :func:`biotrain_rt.export.firmware`
    (same arguments, same refusals); see the module docstring."""
    _target(target)
    net = trainer.net
    if not isinstance(steps, (int, np.integer)) or steps < 1:
        raise ValueError(f"export: steps must be a positive integer, got {steps!r}")
    B = int(trainer.batch_size if batch_size is None else batch_size)
    if B < 1:
        raise ValueError(f"export: batch_size must be positive, got {batch_size!r}")
    try:
        X_train, y_train, X_test, y_test = samples
    except (TypeError, ValueError):
        raise ValueError("export: samples must be a tuple (X_train, y_train, X_test, y_test)") from None
    shape = tuple(int(s) for s in net.input_shape)
    classes = int(net.classes)
    X_train, y_train = _as_samples(X_train, y_train, shape, classes, "training")
    X_test, y_test = _as_samples(X_test, y_test, shape, classes, "test")
    if X_train.shape[0] == 0:
        raise ValueError("export: no training samples")

    trainable = sorted(int(i) for i in trainer.trainable_nodes)
    layers = layers_of(net)
    popts, replan = _plan_options_fixed(trainer, shape, layers, trainable)
    peak = int(replan.peak_bytes)
    plan_nodes = replan.nodes()
    n_nodes = len(layers)
    sess = trainer.session

    # The integer state, read from the trainer's session.
    params = []
    for i, l in enumerate(net.layers):
        for k, pname in enumerate(PARAM_NAMES):
            if pname in l.params:
                q = np.array(sess.param(i, k), dtype=np.int32, copy=True)
                mom = sess.momentum(i, k)
                mom = None if mom is None else np.array(mom, dtype=np.int32, copy=True)
                params.append((i, k, f"{l.name}.{pname}", q, int(sess.param_frac(i, k)), mom))
    state = session_state(sess, n_nodes)
    opt_q = [int(v) for v in sess.adapt_state()["opt"]]
    weight_bytes = sum(4 * q.size + (0 if m is None else 4 * m.size) for _, _, _, q, _, m in params)
    weight_bytes += 4 * n_nodes * (7 + 2 * P)

    rows = [(s * B + j) % X_train.shape[0] for s in range(int(steps)) for j in range(B)]
    xs, ys = X_train[rows], y_train[rows]
    # The input scale: the trainer's, or the one its first step would choose.
    x_frac = trainer.input_frac
    if x_frac is None:
        from ..fixed import input_frac_for
        x_frac = input_frac_for(xs[:B])
    x_frac = int(x_frac)
    saturated = qref.Stats()
    xq = qref.to_fixed(xs, x_frac, qref.Q15_MAX, saturated).astype(np.int16)
    xtq = qref.to_fixed(X_test, x_frac, qref.Q15_MAX, saturated).astype(np.int16)
    # The calibration FixedTrainer.step runs before its first update, when not done yet.
    cal_rounds, cal_idx = 0, np.zeros(0, np.int64)
    if not trainer.calibrated:
        cal_rounds = int(trainer.calibration_rounds)
        cal_idx = np.unique(np.linspace(0, B - 1, min(B, trainer.calibration_samples)).astype(np.int64))
    xcal, ycal = xq[:B][cal_idx], ys[:B][cal_idx]
    numel = int(np.prod(shape))
    sample_bytes = 2 * (xq.size + xtq.size + xcal.size) + 4 * (ys.size + y_test.size + ycal.size)
    memory = memory_budget(target, peak, weight_bytes, sample_bytes, code_bytes=CODE_ESTIMATE_FIXED_BYTES)

    seed = int(trainer.seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"export: the seed {seed} does not fit 64 bits")
    opt = trainer.optimizer
    optim = {"kind": "sgd", "lr": float(trainer.lr), "momentum": float(opt.momentum),
             "weight_decay": float(opt.weight_decay), "q": opt_q}

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files: List[Path] = []

    def write(name, text):
        p = out / name
        p.write_text(text)
        files.append(p)

    write("bt_fw_model.h", _model_h(net.name, peak, steps, B, numel, classes, X_test.shape[0], seed, x_frac,
                                    cal_rounds, len(cal_idx), n_nodes))
    write("bt_fw_model.c", _model_c(net.name, shape, layers, trainable, popts, opt_q, params, state))
    write("bt_fw_data.c", _data_c(xq, ys, xtq, y_test, xcal, ycal, numel))
    write("main.c", _c_main(_MAIN_C))

    manifest = {
        "format": FORMAT_VERSION, "dtype": "fixed", "model": net.name, "target": target,
        "input_shape": list(shape), "classes": classes, "layers": layers, "trainable": trainable,
        "plan": dict(popts, peak_bytes=peak),
        "plan_nodes": [{"run_backward": bool(n["run_backward"]), "weight_grad": bool(n["weight_grad"])}
                       for n in plan_nodes],
        "optimizer": optim, "seed": seed, "steps": int(steps), "batch_size": B,
        "train_rows": [int(r) for r in rows], "n_train": int(xs.shape[0]), "n_test": int(X_test.shape[0]),
        "x_frac": x_frac, "input_saturated": int(saturated.saturated),
        "calibration": {"rounds": cal_rounds, "rows": [int(r) for r in cal_idx]},
        "params": [{"node": i, "which": k, "name": n, "numel": int(q.size), "frac": f, "momentum": m is not None}
                   for i, k, n, q, f, m in params],
        "state": state, "memory": memory, "files": [p.name for p in files] + ["export.npz"],
    }
    arrays = {"x_train": xq, "y_train": ys.astype(np.int32), "x_test": xtq, "y_test": y_test.astype(np.int32),
              "x_cal": xcal, "y_cal": ycal.astype(np.int32)}
    for i, k, _, q, _, m in params:
        arrays[f"q_{i}_{k}"] = q
        if m is not None:
            arrays[f"m_{i}_{k}"] = m
    np.savez(out / "export.npz", **arrays)
    (out / "export.json").write_text(json.dumps(manifest, indent=1))
    files += [out / "export.npz", out / "export.json"]
    return FirmwareExport(out, target, net.name, peak, int(steps), B, int(xs.shape[0]), int(X_test.shape[0]),
                          files, memory)


# ------------------------------------------------------------------ C text
_HEADER = "/* Generated by biotrain_rt.export.firmware (fixed point) for the model '{model}'. Do not edit. */\n"


def _model_h(model, peak, steps, B, numel, classes, n_test, seed, x_frac, cal_rounds, n_cal, n_nodes) -> str:
    return _HEADER.format(model=model) + f"""#ifndef BT_FW_MODEL_H
#define BT_FW_MODEL_H

#include <stdint.h>
#include "biotrain/exec_fixed.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"

#define BT_FW_MODEL_NAME {_c_string(model)}
/* The host plan's peak (fixed point) for this graph and these options: the
 * arena's size. main() replans at boot and fails unless it gets the same figure. */
#define BT_FW_PEAK_BYTES {int(peak)}u
#define BT_FW_ARENA_BYTES BT_FW_PEAK_BYTES
#define BT_FW_STEPS {int(steps)}
#define BT_FW_BATCH {int(B)}
#define BT_FW_IN_NUMEL {int(numel)}
#define BT_FW_CLASSES {int(classes)}
#define BT_FW_N_NODES {int(n_nodes)}
#define BT_FW_N_TEST {int(n_test)}
/* Arrays cannot be empty in C: at least one row is stored. */
#define BT_FW_N_TEST_ALLOC {max(1, int(n_test))}
/* The session's seed (its dropout generator is then set to the exported state). */
#define BT_FW_SEED UINT64_C({int(seed)})
/* Fractional bits of the int16 samples. */
#define BT_FW_X_FRAC {int(x_frac)}
/* Calibration passes before the first step over BT_FW_N_CAL rows (0: the
 * trainer was calibrated already). */
#define BT_FW_CAL_ROUNDS {int(cal_rounds)}
#define BT_FW_N_CAL {int(n_cal)}
#define BT_FW_N_CAL_ALLOC {max(1, int(n_cal))}

/* The network: the same bt_graph_* calls as the host, then the trainable flags. */
bt_status bt_fw_build_graph(bt_graph *g);
void bt_fw_plan_opts(bt_plan_opts *o);
void bt_fw_optim_cfg(bt_q_sgd_cfg *c);
/* Writes the exported integer state into an initialised session: masters and
 * their scales, momentum, every other scale, the adaptation windows, the
 * dropout generator and the step count. */
bt_status bt_fw_load_state(bt_fixed_session *s);

/* [BT_FW_STEPS * BT_FW_BATCH, BT_FW_IN_NUMEL] int16: step s takes rows s*B .. s*B+B-1. */
extern const int16_t bt_fw_x_train[];
extern const int32_t bt_fw_y_train[];
/* [BT_FW_N_TEST, BT_FW_IN_NUMEL] */
extern const int16_t bt_fw_x_test[];
extern const int32_t bt_fw_y_test[];
/* [BT_FW_N_CAL, BT_FW_IN_NUMEL] */
extern const int16_t bt_fw_x_cal[];
extern const int32_t bt_fw_y_cal[];

#endif
"""


def _table(ctype, name, vals) -> str:
    vals = [int(v) for v in vals] or [0]
    words = [f"{v}u" if ctype.startswith("uint") else str(v) for v in vals]
    rows = ",\n    ".join(", ".join(words[i:i + 16]) for i in range(0, len(words), 16))
    return f"static const {ctype} {name}[{len(vals)}] = {{\n    {rows}\n}};\n"


def _model_c(model, shape, layers, trainable, popts, opt_q, params, state) -> str:
    c, h, w = shape
    body = [f"    TRY(bt_graph_init(g, {c}, {h}, {w}));\n"]
    for l in layers[1:]:
        body.append(f"    /* node {l['id']}: {l['kind']} '{_c_comment(l['name'])}' -> {tuple(l['shape'])} */\n")
        body.append(_c_layer(l))
        body.append(f"    if (id != {l['id']}) return BT_ERR_STATE;\n")
    body.append("    TRY(bt_graph_finish(g));\n")
    for i in trainable:
        body.append(f"    TRY(bt_graph_set_trainable(g, {i}, 1));\n")
    tables, entries = [], []
    for i, k, name, q, frac, mom in params:
        tables.append(f"/* {_c_comment(name)}: {q.size} int32 masters with {frac} fractional bits */\n"
                      f"static const uint32_t master_{i}_{k}[{q.size}] = {{\n    {_hex_rows(_u32(q))}\n}};\n")
        if mom is not None:
            tables.append(f"static const uint32_t momentum_{i}_{k}[{mom.size}] = {{\n    {_hex_rows(_u32(mom))}\n}};\n")
        entries.append(f"    {{{i}, {k}, {q.size}u, {frac}, master_{i}_{k}, "
                       f"{f'momentum_{i}_{k}' if mom is not None else 'NULL'}}},\n")
    n_entries = len(entries)
    if not entries:
        entries.append("    {0, 0, 0u, 0, NULL, NULL},\n")
    st = state
    scale_tables = "".join([
        _table("int8_t", "out_frac", st["out"]), _table("int8_t", "dout_frac", st["dout"]),
        _table("int8_t", "wq_frac", st["wq"]), _table("int8_t", "grad_frac", st["grad"]),
        _table("int8_t", "mom_frac", st["mom"]), _table("uint32_t", "out_win", st["out_win"]),
        _table("uint32_t", "dout_win", st["dout_win"]),
        _table("uint8_t", "out_win_n", st["out_win_n"]), _table("uint8_t", "dout_win_n", st["dout_win_n"])])
    lr_m, lr_e, mo_m, mo_e, wd_m, wd_e = opt_q
    return _HEADER.format(model=model) + f"""#include <stddef.h>
#include <string.h>
#include "bt_fw_model.h"

#define TRY(call) do {{ bt_status st_ = (call); if (st_ != BT_OK) return st_; }} while (0)

bt_status bt_fw_build_graph(bt_graph *g)
{{
    int id = -1;
{"".join(body)}    return BT_OK;
}}

void bt_fw_plan_opts(bt_plan_opts *o)
{{
    memset(o, 0, sizeof *o);
    o->micro_batch = {popts['micro_batch']};
    o->optimizer = BT_OPTIM_SGD;
    o->momentum = {int(popts['momentum'])};
    o->reuse = {int(popts['reuse'])};
    o->dtype = BT_DTYPE_FIXED;
}}

/* SGD in integers: each setting is mant * 2^-exp exactly (the float's bits). */
void bt_fw_optim_cfg(bt_q_sgd_cfg *c)
{{
    memset(c, 0, sizeof *c);
    c->lr_mant = {lr_m}; c->lr_exp = {lr_e};
    c->mom_mant = {mo_m}; c->mom_exp = {mo_e};
    c->wd_mant = {wd_m}; c->wd_exp = {wd_e};
}}

/* The masters and momentum, as int32 bit patterns. */
{"".join(tables)}
typedef struct {{
    int node, which;
    uint32_t numel;
    int frac;
    const uint32_t *master, *momentum;
}} param_init;

static const param_init params[] = {{
{"".join(entries)}}};

/* Every node's scales and adaptation windows ([node] or [node][parameter]). */
{scale_tables}
bt_status bt_fw_load_state(bt_fixed_session *s)
{{
    int i, v, k;
    if (s->g->n_nodes != BT_FW_N_NODES) return BT_ERR_STATE;
    for (i = 0; i < {n_entries}; ++i) {{
        size_t numel = 0;
        int *frac = NULL;
        int32_t *dst = bt_fixed_session_param(s, params[i].node, params[i].which, &numel, &frac);
        int t;
        if (!dst || numel != (size_t)params[i].numel) return BT_ERR_SHAPE_MISMATCH;
        memcpy(dst, params[i].master, numel * sizeof(int32_t));
        *frac = params[i].frac;
        t = s->p->nodes[params[i].node].opt_m[params[i].which];
        if ((t >= 0) != (params[i].momentum != NULL)) return BT_ERR_STATE;
        if (t >= 0) memcpy(s->arena + bt_plan_offset(s->p, t), params[i].momentum, numel * sizeof(int32_t));
    }}
    for (v = 0; v < BT_FW_N_NODES; ++v) {{
        s->out_frac[v] = out_frac[v];
        s->dout_frac[v] = dout_frac[v];
        s->wq_frac[v] = wq_frac[v];
        s->out_win[v] = out_win[v];
        s->dout_win[v] = dout_win[v];
        s->out_win_n[v] = out_win_n[v];
        s->dout_win_n[v] = dout_win_n[v];
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {{
            s->grad_frac[v][k] = grad_frac[v * BT_MAX_PARAMS_PER_NODE + k];
            s->mom_frac[v][k] = mom_frac[v * BT_MAX_PARAMS_PER_NODE + k];
        }}
    }}
    s->rng.state = UINT64_C({st['rng_state']});
    s->rng.inc = UINT64_C({st['rng_inc']});
    s->steps = {st['steps']}ul;
    return BT_OK;
}}
"""


def _data_c(xq, ys, xtq, y_test, xcal, ycal, per) -> str:
    def arr(name, x):
        x = x.reshape(-1) if x.size else np.zeros(per, np.int16)
        return f"const int16_t {name}[{x.size}] = {{\n    {_int_rows(x.tolist())}\n}};\n"

    def lab(name, y):
        y = y if y.size else np.zeros(1, np.int32)
        return f"const int32_t {name}[{y.size}] = {{\n    {_int_rows(y.tolist())}\n}};\n"

    return _HEADER.format(model="samples") + '#include "bt_fw_model.h"\n\n' + "\n".join([
        arr("bt_fw_x_train", xq), lab("bt_fw_y_train", ys), arr("bt_fw_x_test", xtq), lab("bt_fw_y_test", y_test),
        arr("bt_fw_x_cal", xcal), lab("bt_fw_y_cal", ycal)])


_MAIN_C = r"""/* Generated by biotrain_rt.export.firmware (fixed point). Do not edit.
 *
 * The firmware application: plans the training step with the same C planner
 * as the host (at boot, and fails unless it gets the host's peak), loads the
 * exported integer state into a fixed-point session over a static arena of
 * exactly that size, calibrates if the host trainer had not yet, then runs
 * BT_FW_STEPS training steps of the integer executor and prints, one line each:
 *   plan peak_bytes=... exported_bytes=... arena_bytes=... instret=...
 *   init checksum=0x........ state=0x........
 *   calibrate rounds=<r> checksum=0x........ state=0x........ instret=...   (when BT_FW_CAL_ROUNDS > 0)
 *   step <s> loss=0x........ checksum=0x........ state=0x........ instret=...
 *   test correct=<k> total=<n> logits=0x........ logits_frac=<f> instret=...
 *   total train_instret=... instret=...
 *   done status=0
 * loss: the Q16 loss bits; checksum: bt_fixed_session_checksum (masters and
 * their scales); state: FNV-1a of everything else the next step reads.
 * A failure prints "FAIL ..." and exits non-zero (semihosting exit status).
 * No float arithmetic anywhere on this path. */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "biotrain/exec_fixed.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"
#include "biotrain/port.h"
#include "bt_fw_model.h"

#ifndef BT_FW_TARGET_NAME
#define BT_FW_TARGET_NAME "unknown"
#endif

static bt_graph graph;
static bt_plan plan;
static bt_fixed_session session;
static union {
    uint8_t bytes[BT_FW_ARENA_BYTES];
    uint64_t align;
} arena;
static int8_t logits[BT_FW_N_TEST_ALLOC * BT_FW_CLASSES];

@U64_STR@

static uint32_t fnv_bytes(uint32_t h, const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    size_t i;
    for (i = 0; i < n; ++i) {
        h ^= b[i];
        h *= 16777619u;
    }
    return h;
}

/* One 32-bit word as its little-endian bytes, whatever the byte order. */
static uint32_t fnv_word(uint32_t h, uint32_t w)
{
    int i;
    for (i = 0; i < 4; ++i) {
        h ^= (w >> (8 * i)) & 0xffu;
        h *= 16777619u;
    }
    return h;
}

/* Per node: out, dout and wq scales, the two windows and their counts, the
 * grad and momentum scales of every parameter slot, the momentum values; then
 * the generator (state, inc; low word first). biotrain_rt.firmware computes
 * the same on the host. */
static uint32_t state_checksum(const bt_fixed_session *s)
{
    uint32_t h = 2166136261u;
    int v, k;
    size_t i;
    for (v = 0; v < s->g->n_nodes; ++v) {
        h = fnv_word(h, (uint32_t)s->out_frac[v]);
        h = fnv_word(h, (uint32_t)s->dout_frac[v]);
        h = fnv_word(h, (uint32_t)s->wq_frac[v]);
        h = fnv_word(h, s->out_win[v]);
        h = fnv_word(h, s->dout_win[v]);
        h = fnv_word(h, s->out_win_n[v]);
        h = fnv_word(h, s->dout_win_n[v]);
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            h = fnv_word(h, (uint32_t)s->grad_frac[v][k]);
            h = fnv_word(h, (uint32_t)s->mom_frac[v][k]);
        }
        for (k = 0; k < BT_MAX_PARAMS_PER_NODE; ++k) {
            const int t = s->p->nodes[v].opt_m[k];
            const int32_t *m;
            size_t cnt;
            if (t < 0) continue;
            m = (const int32_t *)(s->arena + bt_plan_offset(s->p, t));
            cnt = bt_node_param_numel(s->g, v, k);
            for (i = 0; i < cnt; ++i) h = fnv_word(h, (uint32_t)m[i]);
        }
    }
    h = fnv_word(h, (uint32_t)(s->rng.state & 0xffffffffu));
    h = fnv_word(h, (uint32_t)(s->rng.state >> 32));
    h = fnv_word(h, (uint32_t)(s->rng.inc & 0xffffffffu));
    h = fnv_word(h, (uint32_t)(s->rng.inc >> 32));
    return h;
}

static int fail(const char *what, bt_status st)
{
    printf("FAIL %s: %s (status %d, node %d)\n", what, bt_status_str(st), (int)st, session.error_node);
    return 1;
}

static int fw_run(void)
{
    bt_status st;
    bt_plan_opts po;
    bt_q_sgd_cfg oc;
    uint64_t t_start, t0, t1, t_train = 0;
    char b1[21], b2[21];
    int s;

    t_start = bt_port_counter();
    printf("biotrain-rt firmware model=%s target=%s counter=%s steps=%d batch=%d dtype=fixed\n", BT_FW_MODEL_NAME,
           BT_FW_TARGET_NAME, bt_port_counter_unit(), BT_FW_STEPS, BT_FW_BATCH);
    if ((st = bt_fw_build_graph(&graph)) != BT_OK) return fail("graph", st);
    bt_fw_plan_opts(&po);
    t0 = bt_port_counter();
    if ((st = bt_plan_build(&plan, &graph, &po)) != BT_OK) return fail("plan", st);
    t1 = bt_port_counter();
    printf("plan peak_bytes=%lu exported_bytes=%lu arena_bytes=%lu instret=%s\n", (unsigned long)plan.peak_bytes,
           (unsigned long)BT_FW_PEAK_BYTES, (unsigned long)sizeof arena.bytes, u64_str(t1 - t0, b1));
    if (plan.peak_bytes != (size_t)BT_FW_PEAK_BYTES) {
        printf("FAIL plan: the planner here needs %lu bytes, the host planned %lu\n", (unsigned long)plan.peak_bytes,
               (unsigned long)BT_FW_PEAK_BYTES);
        return 2;
    }
    bt_fw_optim_cfg(&oc);
    st = bt_fixed_session_init(&session, &graph, &plan, arena.bytes, sizeof arena.bytes, &oc, BT_FW_SEED);
    if (st != BT_OK) return fail("session", st);
    if ((st = bt_fw_load_state(&session)) != BT_OK) return fail("state", st);
    printf("init checksum=0x%08lx state=0x%08lx\n", (unsigned long)bt_fixed_session_checksum(&session),
           (unsigned long)state_checksum(&session));

    if (BT_FW_CAL_ROUNDS > 0) {
        t0 = bt_port_counter();
        st = bt_fixed_calibrate(&session, bt_fw_x_cal, BT_FW_X_FRAC, bt_fw_y_cal, BT_FW_N_CAL, BT_FW_CAL_ROUNDS);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("calibrate", st);
        printf("calibrate rounds=%d checksum=0x%08lx state=0x%08lx instret=%s\n", BT_FW_CAL_ROUNDS,
               (unsigned long)bt_fixed_session_checksum(&session), (unsigned long)state_checksum(&session),
               u64_str(t1 - t0, b1));
    }

    for (s = 0; s < BT_FW_STEPS; ++s) {
        int32_t loss = 0;
        const int16_t *x = bt_fw_x_train + (size_t)s * BT_FW_BATCH * BT_FW_IN_NUMEL;
        const int32_t *y = bt_fw_y_train + (size_t)s * BT_FW_BATCH;
        t0 = bt_port_counter();
        st = bt_fixed_train_step(&session, &loss, x, BT_FW_X_FRAC, y, BT_FW_BATCH);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("train_step", st);
        t_train += t1 - t0;
        printf("step %d loss=0x%08lx checksum=0x%08lx state=0x%08lx instret=%s\n", s, (unsigned long)(uint32_t)loss,
               (unsigned long)bt_fixed_session_checksum(&session), (unsigned long)state_checksum(&session),
               u64_str(t1 - t0, b1));
    }

    if (BT_FW_N_TEST > 0) {
        int i, c, correct = 0, frac = 0;
        t0 = bt_port_counter();
        st = bt_fixed_forward(&session, logits, &frac, bt_fw_x_test, BT_FW_X_FRAC, BT_FW_N_TEST);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("forward", st);
        for (i = 0; i < BT_FW_N_TEST; ++i) {
            const int8_t *row = logits + (size_t)i * BT_FW_CLASSES;
            int best = 0;
            for (c = 1; c < BT_FW_CLASSES; ++c)
                if (row[c] > row[best]) best = c; /* the first maximum wins, as numpy's argmax */
            correct += best == bt_fw_y_test[i];
        }
        printf("test correct=%d total=%d logits=0x%08lx logits_frac=%d instret=%s\n", correct, BT_FW_N_TEST,
               (unsigned long)fnv_bytes(2166136261u, logits, (size_t)BT_FW_N_TEST * BT_FW_CLASSES), frac,
               u64_str(t1 - t0, b1));
    }
    t1 = bt_port_counter();
    printf("total train_instret=%s instret=%s\n", u64_str(t_train, b1), u64_str(t1 - t_start, b2));
    printf("done status=0\n");
    return 0;
}

@ENTRY@
"""
