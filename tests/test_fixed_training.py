"""Fixed-point training runs: the C integer executor against the NumPy integer
reference executor (reference/fixed_train.py, written from the fixed format's rules in exec.h) bit
for bit over whole 20-step runs of the zoo models; the fixed-point loss curve
against float32; the planner's fixed-point figure; bad input at the trainer.
"""
import numpy as np
import pytest
import torch

import biotrain_rt as brt
from biotrain_rt.train import FixedFormat
from biotrain_rt.reference import fixed as R
from biotrain_rt.reference.fixed_train import FixedReference

torch.set_num_threads(1)


def make_model(name):
    if name == "mibminet":
        return brt.models.mibminet(seed=1)
    if name == "epidenet":
        return brt.models.epidenet(seed=2)
    if name == "residual":
        # a fan-out (c1 feeds the branch and the add), maxpool, a global average pool
        net = brt.Network((4, 1, 64), name="residual", seed=4)
        a = net.conv2d(0, 8, (1, 3), padding=(0, 1), name="c1")
        b = net.groupnorm(a, 2, name="n1")
        b = net.relu(b, name="r1")
        b = net.conv2d(b, 8, (1, 3), padding=(0, 1), bias=True, name="c2")
        s = net.add(a, b, name="skip")
        s = net.elu(s, name="e2")
        s = net.maxpool2d(s, (1, 4), name="mp")
        s = net.global_avgpool(s, name="gap")
        s = net.flatten(s, name="flat")
        net.linear(s, 3, name="fc")
        return net.finish()
    if name == "eegnet-dropout":
        return brt.models.eegnet(samples=250, norm="group", dropout=0.25, seed=3)
    # EEGNet with GroupNorm (batchnorm does not run in fixed point), dropout off to compare with float32
    return brt.models.eegnet(samples=250, norm="group", dropout=0.0, seed=3)


def reference_for(tr, opt, net):
    params = {}
    for i, l in enumerate(net.layers):
        for k, name in enumerate(("weight", "bias")):
            if name in l.params:
                params[(i, k)] = (np.array(tr.session.param(i, k)), tr.session.frac(i, "param", k))
    return FixedReference(net, tr.trainable_nodes, R.decode_f32(opt.lr), R.decode_f32(opt.momentum),
                          R.decode_f32(opt.weight_decay), tr.micro_batch, params, seed=tr.seed)


def assert_same_state(tr, ref, where):
    sc = tr.scales()
    assert sc["out"].tolist() == ref.out_frac, where
    assert sc["dout"].tolist() == ref.dout_frac, where
    for (v, k), q in ref.params.items():
        assert np.array_equal(np.asarray(tr.session.param(v, k)), q.reshape(-1)), (where, v, k)
        assert tr.session.frac(v, "param", k) == ref.pfrac[(v, k)], (where, v, k)
        if (v, k) in ref.grad_frac:
            assert sc["grad"][v, k] == ref.grad_frac[(v, k)], (where, v, k)
    assert tr.session.saturated_last == ref.saturated_last, where
    assert tr.checksum() == ref.checksum(), where


CASES = [("mibminet", "full", 4, 1), ("epidenet", "full", 4, 1), ("eegnet", "full", 4, 1),
         ("epidenet", "full", 3, 2),        # micro-batches of 2 then 1
         ("mibminet", "middle", 4, 1),      # a middle layer and the classifier: gradient through frozen layers
         ("residual", "full", 4, 2),
         ("eegnet-dropout", "full", 2, 1)]


