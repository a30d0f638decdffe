"""Firmware export: the training run of a :class:`~biotrain_rt.train.Trainer`
as C sources for a 32-bit RISC-V MCU, and as a manifest the host re-runs.
One path for both number formats.

``firmware(trainer, out_dir, samples=(X_train, y_train, X_test, y_test), steps=10)``
writes into ``out_dir``:

``bt_fw_model.h``, ``bt_fw_model.c``
    the network as a C function adding every node with one generic call,
    ``bt_graph_add_node(g, &id, BT_OP_<KIND>, ins, n, &o, "name")``, whose
    options ``o.<c path> = value`` come from the C op table
    (``_core.op_table()``) and the layers' core options (floats as exact
    hexadecimal literals); the trainable flags, the plan options, the
    optimizer settings; and **the trainer's session state** as the portable
    blob ``_core.Session.save_state()`` returns (``const uint8_t`` bytes):
    parameters, optimizer state, step count, dropout generator and, in fixed
    point, every scale and adaptation window;
``bt_fw_data.c``
    the training samples in the order the steps take them, their labels, the
    test samples and (fixed point, when the trainer is not calibrated yet) the
    calibration rows: float32 bit patterns, or int16 quantised with the
    trainer's input scale;
``main.c``
    the application, the same text for both formats (``BT_FW_FIXED`` in
    ``bt_fw_model.h`` selects the data types and what is printed;
    ``firmware_main.c`` next to this module). **The MCU
    plans its memory with the same C planner as the host, at boot**: it builds
    the graph, calls ``bt_plan_build`` and stops with a failure status unless
    the planned peak equals the exported figure (the host plan's
    ``peak_bytes``), which is also the size of its static arena. It then
    initialises a ``bt_session`` over that arena, loads the state blob with
    ``bt_session_load_state`` (which checks it whole before writing),
    calibrates if the trainer had not yet (fixed point), runs the steps and
    prints after every step ``step 3 loss=0x3f12abcd checksum=0x1234abcd
    state=0x... instret=...`` (the loss bits: float32, or the Q16 integer;
    the session checksum ``bt_session_checksum``; ``state=``, the
    ``bt_session_state_checksum``), then the test accuracy, the instruction
    counts, and exits with status 0 (non-zero on any failure);
``export.json``, ``export.npz``
    the manifest: the same layers with their core options, plan options,
    optimizer settings, seed, state blob and sample arrays, from which
    :func:`biotrain_rt.firmware.host_run` runs the very same steps through
    ``_core.Session``.

The MCU continues exactly where the trainer would: its next steps on the same
batches give the same bits (the state blob holds everything they read).

An export is refused (``ValueError`` naming the figures and the limit) when
the model does not fit the target: the plan's peak plus the runtime's tables
and stack must fit the RAM, the code estimate plus the state and the samples
must fit the flash (QEMU targets), or everything together must fit GAP9's
1.5 MB L2. Nothing is written then.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .. import _core
from ..layers import PARAM_NAMES
from ..network import core_graph
from ..train.formats import Q15_MAX, input_frac_for, to_fixed

#: 2: one path for both formats (layers carry their core options, the state is one blob).
FORMAT_VERSION = 2

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

#: Code of the core, the application and the C library per number format,
#: rounded up from the measured text of the rv32imc images (the larger: soft
#: float). An image links the kernels of its own format only (BT_FW_DTYPE).
CODE_ESTIMATE = {"float32": 64 * KiB, "fixed": 96 * KiB}
CODE_ESTIMATE_BYTES = CODE_ESTIMATE["float32"]
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
    dtype: str = "float32"

    def __repr__(self) -> str:
        return (f"FirmwareExport({self.model} -> {self.out_dir}, target={self.target}, dtype={self.dtype}, "
                f"steps={self.steps}, batch={self.batch_size}, peak_bytes={self.peak_bytes})")


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


def _rows(words: List[str], per_line: int, empty: str) -> str:
    lines = [", ".join(words[i:i + per_line]) for i in range(0, len(words), per_line)]
    return ",\n    ".join(lines) if lines else empty


def _hex_rows(bits: np.ndarray, per_line: int = 8) -> str:
    return _rows([f"0x{int(v):08x}u" for v in bits.tolist()], per_line, "0u")


def _byte_rows(data: bytes, per_line: int = 16) -> str:
    return _rows([f"0x{b:02x}u" for b in data], per_line, "0u")


def _int_rows(vals: Sequence[int], per_line: int = 16) -> str:
    return _rows([str(int(v)) for v in vals], per_line, "0")


def _jsonable(v):
    if isinstance(v, (tuple, list)):
        return [_jsonable(x) for x in v]
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating):
        return float(v)
    return v


def layers_of(net) -> List[dict]:
    """The network's layers as plain data (the manifest's form): the user's
    options (``opts``, for the FLOP counts) and the C op table's
    (``core_opts``, what the graph is built from)."""
    out = []
    for i, l in enumerate(net.layers):
        out.append({"id": i, "kind": l.kind, "name": l.name, "inputs": [int(x) for x in l.inputs],
                    "opts": {k: _jsonable(v) for k, v in l.opts.items()},
                    "core_opts": {k: _jsonable(v) for k, v in (l.core_opts() if i else {}).items()},
                    "shape": [int(s) for s in l.shape], "params": [k for k in PARAM_NAMES if k in l.params]})
    return out


def core_graph_from_layers(input_shape, layers: List[dict], trainable: Sequence[int]) -> "_core.Graph":
    """The C graph of manifest layers, through :func:`biotrain_rt.network.core_graph`:
    the same calls, in the same order, as the trainer's graph and the exported C."""
    return core_graph(input_shape, [(l["kind"], l["inputs"], l["core_opts"], l["name"]) for l in layers[1:]],
                      trainable)


