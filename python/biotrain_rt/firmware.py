"""Building and running an exported firmware (:func:`biotrain_rt.export.firmware`),
and re-running its steps on the host.

``build_and_run(out_dir)`` configures ``firmware/`` with CMake and the
target's toolchain file, cross-compiles the core and the exported sources into
``app.elf``, runs it under ``qemu-system-riscv32 -machine virt`` (always with a
time limit: a run that does not finish is a failure, never a hang) and parses
what it printed into a :class:`FirmwareResult`. ``host_run(out_dir)`` reads the
export's manifest and runs the very same steps through the bindings
(``_core.Graph``/``Plan``/``Session``), giving a :class:`HostResult` with the
same per-step loss bits and checksums.

Instruction counts come from the ``minstret`` CSR under ``-icount shift=0``,
where QEMU retires exactly one instruction per count: deterministic, unlike
time. :func:`training_flops` counts a model's arithmetic per training sample
analytically, for FLOP per instruction; :func:`training_macs` the
multiply-accumulates of its convolutions and linear layers (the integer MACs
of the fixed-point path).

Both number formats run the same executor on both sides: the firmware prints
per step the loss bits (float32, or Q16 in fixed point), the session checksum
(parameters, and their scales in fixed point) and ``state=``, the session's
checksum of everything else the next step reads (``bt_session_state_checksum``,
``Session.state_checksum()`` on the host).
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

from . import _core
from .export.firmware import FORMAT_VERSION, TARGETS, core_graph_from_layers

CROSS_PREFIX = "riscv64-unknown-elf-"
#: Fractional bits of the fixed-point loss (qmath.h BT_Q_LOSS_FRAC).
LOSS_FRAC = 16
QEMU = "qemu-system-riscv32"


class FirmwareError(RuntimeError):
    """A firmware build or run that failed; ``log`` holds its output and
    ``result`` what could be parsed (or None)."""

    def __init__(self, message: str, log: str = "", result: "Optional[FirmwareResult]" = None):
        super().__init__(message)
        self.log = log
        self.result = result


@dataclass
class StepRecord:
    step: int
    loss_bits: int
    checksum: int
    instructions: Optional[int] = None
    state: Optional[int] = None        # the rest of the state the next step reads (state_checksum)
    loss_frac: Optional[int] = None    # fixed point: the loss is an int32 with this many fractional bits

    @property
    def loss(self) -> float:
        if self.loss_frac is not None:
            return float(np.array([self.loss_bits], dtype=np.uint32).view(np.int32)[0]) * 2.0 ** -self.loss_frac
        return float(np.array([self.loss_bits], dtype=np.uint32).view(np.float32)[0])


@dataclass
class FirmwareResult:
    """What a firmware run printed, parsed."""
    target: str
    model: str = ""
    steps: List[StepRecord] = field(default_factory=list)
    batch_size: int = 0
    dtype: str = "float32"
    init_checksum: Optional[int] = None
    init_state: Optional[int] = None
    calibration: Optional[StepRecord] = None     # fixed point: (checksum, state, instructions) after calibrating
    logits_frac: Optional[int] = None
    plan_peak_bytes: Optional[int] = None
    exported_peak_bytes: Optional[int] = None
    arena_bytes: Optional[int] = None
    plan_instructions: Optional[int] = None
    test_correct: Optional[int] = None
    test_total: Optional[int] = None
    logits_checksum: Optional[int] = None
    test_instructions: Optional[int] = None
    train_instructions: Optional[int] = None
    total_instructions: Optional[int] = None
    counter_unit: str = ""
    finished: bool = False
    exit_status: Optional[int] = None
    log: str = ""
    size: Dict[str, int] = field(default_factory=dict)
    elf: Optional[Path] = None
    wall_seconds: float = 0.0

    @property
    def checksums(self) -> List[int]:
        return [s.checksum for s in self.steps]

    @property
    def states(self) -> List[Optional[int]]:
        return [s.state for s in self.steps]

    @property
    def loss_bits(self) -> List[int]:
        return [s.loss_bits for s in self.steps]

    @property
    def losses(self) -> List[float]:
        return [s.loss for s in self.steps]

    @property
    def accuracy(self) -> Optional[float]:
        if not self.test_total:
            return None
        return self.test_correct / self.test_total

    @property
    def instructions_per_sample(self) -> Optional[float]:
        """Retired instructions per training sample (the optimizer update
        shared over its batch)."""
        n = len(self.steps) * self.batch_size
        if self.train_instructions is None or n == 0:
            return None
        return self.train_instructions / n

    @property
    def ok(self) -> bool:
        return self.finished and self.exit_status == 0

    def summary(self) -> str:
        ips = self.instructions_per_sample
        acc = self.accuracy
        size = self.size.get("total")
        return (f"{self.model} on {self.target}: {len(self.steps)} steps, "
                f"arena {self.arena_bytes} B, "
                + (f"{ips:,.0f} instructions per training sample, " if ips else "")
                + (f"test accuracy {acc:.3f}, " if acc is not None else "")
                + (f"image {size} B (text {self.size['text']}, data {self.size['data']}, bss {self.size['bss']})"
                   if size else ""))


@dataclass
class HostResult:
    """The same steps run on the host through the bindings."""
    model: str
    steps: List[StepRecord]
    init_checksum: int
    peak_bytes: int
    test_correct: Optional[int]
    test_total: int
    logits_checksum: Optional[int]
    dtype: str = "float32"
    init_state: Optional[int] = None
    calibration: Optional[StepRecord] = None
    logits_frac: Optional[int] = None

    @property
    def checksums(self) -> List[int]:
        return [s.checksum for s in self.steps]

    @property
    def states(self) -> List[Optional[int]]:
        return [s.state for s in self.steps]

    @property
    def loss_bits(self) -> List[int]:
        return [s.loss_bits for s in self.steps]

    @property
    def accuracy(self) -> Optional[float]:
        return None if not self.test_total else self.test_correct / self.test_total


# ------------------------------------------------------------------ locations and tools
def source_root() -> Path:
    """The source tree holding ``firmware/`` and ``csrc/``:
    ``$BIOTRAIN_SOURCE_DIR``, the checkout this package lives in, or the copy
    an installed package carries in ``biotrain_rt/_src``."""
    env = os.environ.get("BIOTRAIN_SOURCE_DIR")
    cands = [Path(env)] if env else []
    cands.append(Path(__file__).resolve().parents[2])
    cands.append(Path(__file__).resolve().parent / "_src")
    for c in cands:
        if (c / "firmware" / "CMakeLists.txt").is_file() and (c / "csrc" / "src").is_dir():
            return c
    raise FileNotFoundError("the firmware sources (firmware/CMakeLists.txt, csrc/) were not found next to the "
                            "package; set BIOTRAIN_SOURCE_DIR to the biotrain-rt source tree")


def missing_tools(target: str = "rv32imfc") -> List[str]:
    """The programs a QEMU target needs that are not installed."""
    need = [CROSS_PREFIX + "gcc", CROSS_PREFIX + "size", "cmake", QEMU]
    miss = [t for t in need if shutil.which(t) is None]
    if shutil.which(CROSS_PREFIX + "gcc") and not _has_picolibc():
        miss.append("picolibc (picolibc.specs)")
    if shutil.which("ninja") is None and shutil.which("make") is None:
        miss.append("ninja or make")
    return miss


def _has_picolibc() -> bool:
    try:
        r = subprocess.run([CROSS_PREFIX + "gcc", "-print-file-name=picolibc.specs"], capture_output=True,
                           text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return False
    p = r.stdout.strip()
    return r.returncode == 0 and os.path.isabs(p) and os.path.isfile(p)


def _tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _manifest(out_dir) -> dict:
    p = Path(out_dir) / "export.json"
    if not p.is_file():
        raise FileNotFoundError(f"{p} not found: export the firmware first (brt.export.firmware)")
    m = json.loads(p.read_text())
    if m.get("format") != FORMAT_VERSION:
        raise ValueError(f"{p}: export format {m.get('format')!r}, this runtime reads format "
                         f"{FORMAT_VERSION}: export again")
    return m


def _qemu_target(target: str):
    if target not in TARGETS:
        raise ValueError(f"unknown firmware target '{target}': use one of {sorted(TARGETS)}")
    spec = TARGETS[target]
    if spec.qemu_cpu is None:
        raise ValueError(f"target '{target}' does not run under QEMU: build it with the GAP SDK "
                         f"(firmware/cmake/{spec.toolchain}) and run it on the board")
    return spec


# ------------------------------------------------------------------ build
def build(out_dir, target: Optional[str] = None, timeout: float = 900) -> Path:
    """Cross-compiles the export in ``out_dir`` for ``target`` (default: the
    export's); returns the path of ``app.elf``. Raises FirmwareError with the
    compiler's output on failure."""
    out = Path(out_dir).resolve()
    m = _manifest(out)
    target = target or m["target"]
    if target not in TARGETS:
        raise ValueError(f"unknown firmware target '{target}': use one of {sorted(TARGETS)}")
    spec = TARGETS[target]
    miss = missing_tools(target) if spec.platform == "riscv" else []
    if miss:
        raise FirmwareError(f"cannot build for {target}: missing {', '.join(miss)}; run scripts/install_cross.sh")
    root = source_root()
    bdir = out / f"build-{target}"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else ["-G", "Unix Makefiles"]
    cfg = ["cmake", "-S", str(root / "firmware"), "-B", str(bdir), *gen,
           f"-DCMAKE_TOOLCHAIN_FILE={root / 'firmware' / 'cmake' / spec.toolchain}", f"-DBT_FW_APP_DIR={out}",
           f"-DBT_FW_DTYPE={m['dtype']}"]   # the image links the kernels of its number format only
    log = ""
    for cmd in (cfg, ["cmake", "--build", str(bdir)]):
        try:
            r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout)
        except subprocess.TimeoutExpired as e:
            out_txt = e.output.decode() if isinstance(e.output, bytes) else (e.output or "")
            raise FirmwareError(f"firmware build for {target} did not finish within {timeout} s:\n{_tail(out_txt)}",
                                log + out_txt) from None
        log += r.stdout
        if r.returncode != 0:
            raise FirmwareError(f"firmware build for {target} failed ({' '.join(cmd[:2])}, status {r.returncode}):\n"
                                f"{_tail(r.stdout, 40)}", log)
    elf = bdir / "app.elf"
    if not elf.is_file():
        raise FirmwareError(f"firmware build for {target} produced no {elf}", log)
    return elf


