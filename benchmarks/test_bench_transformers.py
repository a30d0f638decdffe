"""The zoo's transformers: memory from the planner and one training step
against PyTorch, in one run.

Memory: the planner's arena peak for CCT-2 under full fine-tuning, the last
layer only, and TrainDeeploy's FT1 setting (the last block's q/k/v and output
projection, both MLP linears, the pooling and the head), and for the EMG
transformer full and last; the figures are the plan's own accounting (checked
against the bytes a run touches in tests/test_planner.py).

Speed: batch / fastest round of one SGD step, biotrain-rt (its default plan,
micro-batches of one sample) against the same model written in PyTorch
(tests/torch_transformers.py) with the same weights, one thread each.
Run: python -m pytest benchmarks/test_bench_transformers.py --benchmark-only -s
"""
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import biotrain_rt as brt

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from torch_transformers import TorchCCT2, TorchEMGTransformer, _cct_pairs, _emg_pairs, load_into  # noqa: E402

torch.set_num_threads(1)

MODELS = {
    "cct2": (brt.models.cct2, TorchCCT2, _cct_pairs),
    "emg_transformer": (brt.models.emg_transformer, TorchEMGTransformer, _emg_pairs),
}
FT1 = ["blocks.1.self_attn", "blocks.1.linear1", "blocks.1.linear2", "attention_pool", "fc"]
STRATEGIES = {"cct2": {"full": "full", "last": "last", "FT1": FT1},
              "emg_transformer": {"full": "full", "last": "last"}}


@pytest.mark.parametrize("model", list(MODELS))
def test_memory(benchmark, model):
    rows = []
    for label, strategy in STRATEGIES[model].items():
        net = MODELS[model][0]()
        tr = brt.Trainer(net, optimizer=brt.SGD(lr=1e-3, momentum=0.9), strategy=strategy, batch_size=8)
        rows.append((label, tr.n_trainable, tr.plan.peak_bytes))
        tr.release()
    benchmark.extra_info.update(kind="memory", model=model, rows=rows)
    benchmark.pedantic(lambda: None, rounds=1, iterations=1)
    print(f"\n{model}: strategy, trainable parameters, arena peak (batch 8, micro-batch 1, SGD momentum)")
    for label, n, peak in rows:
        print(f"  {label:5s} {n:8d} {peak / 1024:10.1f} KiB")


def _rounds(fn, seconds=1.0):
    fn()
    t = time.process_time()
    fn()
    return int(min(200, max(3, seconds / max(time.process_time() - t, 1e-6))))


@pytest.mark.parametrize("batch", [1, 32])
@pytest.mark.parametrize("model", list(MODELS))
@pytest.mark.parametrize("impl", ["brt", "torch"])
def test_train_step(benchmark, impl, model, batch):
    make, tmod, pairs = MODELS[model]
    net = make()
    rng = np.random.default_rng(batch)
    x = rng.standard_normal((batch,) + net.input_shape).astype(np.float32)
    y = rng.integers(0, net.classes, batch)
    if impl == "brt":
        tr = brt.Trainer(net, optimizer=brt.SGD(lr=1e-3), batch_size=batch)
        fn = lambda: tr.step(x, y)  # noqa: E731
    else:
        tm = tmod()
        load_into(net, tm, pairs)
        opt = torch.optim.SGD([p for p in tm.parameters() if p.requires_grad], lr=1e-3)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

        def fn():
            opt.zero_grad(set_to_none=True)
            loss = F.cross_entropy(tm(xt), yt)
            loss.backward()
            opt.step()
    benchmark.group = f"train {model} batch {batch}"
    benchmark.extra_info.update(kind="train", model=model, batch=batch, impl=impl)
    benchmark.pedantic(fn, rounds=_rounds(fn), iterations=1, warmup_rounds=1)