def _op_table() -> Dict[str, dict]:
    return {op["name"]: op for op in _core.op_table()}


def _c_value(kind: str, name: str, typ: str, v) -> str:
    if typ == "float":
        return _c_float(v)
    if isinstance(v, (float, np.floating)) and float(v) != int(v):
        raise ValueError(f"{kind} option '{name}' must be an integer, got {v!r}")
    iv = int(v)
    if not -2 ** 31 <= iv < 2 ** 31:
        raise ValueError(f"{kind} option '{name}' = {iv} does not fit a C int")
    return str(iv)


def _c_node(l: dict, ops: Dict[str, dict]) -> str:
    """One bt_graph_add_node call for a layer, its options set by their C
    paths in bt_node_opts (any op of the table; inside bt_fw_build_graph)."""
    kind, given = l["kind"], dict(l["core_opts"])
    if kind not in ops or kind == "input":
        raise ValueError(f"layer '{l['name']}': kind '{kind}' is not in the C op table")
    op = ops[kind]
    unknown = sorted(set(given) - {n for n, _, _ in op["options"]})
    if unknown:
        raise ValueError(f"layer '{l['name']}': {kind} has no options {unknown}")
    ins = [int(i) for i in l["inputs"]]
    sets = "".join(f"        o.{path} = {_c_value(kind, name, typ, given[name])};\n"
                   for name, typ, path in op["options"] if name in given)
    return (f"    {{\n        const int ins[{len(ins)}] = {{{', '.join(map(str, ins))}}};\n"
            f"        bt_node_opts o;\n        memset(&o, 0, sizeof o);\n{sets}"
            f"        TRY(bt_graph_add_node(g, &id, BT_OP_{kind.upper()}, ins, {len(ins)}, &o, "
            f"{_c_string(str(l['name'])[:31])}));\n    }}\n")