def elf_size(elf) -> Dict[str, int]:
    """text, data, bss and their total (Berkeley format of ``size``)."""
    r = subprocess.run([CROSS_PREFIX + "size", str(elf)], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        raise FirmwareError(f"{CROSS_PREFIX}size {elf} failed: {r.stderr.strip()}")
    line = r.stdout.strip().splitlines()[-1].split()
    text, data, bss = int(line[0]), int(line[1]), int(line[2])
    return {"text": text, "data": data, "bss": bss, "total": text + data + bss}


# ------------------------------------------------------------------ run
_RE = {
    "head": re.compile(r"^biotrain-rt firmware model=(\S+) target=(\S+) counter=(\S+) steps=(\d+) batch=(\d+)"
                       r"(?: dtype=(\S+))?$"),
    "plan": re.compile(r"^plan peak_bytes=(\d+) exported_bytes=(\d+) arena_bytes=(\d+) instret=(\d+)$"),
    "init": re.compile(r"^init checksum=0x([0-9a-f]{8})(?: state=0x([0-9a-f]{8}))?$"),
    "cal": re.compile(r"^calibrate rounds=(\d+) checksum=0x([0-9a-f]{8}) state=0x([0-9a-f]{8}) instret=(\d+)$"),
    "step": re.compile(r"^step (\d+) loss=0x([0-9a-f]{8}) checksum=0x([0-9a-f]{8})(?: state=0x([0-9a-f]{8}))? "
                       r"instret=(\d+)$"),
    "test": re.compile(r"^test correct=(\d+) total=(\d+) logits=0x([0-9a-f]{8})(?: logits_frac=(-?\d+))? "
                       r"instret=(\d+)$"),
    "total": re.compile(r"^total train_instret=(\d+) instret=(\d+)$"),
    "done": re.compile(r"^done status=0$"),
}


def parse_log(log: str, target: str) -> FirmwareResult:
    """Parses a firmware's output into a FirmwareResult (finished only if it
    printed its last line)."""
    res = FirmwareResult(target=target, log=log)
    for line in log.splitlines():
        line = line.strip()
        if (mt := _RE["head"].match(line)):
            res.model, res.counter_unit, res.batch_size = mt.group(1), mt.group(3), int(mt.group(5))
            res.dtype = mt.group(6) or "float32"
        elif (mt := _RE["plan"].match(line)):
            res.plan_peak_bytes, res.exported_peak_bytes, res.arena_bytes, res.plan_instructions = map(int, mt.groups())
        elif (mt := _RE["init"].match(line)):
            res.init_checksum = int(mt.group(1), 16)
            res.init_state = None if mt.group(2) is None else int(mt.group(2), 16)
        elif (mt := _RE["cal"].match(line)):
            res.calibration = StepRecord(-1, 0, int(mt.group(2), 16), int(mt.group(4)), int(mt.group(3), 16))
        elif (mt := _RE["step"].match(line)):
            res.steps.append(StepRecord(int(mt.group(1)), int(mt.group(2), 16), int(mt.group(3), 16),
                                        int(mt.group(5)), None if mt.group(4) is None else int(mt.group(4), 16),
                                        LOSS_FRAC if res.dtype == "fixed" else None))
        elif (mt := _RE["test"].match(line)):
            res.test_correct, res.test_total = int(mt.group(1)), int(mt.group(2))
            res.logits_checksum, res.test_instructions = int(mt.group(3), 16), int(mt.group(5))
            res.logits_frac = None if mt.group(4) is None else int(mt.group(4))
        elif (mt := _RE["total"].match(line)):
            res.train_instructions, res.total_instructions = int(mt.group(1)), int(mt.group(2))
        elif _RE["done"].match(line):
            res.finished = True
    return res


def qemu_command(elf, target: str = "rv32imfc") -> List[str]:
    """The QEMU command line for a firmware image (without the time limit)."""
    spec = _qemu_target(target)
    return [QEMU, "-machine", "virt", "-cpu", spec.qemu_cpu, "-bios", "none", "-nographic",
            "-semihosting-config", "enable=on,target=native", "-monitor", "none", "-serial", "none",
            "-icount", "shift=0", "-kernel", str(elf)]


def run_elf(elf, target: str = "rv32imfc", timeout: float = 120, check: bool = True) -> FirmwareResult:
    """Runs an image under QEMU with a time limit and parses its output.

    A run that does not end within ``timeout`` seconds (an illegal
    instruction or a loop leaves QEMU spinning) is killed and reported as a
    FirmwareError whose message holds the log's tail; so is, with ``check``,
    a run that exits non-zero or does not print its final line."""
    if shutil.which(QEMU) is None:
        raise FirmwareError(f"{QEMU} not found: run scripts/install_cross.sh")
    cmd = qemu_command(elf, target)
    if shutil.which("timeout"):
        cmd = ["timeout", "-k", "5", f"{float(timeout):g}"] + cmd
    t0 = time.monotonic()
    try:
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=float(timeout) + 20)
        status, raw, timed_out = r.returncode, r.stdout, r.returncode in (124, 137)
    except subprocess.TimeoutExpired as e:
        status, raw, timed_out = None, e.output or b"", True
    wall = time.monotonic() - t0
    log = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
    res = parse_log(log, target)
    res.exit_status, res.elf, res.wall_seconds = status, Path(elf), wall
    if timed_out:
        raise FirmwareError(f"firmware {elf} on {target} did not finish within {timeout:g} s (killed; an illegal "
                            f"instruction or an endless loop keeps QEMU running). Log tail:\n{_tail(log) or '(empty)'}",
                            log, res)
    if check and (status != 0 or not res.finished):
        raise FirmwareError(f"firmware {elf} on {target} failed: exit status {status}"
                            f"{'' if res.finished else ', no final line'}. Log tail:\n{_tail(log) or '(empty)'}",
                            log, res)
    return res


