"""The firmware: the same training steps on a 32-bit RISC-V MCU under QEMU,
bit-identical to the host.

Each zoo model is exported once (brt.export.firmware), cross-compiled for
rv32imfc (hardware float) and rv32imc (soft float, run on a QEMU CPU without
F/D so that a stray float instruction would trap), run under QEMU, and its
per-step loss bits and parameter checksums are compared with the very same
steps run on the host through the bindings (brt.firmware.host_run) from the
same exported files. The cross tools are installed by scripts/install_cross.sh
when missing: these tests do not skip.
"""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import biotrain_rt as brt
import biotrain_rt.export  # noqa: F401  (brt.export)
import biotrain_rt.firmware as fw
from biotrain_rt.network import Network

ROOT = Path(__file__).resolve().parents[1]
L2_BYTES = 3 * 1024 * 1024 // 2          # GAP9's 1.5 MB L2
STEPS = 10
RUN_TIMEOUT = 300                         # seconds; a healthy run takes well under 30


# ---------------------------------------------------------------- fixtures
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
    shape = (n_train,) + tuple(net.input_shape)
    X = rng.standard_normal(shape).astype(np.float32)
    y = rng.integers(0, net.classes, n_train).astype(np.int32)
    Xt = rng.standard_normal((n_test,) + tuple(net.input_shape)).astype(np.float32)
    yt = rng.integers(0, net.classes, n_test).astype(np.int32)
    return X, y, Xt, yt


ZOO = {
    # model: (batch size, test samples). MI-BMInet at 8 x 1900 with batch 1;
    # EpiDeNet with batch 2 in micro-batches of 1 (gradient accumulation).
    "mibminet": (1, 4),
    "epidenet": (2, 4),
}


class _Exports:
    """Exports, host runs and firmware runs, each made once per module."""

    def __init__(self, base: Path):
        self.base = base
        self.items = {}
        self.host = {}
        self.runs = {}

    def get(self, model):
        if model not in self.items:
            net = getattr(brt.models, model)()
            assert net.n_params() == {"mibminet": 1234, "epidenet": 4179}[model]
            B, n_test = ZOO[model]
            tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), strategy="full", batch_size=B)
            samples = _samples(net, STEPS * B, n_test)
            ex = brt.export.firmware(tr, self.base / model, samples=samples, steps=STEPS)
            self.items[model] = (tr, ex, samples)
        return self.items[model]

    def host_run(self, model):
        if model not in self.host:
            self.host[model] = fw.host_run(self.get(model)[1].out_dir)
        return self.host[model]

    def run(self, model, target):
        if (model, target) not in self.runs:
            ex = self.get(model)[1]
            t0 = time.monotonic()
            res = fw.build_and_run(ex.out_dir, target=target, timeout=RUN_TIMEOUT)
            self.runs[(model, target)] = (res, time.monotonic() - t0)
        return self.runs[(model, target)][0]


@pytest.fixture(scope="module")
def exports(tmp_path_factory):
    return _Exports(tmp_path_factory.mktemp("fw"))


