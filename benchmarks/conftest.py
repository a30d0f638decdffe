"""Host speed benchmarks: biotrain-rt against PyTorch, and the conv kernels
against the core's peak. Not part of the test run (tests/ only):

    python -m pytest benchmarks/ --benchmark-only     # run, print the tables
    python benchmarks/update_readme.py                # run, rewrite README's table

One thread on both sides: torch.set_num_threads(1), and the C core never
starts a thread. Times are CPU time of this process (time.process_time),
so other processes on a shared machine disturb the figures less than wall
time would; the tables use each case's fastest round.
"""
import os
import platform
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# One thread for every library that could start more (before numpy or torch load).
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import pytest

ROOT = Path(__file__).resolve().parents[1]
try:
    import biotrain_rt  # noqa: F401  (installed, or on PYTHONPATH)
except ImportError:  # pragma: no cover - running from a source tree
    sys.path.insert(0, str(ROOT / "python"))

import torch

torch.set_num_threads(1)

RESULTS = {"train": {}, "kernel": {}, "attention_memory": {}}


def pytest_configure(config):
    # CPU time of this process unless a timer was asked for on the command line
    # (runs before pytest-benchmark reads the option).
    if hasattr(config.option, "benchmark_timer") and \
            not any(str(a).startswith("--benchmark-timer") for a in config.invocation_params.args):
        config.option.benchmark_timer = "time.process_time"


# ------------------------------------------------------------------ the peak
def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


_CLOCK_C = r"""
#include <stdio.h>
#include <time.h>
int main(void) {
    struct timespec a, b;
    unsigned long x = 0, i, n = 200000000UL;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &a);
    for (i = 0; i < n; ++i)
        __asm__ volatile("add $1, %0\n\tadd $1, %0\n\tadd $1, %0\n\tadd $1, %0" : "+r"(x));
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &b);
    printf("%f\n", 4.0 * n / ((b.tv_sec - a.tv_sec) + 1e-9 * (b.tv_nsec - a.tv_nsec)) * 1e-9);
    return x == 0;
}
"""


def _measured_ghz():
    """The clock the core really runs at: a chain of dependent integer adds
    (one cycle each) timed in CPU time. x86-64 with a C compiler only."""
    if os.environ.get("BT_BENCH_GHZ"):
        return float(os.environ["BT_BENCH_GHZ"])
    if platform.machine() not in ("x86_64", "AMD64"):
        return None
    with tempfile.TemporaryDirectory() as d:
        src, exe = Path(d) / "clock.c", Path(d) / "clock"
        src.write_text(_CLOCK_C)
        try:
            subprocess.run(["cc", "-O1", "-o", str(exe), str(src)], check=True, capture_output=True)
            runs = [float(subprocess.run([str(exe)], check=True, capture_output=True, text=True).stdout)
                    for _ in range(3)]
        except (OSError, subprocess.CalledProcessError, ValueError):
            return None
    return max(runs)


def peak_info():
    """Peak float32 FLOP/s of one core = FMA units x float32 lanes per unit x
    2 FLOP (a multiply and an add) x clock. The units and lanes come from the
    CPU (override with BT_BENCH_FMA_UNITS / BT_BENCH_LANES); the clock is the
    base clock from /proc/cpuinfo and, where it can be measured, the clock
    the core actually ran at. The conv and linear kernels issue one fused
    multiply-add per MAC (bt_fmaf), the operation this peak counts."""
    info = _cpuinfo()
    flags = set(re.search(r"^flags\s*:(.*)$", info, re.M).group(1).split()) if "flags" in info else set()
    vendor = (re.search(r"^vendor_id\s*:\s*(\S+)", info, re.M) or [None, ""])[1] if info else ""
    model = (re.search(r"^model name\s*:\s*(.+)$", info, re.M) or [None, platform.processor()])[1]
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)", info, re.M)
    base_ghz = float(mhz.group(1)) / 1000 if mhz else None
    units = 2
    if "avx512f" in flags and vendor == "AuthenticAMD":
        lanes, width = 8, "256-bit FMA datapaths (512-bit operations take two passes)"
    elif "avx512f" in flags:
        lanes, width = 16, "512-bit FMA units"
    elif "fma" in flags or "avx2" in flags:
        lanes, width = 8, "256-bit FMA units"
    else:
        lanes, width = 4, "128-bit units"
    units = int(os.environ.get("BT_BENCH_FMA_UNITS", units))
    lanes = int(os.environ.get("BT_BENCH_LANES", lanes))
    measured = _measured_ghz()
    per_cycle = units * lanes * 2
    return {
        "cpu": model.strip(),
        "units": units, "lanes": lanes, "flop_per_cycle": per_cycle, "width": width,
        "base_ghz": base_ghz, "measured_ghz": measured,
        "peak_base": per_cycle * base_ghz * 1e9 if base_ghz else None,
        "peak_measured": per_cycle * measured * 1e9 if measured else None,
    }