def build_and_run(out_dir, target: Optional[str] = None, timeout: float = 120, build_timeout: float = 900,
                  check: bool = True) -> FirmwareResult:
    """Builds the export in ``out_dir`` for ``target`` (default the export's),
    runs it under QEMU within ``timeout`` seconds and returns the parsed
    result with the image's size. Raises FirmwareError on a failed build, a
    run that does not finish, or (with ``check``) a failing run."""
    m = _manifest(out_dir)
    target = target or m["target"]
    _qemu_target(target)
    elf = build(out_dir, target, timeout=build_timeout)
    size = elf_size(elf)
    try:
        res = run_elf(elf, target, timeout=timeout, check=check)
    except FirmwareError as e:
        if e.result is not None:
            e.result.size = size
        raise
    res.size = size
    if check and len(res.steps) != m["steps"]:
        raise FirmwareError(f"firmware on {target} printed {len(res.steps)} steps, the export has {m['steps']}:\n"
                            f"{_tail(res.log)}", res.log, res)
    return res


# ------------------------------------------------------------------ host
def _fnv1a(data: bytes) -> int:
    h = 2166136261
    for b in data:
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def host_run(out_dir) -> HostResult:
    """Runs the exported steps on the host through the bindings, from the
    export's manifest and arrays: the same graph calls, plan options,
    optimizer settings, seed, session state blob, calibration and batches, in
    the export's number format."""
    out = Path(out_dir)
    m = _manifest(out)
    with np.load(out / "export.npz") as z:
        arr = {k: z[k] for k in z.files}
    shape = tuple(m["input_shape"])
    fixed = m["dtype"] == "fixed"
    g = core_graph_from_layers(shape, m["layers"], m["trainable"])
    po = m["plan"]
    plan = _core.Plan(g, po["micro_batch"], po["optimizer"], po["momentum"], po["reuse"], po["dtype"])
    if int(plan.peak_bytes) != int(po["peak_bytes"]):
        raise RuntimeError(f"host_run: the manifest's graph plans to {plan.peak_bytes} B, the export says "
                           f"{po['peak_bytes']} B")
    o = m["optimizer"]
    sess = _core.Session(plan, None, o["kind"], o["lr"], o["momentum"], o["weight_decay"], o["beta1"], o["beta2"],
                         o["eps"], int(m["seed"]))
    sess.load_state(arr["state"].tobytes())

    def samples(key):
        a = arr[key] if fixed else arr[key].view(np.float32)
        return np.ascontiguousarray(a.reshape((-1,) + shape))

    def bits(loss):
        if fixed:
            return int(loss) & 0xFFFFFFFF
        return int(np.array([loss], dtype=np.float32).view(np.uint32)[0])

    xf = int(m["x_frac"])
    init, init_state = int(sess.checksum()), int(sess.state_checksum())
    cal = None
    if m["calibration"]["rounds"]:
        sess.calibrate(samples("x_cal"), arr["y_cal"].astype(np.int32), xf, int(m["calibration"]["rounds"]))
        cal = StepRecord(-1, 0, int(sess.checksum()), None, int(sess.state_checksum()))
    B = int(m["batch_size"])
    x, y = samples("x_train"), arr["y_train"].astype(np.int32)
    steps = []
    for s in range(int(m["steps"])):
        loss = sess.train_step(np.ascontiguousarray(x[s * B:(s + 1) * B]), np.ascontiguousarray(y[s * B:(s + 1) * B]),
                               xf)
        steps.append(StepRecord(s, bits(loss), int(sess.checksum()), None, int(sess.state_checksum()),
                                LOSS_FRAC if fixed else None))
    n_test = int(m["n_test"])
    correct = logits_sum = lfrac = None
    if n_test:
        out_ = sess.forward(samples("x_test"), xf)
        if fixed:
            logits, lfrac = out_
            logits = np.ascontiguousarray(np.asarray(logits, dtype=np.int8))
            raw = logits.tobytes()
        else:
            logits = np.ascontiguousarray(np.asarray(out_, dtype=np.float32))
            raw = logits.astype("<f4").tobytes()
        correct = int(np.sum(logits.argmax(axis=1) == arr["y_test"]))
        logits_sum = _fnv1a(raw)
    return HostResult(m["model"], steps, init, int(plan.peak_bytes), correct, n_test, logits_sum, m["dtype"],
                      init_state, cal, None if lfrac is None else int(lfrac))