# ---------------------------------------------------------------- the zoo, bit for bit
@pytest.mark.parametrize("target", ["rv32imfc", "rv32imc"])
@pytest.mark.parametrize("model", ["mibminet", "epidenet"])
def test_zoo_training_is_bit_identical_on_the_mcu(cross_tools, exports, model, target, record_property):
    tr, ex, _ = exports.get(model)
    res = exports.run(model, target)
    host = exports.host_run(model)

    assert res.ok and res.exit_status == 0
    assert res.model == model and res.counter_unit == "minstret"
    assert len(res.steps) == STEPS == len(host.steps)
    assert res.init_checksum == host.init_checksum
    for s, (m, h) in enumerate(zip(res.steps, host.steps)):
        assert (m.loss_bits, m.checksum) == (h.loss_bits, h.checksum), (
            f"{model} on {target}: step {s} differs: MCU loss 0x{m.loss_bits:08x} checksum 0x{m.checksum:08x}, "
            f"host loss 0x{h.loss_bits:08x} checksum 0x{h.checksum:08x}")
    # Training moved the parameters at every step (the comparison is not of a frozen model).
    sums = [host.init_checksum] + host.checksums
    assert len(set(sums)) == len(sums)
    # The test pass after training: the same logits bits, hence the same accuracy.
    assert (res.test_correct, res.test_total, res.logits_checksum) == \
        (host.test_correct, host.test_total, host.logits_checksum)

    # The MCU planned at boot with the same planner: its arena is the host plan's peak.
    assert res.plan_peak_bytes == res.exported_peak_bytes == res.arena_bytes == tr.plan.peak_bytes == ex.peak_bytes

    ips = res.instructions_per_sample
    flops = fw.training_flops(ex.out_dir)["total"]
    assert ips and ips > flops / 2, "fewer instructions than one per multiply-add: the counter is wrong"
    assert all(s.instructions and s.instructions > 0 for s in res.steps)
    record_property("instructions_per_sample", ips)
    record_property("flop_per_instruction", flops / ips)
    record_property("size", res.size)
    print(f"\n{res.summary()}; FLOP/instr {flops / ips:.3f}")


def test_mibminet_training_image_fits_gap9_l2(cross_tools, exports, record_property):
    res = exports.run("mibminet", "rv32imfc")
    size = res.size
    assert size["text"] > 0 and size["bss"] >= res.arena_bytes
    assert size["total"] == size["text"] + size["data"] + size["bss"]
    print(f"\nMI-BMInet training image (rv32imfc, {STEPS} samples of 8 x 1900 + 4 test samples in flash): "
          f"text {size['text']} B, data {size['data']} B, bss {size['bss']} B (arena {res.arena_bytes} B, "
          f"stack included), total {size['total']} B of {L2_BYTES}")
    record_property("mibminet_image", size)
    assert size["total"] <= L2_BYTES


def test_instruction_figures(cross_tools, exports, record_property):
    """Instructions per training sample and FLOP per instruction, both targets."""
    lines = []
    for model in ("mibminet", "epidenet"):
        flops = fw.training_flops(exports.get(model)[1].out_dir)["total"]
        hard = exports.run(model, "rv32imfc").instructions_per_sample
        soft = exports.run(model, "rv32imc").instructions_per_sample
        # No FPU: every float operation is a libgcc call of tens of instructions.
        assert soft > 5 * hard
        # A single-issue core retires at most one fused multiply-add (2 FLOP)
        # per instruction, and this build does not fuse: at most 1.
        assert 0 < flops / hard < 1.0
        lines.append(f"{model}: {flops:,.0f} FLOP per training sample; rv32imfc {hard:,.0f} instructions "
                     f"({flops / hard:.3f} FLOP/instr), rv32imc {soft:,.0f} ({flops / soft:.4f} FLOP/instr)")
        record_property(f"{model}_instr_per_sample", {"rv32imfc": hard, "rv32imc": soft, "flops": flops})
    print("\n" + "\n".join(lines))
    for (model, target), (res, secs) in sorted(exports.runs.items()):
        print(f"  {model} {target}: build + run {secs:.1f} s")


def test_host_run_replays_the_trainer(exports):
    """The manifest reproduces the trainer: its own steps on the same batches
    give the same bits as host_run from the exported files."""
    for model in ("mibminet", "epidenet"):
        net = getattr(brt.models, model)()
        B, n_test = ZOO[model]
        tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), strategy="full", batch_size=B)
        X, y, _, _ = exports.get(model)[2]
        host = exports.host_run(model)
        assert tr.checksum() == host.init_checksum
        for s in range(STEPS):
            loss = tr.step(X[s * B:(s + 1) * B], y[s * B:(s + 1) * B])
            assert int(np.float32(loss).view(np.uint32)) == host.steps[s].loss_bits
            assert tr.checksum() == host.steps[s].checksum