@pytest.mark.parametrize("model,strategy,batch,micro", CASES, ids=[f"{c[0]}-{c[1]}-b{c[2]}m{c[3]}" for c in CASES])
def test_twenty_steps_bit_exact(model, strategy, batch, micro):
    net = make_model(model)
    if strategy == "middle":
        names = [net.layers[i].name for i in net.param_layers()]
        strategy = [names[len(names) // 2], names[-1]]
    opt = brt.SGD(lr=0.05, momentum=0.9, weight_decay=1e-3)
    tr = brt.Trainer(net, optimizer=opt, strategy=strategy, batch_size=batch, micro_batch=micro, dtype="fixed")
    assert isinstance(tr.format, FixedFormat) and tr.dtype == "fixed"
    ref = reference_for(tr, opt, net)
    rng = np.random.default_rng(7)
    c, h, w = net.input_shape
    X = rng.standard_normal((20, batch, c, h, w)).astype(np.float32)
    X[3, 0, 0, 0, :5] = [40.0, -40.0, 1e6, -1e6, 0.0]   # beyond the input range: saturated, counted
    Y = rng.integers(0, net.classes, size=(20, batch)).astype(np.int32)
    tr.calibrate(X[0], Y[0])
    xq, f = tr.quantize_input(X[0])
    ref.calibrate(xq, f, Y[0], tr.format.calibration_rounds)
    assert_same_state(tr, ref, "calibration")
    losses = []
    for s in range(20):
        xq, f = tr.quantize_input(X[s])
        loss_c = tr.session.train_step(xq, Y[s], f)
        loss_r = ref.train_step(xq, f, Y[s])
        assert loss_c == loss_r, s
        assert_same_state(tr, ref, f"step {s}")
        losses.append(loss_c)
    assert tr.input_saturated >= 2
    # inference too
    zc, fc = tr.session.forward(xq, f)
    zr, fr = ref.forward(xq, f)
    assert fc == fr and np.array_equal(zc, zr)
    assert len(set(losses)) > 1
    tr.release()


def learnable_task(net, steps, batch, seed=0, noise=0.8):
    """Per-class sinusoidal prototypes in noise: a task every zoo model can learn."""
    rng = np.random.default_rng(seed)
    c, h, w = net.input_shape
    k = net.classes
    t = np.arange(w)
    freq = rng.uniform(0.01, 0.1, (k, 1, 1, 1))
    phase = rng.uniform(0, 6, (k, c, h, 1))
    protos = rng.standard_normal((k, c, h, 1)) * np.sin(2 * np.pi * (t[None, None, None, :] * freq + phase))
    Y = rng.integers(0, k, size=(steps, batch))
    X = protos[Y] + noise * rng.standard_normal((steps, batch, c, h, w))
    return X.astype(np.float32), Y


TRACK_STEPS = 40
TRACK_MAX_GAP = 0.06
TRACK_MEAN_GAP = 0.03


@pytest.mark.parametrize("model", ["mibminet", "epidenet", "eegnet"])
def test_fixed_loss_tracks_float32(model):
    """Same weights, same batches, SGD with momentum, 40 steps of 8. Measure:
    the gap between the 5-step moving averages of the two loss curves,
    relative to the initial loss: at most 6 % at any point and 3 % on average.
    Both curves must also fall by a fifth."""
    X, Y = learnable_task(make_model(model), TRACK_STEPS, 8, noise=0.5)
    curves = {}
    for dtype in ("float32", "fixed"):
        tr = brt.Trainer(make_model(model), optimizer=brt.SGD(lr=0.02, momentum=0.9), batch_size=8, dtype=dtype)
        curves[dtype] = np.array([tr.step(X[s], Y[s]) for s in range(TRACK_STEPS)])
        tr.release()
    a, b = curves["float32"], curves["fixed"]
    ma = lambda v: np.convolve(v, np.ones(5) / 5, mode="valid")  # noqa: E731
    gap = np.abs(ma(a) - ma(b)) / a[0]
    print(f"{model}: |MA5(fixed) - MA5(float32)| / loss0 max {gap.max():.4f} mean {gap.mean():.4f}; "
          f"first {a[0]:.3f}/{b[0]:.3f}, last MA5 {ma(a)[-1]:.3f}/{ma(b)[-1]:.3f}")
    assert gap.max() <= TRACK_MAX_GAP and gap.mean() <= TRACK_MEAN_GAP
    assert ma(b)[-1] < 0.8 * b[0] and ma(a)[-1] < 0.8 * a[0]


def test_mibminet_fixed_peak_memory():
    """MI-BMInet 8x1900, full fine-tuning, batch 8 in micro-batches of 1: the
    fixed-point plan's arena peak is at most 0.12 MB (1e6 bytes per MB)."""
    peaks = {}
    for dtype in ("float32", "fixed"):
        tr = brt.Trainer(brt.models.mibminet(), optimizer=brt.SGD(lr=1e-3, momentum=0.9), strategy="full",
                         batch_size=8, micro_batch=1, dtype=dtype)
        peaks[dtype] = tr.plan.peak_bytes
        if dtype == "fixed":
            # element sizes: int8 activations and gradients, int32 masters (+ int8 copies), grads, momentum
            net = tr.net
            for t in tr.plan.tensors():
                if t["node"] < 0:
                    continue
                numel = int(np.prod(net.layers[t["node"]].shape))
                if t["role"] in ("out", "grad_out") and net.layers[t["node"]].kind != "flatten":
                    assert t["bytes"] == numel
                if t["role"] in ("param_grad", "opt_m"):
                    assert t["bytes"] == 4 * net.layers[t["node"]].params[("weight", "bias")[t["index"]]].size
        tr.release()
    print(f"MI-BMInet peak: float32 {peaks['float32']} B, fixed {peaks['fixed']} B")
    assert peaks["fixed"] <= 120_000
    assert peaks["fixed"] < 0.5 * peaks["float32"]


# ------------------------------------------------------------------ bad input
def small_net():
    net = brt.Network((2, 1, 40), name="small", seed=0)
    x = net.conv2d(0, 4, (1, 5), name="c1")
    x = net.groupnorm(x, 1, name="n1")
    x = net.relu(x, name="r1")
    x = net.avgpool2d(x, (1, 4), name="p1")
    x = net.flatten(x, name="f")
    net.linear(x, 3, name="fc")
    return net.finish()


def test_refused_steps_leave_parameters_unchanged():
    tr = brt.Trainer(small_net(), optimizer=brt.SGD(lr=0.1, momentum=0.9), batch_size=4, dtype="fixed")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 1, 40)).astype(np.float32)
    tr.step(x, [0, 1, 2, 0])
    before = tr.checksum()
    with pytest.raises(ValueError, match="outside the 3 classes"):
        tr.step(x, [0, 1, 3, 0])
    with pytest.raises(ValueError, match="label out of range"):  # straight to the C core
        tr.session.train_step(tr.quantize_input(x)[0], np.array([0, 1, 3, 0], np.int32), tr.input_frac)
    x_bad = x.copy()
    x_bad[1, 0, 0, 3] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        tr.step(x_bad, [0, 1, 2, 0])
    with pytest.raises(ValueError, match="int16"):
        tr.session.train_step(x, np.array([0, 1, 2, 0], np.int32), 4)  # float data never enter unconverted
    assert tr.checksum() == before


