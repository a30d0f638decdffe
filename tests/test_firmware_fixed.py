"""Fixed-point firmware: the integer training steps on a 32-bit RISC-V MCU
under QEMU, bit-identical to the host.

A fixed-point Trainer (brt.Trainer(net, ..., dtype="fixed")) is exported with its
integer state (the session's state blob) (brt.export.firmware), cross-compiled for rv32imc (no FPU, run
on a QEMU CPU without F/D) and, for MI-BMInet, rv32imfc too; run under QEMU.
After the calibration and after every step the Q16 loss bits, the checksum of
the int32 masters and their scales, and a checksum of every other piece of
state the next step reads (all scales, adaptation windows, momentum, dropout
generator) must equal those of the same steps replayed on the host through
the bindings (brt.firmware.host_run) from the same exported files; and the
host replay must equal the exporting trainer itself continuing on the same
batches. The zoo models run at their full input sizes (EEGNet with GroupNorm:
the fixed-point path has no BatchNorm). The cross tools are installed by
scripts/install_cross.sh when missing: these tests do not skip.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import torch

import biotrain_rt as brt
import biotrain_rt.export  # noqa: F401  (brt.export)
import biotrain_rt.firmware as fw
from biotrain_rt.train import FixedFormat

torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parents[1]
STEPS = 10
RUN_TIMEOUT = 300          # seconds; the slowest run here (EEGNet 22 x 1125) takes about 10
L2_BYTES = 3 * 1024 * 1024 // 2

# model: (constructor, batch size, parameters). MI-BMInet 8 x 1900 and EEGNet
# 22 x 1125 (dropout 0.25: the generator's state matters) with batch 1;
# EpiDeNet 2 x 1000 with batch 2 in micro-batches of 1.
ZOO = {
    "mibminet": (lambda: brt.models.mibminet(), 1, 1234),
    "epidenet": (lambda: brt.models.epidenet(), 2, 4179),
    "eegnet": (lambda: brt.models.eegnet(norm="group"), 1, 3700),
}


@pytest.fixture(scope="module")
def cross_tools():
    """The cross compiler, picolibc and QEMU: installed if missing, never skipped."""
    miss = fw.missing_tools()
    if miss:
        r = subprocess.run([str(ROOT / "scripts" / "install_cross.sh")], capture_output=True, text=True,
                           timeout=1800)
        miss = fw.missing_tools()
        assert not miss, (f"firmware tools missing after scripts/install_cross.sh (status {r.returncode}): "
                          f"{miss}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    return True


def _samples(net, n_train, n_test, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n_train,) + tuple(net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.classes, n_train).astype(np.int32)
    Xt = rng.standard_normal((n_test,) + tuple(net.input_shape)).astype(np.float32)
    yt = rng.integers(0, net.classes, n_test).astype(np.int32)
    return X, y, Xt, yt


class _Exports:
    """Exports, host runs and firmware runs, each made once per module."""

    def __init__(self, base: Path):
        self.base = base
        self.items, self.host, self.runs = {}, {}, {}

    def get(self, model):
        if model not in self.items:
            make, B, n_params = ZOO[model]
            net = make()
            assert net.n_params() == n_params
            tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), strategy="full", batch_size=B,
                             dtype="fixed")
            assert isinstance(tr.format, FixedFormat) and not tr.calibrated
            samples = _samples(net, STEPS * B, 4)
            ex = brt.export.firmware(tr, self.base / model, samples=samples, steps=STEPS, target="rv32imc")
            self.items[model] = (tr, ex, samples)
        return self.items[model]

    def host_run(self, model):
        if model not in self.host:
            self.host[model] = fw.host_run(self.get(model)[1].out_dir)
        return self.host[model]

    def run(self, model, target):
        if (model, target) not in self.runs:
            t0 = time.monotonic()
            res = fw.build_and_run(self.get(model)[1].out_dir, target=target, timeout=RUN_TIMEOUT)
            self.runs[(model, target)] = (res, time.monotonic() - t0)
        return self.runs[(model, target)][0]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return _Exports(tmp_path_factory.mktemp("fwq"))


def assert_identical(res, host, where):
    """Every figure the firmware printed equals the host replay's."""
    assert res.ok and res.dtype == "fixed" and host.dtype == "fixed", where
    assert (res.init_checksum, res.init_state) == (host.init_checksum, host.init_state), where
    if host.calibration is None:
        assert res.calibration is None, where
    else:
        assert res.calibration is not None, where
        assert (res.calibration.checksum, res.calibration.state) == \
            (host.calibration.checksum, host.calibration.state), where
    assert len(res.steps) == len(host.steps), where
    for s, (m, h) in enumerate(zip(res.steps, host.steps)):
        assert (m.loss_bits, m.checksum, m.state) == (h.loss_bits, h.checksum, h.state), (
            f"{where}: step {s} differs: MCU loss 0x{m.loss_bits:08x} checksum 0x{m.checksum:08x} state "
            f"0x{m.state:08x}, host loss 0x{h.loss_bits:08x} checksum 0x{h.checksum:08x} state 0x{h.state:08x}")
    assert (res.test_correct, res.test_total, res.logits_checksum, res.logits_frac) == \
        (host.test_correct, host.test_total, host.logits_checksum, host.logits_frac), where