def test_training_flops_match_an_independent_count(exports):
    """The analytic count against PyTorch's FLOP counter on the same
    architectures, written here from the papers' description. PyTorch's
    counter over-counts the backward of grouped convolutions, so MI-BMInet
    (depthwise) is checked on its forward and EpiDeNet (no groups) on
    forward + backward."""
    torch = pytest.importorskip("torch")
    from torch import nn
    from torch.utils.flop_counter import FlopCounterMode
    torch.set_num_threads(1)

    mib = nn.Sequential(
        nn.Conv2d(1, 8, (8, 1), bias=False), nn.GroupNorm(1, 8), nn.Conv2d(8, 8, (1, 64), groups=8, bias=False),
        nn.GroupNorm(1, 8), nn.ReLU(), nn.AvgPool2d((1, 8)), nn.Conv2d(8, 8, (1, 16), groups=8, bias=False),
        nn.Conv2d(8, 8, 1, bias=False), nn.GroupNorm(1, 8), nn.ReLU(), nn.AvgPool2d((1, 8)), nn.Flatten(),
        nn.Linear(208, 2))
    with FlopCounterMode(display=False) as fc:
        mib(torch.zeros(1, 1, 8, 1900))
    ours = fw.training_flops(exports.get("mibminet")[1].out_dir)
    assert ours["matmul_forward"] == fc.get_total_flops()

    layers = []
    for ci, co, k, p in [(1, 4, (1, 4), (1, 8)), (4, 16, (1, 16), (1, 4)), (16, 16, (1, 8), (1, 4)),
                         (16, 16, (2, 1), None), (16, 16, (1, 1), (1, 5))]:
        layers += [nn.Conv2d(ci, co, k, bias=False), nn.GroupNorm(1, co), nn.ReLU()]
        layers += [nn.AvgPool2d(p)] if p else []
    epi = nn.Sequential(*layers, nn.Flatten(), nn.Linear(16, 11))
    with FlopCounterMode(display=False) as fc:
        nn.functional.cross_entropy(epi(torch.zeros(1, 1, 2, 1000)), torch.tensor([3])).backward()
    ours = fw.training_flops(exports.get("epidenet")[1].out_dir)
    assert ours["matmul_forward"] + ours["matmul_backward"] == fc.get_total_flops()
    assert ours["total"] > ours["matmul_forward"] + ours["matmul_backward"]


# ---------------------------------------------------------------- every layer kind
def _tiny_all_kinds(seed=3) -> Network:
    """A small DAG with every exportable layer kind and option."""
    net = Network((2, 1, 64), name="tiny_all", seed=seed)
    c1 = net.conv2d(0, 4, (1, 5), padding=(0, 2), bias=True, name="c1")
    b1 = net.batchnorm(c1, momentum=0.2, eps=1e-4, name="b1")
    e1 = net.elu(b1, alpha=0.7, name="e1")
    c2 = net.conv2d(e1, 4, (1, 3), stride=1, padding=(0, 2), dilation=(1, 2), groups=2, name="c2")
    a = net.add(e1, c2, name="res")
    g = net.gelu(a, name="g")
    mp = net.maxpool2d(g, (1, 2), name="mp")
    d = net.dropout(mp, 0.25, name="drop")
    c3 = net.conv2d(d, 6, (1, 3), stride=(1, 2), padding=(0, 1), bias=True, name="c3")
    gn = net.groupnorm(c3, 2, affine=False, name="gn_noaffine")
    gn2 = net.groupnorm(gn, 3, name="gn")
    r = net.relu(gn2, name="r")
    ap = net.avgpool2d(r, (1, 3), stride=(1, 2), padding=(0, 1), name="ap")
    gp = net.global_avgpool(ap, name="gap")
    f = net.flatten(gp, name="flat")
    net.linear(f, 3, name="head")
    return net.finish()


