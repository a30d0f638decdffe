"""Runs benchmarks/test_bench_lora.py and rewrites README.md between the
<!-- lora --> and <!-- /lora --> markers with its table:

    python benchmarks/lora_table.py            # run (about half a minute), rewrite README
    python benchmarks/lora_table.py --print    # print the table, leave README alone
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import json  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


def run():
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "bench.json"
        env = dict(os.environ, OMP_NUM_THREADS="1")
        env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "python"), env.get("PYTHONPATH", "")])
        subprocess.run([sys.executable, "-m", "pytest", str(ROOT / "benchmarks" / "test_bench_lora.py"),
                        "--benchmark-only", "-q", "-p", "no:cacheprovider", f"--benchmark-json={out}"],
                       check=True, cwd=ROOT, env=env)
        return json.loads(out.read_text())

START, END = "<!-- lora -->", "<!-- /lora -->"
NAMES = {"cct2": "CCT-2", "emg_transformer": "EMG transformer", "mibminet": "MI-BMInet", "emgnet": "EMG CNN"}


def table(data):
    rows = [b["extra_info"] for b in data["benchmarks"] if b["extra_info"].get("kind") == "lora"]
    for b, r in zip([b for b in data["benchmarks"] if b["extra_info"].get("kind") == "lora"], rows):
        r["sps"] = 8 / b["stats"]["min"]
    full = {r["model"]: r for r in rows if r["strategy"] == "full"}
    out = ["| model | strategy | trainable parameters | vs full | arena peak | vs full | dynamic (peak - parameters) "
           "| vs full | samples/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        f = full[r["model"]]
        out.append(f"| {NAMES[r['model']]} | {r['strategy']} | {r['trainable']:,} | "
                   f"{f['trainable'] / max(r['trainable'], 1):.1f}x fewer | {r['peak']:,} B | "
                   f"{100 * (r['peak'] / f['peak'] - 1):+.0f} % | {r['dynamic']:,} B | "
                   f"{100 * (r['dynamic'] / f['dynamic'] - 1):+.0f} % | {r['sps']:.1f} |")
    out += ["", "TrainDeeploy (CCT-2 on GAP9): LoRA -23 % dynamic training memory and 15x fewer trainable "
            "parameters than full backpropagation. Batch 8, micro-batches of one sample, Adam, float32; "
            "samples/s on one host thread. Regenerate with `python benchmarks/lora_table.py`."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--print", action="store_true")
    a = ap.parse_args()
    text = table(run())
    if a.print:
        print(text)
        return
    readme = ROOT / "README.md"
    s = readme.read_text()
    if START not in s or END not in s:
        sys.exit(f"README.md has no {START} ... {END} section")
    i, j = s.index(START) + len(START), s.index(END)
    readme.write_text(s[:i] + "\n" + text + "\n" + s[j:])


if __name__ == "__main__":
    main()
