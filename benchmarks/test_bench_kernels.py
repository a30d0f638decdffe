"""The float32 conv2d kernels on every conv shape of the model zoo, batch 1 (a
training micro-batch): forward, input gradient and weight gradient, in
GFLOP/s and as a fraction of the core's peak (see conftest.peak_info).

FLOP = 2 x the multiply-adds of the dense formula (n x c_out x h_out x w_out x
c_in/groups x k_h x k_w). Each call goes through the Python binding, so the
time includes its argument checks and, for the forward and the input
gradient, the allocation of the output (about a microsecond: it matters only
for the smallest layers). The weight gradient accumulates into a
preallocated array.
"""
import time

import numpy as np
import pytest

import biotrain_rt as brt
from biotrain_rt import _core as core

PASSES = ["forward", "backward_input", "backward_weight"]


def zoo_convs():
    """(model/layer, (c_in, h, w), conv options) for each conv of the zoo."""
    out = []
    for model, make in brt.models.ZOO.items():
        net = make(norm="group")
        for layer in net.layers:
            if layer.kind == "conv2d":
                out.append((f"{model}/{layer.name}", tuple(net.layers[layer.inputs[0]].shape), dict(layer.opts)))
    return out


CONVS = zoo_convs()


def case(in_shape, o, seed=0):
    rng = np.random.default_rng(seed)
    c_in, h, w = in_shape
    kh, kw = o["kernel"]
    x = rng.standard_normal((1, c_in, h, w)).astype(np.float32)
    wt = rng.standard_normal((o["out_channels"], c_in // o["groups"], kh, kw)).astype(np.float32)
    ho = (h + 2 * o["padding"][0] - o["dilation"][0] * (kh - 1) - 1) // o["stride"][0] + 1
    wo = (w + 2 * o["padding"][1] - o["dilation"][1] * (kw - 1) - 1) // o["stride"][1] + 1
    dy = rng.standard_normal((1, o["out_channels"], ho, wo)).astype(np.float32)
    macs = o["out_channels"] * ho * wo * (c_in // o["groups"]) * kh * kw
    return x, wt, dy, 2.0 * macs


@pytest.mark.parametrize("pas", PASSES)
@pytest.mark.parametrize("layer,in_shape,opts", CONVS, ids=[c[0] for c in CONVS])
def test_conv_kernel(benchmark, bench_results, peak, layer, in_shape, opts, pas):
    x, w, dy, flop = case(in_shape, opts)
    kw = dict(stride=opts["stride"], padding=opts["padding"], dilation=opts["dilation"], groups=opts["groups"])
    if pas == "forward":
        fn = lambda: core.conv2d_forward_f32(x, w, None, **kw)  # noqa: E731
    elif pas == "backward_input":
        fn = lambda: core.conv2d_backward_input_f32(dy, w, x.shape, **kw)  # noqa: E731
    else:
        dw = np.zeros_like(w)
        fn = lambda: core.conv2d_backward_weight_acc_f32(dw, None, dy, x, **kw)  # noqa: E731
    fn()
    benchmark.group = f"conv {layer}"
    shape = f"x{list(x.shape)} w{list(w.shape)} s{opts['stride']} p{opts['padding']} g{opts['groups']}"
    benchmark.extra_info.update(kind="kernel", layer=layer, pass_=pas, flop=flop, shape=shape)
    # rounds of about 0.5 ms (the timer's own cost then does not count), ~0.25 s per case
    t = time.perf_counter()
    for _ in range(10):
        fn()
    per_call = max((time.perf_counter() - t) / 10, 1e-7)
    iterations = max(1, int(5e-4 / per_call))
    rounds = int(min(500, max(10, 0.25 / (per_call * iterations))))
    benchmark.pedantic(fn, rounds=rounds, iterations=iterations, warmup_rounds=2)
    sec = benchmark.stats.stats.min
    benchmark.extra_info.update(gflops=flop / sec / 1e9)
    if peak["peak_base"]:
        benchmark.extra_info["fraction_of_peak_base"] = flop / sec / peak["peak_base"]
    if peak["peak_measured"]:
        benchmark.extra_info["fraction_of_peak_measured"] = flop / sec / peak["peak_measured"]
    bench_results["kernel"][(layer, pas)] = (sec, flop, shape)