@pytest.mark.parametrize("target,optimizer,strategy", [
    ("rv32imfc", "adam", "full"),
    ("rv32imc", "adam", "full"),
    ("rv32imfc", "sgd", ["c3", "head"]),
])
def test_every_layer_kind_is_bit_identical(cross_tools, tmp_path, target, optimizer, strategy):
    net = _tiny_all_kinds()
    opt = brt.Adam(lr=3e-3, weight_decay=1e-3) if optimizer == "adam" else brt.SGD(lr=0.05, weight_decay=1e-3)
    tr = brt.Trainer(net, optimizer=opt, strategy=strategy, batch_size=4, seed=11)
    samples = _samples(net, 6, 5, seed=5)   # 6 rows for 4 steps of 4: the export cycles over them
    ex = brt.export.firmware(tr, tmp_path / "tiny", samples=samples, steps=4, target=target)
    res = fw.build_and_run(ex.out_dir, timeout=RUN_TIMEOUT)
    host = fw.host_run(ex.out_dir)
    assert res.checksums == host.checksums and res.loss_bits == host.loss_bits
    assert res.logits_checksum == host.logits_checksum and res.test_correct == host.test_correct
    assert res.arena_bytes == tr.plan.peak_bytes
    assert len(set(host.checksums)) == 4


# ---------------------------------------------------------------- refusals and failures
def _wide_net() -> Network:
    net = Network((1, 8, 1900), name="wide")
    x = net.conv2d(0, 96, (1, 5), name="temporal")     # 96 x 8 x 1896 floats: 5.8 MB per activation
    x = net.groupnorm(x, 1, name="norm")
    x = net.relu(x, name="relu")
    x = net.avgpool2d(x, (1, 50), name="pool")
    x = net.flatten(x, name="flat")
    net.linear(x, 2, name="head")
    return net.finish()


def test_export_refuses_a_model_too_large_for_the_target(tmp_path):
    net = _wide_net()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01), batch_size=1)
    peak = tr.plan.peak_bytes
    assert peak > 6 * 1024 * 1024
    out = tmp_path / "wide"
    with pytest.raises(ValueError) as e:
        brt.export.firmware(tr, out, samples=_samples(net, 2, 1), steps=2, target="rv32imfc")
    msg = str(e.value)
    assert f"plan peak {peak} B" in msg and "RAM region of 6291456 B" in msg
    assert not out.exists(), "a refused export must not write anything"

    # GAP9: everything in 1.5 MB of L2. MI-BMInet fits with a few samples, not with 20.
    mib = brt.models.mibminet()
    tr = brt.Trainer(mib, optimizer=brt.SGD(lr=0.01), batch_size=1)
    brt.export.firmware(tr, tmp_path / "gap9_ok", samples=_samples(mib, 4, 2), steps=4, target="gap9")
    with pytest.raises(ValueError) as e:
        brt.export.firmware(tr, tmp_path / "gap9", samples=_samples(mib, 20, 4), steps=20, target="gap9")
    msg = str(e.value)
    need = int(msg.split("the model needs ")[1].split(" B")[0])
    assert need > L2_BYTES and f"{L2_BYTES} B of memory" in msg and f"plan peak {tr.plan.peak_bytes} B" in msg
    # The QEMU flash region (2 MiB) holds the samples: 40 windows of 8 x 1900 do not fit.
    with pytest.raises(ValueError, match=r"flash region of 2097152 B"):
        brt.export.firmware(tr, tmp_path / "flash", samples=_samples(mib, 40, 1), steps=40)