# ------------------------------------------------------------------ FLOP count
def training_macs(out_dir_or_manifest) -> Dict[str, float]:
    """Multiply-accumulates per training sample of the convolutions and
    linear layers of an export, counted analytically from its layers: the
    forward, the input-gradient backward (where a gradient flows to the
    layer's input) and the weight-gradient backward (trained layers). Biases,
    norms, pooling, the loss and the update are not MACs and are left out.
    In fixed point every one of these is an int8 x int8 product summed in a
    wider integer."""
    m = out_dir_or_manifest if isinstance(out_dir_or_manifest, dict) else _manifest(out_dir_or_manifest)
    layers, pn = m["layers"], m["plan_nodes"]
    fwd = bwd_in = bwd_w = 0.0
    for v, l in enumerate(layers):
        if v == 0 or l["kind"] not in ("conv2d", "linear"):
            continue
        o, src = l["opts"], layers[l["inputs"][0]]
        out_n = float(np.prod(l["shape"]))
        if l["kind"] == "conv2d":
            kh, kw = o["kernel"]
            macs = out_n * (src["shape"][0] // o["groups"]) * kh * kw
        else:
            macs = out_n * float(np.prod(src["shape"]))
        fwd += macs
        if any(i != 0 and pn[i]["run_backward"] for i in l["inputs"]):
            bwd_in += macs
        if pn[v]["weight_grad"]:
            bwd_w += macs
    return {"forward": fwd, "backward_input": bwd_in, "backward_weight": bwd_w, "total": fwd + bwd_in + bwd_w}


def training_flops(out_dir_or_manifest) -> Dict[str, float]:
    """Arithmetic per training sample of an export, counted analytically from
    its layers: the forward, the input-gradient backward (where a gradient
    flows) and the weight-gradient backward (trained layers), the loss and
    the optimizer update shared over the batch.

    Conventions: a multiply-add is 2 FLOP; a norm's forward 8 per element
    (statistics 4, normalise 2, affine 2), its input gradient 10, its weight
    gradient 5; ReLU 1 per element each way; average pooling one add per
    window element and a multiply per output; softmax cross-entropy 5 per
    class forward, 2 backward; SGD 2 per trained parameter (+2 momentum,
    +2 weight decay), Adam 12. Convolutions and linear layers dominate;
    their share alone (2 per multiply-add, no bias) is ``matmul_forward`` and
    ``matmul_backward``."""
    m = out_dir_or_manifest if isinstance(out_dir_or_manifest, dict) else _manifest(out_dir_or_manifest)
    layers, pn = m["layers"], m["plan_nodes"]
    fwd = bwd_in = bwd_w = 0.0
    mm_fwd = mm_bwd = 0.0   # the multiply-adds of convolutions and linear layers alone
    n_trained = 0
    for v, l in enumerate(layers):
        if v == 0:
            continue
        k, o = l["kind"], l["opts"]
        out_n = float(np.prod(l["shape"]))
        src = layers[l["inputs"][0]]
        in_n = float(np.prod(src["shape"]))
        din = any(i != 0 and pn[i]["run_backward"] for i in l["inputs"])
        wg = pn[v]["weight_grad"]
        if k in ("conv2d", "linear"):
            if k == "conv2d":
                kh, kw = o["kernel"]
                macs = out_n * (src["shape"][0] // o["groups"]) * kh * kw
            else:
                macs = out_n * in_n
            bias = out_n if o["bias"] else 0.0
            mm_fwd += 2 * macs
            mm_bwd += 2 * macs * (int(din) + int(wg))
            fwd += 2 * macs + bias
            bwd_in += 2 * macs if din else 0.0
            bwd_w += (2 * macs + bias) if wg else 0.0
        elif k in ("groupnorm", "batchnorm"):
            fwd += 8 * out_n
            bwd_in += 10 * out_n if din else 0.0
            bwd_w += 5 * out_n if wg else 0.0
        elif k in ("relu", "dropout", "add"):
            fwd += out_n
            bwd_in += out_n if din else 0.0
        elif k in ("elu", "gelu"):
            fwd += (4 if k == "elu" else 20) * out_n
            bwd_in += (2 if k == "elu" else 25) * out_n if din else 0.0
        elif k in ("avgpool2d", "maxpool2d"):
            kh, kw = o["kernel"]
            fwd += out_n * (kh * kw + (1 if k == "avgpool2d" else 0))
            bwd_in += out_n * kh * kw if din else 0.0
        elif k == "global_avgpool":
            fwd += in_n + out_n
            bwd_in += in_n if din else 0.0
        if wg:
            n_trained += sum(p["numel"] for p in m["params"] if p["node"] == v and p["which"] < 2)
    classes = float(m["classes"])
    loss = 7 * classes
    opt = m["optimizer"]
    if opt["kind"] == "adam":
        per_param = 12.0
    else:
        per_param = 2.0 + (2.0 if opt["momentum"] else 0.0) + (2.0 if opt["weight_decay"] else 0.0)
    update = per_param * n_trained / max(1, int(m["batch_size"]))
    total = fwd + bwd_in + bwd_w + loss + update
    return {"forward": fwd, "backward_input": bwd_in, "backward_weight": bwd_w, "loss": loss, "update": update,
            "total": total, "matmul_forward": mm_fwd, "matmul_backward": mm_bwd}


# ------------------------------------------------------------------ per-kernel instruction benchmark
#: The GAP9 cluster the projection assumes: 8 cores at 370 MHz.
CLUSTER_CORES = 8
CLUSTER_HZ = 370e6
#: BioTrain's measured training throughput on GAP9 (samples/s), for comparison.
REFERENCE_SAMPLES_PER_S = {"mibminet": 17.0, "epidenet": 85.0}


@dataclass
class LayerBench:
    """One convolution or linear layer: its MACs per pass (per sample of the
    micro-batch the step runs) and the instructions of each pass (0 for a
    pass the training step does not run)."""
    name: str
    kind: str
    shape: str
    macs: float
    forward: int
    weight: int
    input: int
    runs_weight: bool
    runs_input: bool

    @property
    def passes(self) -> int:
        return 1 + int(self.runs_weight) + int(self.runs_input)

    @property
    def instructions(self) -> int:
        return self.forward + self.weight + self.input

    def per_mac(self, which: str = "step") -> float:
        t = self.instructions if which == "step" else getattr(self, which)
        n = self.macs * (self.passes if which == "step" else 1)
        return t / n if n else float("nan")

    def flop_per_instr(self, which: str = "step") -> float:
        return 2.0 / self.per_mac(which)


@dataclass
class McuBench:
    """Per-layer kernel instructions and the whole training step of a model on
    one target and dtype."""
    model: str
    target: str
    dtype: str
    layers: List[LayerBench]
    step_instructions: float            # per training sample, the whole step
    step_flops: float
    step_macs: float

    @property
    def kernel_instructions(self) -> int:
        return sum(l.instructions for l in self.layers)

    @property
    def step_flop_per_instr(self) -> float:
        return self.step_flops / self.step_instructions

    @property
    def step_mac_per_instr(self) -> float:
        return self.step_macs / self.step_instructions

    def projected_samples_per_s(self, cores: int = CLUSTER_CORES, hz: float = CLUSTER_HZ) -> float:
        """PROJECTION, not a measurement: samples/s on a ``cores``-core cluster
        at ``hz``, assuming one instruction per cycle and perfect scaling
        across the cores (an upper bound: no stalls, no fork cost, no DMA)."""
        return cores * hz / self.step_instructions

    def table(self) -> str:
        unit = "MAC/instr" if self.dtype == "fixed" else "FLOP/instr"
        rows = [f"{self.model} {self.target} {self.dtype}",
                f"{'layer':<12} {'shape':<28} {'MAC':>9} {'fwd i/MAC':>9} {'wgt i/MAC':>9} {'in i/MAC':>9} "
                f"{'step i/MAC':>10} {unit:>10}"]
        for l in self.layers:
            f = lambda w: f"{l.per_mac(w):9.2f}" if getattr(l, w) else f"{'-':>9}"  # noqa: E731
            v = 1.0 / l.per_mac() if self.dtype == "fixed" else l.flop_per_instr()
            rows.append(f"{l.name:<12} {l.shape:<28} {l.macs:9.0f} {f('forward')} {f('weight')} {f('input')} "
                        f"{l.per_mac():10.2f} {v:10.3f}")
        v = self.step_mac_per_instr if self.dtype == "fixed" else self.step_flop_per_instr
        rows.append(f"whole step: {self.step_instructions:,.0f} instr/sample, {v:.3f} {unit} "
                    f"(conv+linear kernels {self.kernel_instructions:,} instr); PROJECTED upper bound "
                    f"{self.projected_samples_per_s():.0f} samples/s on {CLUSTER_CORES} cores at "
                    f"{CLUSTER_HZ / 1e6:.0f} MHz")
        return "\n".join(rows)


def bench_layers(manifest: dict) -> List[dict]:
    """The convolution and linear layers of an export's manifest with their
    kernel shapes (batch = the plan's micro-batch) and which backward passes
    the training step runs."""
    layers, pn = manifest["layers"], manifest["plan_nodes"]
    n = int(manifest["plan"]["micro_batch"] or 1)
    out = []
    for v, l in enumerate(layers):
        if v == 0 or l["kind"] not in ("conv2d", "linear"):
            continue
        o, src = l["opts"], layers[l["inputs"][0]]
        din = any(i != 0 and pn[i]["run_backward"] for i in l["inputs"])
        d = {"name": l.get("name") or f"node{v}", "kind": l["kind"], "bias": bool(o["bias"]),
             "input_grad": din, "weight_grad": bool(pn[v]["weight_grad"])}
        if l["kind"] == "conv2d":
            c, h, w = src["shape"]
            kh, kw = o["kernel"]
            d["conv"] = [n, c, h, w, o["out_channels"], kh, kw, *o["stride"], *o["padding"], *o["dilation"],
                         o["groups"]]
            d["macs"] = float(np.prod(l["shape"])) * (c // o["groups"]) * kh * kw
            d["shape"] = f"{c}x{h}x{w}->{o['out_channels']} k{kh}x{kw} g{o['groups']}"
        else:
            in_f = int(np.prod(src["shape"]))
            d.update(n=n, in_f=in_f, out_f=o["out_features"], macs=float(in_f * o["out_features"]),
                     shape=f"{in_f}->{o['out_features']}")
        out.append(d)
    return out


def write_bench(manifest: dict, out_dir, dtype: str = "float32") -> Path:
    """Writes the layer table of the per-kernel benchmark (bt_bench_layers.c/.h)
    for the layers of ``manifest`` into ``out_dir``; build it with
    ``-DBT_FW_BENCH=ON`` (see :func:`run_bench`)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ls = bench_layers(manifest)
    max_in = max_out = max_w = max_c = 1
    rows = []
    for d in ls:
        if d["kind"] == "conv2d":
            n, c, h, w, co, kh, kw, sh, sw, ph, pw, dh, dw, g = d["conv"]
            ho = (h + 2 * ph - dh * (kh - 1) - 1) // sh + 1
            wo = (w + 2 * pw - dw * (kw - 1) - 1) // sw + 1
            max_in, max_out = max(max_in, n * c * h * w), max(max_out, n * co * ho * wo)
            max_w, max_c = max(max_w, co * (c // g) * kh * kw), max(max_c, co)
            conv = "{" + ", ".join(str(int(x)) for x in d["conv"]) + "}"
            rows.append(f'    {{"{d["name"]}", BT_BENCH_CONV, {conv}, 0, 0, 0, {int(d["bias"])}, '
                        f'{int(d["input_grad"])}, {int(d["weight_grad"])}}},')
        else:
            max_in, max_out = max(max_in, d["n"] * d["in_f"]), max(max_out, d["n"] * d["out_f"])
            max_w, max_c = max(max_w, d["in_f"] * d["out_f"]), max(max_c, d["out_f"])
            rows.append(f'    {{"{d["name"]}", BT_BENCH_LINEAR, {{0}}, {d["n"]}, {d["in_f"]}, {d["out_f"]}, '
                        f'{int(d["bias"])}, {int(d["input_grad"])}, {int(d["weight_grad"])}}},')
    (out / "bt_bench_layers.h").write_text(
        "/* Written by brt.firmware.write_bench: buffer sizes of the benchmark's layers. */\n"
        "#ifndef BT_BENCH_LAYERS_H\n#define BT_BENCH_LAYERS_H\n"
        f"#define BT_BENCH_FIXED {1 if dtype == 'fixed' else 0}\n#define BT_BENCH_MAX_IN {max_in}\n"
        f"#define BT_BENCH_MAX_OUT {max_out}\n#define BT_BENCH_MAX_W {max_w}\n#define BT_BENCH_MAX_C {max_c}\n"
        "#endif\n")
    (out / "bt_bench_layers.c").write_text(
        "/* Written by brt.firmware.write_bench: the layers of "
        f"{manifest['model']} (batch {ls[0]['conv'][0] if ls and 'conv' in ls[0] else 1}). */\n"
        '#include "bt_bench.h"\n\nconst bt_bench_layer bt_bench_layers[] = {\n' + "\n".join(rows) + "\n};\n"
        f"const int bt_bench_n_layers = {len(rows)};\n"
        f'const char bt_bench_model[] = "{manifest["model"]}";\n')
    (out / "bench.json").write_text(json.dumps({"model": manifest["model"], "dtype": dtype, "layers": ls}, indent=1))
    return out


_BENCH_RE = re.compile(r"^layer (\d+) (\S+) forward=(\d+) weight=(\d+) input=(\d+)$")


def run_bench(bench_dir, target: str = "rv32imfc", timeout: float = 300) -> List[LayerBench]:
    """Builds the benchmark written by :func:`write_bench` for ``target``,
    runs it under QEMU and returns each layer's instructions per pass."""
    spec = _qemu_target(target)
    out = Path(bench_dir).resolve()
    meta = json.loads((out / "bench.json").read_text())
    miss = missing_tools(target)
    if miss:
        raise FirmwareError(f"cannot build for {target}: missing {', '.join(miss)}; run scripts/install_cross.sh")
    root = source_root()
    bdir = out / f"build-{target}"
    gen = ["-G", "Ninja"] if shutil.which("ninja") else ["-G", "Unix Makefiles"]
    cfg = ["cmake", "-S", str(root / "firmware"), "-B", str(bdir), *gen, "-DBT_FW_BENCH=ON",
           f"-DCMAKE_TOOLCHAIN_FILE={root / 'firmware' / 'cmake' / spec.toolchain}", f"-DBT_FW_APP_DIR={out}"]
    for cmd in (cfg, ["cmake", "--build", str(bdir)]):
        r = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=900)
        if r.returncode != 0:
            raise FirmwareError(f"benchmark build for {target} failed:\n{_tail(r.stdout, 40)}", r.stdout)
    cmd = qemu_command(bdir / "app.elf", target)
    r = subprocess.run(["timeout", "-k", "5", str(timeout)] + cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                       timeout=timeout + 20)
    log = r.stdout.decode("utf-8", "replace")
    if r.returncode != 0 or "done status=0" not in log:
        raise FirmwareError(f"benchmark on {target} failed (status {r.returncode}):\n{_tail(log)}", log)
    res = []
    for line in log.splitlines():
        mt = _BENCH_RE.match(line.strip())
        if mt:
            d = meta["layers"][int(mt.group(1))]
            res.append(LayerBench(d["name"], d["kind"], d["shape"], d["macs"], int(mt.group(3)), int(mt.group(4)),
                                  int(mt.group(5)), d["weight_grad"], d["input_grad"]))
    return res


def mcu_bench(model: str = "mibminet", target: str = "rv32imfc", dtype: str = "float32", work_dir=None,
              steps: int = 2, seed: int = 0, timeout: float = 600) -> McuBench:
    """Instruction benchmark of a zoo model on a QEMU target: every
    convolution and linear layer's forward, weight gradient and input
    gradient through the per-kernel benchmark, and the whole training step
    (``steps`` steps of batch 1 through the exported training firmware,
    instructions per sample). ``dtype="fixed"`` benchmarks the q7 kernels and
    the integer executor."""
    import tempfile
    import biotrain_rt as brt
    from .export import firmware as export_firmware

    zoo = brt.models.ZOO
    if model not in zoo:
        raise ValueError(f"unknown model '{model}': use one of {sorted(zoo)}")
    kw = {"norm": "group"} if dtype == "fixed" and model not in ("mibminet",) else {}
    try:
        net = zoo[model](seed=seed, **kw)
    except TypeError:
        net = zoo[model](seed=seed)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), batch_size=1, seed=seed, dtype=dtype)
    rng = np.random.default_rng(seed)
    shape = tuple(net.input_shape)
    xs = rng.standard_normal((steps + 1,) + shape).astype(np.float32)
    ys = rng.integers(0, net.classes, steps + 1).astype(np.int32)
    work = Path(work_dir) if work_dir else Path(tempfile.mkdtemp(prefix="bt_mcu_bench_"))
    step_dir = work / f"{model}-{dtype}-{target}-step"
    export_firmware(tr, step_dir, samples=(xs[:steps], ys[:steps], xs[steps:], ys[steps:]), steps=steps,
                    batch_size=1, target=target)
    res = build_and_run(step_dir, target, timeout=timeout)
    m = _manifest(step_dir)
    bench_dir = write_bench(m, work / f"{model}-{dtype}-{target}-bench", dtype)
    layers = run_bench(bench_dir, target, timeout=timeout)
    return McuBench(model, target, dtype, layers, float(res.instructions_per_sample),
                    training_flops(m)["total"], training_macs(m)["total"])
