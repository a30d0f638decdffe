"""Runs the host speed benchmarks and rewrites README.md between the
<!-- host-speed --> and <!-- /host-speed --> markers:

    python benchmarks/update_readme.py            # both suites (a few minutes)
    python benchmarks/update_readme.py --print    # print the section, leave README alone

Extra arguments after -- go to pytest (e.g. -- -k "mibminet").
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "benchmarks"
sys.path.insert(0, str(BENCH))

START, END = "<!-- host-speed -->", "<!-- /host-speed -->"
COMMAND = "python benchmarks/update_readme.py"
DEPTHWISE = "mibminet/temporal"  # the biggest layer of MI-BMInet


def run(pytest_args):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.json"
        env = dict(os.environ)
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            env.setdefault(var, "1")
        try:
            import biotrain_rt  # noqa: F401
        except ImportError:
            env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
        cmd = [sys.executable, "-m", "pytest", str(BENCH), "--benchmark-only", "-q", "-p", "no:cacheprovider",
               f"--benchmark-json={out}", *pytest_args]
        subprocess.run(cmd, check=True, cwd=ROOT, env=env)
        return json.loads(out.read_text())


def tables(data):
    from conftest import MODEL_ORDER, get_peak, peak_text

    train, kernels = {}, []
    for b in data["benchmarks"]:
        e = b["extra_info"]
        if e.get("kind") == "train":
            train[(e["model"], e["batch"], e["impl"])] = b["stats"]["min"]
        elif e.get("kind") == "kernel":
            kernels.append((e["layer"], e["pass_"], e["flop"], b["stats"]["min"], e.get("shape", "")))
    lines = []
    machine = data.get("machine_info", {})
    cpu = machine.get("cpu", {}).get("brand_raw") or machine.get("processor", "")
    lines.append(f"Measured on {cpu or 'this machine'}, one thread each (`torch.set_num_threads(1)`; the C core "
                 f"starts no threads), PyTorch {__import__('torch').__version__}, CPU time, fastest round. "
                 "One training step: the same GroupNorm model, weights and float32 batch on both sides, "
                 "plain SGD; biotrain-rt with its default plan (micro-batches of one sample, gradients "
                 "accumulated). Regenerate with:")
    lines.append("")
    lines.append("```")
    lines.append(COMMAND)
    lines.append("```")
    lines.append("")
    if train:
        lines.append("| model | batch | biotrain-rt samples/s | PyTorch samples/s | ratio |")
        lines.append("|---|---|---|---|---|")
        keys = sorted({(m, b) for (m, b, _) in train}, key=lambda k: (MODEL_ORDER.get(k[0], 9), k[1]))
        for m, bt in keys:
            b, t = train.get((m, bt, "brt")), train.get((m, bt, "torch"))
            fb = f"{bt / b:,.0f}" if b else "-"
            ft = f"{bt / t:,.0f}" if t else "-"
            fr = f"**{t / b:.2f}x**" if b and t else "-"
            lines.append(f"| {m} | {bt} | {fb} | {ft} | {fr} |")
        lines.append("")
    if kernels:
        p = data.get("biotrain_peak") or get_peak()
        peak = p["peak_measured"] or p["peak_base"]
        lines.append("conv2d kernels at batch 1 (a training micro-batch), each conv shape of the zoo; FLOP = 2 x the "
                     "multiply-adds of the dense formula. Timed through the Python binding, whose call (argument "
                     "checks, output allocation) costs a few microseconds: that, not the kernel, is most of the "
                     "time of the smallest layers. Peak of one core = " + peak_text(p) + ".")
        lines.append("")
        cols = "| layer | pass | MFLOP | us | GFLOP/s |"
        sep = "|---|---|---|---|---|"
        if p["peak_base"]:
            cols += " % of peak (base clock) |"
            sep += "---|"
        if p["peak_measured"]:
            cols += " % of peak (measured clock) |"
            sep += "---|"
        lines.append(cols)
        lines.append(sep)
        order = {"forward": 0, "backward_input": 1, "backward_weight": 2}
        for layer, pas, flop, sec, shape in sorted(kernels, key=lambda k: (k[0] != DEPTHWISE, k[0], order[k[1]])):
            rate = flop / sec
            name = f"**{layer}**" if layer == DEPTHWISE else layer
            row = f"| {name} | {pas} | {flop / 1e6:.3f} | {sec * 1e6:.1f} | {rate / 1e9:.1f} |"
            if p["peak_base"]:
                row += f" {100 * rate / p['peak_base']:.0f} % |"
            if p["peak_measured"]:
                row += f" {100 * rate / p['peak_measured']:.0f} % |"
            lines.append(row)
        lines.append("")
        if peak:
            lines.append(f"The depthwise temporal conv ({DEPTHWISE}, 8 channels x 1900 samples, 1x64) is the biggest "
                         "layer of MI-BMInet.")
            lines.append("")
    return "\n".join(lines)


def rewrite(readme, section):
    text = readme.read_text()
    if START not in text or END not in text:
        raise SystemExit(f"{readme}: markers {START} ... {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    readme.write_text(head + START + "\n" + section.rstrip() + "\n" + END + tail)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--print", action="store_true", help="print the section instead of rewriting README.md")
    ap.add_argument("--readme", type=Path, default=ROOT / "README.md")
    ap.add_argument("--from-json", type=Path, help="use a pytest-benchmark JSON instead of running the suites")
    ap.add_argument("pytest_args", nargs="*", help="passed to pytest (after --)")
    args = ap.parse_args(argv)
    data = json.loads(args.from_json.read_text()) if args.from_json else run(args.pytest_args)
    section = tables(data)
    if args.print:
        print(section)
    else:
        rewrite(args.readme, section)
        print(f"rewrote the host speed section of {args.readme}")


if __name__ == "__main__":
    main()