def test_export_rejects_bad_input(tmp_path):
    net = brt.models.epidenet()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01), batch_size=1)
    X, y, Xt, yt = _samples(net, 2, 1)
    with pytest.raises(ValueError, match="unknown firmware target 'rv64gc'"):
        brt.export.firmware(tr, tmp_path / "a", samples=(X, y, Xt, yt), target="rv64gc")
    bad = X.copy()
    bad[1, 0, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf"):
        brt.export.firmware(tr, tmp_path / "b", samples=(bad, y, Xt, yt))
    with pytest.raises(ValueError, match="label 11 at index 0 is outside the 11 classes"):
        brt.export.firmware(tr, tmp_path / "c", samples=(X, np.array([11, 0]), Xt, yt))
    with pytest.raises(ValueError, match=r"network takes \(n, 1, 2, 1000\)"):
        brt.export.firmware(tr, tmp_path / "d", samples=(X[:, :, :, :500], y, Xt, yt))
    with pytest.raises(ValueError, match="steps must be a positive integer"):
        brt.export.firmware(tr, tmp_path / "e", samples=(X, y, Xt, yt), steps=0)
    ex = brt.export.firmware(tr, tmp_path / "f", samples=(X, y, Xt, yt), steps=1, target="gap9")
    with pytest.raises(ValueError, match="does not run under QEMU"):
        fw.build_and_run(ex.out_dir)
    with pytest.raises(FileNotFoundError, match="export the firmware first"):
        fw.host_run(tmp_path / "nothing")


def _tiny_elf(tmp_path, body: str, name: str) -> Path:
    src = tmp_path / f"{name}.c"
    src.write_text("#include <stdio.h>\nint main(void)\n{\n" + body + "\n}\n")
    elf = tmp_path / f"{name}.elf"
    subprocess.run([fw.CROSS_PREFIX + "gcc", "-march=rv32imc", "-mabi=ilp32", "-O2", "--specs=picolibc.specs",
                    "--oslib=semihost", "--crt0=semihost", f"-T{ROOT / 'firmware' / 'ld' / 'qemu_virt.ld'}",
                    str(src), "-o", str(elf)], check=True, capture_output=True, timeout=120)
    return elf


def test_a_hanging_run_is_reported_within_the_timeout(cross_tools, tmp_path):
    elf = _tiny_elf(tmp_path, '    volatile unsigned n = 0;\n    printf("hang-test: entering an endless loop\\n");\n'
                              '    for (;;) n++;', "loop")
    t0 = time.monotonic()
    with pytest.raises(fw.FirmwareError) as e:
        fw.run_elf(elf, "rv32imc", timeout=2)
    assert time.monotonic() - t0 < 30
    assert "did not finish within 2 s" in str(e.value)
    assert "hang-test: entering an endless loop" in str(e.value)      # the log's tail is in the message
    assert e.value.result is not None and not e.value.result.finished


def test_a_hard_float_image_on_a_core_without_fpu_fails(cross_tools, exports):
    """rv32imfc code on a CPU without F traps at its first float instruction;
    QEMU then spins, and the runner reports it instead of hanging."""
    elf = exports.get("epidenet")[1].out_dir / "build-rv32imfc" / "app.elf"
    if not elf.is_file():
        exports.run("epidenet", "rv32imfc")
    t0 = time.monotonic()
    with pytest.raises(fw.FirmwareError):
        fw.run_elf(elf, "rv32imc", timeout=2)
    assert time.monotonic() - t0 < 30


def test_instruction_counts_are_deterministic(cross_tools, exports):
    """minstret under -icount shift=0 counts instructions, not time: two runs
    of one image give the same figures to the instruction."""
    exports.run("epidenet", "rv32imfc")
    elf = exports.get("epidenet")[1].out_dir / "build-rv32imfc" / "app.elf"
    a = fw.run_elf(elf, "rv32imfc", timeout=RUN_TIMEOUT)
    b = fw.run_elf(elf, "rv32imfc", timeout=RUN_TIMEOUT)
    assert [s.instructions for s in a.steps] == [s.instructions for s in b.steps]
    assert a.total_instructions == b.total_instructions and a.plan_instructions == b.plan_instructions


def test_a_crashing_or_failing_run_is_reported(cross_tools, tmp_path):
    elf = _tiny_elf(tmp_path, '    printf("crash-test: before\\n");\n    __asm__ volatile(".word 0");\n'
                              '    printf("crash-test: after\\n");\n    return 0;', "crash")
    with pytest.raises(fw.FirmwareError) as e:
        fw.run_elf(elf, "rv32imc", timeout=30)
    assert "crash-test: before" in e.value.log and "crash-test: after" not in e.value.log
    assert e.value.result.exit_status != 0
    elf = _tiny_elf(tmp_path, '    printf("exit-test\\n");\n    return 3;', "exit3")
    with pytest.raises(fw.FirmwareError, match="exit status 3"):
        fw.run_elf(elf, "rv32imc", timeout=30)


def test_firmware_refuses_to_run_when_its_plan_differs(cross_tools, tmp_path):
    """The boot check: a firmware whose exported peak differs from what its
    own planner computes stops with a failure status before training."""
    net = brt.models.epidenet()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01), batch_size=1)
    ex = brt.export.firmware(tr, tmp_path / "mismatch", samples=_samples(net, 1, 1), steps=1)
    h = ex.out_dir / "bt_fw_model.h"
    text = h.read_text()
    line = f"#define BT_FW_PEAK_BYTES {ex.peak_bytes}u"
    assert line in text
    h.write_text(text.replace(line, f"#define BT_FW_PEAK_BYTES {ex.peak_bytes + 16}u"))
    with pytest.raises(fw.FirmwareError) as e:
        fw.build_and_run(ex.out_dir, timeout=RUN_TIMEOUT)
    assert "FAIL plan" in str(e.value)
    assert e.value.result.exit_status == 2 and not e.value.result.steps


