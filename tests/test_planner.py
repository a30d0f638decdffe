"""The static memory planner: layout validity, accounting against shapes, the
peak against the bytes actually touched, and the figures the design asks for."""
import numpy as np
import pytest

import biotrain_rt as brt

MODELS = {
    "mibminet": lambda norm: brt.models.mibminet(norm=norm),
    "epidenet": lambda norm: brt.models.epidenet(norm=norm),
    "eegnet": lambda norm: brt.models.eegnet(samples=250, norm=norm),
    "emgnet_logenergy": lambda norm: brt.models.emgnet_logenergy(norm=norm),
}


def residual_net():
    net = brt.Network((4, 1, 64), name="residual")
    a = net.conv2d(0, 8, (1, 3), padding=(0, 1), name="c1")
    b = net.groupnorm(a, 2, name="n1")
    b = net.relu(b, name="r1")
    b = net.conv2d(b, 8, (1, 3), padding=(0, 1), name="c2")
    s = net.add(a, b, name="skip")
    s = net.relu(s, name="r2")
    s = net.maxpool2d(s, (1, 4), name="mp")
    s = net.flatten(s, name="flat")
    net.linear(s, 3, name="fc")
    return net.finish()


def attention_net():
    """Two attention layers (the one-head backward with RoPE, then the
    whole-map one) between a scale and a linear head."""
    net = brt.Network((1, 12, 16), name="attention")
    x = net.conv2d(0, 1, (1, 1), bias=True, name="scale")
    x = net.mhsa(x, 4, rope=True, name="attn1")
    x = net.mhsa(x, 2, qkv_bias=False, keep_probs=True, name="attn2")
    x = net.flatten(x, name="flat")
    net.linear(x, 5, name="fc")
    return net.finish()


def all_trainers():
    for name, make in MODELS.items():
        for norm in ("group", "batch"):
            for strat in ("full", "last"):
                for opt in (brt.SGD(lr=0.1, momentum=0.9), brt.Adam()):
                    yield f"{name}-{norm}-{strat}-{opt.kind}", lambda m=make, n=norm, s=strat, o=opt: brt.Trainer(
                        m(n), optimizer=o, strategy=s, batch_size=4)
    yield "residual", lambda: brt.Trainer(residual_net(), optimizer=brt.SGD(lr=0.1), batch_size=4)
    yield "attention", lambda: brt.Trainer(attention_net(), optimizer=brt.SGD(lr=0.1, momentum=0.9), batch_size=4,
                                           micro_batch=2)


CASES = list(all_trainers())


@pytest.mark.parametrize("name,make", CASES, ids=[c[0] for c in CASES])
def test_no_live_tensors_overlap(name, make):
    tr = make()
    tensors = [t for t in tr.plan.tensors() if t["bytes"] > 0]
    bufs = tr.plan.core.buffers()
    peak = tr.plan.peak_bytes
    for i, (off, nb, f, l) in enumerate(bufs):
        assert off % 16 == 0 and off + nb <= peak
        for j in range(i + 1, len(bufs)):
            off2, nb2, f2, l2 = bufs[j]
            if f <= l2 and f2 <= l and nb and nb2:
                assert off + nb <= off2 or off2 + nb2 <= off, (name, bufs[i], bufs[j])
    # tensors sharing a buffer overlap in time at one step at most (the op that works in place)
    by_buf = {}
    for t in tensors:
        by_buf.setdefault(t["buffer"], []).append(t)
    for members in by_buf.values():
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                ta, tb = members[a], members[b]
                overlap = min(ta["last"], tb["last"]) - max(ta["first"], tb["first"]) + 1
                assert overlap <= 1, (name, ta, tb)
    tr.release()


