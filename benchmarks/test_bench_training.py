"""One training step of the same model on the same batch, biotrain-rt against
PyTorch, in one run.

Both sides start from the same weights (brt.to_torch), take the same float32
batch and do plain SGD (lr 1e-3, no momentum) over every parameter; the
models are the GroupNorm variants (EEGNet with its dropout, on both sides).
biotrain-rt runs its default plan: micro-batches of one sample whose
gradients accumulate, so its memory does not grow with the batch. PyTorch
runs its usual batched step: zero_grad, forward, cross-entropy, backward,
step. Throughput is batch / (fastest round) in samples per second; the ratio
is biotrain-rt's over PyTorch's.
"""
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import biotrain_rt as brt

torch.set_num_threads(1)

MODELS = ["mibminet", "epidenet", "eegnet"]
BATCHES = [1, 8, 32]
SECONDS = 1.0  # measuring time per case (CPU time), besides the warm-up


def build(model):
    return brt.models.ZOO[model](norm="group", seed=0)


def batch_data(net, batch):
    rng = np.random.default_rng(batch)
    c, h, w = net.input_shape
    x = rng.standard_normal((batch, c, h, w)).astype(np.float32)
    y = rng.integers(0, net.classes, size=batch)
    return x, y


def brt_step(net, x, y):
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=1e-3), strategy="full", batch_size=x.shape[0])
    return lambda: tr.step(x, y)


def torch_step(net, x, y):
    model = brt.to_torch(net)
    model.train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    xt, yt = torch.from_numpy(x), torch.from_numpy(y).long()

    def step():
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(model(xt), yt)
        loss.backward()
        opt.step()
        return loss

    return step


def rounds_for(fn):
    """Rounds that take about SECONDS of CPU time (5 to 400)."""
    fn()
    t = time.process_time()
    fn()
    dt = max(time.process_time() - t, 1e-6)
    return int(min(400, max(5, SECONDS / dt)))


@pytest.mark.parametrize("batch", BATCHES)
@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("impl", ["brt", "torch"])
def test_train_step(benchmark, bench_results, impl, model, batch):
    net = build(model)
    x, y = batch_data(net, batch)
    fn = brt_step(net, x, y) if impl == "brt" else torch_step(net, x, y)
    benchmark.group = f"train {model} batch {batch}"
    benchmark.extra_info.update(kind="train", model=model, batch=batch, impl=impl)
    benchmark.pedantic(fn, rounds=rounds_for(fn), iterations=1, warmup_rounds=1)
    bench_results["train"][(model, batch, impl)] = benchmark.stats.stats.min