# ---------------------------------------------------------------- the zoo, bit for bit
@pytest.mark.parametrize("model", ["mibminet", "epidenet", "eegnet"])
def test_zoo_fixed_training_is_bit_identical_on_rv32imc(cross_tools, exports, model, record_property):
    tr, ex, _ = exports.get(model)
    res = exports.run(model, "rv32imc")
    host = exports.host_run(model)
    assert res.model == model and res.counter_unit == "minstret"
    assert_identical(res, host, f"{model} on rv32imc")
    assert len(res.steps) == STEPS
    # The trainer had not seen data: the MCU calibrated as its first step would have.
    assert res.calibration is not None and res.calibration.state != res.init_state
    # Training moved the masters at every step.
    sums = [host.init_checksum] + host.checksums
    assert len(set(sums)) == len(sums)
    assert all(np.isfinite(s.loss) and 0 < s.loss < 20 for s in host.steps)
    # The arena is the host's fixed-point plan, replanned at boot.
    assert res.plan_peak_bytes == res.exported_peak_bytes == res.arena_bytes == tr.plan.peak_bytes
    assert res.size["bss"] >= res.arena_bytes
    # The export's memory estimate covers the real image.
    assert res.size["text"] + res.size["data"] <= ex.memory["flash_need_bytes"]
    assert res.size["bss"] <= ex.memory["ram_need_bytes"]
    record_property("instructions_per_sample", res.instructions_per_sample)
    record_property("size", res.size)
    print(f"\n{res.summary()}")


def test_fixed_point_on_rv32imfc_gives_the_same_bits(cross_tools, exports, record_property):
    """The same export on a core with an FPU: the same bits as the host and
    as rv32imc (integer code either way)."""
    res = exports.run("mibminet", "rv32imfc")
    soft = exports.run("mibminet", "rv32imc")
    assert_identical(res, exports.host_run("mibminet"), "mibminet on rv32imfc")
    assert res.states == soft.states and res.checksums == soft.checksums
    ratio = res.instructions_per_sample / soft.instructions_per_sample
    record_property("rv32imfc_over_rv32imc", ratio)
    print(f"\nMI-BMInet fixed point: rv32imfc {res.instructions_per_sample:,.0f} instructions per sample, "
          f"rv32imc {soft.instructions_per_sample:,.0f} (ratio {ratio:.4f})")
    assert 0.9 < ratio < 1.1


@pytest.mark.parametrize("model", ["mibminet", "epidenet", "eegnet"])
def test_host_run_is_the_trainer_continuing(exports, model):
    """The export holds everything the trainer's next steps read: the
    exporting trainer itself, stepping on the same batches (its first step
    calibrating), gives the bits of the host replay of the exported files."""
    tr, ex, (X, y, _, _) = exports.get(model)
    host = exports.host_run(model)
    B = ex.batch_size
    assert tr.checksum() == host.init_checksum and tr.state_checksum() == host.init_state
    for s in range(STEPS):
        loss = tr.step(X[s * B:(s + 1) * B], y[s * B:(s + 1) * B])
        h = host.steps[s]
        assert loss == h.loss, (model, s)
        assert (tr.checksum(), tr.state_checksum()) == (h.checksum, h.state), (model, s)


def test_a_mid_training_export_continues_on_the_mcu(cross_tools, tmp_path):
    """A trainer 9 steps in (calibrated, momentum and adaptation windows
    filled, dropout generator advanced, some scales already grown) exported
    and continued: MCU, host replay and the trainer agree, and no calibration
    runs."""
    net = brt.models.eegnet(samples=250, norm="group", seed=3)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.02, momentum=0.9, weight_decay=1e-3), batch_size=2,
                     micro_batch=2, dtype="fixed", seed=5)
    rng = np.random.default_rng(1)
    X = rng.standard_normal((9, 2) + net.input_shape).astype(np.float32)
    Y = rng.integers(0, net.classes, (9, 2))
    for s in range(9):
        tr.step(X[s], Y[s])
    assert tr.session.steps == 9 and tr.calibrated
    assert any(np.any(np.asarray(tr.session.opt_state(v, 0)) != 0) for v in net.param_layers())
    Xe, ye, Xt, yt = _samples(net, 8, 3, seed=9)
    ex = brt.export.firmware(tr, tmp_path / "mid", samples=(Xe, ye, Xt, yt), steps=4, target="rv32imc")
    res = fw.build_and_run(ex.out_dir, timeout=RUN_TIMEOUT)
    host = fw.host_run(ex.out_dir)
    assert host.calibration is None
    assert_identical(res, host, "mid-training export")
    for s in range(4):
        assert tr.step(Xe[2 * s:2 * s + 2], ye[2 * s:2 * s + 2]) == host.steps[s].loss
        assert (tr.checksum(), tr.state_checksum()) == (host.steps[s].checksum, host.steps[s].state)


