"""Attention memory from the planner: the one-head backward (keep_probs=0:
row statistics saved, each probability recomputed where the backward uses
it, no S x S map held) against the whole-map backward (keep_probs=1: the
forward keeps all H x S x S probabilities, as pulp-trainlib and Deeploy do),
for a one-block attention network at two shapes:

    emg   TinyMyo-style EMG transformer: 80 tokens x 64 features, 4 heads, RoPE, q/k/v bias
    cct2  CCT-2's encoder: 64 tokens x 128 features, 2 heads, q/k/v without bias

The network is input (1, S, D) -> mhsa -> mean over tokens (avgpool (S, 1))
-> linear D -> 10, trained in full with SGD + momentum. Figures, per
micro-batch (1: the float32 default; 8: a batched step):

    arena peak    the plan's peak_bytes, checked here against the bytes a
                  training step and a forward actually touch (the highest
                  byte written is the plan's last byte, nothing beyond)
    attention     the most bytes of the attention op's own tensors (saved Q/K/V,
                  head outputs, row statistics or the whole map, backward
                  scratch) live at one step
    map           what the two variants differ in: row statistics + backward
                  scratch, against the whole map + backward scratch

The step time is what the benchmark fixture measures (CPU time, one thread):

    python -m pytest benchmarks/test_bench_attention_memory.py --benchmark-only
"""
import numpy as np
import pytest

import biotrain_rt as brt
from biotrain_rt import _core

SHAPES = {
    "emg": dict(S=80, D=64, heads=4, rope=True, qkv_bias=True),
    "cct2": dict(S=64, D=128, heads=2, rope=False, qkv_bias=False),
}
MICRO = [1, 8]
BATCH = 8
OWN = ("qkv", "heads_out", "row_stats", "probs", "attn_scratch")
MAP = ("row_stats", "probs", "attn_scratch")


def block_net(shape, keep_probs):
    s = SHAPES[shape]
    net = brt.Network((1, s["S"], s["D"]), name=f"attn-{shape}", seed=0)
    x = net.mhsa(0, s["heads"], rope=s["rope"], qkv_bias=s["qkv_bias"], out_bias=True, keep_probs=keep_probs,
                 name="attn")
    x = net.avgpool2d(x, (s["S"], 1), name="mean_tokens")
    net.linear(x, 10, name="head")
    return net.finish()


def touched_peak(tr, x, y):
    """The highest arena byte a step and a forward change, in an arena 4 KiB
    larger than the plan, every non-persistent byte filled with a pattern."""
    peak = tr.plan.peak_bytes
    sess = _core.Session(tr.plan.core, peak + 4096, "sgd", 1e-3, 0.9, 0.0, 0.9, 0.999, 1e-8, 0)
    tr.session = sess
    tr._push_params()
    arena = sess.arena()
    persistent = np.zeros(arena.size, bool)
    for t in tr.plan.tensors():
        if t["kind"] in ("parameters", "gradients", "optimizer state"):
            persistent[t["offset"]:t["offset"] + t["bytes"]] = True
    arena[~persistent] = 0xA5
    snapshot = arena.copy()
    tr.step(x, y)
    tr.predict(x[:3])
    changed = np.flatnonzero(arena != snapshot)
    assert np.all(arena[peak:] == 0xA5), "bytes past the plan's peak were written"
    return int(changed.max()) + 1


def attention_bytes(tr, roles):
    ts = [t for t in tr.plan.tensors() if t["node_name"] == "attn" and t["role"] in roles]
    return max(sum(t["bytes"] for t in ts if t["first"] <= s <= t["last"]) for s in range(tr.plan.core.n_steps))


FIGURES = {}


@pytest.mark.parametrize("micro", MICRO, ids=[f"micro{m}" for m in MICRO])
@pytest.mark.parametrize("keep", [0, 1], ids=["one-head", "whole-map"])
@pytest.mark.parametrize("shape", list(SHAPES))
def test_attention_memory(benchmark, bench_results, shape, keep, micro):
    net = block_net(shape, bool(keep))
    rng = np.random.default_rng(0)
    s = SHAPES[shape]
    x = rng.standard_normal((BATCH, 1, s["S"], s["D"])).astype(np.float32)
    y = rng.integers(0, 10, BATCH)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=1e-3, momentum=0.9), batch_size=BATCH, micro_batch=micro)
    peak = tr.plan.peak_bytes
    touched = touched_peak(tr, x, y)
    assert peak - 3 <= touched <= peak, (touched, peak)   # the plan's accounting is what a run touches
    fig = dict(peak=peak, touched=touched, attention=attention_bytes(tr, OWN), map=attention_bytes(tr, MAP))
    FIGURES[(shape, micro, keep)] = fig
    bench_results.setdefault("attention_memory", {})[(shape, micro, keep)] = fig
    benchmark.extra_info.update(kind="attention_memory", shape=shape, keep_probs=keep, micro_batch=micro, **fig)
    benchmark.pedantic(lambda: tr.step(x, y), rounds=3, warmup_rounds=1)
    tr.release()


def attention_memory_lines(results):
    """The table: per shape and micro-batch, both variants and their ratio."""
    lines = [f"{'shape':<6} {'micro':>5} {'figure':<10} {'one-head':>12} {'whole-map':>12} {'ratio':>7}"]
    for shape in SHAPES:
        for micro in MICRO:
            a, b = results.get((shape, micro, 0)), results.get((shape, micro, 1))
            if not a or not b:
                continue
            for key in ("peak", "attention", "map"):
                lines.append(f"{shape:<6} {micro:>5} {key:<10} {a[key]:>12,} {b[key]:>12,} "
                             f"{b[key] / a[key]:>6.2f}x")
    return lines