def test_inputs_beyond_the_range_are_saturated_and_counted():
    tr = brt.Trainer(small_net(), optimizer=brt.SGD(lr=0.1), batch_size=4, dtype="fixed", input_frac=12)
    x = np.zeros((4, 2, 1, 40), np.float32)
    x[0, 0, 0, :4] = [100.0, -100.0, 7.9, 8.1]   # int16 with 12 fractional bits holds |x| < 8
    tr.step(x, [0, 1, 2, 0])
    assert tr.input_saturated == 3                # 100, -100 and 8.1: clamped, not wrapped
    xq, _ = tr.quantize_input(x[:1])
    assert xq[0, 0, 0, :4].tolist() == [32767, -32767, 32358, 32767]


def test_a_scale_that_would_overflow_the_accumulator_is_refused():
    """A bias whose scale is so coarse that aligning it to the accumulator
    (input + weight fractional bits) cannot fit int32: BT_ERR_OVERFLOW, the
    layer is named, nothing is updated."""
    net = small_net()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), batch_size=4, dtype="fixed")
    rng = np.random.default_rng(1)
    x = rng.standard_normal((4, 2, 1, 40)).astype(np.float32)
    tr.step(x, [0, 1, 2, 0])
    fc = net.index("fc")
    b = tr.session.param(fc, 1)
    b[...] = 1 << 30
    tr.session.set_frac(fc, "param", 1, R.FRAC_MIN)   # a bias of 2^62: far beyond any int32 accumulator
    before = tr.checksum()
    with pytest.raises(ValueError, match=r"fixed-point overflow.*'fc'"):
        tr.step(x, [0, 1, 2, 0])
    assert tr.checksum() == before
    with pytest.raises(ValueError, match="outside"):
        tr.session.set_frac(fc, "param", 1, R.FRAC_MAX + 1)


def test_a_tensor_too_large_for_int32_accumulation_is_refused():
    """A linear layer over 131072 int8 features could overflow its int32
    accumulator (131072 * 128 * 128 > 2^31 - 1): refused with the layer's name."""
    net = brt.Network((1, 1, 131072), name="wide")
    net.linear(net.flatten(0, name="f"), 2, name="wide_fc")
    net.finish()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), batch_size=1, dtype="fixed", input_frac=8)
    x = np.ones((1, 1, 1, 131072), np.float32)
    with pytest.raises(ValueError, match=r"fixed-point overflow.*'wide_fc'"):
        tr.step(x, [1])


def test_unsupported_configurations_are_refused():
    with pytest.raises(ValueError, match="SGD"):
        brt.Trainer(small_net(), optimizer=brt.Adam(), dtype="fixed")
    with pytest.raises(ValueError, match="batchnorm"):
        brt.Trainer(brt.models.mibminet(norm="batch"), optimizer=brt.SGD(), dtype="fixed")
    with pytest.raises(ValueError, match="dtype"):
        brt.Trainer(small_net(), dtype="int4")


def test_trainer_api_and_weights_round_trip():
    net = small_net()
    w0 = net.state_dict()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.05, momentum=0.9), batch_size=4, dtype="fixed")
    assert tr.n_trainable == net.n_params()
    # masters hold the float weights to ~2^-22 of each tensor's largest value
    for k, v in net.state_dict().items():
        assert np.max(np.abs(v - w0[k])) <= 2.0 ** -22 * max(np.max(np.abs(w0[k])), 1.0) + 1e-12, k
    rng = np.random.default_rng(3)
    X = rng.standard_normal((24, 2, 1, 40)).astype(np.float32)
    y = rng.integers(0, 3, 24)
    hist = tr.fit(X, y, epochs=3, progress=False)
    assert len(hist["loss"]) == 3 and all(np.isfinite(hist["loss"]))
    p = tr.predict(X[:5])
    assert p.shape == (5, 3) and np.allclose(p.sum(1), 1.0, atol=1e-5)
    assert 0.0 <= tr.evaluate(X, y) <= 1.0
    tr.set_lr(0.01)
    assert abs(tr.lr - 0.01) < 1e-9
    tr.release()
    assert any(not np.array_equal(v, w0[k]) for k, v in net.state_dict().items())