def memory_budget(target: str, peak_bytes: int, weight_bytes: int, sample_bytes: int,
                  code_bytes: int = CODE_ESTIMATE_BYTES) -> Dict[str, int]:
    """The export's memory figures for a target; raises ValueError (with the
    figures and the limit) when they do not fit. ``weight_bytes``: the
    state blob (parameters, optimizer state, scales)."""
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
    if not np.issubdtype(x.dtype, np.number):
        raise ValueError(f"export: {what} samples must be numeric, got dtype {x.dtype}")
    if x.size and not np.all(np.isfinite(x)):
        raise ValueError(f"export: {what} samples contain NaN or Inf")
    bad = (y < 0) | (y >= classes)
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"export: {what} label {int(y[i])} at index {i} is outside the {classes} classes")
    return np.ascontiguousarray(x, dtype=np.float32), y.astype(np.int32)


def _plan_options(trainer) -> dict:
    """The options of the trainer's own plan (its reuse flag included); the
    export replans the manifest's graph with them and must get the same peak."""
    p = trainer.plan.core
    return {"micro_batch": int(p.micro_batch), "optimizer": str(p.optimizer), "momentum": bool(p.momentum),
            "reuse": bool(p.reuse), "dtype": str(p.dtype)}


@dataclass
class _Inputs:
    """The samples as the session takes them, and the calibration the
    trainer's first step would run: what the number format changes."""
    x_frac: int
    x_train: np.ndarray        # float32, or int16 with x_frac fractional bits
    x_test: np.ndarray
    x_cal: np.ndarray
    y_cal: np.ndarray
    cal_rounds: int
    cal_rows: np.ndarray
    saturated: int


def _inputs(trainer, xs, ys, X_test, B) -> _Inputs:
    fmt = trainer.format
    none = np.zeros(0, np.int64)
    if fmt.name != "fixed":
        return _Inputs(0, xs, X_test, xs[:0], ys[:0], 0, none, 0)
    # The input scale: the trainer's, or the one its first step would choose.
    x_frac = fmt.input_frac if fmt.input_frac is not None else input_frac_for(xs[:B])
    xq, sat = to_fixed(xs, x_frac, Q15_MAX)
    xtq, sat_t = to_fixed(X_test, x_frac, Q15_MAX)
    xq, xtq = xq.astype(np.int16), xtq.astype(np.int16)
    # The calibration the first step runs before its update (FixedFormat.prepare), when not done yet.
    rounds, rows = 0, none
    if not fmt.calibrated:
        rounds = int(fmt.calibration_rounds)
        rows = np.unique(np.linspace(0, B - 1, min(B, fmt.calibration_samples)).astype(np.int64))
    return _Inputs(int(x_frac), xq, xtq, xq[:B][rows], ys[:B][rows], rounds, rows, sat + sat_t)


