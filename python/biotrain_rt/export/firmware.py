"""Firmware export: the training run of a :class:`~biotrain_rt.trainer.Trainer`
as C sources for a 32-bit RISC-V MCU, and as a manifest the host re-runs.

``firmware(trainer, out_dir, samples=(X_train, y_train, X_test, y_test), steps=10)``
writes into ``out_dir``:

``bt_fw_model.h``, ``bt_fw_model.c``
    the network as a C function making the same ``bt_graph_*`` calls the host
    makes (node 0 is the input), the trainable flags, the plan options, the
    optimizer settings and the initial parameters as exact float32 bit
    patterns (``uint32_t`` hex: no decimal round trip);
``bt_fw_data.c``
    the training samples in the order the steps take them, their labels and
    the test samples, again as bit patterns;
``main.c``
    the application. **The MCU plans its memory with the same C planner as
    the host, at boot**: it builds the graph, calls ``bt_plan_build`` and stops
    with a failure status unless the planned peak equals the exported figure
    (the host plan's ``peak_bytes``), which is also the size of its static
    arena. It then initialises a session over that arena, loads the parameters,
    runs the steps and prints after every step
    ``step 3 loss=0x3f12abcd checksum=0x1234abcd instret=...`` (the loss and
    an FNV-1a checksum of all parameters, as bits), then the test accuracy,
    the instruction counts, and exits with status 0 (non-zero on any failure);
``export.json``, ``export.npz``
    the manifest: the same layers, options and bit patterns, from which
    :func:`biotrain_rt.firmware.host_run` runs the very same steps through the
    bindings.

The steps start from the trainer's current parameters with a fresh optimizer
state (step count 0, zero momentum), on both sides.

An export is refused (``ValueError`` naming the figures and the limit) when
the model does not fit the target: the plan's peak plus the runtime's tables
and stack must fit the RAM, the code estimate plus the weights and the samples
must fit the flash (QEMU targets), or everything together must fit GAP9's
1.5 MB L2.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..network import PARAM_NAMES

FORMAT_VERSION = 1

KiB = 1024
MiB = 1024 * 1024


@dataclass(frozen=True)
class TargetSpec:
    """What the export needs to know about a target."""
    name: str
    platform: str             # "riscv" (QEMU virt) or "gap9" (GAP SDK)
    toolchain: str            # file under firmware/cmake/
    march: str
    mabi: str
    qemu_cpu: Optional[str]   # -cpu for qemu-system-riscv32; None: not runnable under QEMU
    flash_bytes: Optional[int] = None   # code and constant tables (QEMU: firmware/ld/qemu_virt.ld)
    ram_bytes: Optional[int] = None     # arena, runtime tables, stack
    total_bytes: Optional[int] = None   # one memory for everything (GAP9 L2)
    description: str = ""


#: The targets. The QEMU regions are the ones firmware/ld/qemu_virt.ld defines.
TARGETS: Dict[str, TargetSpec] = {
    "rv32imfc": TargetSpec("rv32imfc", "riscv", "toolchain-rv32imfc.cmake", "rv32imfc", "ilp32f", "rv32",
                           flash_bytes=2 * MiB, ram_bytes=6 * MiB,
                           description="RV32 with hardware single-precision float, QEMU virt"),
    "rv32imc": TargetSpec("rv32imc", "riscv", "toolchain-rv32imc.cmake", "rv32imc", "ilp32", "rv32,f=false,d=false",
                          flash_bytes=2 * MiB, ram_bytes=6 * MiB,
                          description="RV32 without FPU (soft float), QEMU virt"),
    "gap9": TargetSpec("gap9", "gap9", "toolchain-gap9.cmake", "rv32imcxgap9", "ilp32", None,
                       total_bytes=3 * MiB // 2,
                       description="GAP9 cluster, 1.5 MB L2, through the GAP SDK (untested)"),
}

#: Code of the core, the application and the C library, rounded up from the
#: measured text of the rv32imc image (the larger of the two: soft float).
CODE_ESTIMATE_BYTES = 64 * KiB
#: bt_graph + bt_plan + bt_session + the planner's static work tables on rv32
#: (their sizes are fixed by BT_MAX_NODES and BT_MAX_TENSORS), rounded up.
RUNTIME_TABLE_BYTES = 64 * KiB
#: The stack firmware/ld/qemu_virt.ld reserves.
STACK_BYTES = 32 * KiB


@dataclass
class FirmwareExport:
    """What :func:`firmware` wrote."""
    out_dir: Path
    target: str
    model: str
    peak_bytes: int
    steps: int
    batch_size: int
    n_train: int
    n_test: int
    files: List[Path]
    memory: Dict[str, int]

    def __repr__(self) -> str:
        return (f"FirmwareExport({self.model} -> {self.out_dir}, target={self.target}, steps={self.steps}, "
                f"batch={self.batch_size}, peak_bytes={self.peak_bytes})")


# ------------------------------------------------------------------ helpers
def _f32_bits(a) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(a, dtype=np.float32)).reshape(-1).view(np.uint32)


def _c_float(x: float) -> str:
    """A C99 hexadecimal float literal holding exactly float32(x)."""
    v = float(np.float32(x))
    if not np.isfinite(v):
        raise ValueError(f"cannot export the non-finite option value {x!r}")
    return v.hex() + "f"


def _c_string(s: str) -> str:
    out = []
    for ch in s:
        o = ord(ch)
        if ch in '"\\':
            out.append("\\" + ch)
        elif 32 <= o < 127:
            out.append(ch)
        else:
            for b in ch.encode("utf-8"):
                out.append(f"\\{b:03o}")
    return '"' + "".join(out) + '"'


def _c_comment(s: str) -> str:
    """Text safe inside a C comment."""
    return re.sub(r"[^0-9A-Za-z_. -]", "?", s)


def _hex_rows(bits: np.ndarray, per_line: int = 8) -> str:
    words = [f"0x{int(v):08x}u" for v in bits.tolist()]
    lines = [", ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]
    return ",\n    ".join(lines) if lines else "0u"


def _int_rows(vals: Sequence[int], per_line: int = 16) -> str:
    words = [str(int(v)) for v in vals]
    lines = [", ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]
    return ",\n    ".join(lines) if lines else "0"


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (np.floating,)):
        return float(v)
    return v


def layers_of(net) -> List[dict]:
    """The network's layers as plain data (the manifest's form)."""
    out = []
    for i, l in enumerate(net.layers):
        out.append({"id": i, "kind": l.kind, "name": l.name, "inputs": [int(x) for x in l.inputs],
                    "opts": {k: _jsonable(v) for k, v in l.opts.items()},
                    "shape": [int(s) for s in l.shape], "params": [k for k in PARAM_NAMES if k in l.params]})
    return out


def core_graph_from_layers(input_shape, layers: List[dict], trainable: Sequence[int]) -> "_core.Graph":
    """Builds the C graph from manifest layers with the bindings: the same
    calls, in the same order, as ``Network.core_graph`` and the exported C."""
    g = _core.Graph(*[int(s) for s in input_shape])
    for l in layers[1:]:
        o, k, ins, name = l["opts"], l["kind"], l["inputs"], l["name"]
        if k == "conv2d":
            nid = g.conv2d(ins[0], o["out_channels"], tuple(o["kernel"]), tuple(o["stride"]), tuple(o["padding"]),
                           tuple(o["dilation"]), o["groups"], o["bias"], name)
        elif k == "linear":
            nid = g.linear(ins[0], o["out_features"], o["bias"], name)
        elif k == "groupnorm":
            nid = g.groupnorm(ins[0], o["groups"], o["affine"], o["eps"], name)
        elif k == "batchnorm":
            nid = g.batchnorm(ins[0], o["momentum"], o["eps"], name)
        elif k in ("relu", "gelu", "flatten", "global_avgpool"):
            nid = getattr(g, k)(ins[0], name)
        elif k == "elu":
            nid = g.elu(ins[0], o["alpha"], name)
        elif k in ("avgpool2d", "maxpool2d"):
            nid = g.pool(ins[0], k == "maxpool2d", tuple(o["kernel"]), tuple(o["stride"]), tuple(o["padding"]), name)
        elif k == "add":
            nid = g.add(ins[0], ins[1], name)
        elif k == "dropout":
            nid = g.dropout(ins[0], o["p"], name)
        else:
            raise ValueError(f"layer '{name}': kind '{k}' cannot be exported")
        if nid != l["id"]:
            raise ValueError(f"layer '{name}': the graph numbered it {nid}, the manifest {l['id']}")
    g.finish()
    for i in trainable:
        g.set_trainable(int(i), True)
    return g


def _c_layer(l: dict) -> str:
    """One bt_graph_* call for a layer (inside bt_fw_build_graph)."""
    k, o, ins, name = l["kind"], l["opts"], l["inputs"], _c_string(l["name"])
    if k == "conv2d":
        kh, kw = o["kernel"]
        sh, sw = o["stride"]
        ph, pw = o["padding"]
        dh, dw = o["dilation"]
        return (f"    {{\n        bt_conv2d_opts o;\n        memset(&o, 0, sizeof o);\n"
                f"        o.c_out = {o['out_channels']}; o.k_h = {kh}; o.k_w = {kw};\n"
                f"        o.stride_h = {sh}; o.stride_w = {sw}; o.pad_h = {ph}; o.pad_w = {pw};\n"
                f"        o.dil_h = {dh}; o.dil_w = {dw}; o.groups = {o['groups']}; o.has_bias = {int(o['bias'])};\n"
                f"        TRY(bt_graph_conv2d(g, &id, {ins[0]}, &o, {name}));\n    }}\n")
    if k == "linear":
        return (f"    {{\n        bt_linear_opts o;\n        memset(&o, 0, sizeof o);\n"
                f"        o.out_f = {o['out_features']}; o.has_bias = {int(o['bias'])};\n"
                f"        TRY(bt_graph_linear(g, &id, {ins[0]}, &o, {name}));\n    }}\n")
    if k in ("groupnorm", "batchnorm"):
        groups = o["groups"] if k == "groupnorm" else 0
        affine = int(o["affine"]) if k == "groupnorm" else 1
        mom = o["momentum"] if k == "batchnorm" else 0.0
        return (f"    {{\n        bt_norm_opts o;\n        memset(&o, 0, sizeof o);\n"
                f"        o.groups = {groups}; o.affine = {affine}; o.eps = {_c_float(o['eps'])}; "
                f"o.momentum = {_c_float(mom)};\n"
                f"        TRY(bt_graph_{k}(g, &id, {ins[0]}, &o, {name}));\n    }}\n")
    if k in ("relu", "gelu", "flatten", "global_avgpool"):
        return f"    TRY(bt_graph_{k}(g, &id, {ins[0]}, {name}));\n"
    if k == "elu":
        return f"    TRY(bt_graph_elu(g, &id, {ins[0]}, {_c_float(o['alpha'])}, {name}));\n"
    if k in ("avgpool2d", "maxpool2d"):
        kh, kw = o["kernel"]
        sh, sw = o["stride"]
        ph, pw = o["padding"]
        return (f"    {{\n        bt_pool_opts o;\n        memset(&o, 0, sizeof o);\n"
                f"        o.k_h = {kh}; o.k_w = {kw}; o.stride_h = {sh}; o.stride_w = {sw}; "
                f"o.pad_h = {ph}; o.pad_w = {pw};\n"
                f"        TRY(bt_graph_{k}(g, &id, {ins[0]}, &o, {name}));\n    }}\n")
    if k == "add":
        return f"    TRY(bt_graph_add(g, &id, {ins[0]}, {ins[1]}, {name}));\n"
    if k == "dropout":
        return f"    TRY(bt_graph_dropout(g, &id, {ins[0]}, {_c_float(o['p'])}, {name}));\n"
    raise ValueError(f"layer '{l['name']}': kind '{k}' cannot be exported")


def memory_budget(target: str, peak_bytes: int, weight_bytes: int, sample_bytes: int,
                  code_bytes: int = CODE_ESTIMATE_BYTES) -> Dict[str, int]:
    """The export's memory figures for a target; raises ValueError (with the
    figures and the limit) when they do not fit. ``code_bytes``: the code
    estimate (the fixed-point export passes its own)."""
    spec = _target(target)
    ram = int(peak_bytes) + RUNTIME_TABLE_BYTES + STACK_BYTES
    flash = int(code_bytes) + int(weight_bytes) + int(sample_bytes)
    figures = {"peak_bytes": int(peak_bytes), "runtime_table_bytes": RUNTIME_TABLE_BYTES, "stack_bytes": STACK_BYTES,
               "code_estimate_bytes": int(code_bytes), "weight_bytes": int(weight_bytes),
               "sample_bytes": int(sample_bytes), "ram_need_bytes": ram, "flash_need_bytes": flash,
               "total_need_bytes": ram + flash}
    parts_ram = (f"plan peak {peak_bytes} B + runtime tables {RUNTIME_TABLE_BYTES} B + stack {STACK_BYTES} B")
    parts_flash = (f"code estimate {code_bytes} B + weights {weight_bytes} B + samples {sample_bytes} B")
    if spec.total_bytes is not None:
        figures["limit_bytes"] = spec.total_bytes
        if ram + flash > spec.total_bytes:
            raise ValueError(f"export for {target}: the model needs {ram + flash} B ({parts_ram} + {parts_flash}), "
                             f"more than the target's {spec.total_bytes} B of memory; use a smaller micro_batch, "
                             f"fewer samples or a smaller model")
    if spec.ram_bytes is not None:
        figures["ram_limit_bytes"] = spec.ram_bytes
        if ram > spec.ram_bytes:
            raise ValueError(f"export for {target}: the training step needs {ram} B of RAM ({parts_ram}), more than "
                             f"the target's RAM region of {spec.ram_bytes} B; use a smaller micro_batch or model")
    if spec.flash_bytes is not None:
        figures["flash_limit_bytes"] = spec.flash_bytes
        if flash > spec.flash_bytes:
            raise ValueError(f"export for {target}: the image needs {flash} B of flash ({parts_flash}), more than "
                             f"the target's flash region of {spec.flash_bytes} B; export fewer samples or steps")
    return figures


def _target(target: str) -> TargetSpec:
    if target not in TARGETS:
        raise ValueError(f"unknown firmware target '{target}': use one of {sorted(TARGETS)}")
    return TARGETS[target]


def _as_samples(x, y, shape, classes, what: str) -> Tuple[np.ndarray, np.ndarray]:
    x = np.asarray(x)
    y = np.asarray(y)
    c, h, w = shape
    if x.ndim == 3 and h == 1 and x.shape[1:] == (c, w):
        x = x.reshape(x.shape[0], c, 1, w)
    elif x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
        x = x.reshape(x.shape[0], 1, h, w)
    if x.ndim != 4 or tuple(x.shape[1:]) != (c, h, w):
        raise ValueError(f"export: {what} samples have shape {x.shape}, the network takes (n, {c}, {h}, {w})")
    if y.ndim != 1 or y.shape[0] != x.shape[0]:
        raise ValueError(f"export: {what} labels have shape {y.shape}, expected ({x.shape[0]},)")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            y = y.astype(np.int64)
        else:
            raise ValueError(f"export: {what} labels must be integer class indices, got dtype {y.dtype}")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(f"export: {what} samples contain NaN or Inf")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"export: {what} label {int(y[i])} at index {i} is outside the {classes} classes")
    return x, y.astype(np.int32)


def _plan_options(trainer) -> dict:
    """The plan options that reproduce the trainer's plan, checked by
    replanning: the firmware must get the same peak."""
    core_plan = trainer.plan.core
    opt = trainer.optimizer
    kind = str(core_plan.optimizer)
    micro = int(core_plan.micro_batch)
    reuse = bool(getattr(trainer, "reuse", True))
    momentum = bool(kind == "sgd" and float(opt.momentum) > 0)
    return {"micro_batch": micro, "optimizer": kind, "momentum": momentum, "reuse": reuse}


# ------------------------------------------------------------------ export
def firmware(trainer, out_dir, samples, steps: int = 10, batch_size: Optional[int] = None,
             target: str = "rv32imfc") -> FirmwareExport:
    """Writes the firmware sources and the host manifest for ``steps``
    training steps of ``trainer`` on ``samples = (X_train, y_train, X_test, y_test)``.

    Step ``s`` takes the training rows ``s*B .. s*B+B-1`` (cycling over
    ``X_train`` when it has fewer rows); ``B`` is ``batch_size`` (default the
    trainer's). Raises ValueError if the model, the samples or the steps do not
    fit ``target`` (figures and limit in the message).

    A fixed-point trainer (``dtype="fixed"``) exports its integer state and
    an application running the integer executor instead
    (:mod:`biotrain_rt.export.firmware_fixed`).
    """
    if getattr(trainer, "dtype", "float32") == "fixed":
        from .firmware_fixed import firmware_fixed
        return firmware_fixed(trainer, out_dir, samples, steps=steps, batch_size=batch_size, target=target)
    spec = _target(target)
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

    popts = _plan_options(trainer)
    if trainer.plan.core.has_batchnorm and B > popts["micro_batch"]:
        raise ValueError(f"export: a batch of {B} exceeds the plan's batch of {popts['micro_batch']}, and "
                         f"batchnorm needs the whole batch in one pass")
    trainable = sorted(int(i) for i in trainer.trainable_nodes)
    layers = layers_of(net)

    # The manifest's graph must plan exactly like the trainer's.
    g = core_graph_from_layers(shape, layers, trainable)
    replan = _core.Plan(g, popts["micro_batch"], popts["optimizer"], popts["momentum"], popts["reuse"])
    peak = int(trainer.plan.peak_bytes)
    if int(replan.peak_bytes) != peak:
        raise RuntimeError(f"export: the exported graph plans to {replan.peak_bytes} B but the trainer's plan has "
                           f"{peak} B; the trainer was built with options the export does not know")
    plan_nodes = replan.nodes()

    # Parameters: the live values in the trainer's arena.
    params = []
    for i, l in enumerate(net.layers):
        for k, pname in enumerate(PARAM_NAMES):
            if pname in l.params:
                v = np.array(trainer.session.param(i, k), dtype=np.float32, copy=True)
                if not np.all(np.isfinite(v)):
                    raise ValueError(f"export: parameter '{l.name}.{pname}' contains NaN or Inf")
                params.append((i, k, f"{l.name}.{pname}", v))
    weight_bytes = sum(4 * v.size for _, _, _, v in params)

    rows = [(s * B + j) % X_train.shape[0] for s in range(int(steps)) for j in range(B)]
    xs, ys = X_train[rows], y_train[rows]
    numel = int(np.prod(shape))
    sample_bytes = 4 * (xs.size + X_test.size) + 4 * (ys.size + y_test.size)
    memory = memory_budget(target, peak, weight_bytes, sample_bytes)

    opt = trainer.optimizer
    betas = tuple(float(b) for b in getattr(opt, "betas", (0.9, 0.999)))
    optim = {"kind": str(opt.kind), "lr": float(trainer.session.lr), "momentum": float(opt.momentum),
             "weight_decay": float(opt.weight_decay), "beta1": betas[0], "beta2": betas[1],
             "eps": float(getattr(opt, "eps", 1e-8))}
    seed = int(trainer.seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"export: the seed {seed} does not fit 64 bits")

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []

    def write(name, text):
        p = out / name
        p.write_text(text)
        files.append(p)

    write("bt_fw_model.h", _model_h(net.name, peak, steps, B, numel, classes, X_test.shape[0], seed))
    write("bt_fw_model.c", _model_c(net.name, shape, layers, trainable, popts, optim, params))
    write("bt_fw_data.c", _data_c(xs, ys, X_test, y_test))
    write("main.c", _c_main(_MAIN_C))

    manifest = {
        "format": FORMAT_VERSION, "model": net.name, "target": target, "input_shape": list(shape),
        "classes": classes, "layers": layers, "trainable": trainable, "plan": dict(popts, peak_bytes=peak),
        "plan_nodes": [{"run_backward": bool(n["run_backward"]), "weight_grad": bool(n["weight_grad"])}
                       for n in plan_nodes],
        "optimizer": optim, "optimizer_bits": {k: f"0x{int(_f32_bits(v)[0]):08x}" for k, v in optim.items()
                                               if k != "kind"},
        "seed": seed, "steps": int(steps), "batch_size": B, "train_rows": [int(r) for r in rows],
        "n_train": int(xs.shape[0]), "n_test": int(X_test.shape[0]),
        "params": [{"node": i, "which": k, "name": n, "numel": int(v.size)} for i, k, n, v in params],
        "memory": memory, "files": [p.name for p in files] + ["export.npz"],
    }
    arrays = {"x_train": _f32_bits(xs), "y_train": ys.astype(np.int32), "x_test": _f32_bits(X_test),
              "y_test": y_test.astype(np.int32)}
    for i, k, _, v in params:
        arrays[f"p_{i}_{k}"] = _f32_bits(v)
    np.savez(out / "export.npz", **arrays)
    (out / "export.json").write_text(json.dumps(manifest, indent=1))
    files += [out / "export.npz", out / "export.json"]
    return FirmwareExport(out, target, net.name, peak, int(steps), B, int(xs.shape[0]), int(X_test.shape[0]),
                          files, memory)


# ------------------------------------------------------------------ C text
_HEADER = "/* Generated by biotrain_rt.export.firmware for the model '{model}'. Do not edit. */\n"


def _model_h(model, peak, steps, B, numel, classes, n_test, seed) -> str:
    return _HEADER.format(model=model) + f"""#ifndef BT_FW_MODEL_H
#define BT_FW_MODEL_H

#include <stdint.h>
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"

#define BT_FW_MODEL_NAME {_c_string(model)}
/* The host plan's peak for this graph and these options: the arena's size.
 * main() replans at boot and fails unless it gets the same figure. */
#define BT_FW_PEAK_BYTES {int(peak)}u
#define BT_FW_ARENA_BYTES BT_FW_PEAK_BYTES
#define BT_FW_STEPS {int(steps)}
#define BT_FW_BATCH {int(B)}
#define BT_FW_IN_NUMEL {int(numel)}
#define BT_FW_CLASSES {int(classes)}
#define BT_FW_N_TEST {int(n_test)}
/* Arrays cannot be empty in C: at least one row is stored. */
#define BT_FW_N_TEST_ALLOC {max(1, int(n_test))}
/* Feeds the dropout generator, as the host session's seed. */
#define BT_FW_SEED UINT64_C({int(seed)})

/* The network: the same bt_graph_* calls as the host, then the trainable flags. */
bt_status bt_fw_build_graph(bt_graph *g);
void bt_fw_plan_opts(bt_plan_opts *o);
void bt_fw_optim_cfg(bt_optim_cfg *c);
/* Writes the initial parameters into the session's arena. */
bt_status bt_fw_load_params(bt_session *s);

/* [BT_FW_STEPS * BT_FW_BATCH, BT_FW_IN_NUMEL]: step s takes rows s*B .. s*B+B-1. */
extern const float *const bt_fw_x_train;
extern const int32_t bt_fw_y_train[];
/* [BT_FW_N_TEST, BT_FW_IN_NUMEL] */
extern const float *const bt_fw_x_test;
extern const int32_t bt_fw_y_test[];

#endif
"""


def _model_c(model, shape, layers, trainable, popts, optim, params) -> str:
    c, h, w = shape
    body = [f"    TRY(bt_graph_init(g, {c}, {h}, {w}));\n"]
    for l in layers[1:]:
        body.append(f"    /* node {l['id']}: {l['kind']} '{_c_comment(l['name'])}' -> {tuple(l['shape'])} */\n")
        body.append(_c_layer(l))
        body.append(f"    if (id != {l['id']}) return BT_ERR_STATE;\n")
    body.append("    TRY(bt_graph_finish(g));\n")
    for i in trainable:
        body.append(f"    TRY(bt_graph_set_trainable(g, {i}, 1));\n")
    tables = []
    entries = []
    for i, k, name, v in params:
        ident = f"param_{i}_{k}"
        tables.append(f"/* {_c_comment(name)}: {v.size} values */\n"
                      f"static const uint32_t {ident}[{v.size}] = {{\n    {_hex_rows(_f32_bits(v))}\n}};\n")
        entries.append(f"    {{{i}, {k}, {v.size}u, {ident}}},\n")
    n_entries = len(entries)
    if not entries:
        entries.append("    {0, 0, 0u, NULL},\n")
    opt_kind = "BT_OPTIM_ADAM" if optim["kind"] == "adam" else "BT_OPTIM_SGD"
    plan_kind = "BT_OPTIM_ADAM" if popts["optimizer"] == "adam" else "BT_OPTIM_SGD"
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
    o->optimizer = {plan_kind};
    o->momentum = {int(popts['momentum'])};
    o->reuse = {int(popts['reuse'])};
}}

void bt_fw_optim_cfg(bt_optim_cfg *c)
{{
    memset(c, 0, sizeof *c);
    c->kind = {opt_kind};
    c->lr = {_c_float(optim['lr'])};
    c->momentum = {_c_float(optim['momentum'])};
    c->weight_decay = {_c_float(optim['weight_decay'])};
    c->beta1 = {_c_float(optim['beta1'])};
    c->beta2 = {_c_float(optim['beta2'])};
    c->eps = {_c_float(optim['eps'])};
}}

/* Initial parameters, as float32 bit patterns. */
{"".join(tables)}
typedef struct {{
    int node, which;
    uint32_t numel;
    const uint32_t *bits;
}} param_init;

static const param_init params[] = {{
{"".join(entries)}}};

bt_status bt_fw_load_params(bt_session *s)
{{
    int i;
    for (i = 0; i < {n_entries}; ++i) {{
        size_t numel = 0;
        float *dst = bt_session_param(s, params[i].node, params[i].which, &numel);
        if (!dst || numel != (size_t)params[i].numel) return BT_ERR_SHAPE_MISMATCH;
        memcpy(dst, params[i].bits, numel * sizeof(float));
    }}
    return BT_OK;
}}
"""


def _data_c(xs, ys, X_test, y_test) -> str:
    n_train = xs.shape[0]
    n_test = max(1, X_test.shape[0])
    per = int(np.prod(xs.shape[1:]))
    xt_bits = _f32_bits(X_test) if X_test.shape[0] else np.zeros(per, np.uint32)
    yt = y_test if y_test.shape[0] else np.zeros(1, np.int32)
    # A union reads the stored bit patterns as floats without a copy (C99
    # allows reading another member of a union: the bytes are reinterpreted).
    return _HEADER.format(model="samples") + f"""#include "bt_fw_model.h"

static const union {{
    uint32_t u[{n_train * per}];
    float f[{n_train * per}];
}} x_train = {{{{
    {_hex_rows(_f32_bits(xs))}
}}}};

static const union {{
    uint32_t u[{n_test * per}];
    float f[{n_test * per}];
}} x_test = {{{{
    {_hex_rows(xt_bits)}
}}}};

const float *const bt_fw_x_train = x_train.f;
const float *const bt_fw_x_test = x_test.f;

const int32_t bt_fw_y_train[{n_train}] = {{
    {_int_rows(ys)}
}};

const int32_t bt_fw_y_test[{n_test}] = {{
    {_int_rows(yt)}
}};
"""


# C pieces shared by the float and fixed-point firmware mains (spliced in for @NAME@ markers;
# the templates are not f-strings, so C braces need no escaping).
_C_U64_STR = r"""/* The integer-only printf has no 64-bit conversion: format by hand. */
static const char *u64_str(uint64_t v, char buf[21])
{
    char tmp[21];
    int n = 0, i;
    do {
        tmp[n++] = (char)('0' + (int)(v % 10u));
        v /= 10u;
    } while (v != 0u);
    for (i = 0; i < n; ++i) buf[i] = tmp[n - 1 - i];
    buf[n] = '\0';
    return buf;
}
"""

_C_ENTRY = r"""#if defined(BT_FW_GAP9)
/* GAP9 (untested): the fabric controller opens the cluster and runs the
 * training there, on the cluster controller core. */
#include "pmsis.h"

static int fw_status = -1;

static void cluster_entry(void *arg)
{
    (void)arg;
    fw_status = fw_run();
}

static void fabric_entry(void)
{
    struct pi_device cluster;
    struct pi_cluster_conf conf;
    struct pi_cluster_task task;
    pi_cluster_conf_init(&conf);
    pi_open_from_conf(&cluster, &conf);
    if (pi_cluster_open(&cluster)) pmsis_exit(-1);
    pi_cluster_task(&task, cluster_entry, NULL);
    task.stack_size = 8192;
    pi_cluster_send_task_to_cl(&cluster, &task);
    pi_cluster_close(&cluster);
    pmsis_exit(fw_status);
}

int main(void) { return pmsis_kickoff((void *)fabric_entry); }
#else
int main(void) { return fw_run(); }
#endif
"""


def _c_main(template: str) -> str:
    return template.replace("@U64_STR@\n", _C_U64_STR).replace("@ENTRY@\n", _C_ENTRY)


_MAIN_C = r"""/* Generated by biotrain_rt.export.firmware. Do not edit.
 *
 * The firmware application: plans the training step with the same C planner
 * as the host (at boot, and fails unless it gets the host's peak), then runs
 * BT_FW_STEPS training steps over a static arena of exactly that size and
 * prints, one line each:
 *   plan peak_bytes=... exported_bytes=... arena_bytes=... instret=...
 *   init checksum=0x........
 *   step <s> loss=0x........ checksum=0x........ instret=...   (bits of the loss, FNV-1a of all parameters)
 *   test correct=<k> total=<n> logits=0x........ instret=...
 *   total train_instret=... instret=...
 *   done status=0
 * A failure prints "FAIL ..." and exits non-zero (semihosting exit status). */
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"
#include "biotrain/port.h"
#include "bt_fw_model.h"

#ifndef BT_FW_TARGET_NAME
#define BT_FW_TARGET_NAME "unknown"
#endif

static bt_graph graph;
static bt_plan plan;
static bt_session session;
/* The arena, exactly the planned size; the union aligns it for floats and int32 labels. */
static union {
    uint8_t bytes[BT_FW_ARENA_BYTES];
    uint64_t align;
} arena;
static float logits[BT_FW_N_TEST_ALLOC * BT_FW_CLASSES];

static uint32_t f32_bits(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

@U64_STR@

static uint32_t fnv1a(const void *p, size_t n)
{
    const uint8_t *b = (const uint8_t *)p;
    uint32_t h = 2166136261u;
    size_t i;
    for (i = 0; i < n; ++i) {
        h ^= b[i];
        h *= 16777619u;
    }
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
    bt_optim_cfg oc;
    uint64_t t_start, t0, t1, t_train = 0;
    char b1[21], b2[21];
    int s;

    t_start = bt_port_counter();
    printf("biotrain-rt firmware model=%s target=%s counter=%s steps=%d batch=%d\n", BT_FW_MODEL_NAME,
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
    st = bt_session_init(&session, &graph, &plan, arena.bytes, sizeof arena.bytes, &oc, BT_FW_SEED);
    if (st != BT_OK) return fail("session", st);
    if ((st = bt_fw_load_params(&session)) != BT_OK) return fail("parameters", st);
    printf("init checksum=0x%08lx\n", (unsigned long)bt_session_param_checksum(&session));

    for (s = 0; s < BT_FW_STEPS; ++s) {
        float loss = 0.0f;
        const float *x = bt_fw_x_train + (size_t)s * BT_FW_BATCH * BT_FW_IN_NUMEL;
        const int32_t *y = bt_fw_y_train + (size_t)s * BT_FW_BATCH;
        t0 = bt_port_counter();
        st = bt_train_step(&session, &loss, x, y, BT_FW_BATCH);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("train_step", st);
        t_train += t1 - t0;
        printf("step %d loss=0x%08lx checksum=0x%08lx instret=%s\n", s, (unsigned long)f32_bits(loss),
               (unsigned long)bt_session_param_checksum(&session), u64_str(t1 - t0, b1));
    }

    if (BT_FW_N_TEST > 0) {
        int i, c, correct = 0;
        t0 = bt_port_counter();
        st = bt_forward(&session, logits, bt_fw_x_test, BT_FW_N_TEST);
        t1 = bt_port_counter();
        if (st != BT_OK) return fail("forward", st);
        for (i = 0; i < BT_FW_N_TEST; ++i) {
            const float *row = logits + (size_t)i * BT_FW_CLASSES;
            int best = 0;
            for (c = 1; c < BT_FW_CLASSES; ++c)
                if (row[c] > row[best]) best = c; /* the first maximum wins, as numpy's argmax */
            correct += best == bt_fw_y_test[i];
        }
        printf("test correct=%d total=%d logits=0x%08lx instret=%s\n", correct, BT_FW_N_TEST,
               (unsigned long)fnv1a(logits, sizeof(float) * (size_t)BT_FW_N_TEST * BT_FW_CLASSES),
               u64_str(t1 - t0, b1));
    }
    t1 = bt_port_counter();
    printf("total train_instret=%s instret=%s\n", u64_str(t_train, b1), u64_str(t1 - t_start, b2));
    printf("done status=0\n");
    return 0;
}

@ENTRY@
"""