_PEAK = None


def get_peak():
    global _PEAK
    if _PEAK is None:
        _PEAK = peak_info()
    return _PEAK


@pytest.fixture(scope="session")
def bench_results():
    """Where the benchmarks leave their fastest rounds for the summary."""
    return RESULTS


@pytest.fixture(scope="session")
def peak():
    return get_peak()


def peak_text(p):
    s = (f"{p['cpu']}: {p['units']} FMA units x {p['lanes']} float32 lanes ({p['width']}) x 2 FLOP "
         f"= {p['flop_per_cycle']} FLOP/cycle")
    if p["peak_base"]:
        s += f"; x {p['base_ghz']:.2f} GHz base clock = {p['peak_base'] / 1e9:.1f} GFLOP/s"
    if p["peak_measured"]:
        s += f"; x {p['measured_ghz']:.2f} GHz measured clock = {p['peak_measured'] / 1e9:.1f} GFLOP/s"
    return s


def pytest_benchmark_update_json(config, benchmarks, output_json):
    """The peak the kernel fractions were computed against, for update_readme.py."""
    if RESULTS["kernel"]:
        output_json["biotrain_peak"] = get_peak()


# ------------------------------------------------------------------ summary
def train_rows():
    """(model, batch, brt samples/s, torch samples/s, ratio) for each pair measured."""
    rows = []
    t = RESULTS["train"]
    for (model, batch) in sorted({(m, b) for (m, b, _) in t}, key=lambda k: (MODEL_ORDER.get(k[0], 9), k[1])):
        b, tt = t.get((model, batch, "brt")), t.get((model, batch, "torch"))
        rows.append((model, batch, batch / b if b else None, batch / tt if tt else None,
                     tt / b if b and tt else None))
    return rows


MODEL_ORDER = {"mibminet": 0, "epidenet": 1, "eegnet": 2}


def kernel_rows():
    rows = []
    for key, (sec, flop, shape) in sorted(RESULTS["kernel"].items()):
        rows.append((key, shape, flop, sec, flop / sec))
    return rows


def pytest_terminal_summary(terminalreporter):
    tr = terminalreporter
    if RESULTS["attention_memory"]:
        from test_bench_attention_memory import attention_memory_lines
        tr.write_sep("=", "attention memory from the planner, bytes (one-head backward vs whole-map backward)")
        for line in attention_memory_lines(RESULTS["attention_memory"]):
            tr.write_line(line)
    if RESULTS["train"]:
        tr.write_sep("=", "training throughput, samples/s (fastest round), one thread each")
        tr.write_line(f"{'model':<10} {'batch':>5} {'biotrain-rt':>12} {'PyTorch':>10} {'ratio':>7}")
        for model, batch, b, t, r in train_rows():
            fb = f"{b:12,.0f}" if b else f"{'-':>12}"
            ft = f"{t:10,.0f}" if t else f"{'-':>10}"
            fr = f"{r:6.2f}x" if r else f"{'-':>7}"
            tr.write_line(f"{model:<10} {batch:>5} {fb} {ft} {fr}")
    if RESULTS["kernel"]:
        p = get_peak()
        tr.write_sep("=", "conv2d kernels, batch 1, through the Python binding")
        tr.write_line("peak: " + peak_text(p))
        hdr = f"{'model/layer':<24} {'pass':<16} {'MFLOP':>8} {'us':>9} {'GFLOP/s':>8}"
        if p["peak_base"]:
            hdr += f" {'%base':>6}"
        if p["peak_measured"]:
            hdr += f" {'%meas':>6}"
        tr.write_line(hdr)
        for (layer, pas), shape, flop, sec, rate in kernel_rows():
            line = f"{layer:<24} {pas:<16} {flop / 1e6:8.3f} {sec * 1e6:9.2f} {rate / 1e9:8.2f}"
            if p["peak_base"]:
                line += f" {100 * rate / p['peak_base']:5.1f}%"
            if p["peak_measured"]:
                line += f" {100 * rate / p['peak_measured']:5.1f}%"
            tr.write_line(line)