def test_gap9_build_needs_the_sdk(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("GAP_")}
    r = subprocess.run(["cmake", "-S", str(ROOT / "firmware"), "-B", str(tmp_path / "b"),
                        f"-DCMAKE_TOOLCHAIN_FILE={ROOT / 'firmware' / 'cmake' / 'toolchain-gap9.cmake'}",
                        f"-DBT_FW_APP_DIR={tmp_path}"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode != 0
    assert "GAP_SDK_HOME is not set" in r.stdout + r.stderr


# ---------------------------------------------------------------- tools and CLI
def test_install_cross_is_idempotent(cross_tools):
    r = subprocess.run([str(ROOT / "scripts" / "install_cross.sh")], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "are present" in r.stdout


def test_cli_export_and_run_firmware(cross_tools, tmp_path):
    import argparse
    from biotrain_rt.cli_firmware import add_firmware_commands

    def main(argv):   # the hook as the package's command line uses it
        parser = argparse.ArgumentParser(prog="biotrain-rt")
        add_firmware_commands(parser.add_subparsers(dest="command", required=True))
        args = parser.parse_args(argv)
        return args.func(args)

    out = tmp_path / "cli"
    assert main(["export-firmware", str(out), "--model", "epidenet", "--steps", "3", "--n-train", "2",
                 "--n-test", "2", "--target", "rv32imfc"]) == 0
    assert (out / "main.c").is_file() and (out / "export.json").is_file()
    js = tmp_path / "run.json"
    assert main(["run-firmware", str(out), "--compare-host", "--json", str(js), "--timeout", str(RUN_TIMEOUT)]) == 0
    rec = json.loads(js.read_text())
    assert rec["identical"] is True and len(rec["checksums"]) == 3
    assert rec["checksums"] == rec["host_checksums"]


def test_emg_transformer_trains_bit_identically_on_the_mcu(cross_tools, tmp_path, record_property):
    """The EMG transformer (patches, LayerNorm, attention with RoPE, exact GELU,
    token mean) trains on rv32imfc with the host's bits after every step, and
    its whole image fits GAP9's L2."""
    net = brt.models.emg_transformer(seed=0)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), batch_size=1)
    ex = brt.export.firmware(tr, tmp_path / "emgt", samples=_samples(net, 3, 2), steps=3, target="rv32imfc")
    res = fw.build_and_run(ex.out_dir, timeout=RUN_TIMEOUT)
    host = fw.host_run(ex.out_dir)
    assert (res.init_checksum, res.init_state) == (host.init_checksum, host.init_state)
    assert res.loss_bits == host.loss_bits and res.checksums == host.checksums and res.states == host.states
    assert (res.test_correct, res.logits_checksum) == (host.test_correct, host.logits_checksum)
    assert len(set(res.checksums)) == 3
    assert res.arena_bytes == tr.plan.peak_bytes and res.size["total"] <= L2_BYTES
    record_property("emg_transformer_instr_per_sample", res.instructions_per_sample)
    print(f"\nemg_transformer on rv32imfc: {res.instructions_per_sample:,.0f} instructions per training sample, "
          f"arena {res.arena_bytes:,} B, image {res.size['total']:,} B")
