"""Parameter-efficient fine-tuning: trainable parameters, the planner's arena
peak and training samples/s per strategy, for CCT-2, the EMG transformer,
MI-BMInet and the EMG CNN, in one run.

Strategies: full, last (the head), LoRA with rank 4 and 8 on the last
encoder block or on every block (TrainDeeploy's settings: each with the pool
and the head, "lora+head"), LoRA alone on every adaptable layer ("lora"),
and layer-wise fine-tuning of the last block's linears with the pool and the
head (FT1). Memory is the plan's own accounting (tests/test_planner.py checks
it against the bytes a run touches); "dynamic" is the peak without the
parameters (TrainDeeploy's dynamic training memory). Batch 8, micro-batches
of one sample, Adam.

    python -m pytest benchmarks/test_bench_lora.py --benchmark-only -s
    python benchmarks/lora_table.py            # the README table from the same rows
"""
import numpy as np
import pytest

import biotrain_rt as brt

BATCH = 8


MAKE = {"cct2": brt.models.cct2, "emg_transformer": brt.models.emg_transformer,
        "mibminet": brt.models.mibminet, "emgnet": brt.models.emgnet}
#: layer-wise fine-tuning of the last block's linears, the pool and the head (TrainDeeploy's FT1)
FT1 = {"cct2": ["blocks.1.self_attn", "blocks.1.linear1", "blocks.1.linear2", "attention_pool", "fc"],
       "emg_transformer": ["blocks.1.attn", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2", "head"]}


def _adapted(model, layers, r):
    def make():
        net = MAKE[model]()
        if layers == "every":
            sel = [l.name for l in net.layers[1:] if brt.lora.max_rank(l) >= r]
        elif layers == "blocks":
            sel = lambda l: l.name.startswith("blocks.")  # noqa: E731
        else:
            sel = layers
        net.add_lora(sel, rank=r, alpha=2 * r)
        return net
    return make


def settings(model):
    """label -> (a function making the network, with its adapters; the strategy)."""
    out = {"full": (MAKE[model], "full"), "last": (MAKE[model], "last")}
    for r in (4, 8):
        if model in FT1:
            out[f"lora r={r}, last block + pool + head"] = (_adapted(model, "last_block", r), "lora+head")
            out[f"lora r={r}, all blocks + pool + head"] = (_adapted(model, "blocks", r), "lora+head")
        out[f"lora r={r}, every layer"] = (_adapted(model, "every", r), "lora")
    if model in FT1:
        out["layer-wise: last block + pool + head"] = (MAKE[model], FT1[model])
    return out


def measure(model, label):
    make, strategy = settings(model)[label]
    net = make()
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-3), strategy=strategy, batch_size=BATCH)
    row = dict(model=model, strategy=label, trainable=tr.n_trainable, peak=tr.plan.peak_bytes,
               params=int(tr.plan.totals.get("parameters", 0)))
    row["dynamic"] = row["peak"] - row["params"]
    rng = np.random.default_rng(0)
    x = rng.normal(size=(BATCH, *net.input_shape)).astype(np.float32)
    y = rng.integers(0, net.classes, BATCH)
    return tr, x, y, row


CASES = [(m, label) for m in ("cct2", "emg_transformer", "mibminet", "emgnet") for label in settings(m)]


@pytest.mark.parametrize("model,label", CASES, ids=[f"{m}-{l}" for m, l in CASES])
def test_strategy(benchmark, model, label):
    tr, x, y, row = measure(model, label)
    benchmark.extra_info.update(kind="lora", **row)
    benchmark.pedantic(tr.step, args=(x, y), rounds=3, iterations=1, warmup_rounds=1)
    tr.release()
    sps = BATCH / benchmark.stats.stats.min
    benchmark.extra_info["samples_per_s"] = sps
    print(f"\n{model:16s} {label:46s} trainable {row['trainable']:8d}  peak {row['peak']:9d} B  "
          f"dynamic {row['dynamic']:9d} B  {sps:8.1f} samples/s")