@pytest.mark.parametrize("name,make", CASES[:6] + CASES[-2:], ids=[c[0] for c in CASES[:6] + CASES[-2:]])
def test_tensor_bytes_match_shapes(name, make):
    tr = make()
    net, m = tr.net, tr.micro_batch
    for t in tr.plan.tensors():
        if t["node"] < 0:
            continue
        layer = net.layers[t["node"]]
        per_sample = int(np.prod(layer.shape))
        if t["role"] == "out":
            expect = 0 if layer.kind == "flatten" else per_sample * m * 4
        elif t["role"] == "grad_out":
            expect = 0 if layer.kind == "flatten" else per_sample * m * 4
        elif t["role"] in ("param", "param_grad", "opt_m", "opt_v"):
            pname = layer.param_names[t["index"]]
            expect = layer.params[pname].size * 4
        elif t["role"] in ("mean", "rstd"):
            expect = (layer.opts["groups"] * m if layer.kind == "groupnorm" else layer.shape[0]) * 4
        elif t["role"] == "mask":
            count = per_sample * m
            expect = (count + 31) // 32 * 4 if layer.kind == "relu" else count
        elif t["role"] == "recomputed":
            expect = int(np.prod(net.layers[layer.inputs[t["index"]]].shape)) * m * 4
        elif t["role"] == "argmax":
            expect = per_sample * m * 4
        elif t["role"] in ("qkv", "heads_out", "row_stats", "probs", "attn_scratch"):
            S, D, H = layer.shape[1], layer.shape[2], layer.opts["num_heads"]
            expect = {"qkv": 3 * S * D * m, "heads_out": S * D * m, "row_stats": H * S * 2 * m,
                      "probs": H * S * S * m,
                      "attn_scratch": D + H * S + S * (D // H) + 2 * (D // H)}[t["role"]] * 4
        elif t["role"] == "grad_scratch":
            src = net.layers[layer.inputs[t["index"]]]
            expect = int(np.prod(src.shape)) * m * 4
        else:
            continue
        assert t["bytes"] == expect, (name, t)
    tr.release()


@pytest.mark.parametrize("make", [lambda: brt.models.mibminet(), lambda: brt.models.epidenet(norm="batch"),
                                  lambda: brt.models.emgnet_logenergy(), residual_net, attention_net],
                         ids=["mibminet", "epidenet-bn", "emgnet_logenergy", "residual", "attention"])
def test_peak_is_the_highest_byte_touched(make):
    """Give the session an arena 4 KiB larger than the plan, fill every byte
    that holds no parameter or optimizer state (and the guard past the peak)
    with a pattern, run steps and a forward: nothing past the peak changes,
    and the highest byte that changed is the plan's last byte."""
    net = make()
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-3), batch_size=4)
    peak = tr.plan.peak_bytes
    from biotrain_rt import _core
    sess = _core.Session(tr.plan.core, peak + 4096, "adam", 1e-3, 0.0, 0.0, 0.9, 0.999, 1e-8, 0)
    tr.session = sess
    tr._push_params()
    arena = sess.arena()
    persistent = np.zeros(arena.size, bool)
    for t in tr.plan.tensors():
        if t["kind"] in ("parameters", "gradients", "optimizer state"):
            persistent[t["offset"]:t["offset"] + t["bytes"]] = True
    arena[~persistent] = 0xA5
    snapshot = arena.copy()
    rng = np.random.default_rng(0)
    c, h, w = net.input_shape
    for _ in range(2):
        tr.step(rng.standard_normal((4, c, h, w)).astype(np.float32), rng.integers(0, net.classes, 4))
    tr.predict(rng.standard_normal((3, c, h, w)).astype(np.float32))
    changed = np.flatnonzero(arena != snapshot)
    assert np.all(arena[peak:] == 0xA5), "bytes past the plan's peak were written"
    assert peak - 4 <= changed.max() < peak, (changed.max(), peak)
    tr.release()


def test_mibminet_peak_figures():
    """The design's figure: MI-BMInet 8x1900, full fine-tuning, float32,
    effective batch 8 accumulated one sample at a time: peak <= 0.30 MB."""
    full = brt.Trainer(brt.models.mibminet(), optimizer=brt.SGD(lr=1e-3, momentum=0.9), strategy="full", batch_size=8)
    last = brt.Trainer(brt.models.mibminet(), optimizer=brt.SGD(lr=1e-3, momentum=0.9), strategy="last", batch_size=8)
    bn8 = brt.Trainer(brt.models.mibminet(norm="batch"), optimizer=brt.SGD(lr=1e-3, momentum=0.9), batch_size=8)
    assert full.plan.peak_bytes <= 300_000, full.plan.summary()
    assert last.plan.peak_bytes < full.plan.peak_bytes / 2
    assert bn8.plan.peak_bytes > 4 * full.plan.peak_bytes
    assert full.plan.naive_bytes > full.plan.peak_bytes


def test_batchnorm_peak_grows_with_batch_groupnorm_does_not():
    peaks_bn = [brt.Trainer(brt.models.epidenet(norm="batch"), batch_size=b).plan.peak_bytes for b in (2, 8, 32)]
    peaks_gn = [brt.Trainer(brt.models.epidenet(norm="group"), batch_size=b).plan.peak_bytes for b in (2, 8, 32)]
    assert peaks_bn[0] < peaks_bn[1] < peaks_bn[2]
    assert peaks_gn[0] == peaks_gn[1] == peaks_gn[2]


def test_plan_summary_and_plot(tmp_path):
    tr = brt.Trainer(brt.models.mibminet(), batch_size=8)
    s = tr.plan.summary()
    assert "activations" in s and "parameters" in s and str(tr.plan.peak_bytes) in s
    bd = tr.plan.breakdown
    assert sum(bd.values()) == tr.plan.live_peak_bytes <= tr.plan.peak_bytes
    path = tr.plan.plot(str(tmp_path / "plan.png"))
    data = open(path, "rb").read()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000