# ------------------------------------------------------------------ export
def firmware(trainer, out_dir, samples, steps: int = 10, batch_size: Optional[int] = None,
             target: str = "rv32imfc") -> FirmwareExport:
    """Writes the firmware sources and the host manifest for ``steps``
    training steps of ``trainer`` (float32 or fixed point) on
    ``samples = (X_train, y_train, X_test, y_test)``.

    Step ``s`` takes the training rows ``s*B .. s*B+B-1`` (cycling over
    ``X_train`` when it has fewer rows); ``B`` is ``batch_size`` (default the
    trainer's). The steps continue from the trainer's session state. Raises
    ValueError if the model, the samples or the steps do not fit ``target``
    (figures and limit in the message); nothing is written then.
    """
    _target(target)
    net = trainer.net
    if not isinstance(steps, (int, np.integer)) or isinstance(steps, bool) or steps < 1:
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
    ops = _op_table()
    graph_c = _graph_c(shape, layers, trainable, ops)     # refuses a layer the emitter cannot write

    # The manifest's graph must plan exactly like the trainer's.
    g = core_graph_from_layers(shape, layers, trainable)
    replan = _core.Plan(g, popts["micro_batch"], popts["optimizer"], popts["momentum"], popts["reuse"],
                        popts["dtype"])
    peak = int(trainer.plan.peak_bytes)
    if int(replan.peak_bytes) != peak:
        raise RuntimeError(f"export: the exported graph plans to {replan.peak_bytes} B but the trainer's plan has "
                           f"{peak} B ({popts}); the trainer was built with options the export does not know")
    plan_nodes = replan.nodes()

    # The state: everything the trainer's next step reads, as one blob.
    sess = trainer.session
    for i, l in enumerate(net.layers):
        for k, pname in enumerate(PARAM_NAMES):
            if pname in l.params and not np.all(np.isfinite(np.asarray(sess.param(i, k)))):
                raise ValueError(f"export: parameter '{l.name}.{pname}' contains NaN or Inf")
    state = bytes(sess.save_state())

    rows = [(s * B + j) % X_train.shape[0] for s in range(int(steps)) for j in range(B)]
    xs, ys = X_train[rows], y_train[rows]
    inp = _inputs(trainer, xs, ys, X_test, B)
    numel = int(np.prod(shape))
    sample_bytes = (inp.x_train.nbytes + inp.x_test.nbytes + inp.x_cal.nbytes
                    + 4 * (ys.size + y_test.size + inp.y_cal.size))
    memory = memory_budget(target, peak, len(state), sample_bytes, code_bytes=CODE_ESTIMATE[popts["dtype"]])

    opt = trainer.optimizer
    optim = {"kind": str(opt.kind), "lr": float(trainer.lr), "momentum": float(opt.momentum),
             "weight_decay": float(opt.weight_decay), "beta1": float(opt.betas[0]), "beta2": float(opt.betas[1]),
             "eps": float(opt.eps)}
    seed = int(trainer.seed)
    if not 0 <= seed < 2 ** 64:
        raise ValueError(f"export: the seed {seed} does not fit 64 bits")
    dtype = popts["dtype"]

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []

    def write(name, text):
        p = out / name
        p.write_text(text)
        files.append(p)

    write("bt_fw_model.h", _model_h(net.name, dtype, peak, steps, B, numel, classes, X_test.shape[0], seed, inp,
                                    len(state)))
    write("bt_fw_model.c", _model_c(net.name, graph_c, popts, optim, state))
    write("bt_fw_data.c", _data_c(inp, ys, y_test, numel))
    write("main.c", MAIN_C.read_text())

    manifest = {
        "format": FORMAT_VERSION, "dtype": dtype, "model": net.name, "target": target, "input_shape": list(shape),
        "classes": classes, "layers": layers, "trainable": trainable, "plan": dict(popts, peak_bytes=peak),
        "plan_nodes": [{"run_backward": bool(n["run_backward"]), "weight_grad": bool(n["weight_grad"])}
                       for n in plan_nodes],
        "optimizer": optim, "optimizer_bits": {k: f"0x{int(_f32_bits(v)[0]):08x}" for k, v in optim.items()
                                               if k != "kind"},
        "seed": seed, "steps": int(steps), "batch_size": B, "train_rows": [int(r) for r in rows],
        "n_train": int(xs.shape[0]), "n_test": int(X_test.shape[0]),
        "x_frac": inp.x_frac, "input_saturated": int(inp.saturated),
        "calibration": {"rounds": inp.cal_rounds, "rows": [int(r) for r in inp.cal_rows]},
        "state_bytes": len(state), "init_checksum": int(sess.checksum()),
        "init_state_checksum": int(sess.state_checksum()),
        "params": [{"node": i, "which": k, "name": f"{l.name}.{p}", "numel": int(l.params[p].size)}
                   for i, l in enumerate(net.layers) for k, p in enumerate(PARAM_NAMES) if p in l.params],
        "memory": memory, "files": [p.name for p in files] + ["export.npz"],
    }
    xbits = (lambda a: _f32_bits(a)) if dtype != "fixed" else (lambda a: a)
    arrays = {"x_train": xbits(inp.x_train), "y_train": ys, "x_test": xbits(inp.x_test), "y_test": y_test,
              "x_cal": xbits(inp.x_cal), "y_cal": inp.y_cal.astype(np.int32),
              "state": np.frombuffer(state, dtype=np.uint8)}
    np.savez(out / "export.npz", **arrays)
    (out / "export.json").write_text(json.dumps(manifest, indent=1))
    files += [out / "export.npz", out / "export.json"]
    return FirmwareExport(out, target, net.name, peak, int(steps), B, int(xs.shape[0]), int(X_test.shape[0]),
                          files, memory, dtype)