# ---------------------------------------------------------------- no float arithmetic
_SOFT_FLOAT = re.compile(r"^__[a-z]+(sf|df)[a-z]*\d?$")
_COMPARES = {"__gesf2", "__gtsf2", "__lesf2", "__ltsf2", "__eqsf2", "__nesf2"}


def _functions(elf):
    """(name, start, end) of every FUNC symbol of an image."""
    out = subprocess.run([fw.CROSS_PREFIX + "readelf", "-sW", str(elf)], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    funcs = []
    for line in out.splitlines():
        f = line.split()
        if len(f) >= 8 and f[3] == "FUNC" and f[6] != "UND":
            funcs.append((f[7], int(f[1], 16), int(f[1], 16) + int(f[2])))
    return funcs


def _soft_float_calls(elf):
    """The soft-float routines linked into an image, and {routine: the
    functions calling it}, from the disassembly (an alias such as __gtsf2 =
    __gesf2 is shown under one name: a call counts for every name at that
    address)."""
    funcs = _functions(elf)
    routines = {n for n, _, _ in funcs if _SOFT_FLOAT.match(n)}
    at = {}
    for n, a, _ in funcs:
        if n in routines:
            at.setdefault(a, set()).add(n)
    start = {n: a for n, a, _ in funcs}
    dis = subprocess.run([fw.CROSS_PREFIX + "objdump", "-d", "--no-show-raw-insn", str(elf)], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    calls = {r: set() for r in routines}
    for line in dis.splitlines():
        mt = re.match(r"^\s*([0-9a-f]+):\s.*<(__[a-z0-9_]+)>\s*$", line)
        if not mt or start.get(mt.group(2)) not in at:
            continue
        pc = int(mt.group(1), 16)
        caller = next((n for n, a, e in funcs if a <= pc < e), None)
        if caller is None or caller in routines or caller.startswith("__"):   # data in .text, libgcc itself
            continue
        for r in at[start[mt.group(2)]]:
            calls[r].add(caller)
    return routines, calls


_OP_FILES = {p.name for p in (ROOT / "csrc" / "src" / "ops").glob("*.c")}


def _graph_c_functions(build_dir: Path):
    """The functions that build a graph: graph.c's, and the op descriptors'
    option checks (`infer` in csrc/src/ops/*.c), which graph.c calls."""
    lib = build_dir / "libbiotrain_core.a"
    out = subprocess.run([fw.CROSS_PREFIX + "nm", str(lib)], capture_output=True, text=True, check=True,
                         timeout=60).stdout
    funcs, member = set(), None
    for line in out.splitlines():
        if line.endswith(":"):
            member = line[:-1]
        elif member and re.match(r"^[0-9a-f]+ [Tt] ", line):
            name = line.split()[2]
            if member.startswith("graph.c") or (member.split(".c")[0] + ".c" in _OP_FILES
                                                and name.startswith("infer")):
                funcs.add(name)
    return funcs


def test_the_fixed_image_does_no_float_arithmetic(cross_tools, exports, record_property):
    """rv32imc, fixed point: no soft-float arithmetic is linked (the float
    kernels are dropped by -ffunction-sections/--gc-sections). What remains
    are the float comparisons with which the graph builder checks its options
    (groupnorm eps > 0, ELU alpha >= 0, 0 <= dropout p < 1: the op
    descriptors' infer, called by graph.c at boot); EEGNet has all three kinds.
    The image is built for fixed point only (BT_ONLY_FIXED), so the op table
    holds no float kernel."""
    exports.run("eegnet", "rv32imc")
    build_dir = exports.get("eegnet")[1].out_dir / "build-rv32imc"
    routines, calls = _soft_float_calls(build_dir / "app.elf")
    graph_fns = _graph_c_functions(build_dir)
    assert graph_fns, "no functions of graph.c found in the core library"
    assert routines <= _COMPARES, f"soft-float arithmetic linked into the fixed-point image: {routines - _COMPARES}"
    callers = set().union(*calls.values()) if calls else set()
    assert callers <= graph_fns, f"soft-float comparisons called outside graph.c: {callers - graph_fns}"
    record_property("soft_float_linked", sorted(routines))
    print(f"\nsoft-float routines in the rv32imc fixed-point image: {sorted(routines)}, called from "
          f"{sorted(callers)} (graph.c, at boot)")


# ---------------------------------------------------------------- figures
def test_fixed_instruction_figures(cross_tools, exports, record_property):
    """Instructions per training sample on rv32imc, and integer MAC per
    instruction (conv/linear MACs of the forward and both backward passes,
    counted analytically by training_macs)."""
    lines = []
    for model in ("mibminet", "epidenet", "eegnet"):
        tr, ex, _ = exports.get(model)
        res = exports.run(model, "rv32imc")
        macs = fw.training_macs(ex.out_dir)
        ips = res.instructions_per_sample
        # a single-issue core without SIMD retires at most one MAC per instruction
        assert ips > macs["total"]
        assert all(s.instructions > 0 for s in res.steps)
        lines.append(f"{model}: {macs['total']:,.0f} MAC per training sample (forward {macs['forward']:,.0f}, "
                     f"input gradient {macs['backward_input']:,.0f}, weight gradient {macs['backward_weight']:,.0f}); "
                     f"rv32imc {ips:,.0f} instructions per sample, {macs['total'] / ips:.4f} MAC/instr; "
                     f"calibration {res.calibration.instructions:,} instr; image text {res.size['text']:,} B, "
                     f"bss {res.size['bss']:,} B (arena {res.arena_bytes:,} B)")
        record_property(f"{model}_fixed", {"instr_per_sample": ips, "macs": macs["total"], "size": res.size})
    print("\n" + "\n".join(lines))
    for (model, target), (res, secs) in sorted(exports.runs.items()):
        print(f"  {model} {target}: build + run {secs:.1f} s")
    # The full EEGNet training image fits GAP9's L2.
    assert exports.run("eegnet", "rv32imc").size["total"] <= L2_BYTES


# ---------------------------------------------------------------- refusals and tools
def test_fixed_point_refuses_batchnorm_and_bad_state(tmp_path):
    with pytest.raises(ValueError, match="batchnorm"):
        brt.Trainer(brt.models.eegnet(samples=250), optimizer=brt.SGD(lr=0.01), dtype="fixed")
    net = brt.models.epidenet()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01), batch_size=1, dtype="fixed")
    X, y, Xt, yt = _samples(net, 2, 1)
    bad = X.copy()
    bad[0, 0, 0, 3] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        brt.export.firmware(tr, tmp_path / "a", samples=(bad, y, Xt, yt), steps=1)
    assert not (tmp_path / "a").exists()
    ex = brt.export.firmware(tr, tmp_path / "b", samples=(X, y, Xt, yt), steps=1, target="rv32imc")
    m = json.loads((ex.out_dir / "export.json").read_text())
    assert m["dtype"] == "fixed" and m["calibration"]["rounds"] == tr.format.calibration_rounds
    # The exported state is the session's blob: a truncated, corrupted or foreign one is refused, nothing changes.
    with np.load(ex.out_dir / "export.npz") as z:
        blob = z["state"].tobytes()
    assert len(blob) == m["state_bytes"]
    before = (tr.checksum(), tr.state_checksum())
    for bad_blob in (blob[:-4], blob[:20], blob[:12] + bytes([blob[12] ^ 1]) + blob[13:], b"", b"BTSS" * 8):
        with pytest.raises(ValueError, match="load_state"):
            tr.session.load_state(bad_blob)
        assert (tr.checksum(), tr.state_checksum()) == before
    other = brt.Trainer(brt.models.epidenet(seed=1), optimizer=brt.SGD(lr=0.01), batch_size=1, dtype="fixed")
    other.session.load_state(blob)    # same model and plan: taken
    assert (other.checksum(), other.state_checksum()) == before
    f32 = brt.Trainer(brt.models.epidenet(), optimizer=brt.SGD(lr=0.01), batch_size=1)
    with pytest.raises(ValueError, match="load_state"):
        f32.session.load_state(blob)  # a fixed-point blob in a float32 session


def test_cli_export_and_run_fixed_firmware(cross_tools, tmp_path):
    from biotrain_rt.cli_firmware import add_firmware_commands

    def main(argv):
        parser = argparse.ArgumentParser(prog="biotrain-rt")
        add_firmware_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(args)

    out = tmp_path / "cli"
    assert main(["export-firmware", str(out), "--model", "epidenet", "--dtype", "fixed", "--steps", "2",
                 "--n-train", "2", "--n-test", "2", "--target", "rv32imc"]) == 0
    js = tmp_path / "run.json"
    assert main(["run-firmware", str(out), "--compare-host", "--json", str(js), "--timeout", str(RUN_TIMEOUT)]) == 0
    rec = json.loads(js.read_text())
    assert rec["dtype"] == "fixed" and rec["identical"] is True and len(rec["checksums"]) == 2
    assert rec["checksums"] == rec["host_checksums"] and None not in rec["states"]