# ------------------------------------------------------------------ C text
#: The application, the same for both number formats (BT_FW_FIXED selects the
#: types and what is printed); written next to the generated sources as main.c.
MAIN_C = Path(__file__).with_name("firmware_main.c")

_HEADER = "/* Generated by biotrain_rt.export.firmware for the model '{model}'. Do not edit. */\n"


def _model_h(model, dtype, peak, steps, B, numel, classes, n_test, seed, inp: _Inputs, state_bytes) -> str:
    fixed = dtype == "fixed"
    return _HEADER.format(model=model) + f"""#ifndef BT_FW_MODEL_H
#define BT_FW_MODEL_H

#include <stdint.h>
#include "biotrain/exec.h"
#include "biotrain/graph.h"
#include "biotrain/plan.h"

#define BT_FW_MODEL_NAME {_c_string(model)}
/* The number format: 0 float32, 1 fixed point (int16 samples, int8 logits, Q16 loss). */
#define BT_FW_FIXED {int(fixed)}
typedef {"int16_t" if fixed else "float"} bt_fw_sample;
/* Fractional bits of the samples (0 in float32). */
#define BT_FW_X_FRAC {int(inp.x_frac)}
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
/* The session's seed (its dropout generator then takes the exported state). */
#define BT_FW_SEED UINT64_C({int(seed)})
/* Calibration passes before the first step over BT_FW_N_CAL rows (0: none,
 * the trainer was calibrated already or the format has no scales). */
#define BT_FW_CAL_ROUNDS {int(inp.cal_rounds)}
#define BT_FW_N_CAL {len(inp.cal_rows)}
/* Bytes of the session state blob (bt_session_save_state of the trainer's session). */
#define BT_FW_STATE_BYTES {int(state_bytes)}u

/* The network: one bt_graph_add_node per layer, as the host, then the trainable flags. */
bt_status bt_fw_build_graph(bt_graph *g);
void bt_fw_plan_opts(bt_plan_opts *o);
void bt_fw_optim_cfg(bt_optim_cfg *c);
/* The state the steps start from, for bt_session_load_state. */
extern const uint8_t bt_fw_state[BT_FW_STATE_BYTES];

/* [BT_FW_STEPS * BT_FW_BATCH, BT_FW_IN_NUMEL]: step s takes rows s*B .. s*B+B-1. */
extern const bt_fw_sample *const bt_fw_x_train;
extern const int32_t bt_fw_y_train[];
/* [BT_FW_N_TEST, BT_FW_IN_NUMEL] */
extern const bt_fw_sample *const bt_fw_x_test;
extern const int32_t bt_fw_y_test[];
/* [BT_FW_N_CAL, BT_FW_IN_NUMEL] */
extern const bt_fw_sample *const bt_fw_x_cal;
extern const int32_t bt_fw_y_cal[];

#endif
"""


def _graph_c(shape, layers, trainable, ops) -> str:
    c, h, w = shape
    body = [f"    TRY(bt_graph_init(g, {c}, {h}, {w}));\n"]
    for l in layers[1:]:
        body.append(f"    /* node {l['id']}: {l['kind']} '{_c_comment(l['name'])}' -> {tuple(l['shape'])} */\n")
        body.append(_c_node(l, ops))
        body.append(f"    if (id != {l['id']}) return BT_ERR_STATE;\n")
    body.append("    TRY(bt_graph_finish(g));\n")
    for i in trainable:
        body.append(f"    TRY(bt_graph_set_trainable(g, {i}, 1));\n")
    return "".join(body)


def _model_c(model, graph_c, popts, optim, state: bytes) -> str:
    kind = lambda k: "BT_OPTIM_ADAM" if k == "adam" else "BT_OPTIM_SGD"  # noqa: E731
    return _HEADER.format(model=model) + f"""#include <stddef.h>
#include <string.h>
#include "bt_fw_model.h"

#define TRY(call) do {{ bt_status st_ = (call); if (st_ != BT_OK) return st_; }} while (0)

bt_status bt_fw_build_graph(bt_graph *g)
{{
    int id = -1;
{graph_c}    return BT_OK;
}}

void bt_fw_plan_opts(bt_plan_opts *o)
{{
    memset(o, 0, sizeof *o);
    o->micro_batch = {popts['micro_batch']};
    o->optimizer = {kind(popts['optimizer'])};
    o->momentum = {int(popts['momentum'])};
    o->reuse = {int(popts['reuse'])};
    o->dtype = {"BT_DTYPE_FIXED" if popts['dtype'] == "fixed" else "BT_DTYPE_F32"};
}}

/* Exact float32 values (fixed point decodes their IEEE bits); the state blob
 * carries them too. */
void bt_fw_optim_cfg(bt_optim_cfg *c)
{{
    memset(c, 0, sizeof *c);
    c->kind = {kind(optim['kind'])};
    c->lr = {_c_float(optim['lr'])};
    c->momentum = {_c_float(optim['momentum'])};
    c->weight_decay = {_c_float(optim['weight_decay'])};
    c->beta1 = {_c_float(optim['beta1'])};
    c->beta2 = {_c_float(optim['beta2'])};
    c->eps = {_c_float(optim['eps'])};
}}

/* The session state (exec.h, bt_session_save_state): parameters, optimizer
 * state, step count, generator and, in fixed point, every scale. */
const uint8_t bt_fw_state[BT_FW_STATE_BYTES] = {{
    {_byte_rows(state)}
}};
"""


def _c_samples(name: str, x: np.ndarray, per: int) -> str:
    """const bt_fw_sample *const <name>: float32 as their bit patterns (a union
    reads them as floats without a copy; C99 allows reading another member),
    int16 as integers. At least one row (C arrays cannot be empty)."""
    flat = x.reshape(-1) if x.size else np.zeros(per, x.dtype)
    n = flat.size
    if x.dtype == np.float32:
        return (f"static const union {{\n    uint32_t u[{n}];\n    float f[{n}];\n}} {name}_ = {{{{\n"
                f"    {_hex_rows(_f32_bits(flat))}\n}}}};\nconst bt_fw_sample *const {name} = {name}_.f;\n")
    if x.dtype == np.int16:
        return (f"static const int16_t {name}_[{n}] = {{\n    {_int_rows(flat.tolist())}\n}};\n"
                f"const bt_fw_sample *const {name} = {name}_;\n")
    raise TypeError(f"samples of dtype {x.dtype} cannot be exported")  # pragma: no cover


def _c_labels(name: str, y: np.ndarray) -> str:
    y = y if y.size else np.zeros(1, np.int32)
    return f"const int32_t {name}[{y.size}] = {{\n    {_int_rows(y.tolist())}\n}};\n"


def _data_c(inp: _Inputs, ys, y_test, per) -> str:
    return _HEADER.format(model="samples") + '#include "bt_fw_model.h"\n\n' + "\n".join([
        _c_samples("bt_fw_x_train", inp.x_train, per), _c_labels("bt_fw_y_train", ys),
        _c_samples("bt_fw_x_test", inp.x_test, per), _c_labels("bt_fw_y_test", y_test),
        _c_samples("bt_fw_x_cal", inp.x_cal, per), _c_labels("bt_fw_y_cal", inp.y_cal)])
