"""The Python face: from_torch / to_torch, state dicts, strategies, fit/predict,
and what bad input gets (a clear error, nothing changed, nothing crashed)."""
import numpy as np
import pytest
import torch
import torch.nn as nn

import biotrain_rt as brt
from biotrain_rt import _core

torch.set_num_threads(1)


class Residual(nn.Module):
    def __init__(self):
        super().__init__()
        self.c1 = nn.Conv1d(4, 8, 5, padding=2, bias=False)
        self.n1 = nn.GroupNorm(2, 8)
        self.c2 = nn.Conv1d(8, 8, 3, padding=1)
        self.act = nn.ELU()
        self.pool = nn.MaxPool1d(4)
        self.gap = nn.AdaptiveAvgPool1d(1)
        self.flat = nn.Flatten()
        self.fc = nn.Linear(8, 3)

    def forward(self, x):
        a = self.c1(x)
        b = self.c2(torch.relu(self.n1(a)))
        s = self.act(a + b)
        return self.fc(self.flat(self.gap(self.pool(s))))


def test_from_torch_sequential_matches_forward_and_names():
    tm = nn.Sequential(nn.Conv2d(1, 4, (2, 1), bias=False), nn.BatchNorm2d(4), nn.ReLU(), nn.AvgPool2d((1, 4)),
                       nn.Conv2d(4, 6, (1, 5), stride=(1, 2), dilation=(1, 2), padding=(0, 3)), nn.GELU(approximate="tanh"),
                       nn.MaxPool2d((1, 2)), nn.Flatten(), nn.Dropout(0.3), nn.Linear(6 * 1 * 3, 5), nn.LayerNorm(5))
    tm.eval()
    with torch.no_grad():
        tm[1].running_mean.uniform_(-0.5, 0.5)
        tm[1].running_var.uniform_(0.5, 2.0)
    net = brt.from_torch(tm, input_shape=(1, 2, 64))
    sd = net.state_dict()
    assert set(sd) == {k for k in tm.state_dict() if not k.endswith("num_batches_tracked")}
    x = np.random.default_rng(0).standard_normal((3, 1, 2, 64)).astype(np.float32)
    tr = brt.Trainer(net, batch_size=3)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(tr.predict_logits(x), ref, rtol=1e-4, atol=1e-5)


def test_from_torch_residual_conv1d_and_round_trip():
    torch.manual_seed(0)
    tm = Residual()
    net = brt.from_torch(tm, input_shape=(4, 64))
    assert [l.kind for l in net.layers].count("add") == 1
    x = np.random.default_rng(1).standard_normal((5, 4, 64)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.05, momentum=0.9), batch_size=5)
    with torch.no_grad():
        np.testing.assert_allclose(tr.predict_logits(x), tm(torch.from_numpy(x)).numpy(), rtol=1e-4, atol=1e-5)
    opt = torch.optim.SGD(tm.parameters(), lr=0.05, momentum=0.9)
    for _ in range(5):
        tr.step(x, y)
        opt.zero_grad()
        nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
        opt.step()
    for k, v in tm.state_dict().items():
        w = net.state_dict()[k]
        assert np.max(np.abs(w.reshape(v.shape) - v.numpy())) <= 1e-4 * max(np.abs(v.numpy()).max(), 0.01), k
    # and back: loading our weights into the original module
    tm2 = Residual()
    brt.to_torch(net, module=tm2)
    for k, v in tm2.state_dict().items():
        np.testing.assert_array_equal(v.numpy(), net.state_dict()[k].reshape(v.shape))


def test_to_torch_zoo_state_dict_keys_match():
    net = brt.models.epidenet()
    tm = brt.to_torch(net)
    ours = net.state_dict()
    theirs = {k: v for k, v in tm.state_dict().items() if not k.endswith("num_batches_tracked")}
    assert set(ours) == set(theirs)
    for k in ours:
        np.testing.assert_array_equal(ours[k], theirs[k].numpy())


@pytest.mark.parametrize("module,what", [
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Sigmoid(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)), "Sigmoid"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.SiLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 2)), "SiLU"),
    (nn.Sequential(nn.Conv2d(1, 2, 3), nn.Linear(6, 2)), "Flatten"),
    (nn.Sequential(nn.LSTM(8, 4)), "LSTM"),
])
def test_from_torch_names_the_unsupported_layer(module, what):
    with pytest.raises(ValueError, match=what):
        brt.from_torch(module, input_shape=(1, 8, 8))


def test_zoo_parameter_counts():
    assert brt.models.mibminet().n_params() == 1234
    assert brt.models.epidenet().n_params() == 4179
    assert brt.models.mibminet(norm="batch").n_params() == 1234
    e = brt.models.eegnet()
    assert e.layers[-1].shape == (4, 1, 1) and e.input_shape == (1, 22, 1125)


def test_fit_predict_and_loss_falls():
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 1, 2, 1000)).astype(np.float32)
    y = rng.integers(0, 11, 40)
    tr = brt.Trainer(brt.models.epidenet(), optimizer=brt.Adam(lr=1e-2), batch_size=8)
    h = tr.fit(X, y, epochs=6, progress=False)
    assert len(h["loss"]) == 6 and h["loss"][-1] < h["loss"][0]
    p = tr.predict(X)
    assert p.shape == (40, 11) and np.allclose(p.sum(1), 1, atol=1e-5)
    assert 0 <= tr.evaluate(X, y) <= 1
    tr.set_lr(1e-4)
    assert tr.lr == np.float32(1e-4)


def test_strategy_by_layer_names_and_errors():
    net = brt.models.mibminet()
    tr = brt.Trainer(net, strategy=["temporal", "classifier"], batch_size=2)
    assert [net.layers[i].name for i in tr.trainable_nodes] == ["temporal", "classifier"]
    assert tr.n_trainable == 512 + 418
    with pytest.raises(ValueError, match="no layer named 'nope'"):
        brt.Trainer(net, strategy=["nope"])
    with pytest.raises(ValueError, match="has no parameters"):
        brt.Trainer(net, strategy=["relu1"])
    with pytest.raises(ValueError, match="unknown strategy"):
        brt.Trainer(net, strategy="most")
    full = brt.Trainer(brt.models.mibminet(), strategy="full", batch_size=8).plan.peak_bytes
    last = brt.Trainer(brt.models.mibminet(), strategy="last", batch_size=8).plan.peak_bytes
    assert last < full / 2


def _trainer():
    return brt.Trainer(brt.models.epidenet(), optimizer=brt.SGD(lr=0.1, momentum=0.9), batch_size=4)


def test_bad_input_shape_names_network_and_shapes():
    tr = _trainer()
    with pytest.raises(ValueError, match=r"x has shape \(4, 1, 3, 1000\).*\(batch, 1, 2, 1000\)"):
        tr.step(np.zeros((4, 1, 3, 1000), np.float32), np.zeros(4, int))
    with pytest.raises(ValueError, match="labels have shape"):
        tr.step(np.zeros((4, 1, 2, 1000), np.float32), np.zeros(3, int))


def test_labels_out_of_range_and_nan_leave_weights_unchanged():
    tr = _trainer()
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 1, 2, 1000)).astype(np.float32)
    tr.step(x, np.array([0, 1, 2, 3]))
    before = tr.checksum()
    with pytest.raises(ValueError, match=r"label 11 at index 2 is outside the 11 classes"):
        tr.step(x, np.array([0, 1, 11, 3]))
    with pytest.raises(ValueError, match="label -1"):
        tr.step(x, np.array([0, -1, 1, 3]))
    x_nan = x.copy()
    x_nan[2, 0, 1, 10] = np.nan
    with pytest.raises(ValueError, match=r"NaN or Inf in sample\(s\) \[2\].*unchanged"):
        tr.step(x_nan, np.array([0, 1, 2, 3]))
    x_inf = x.copy()
    x_inf[0, 0, 0, 0] = np.inf
    with pytest.raises(ValueError, match="NaN or Inf"):
        tr.step(x_inf, np.array([0, 1, 2, 3]))
    assert tr.checksum() == before


def test_core_session_refuses_nan_even_without_python_checks():
    """The C core checks too: the bindings' path without the Trainer's checks."""
    tr = _trainer()
    before = tr.checksum()
    x = np.zeros((4, 1, 2, 1000), np.float32)
    x[1, 0, 0, 5] = np.nan
    with pytest.raises(ValueError, match="NaN or Inf in input.*parameters unchanged"):
        tr.session.train_step(x, np.zeros(4, np.int32))
    with pytest.raises(ValueError, match="label out of range"):
        tr.session.train_step(np.zeros((4, 1, 2, 1000), np.float32), np.array([0, 0, 99, 0], np.int32))
    assert tr.checksum() == before


def test_diverging_step_is_refused():
    tr = brt.Trainer(brt.models.epidenet(), optimizer=brt.SGD(lr=1e30), batch_size=4)
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((4, 1, 2, 1000)) * 1e3).astype(np.float32)
    y = np.array([0, 1, 2, 3])
    with pytest.raises(ValueError, match="non-finite gradient|NaN or Inf"):
        for _ in range(10):
            tr.step(x, y)


def test_arena_smaller_than_plan_is_refused():
    tr = _trainer()
    with pytest.raises(ValueError, match=rf"smaller than the plan's peak of {tr.plan.peak_bytes} bytes"):
        _core.Session(tr.plan.core, tr.plan.peak_bytes - 1)


def test_batchnorm_batch_larger_than_plan_is_refused():
    tr = brt.Trainer(brt.models.epidenet(norm="batch"), batch_size=4)
    with pytest.raises(ValueError, match="exceeds batch_size=4"):
        tr.step(np.zeros((8, 1, 2, 1000), np.float32), np.zeros(8, int))
    with pytest.raises(ValueError, match="micro_batch must equal batch_size"):
        brt.Trainer(brt.models.epidenet(norm="batch"), batch_size=4, micro_batch=1)


def test_bad_graphs_and_options():
    net = brt.Network((4, 1, 16))
    with pytest.raises(ValueError, match=r"conv2d layer 'c'.*groups do not divide"):
        net.conv2d(0, 6, (1, 3), groups=4, name="c")
    with pytest.raises(ValueError, match=r"conv2d layer 'big'.*zero or negative size"):
        net.conv2d(0, 4, (1, 99), name="big")
    with pytest.raises(ValueError, match="does not exist"):
        net.relu(7)
    with pytest.raises(ValueError, match="lr"):
        brt.SGD(lr=float("nan"))
    with pytest.raises(ValueError, match="momentum"):
        brt.SGD(lr=0.1, momentum=1.5)
    with pytest.raises(ValueError, match="dtype 'int4'"):
        brt.Trainer(brt.models.epidenet(), dtype="int4")
    with pytest.raises(ValueError, match="missing keys"):
        brt.models.epidenet().load_state_dict({})
    sd = brt.models.epidenet().state_dict()
    sd["conv1.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match=r"'conv1.weight' has shape \(3, 3\)"):
        brt.models.epidenet().load_state_dict(sd)


def test_state_dict_reads_live_weights_and_load_pushes():
    net = brt.models.epidenet()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), batch_size=2)
    sd0 = net.state_dict()
    rng = np.random.default_rng(0)
    tr.step(rng.standard_normal((2, 1, 2, 1000)).astype(np.float32), np.array([1, 2]))
    sd1 = net.state_dict()
    assert not np.array_equal(sd0["classifier.weight"], sd1["classifier.weight"])
    net.load_state_dict(sd0)
    assert np.array_equal(np.asarray(tr.session.param(net.index("classifier"), 0)),
                          sd0["classifier.weight"].reshape(-1))


# ------------------------------------------------- split steps: gradients, apply_gradients
def _logenergy_batch(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 2.5, (n, 1, 8, 8)).astype(np.float32), rng.integers(0, 6, n)


def test_gradients_match_torch_autograd_without_updating():
    torch.manual_seed(3)
    tm = Residual()
    net = brt.from_torch(tm, input_shape=(4, 64))
    x = np.random.default_rng(2).standard_normal((5, 4, 64)).astype(np.float32)
    y = np.array([0, 1, 2, 1, 0])
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-2), batch_size=5)
    before = net.state_dict()
    g = tr.gradients(x, y)
    after = net.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)
    tm.zero_grad()
    nn.functional.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y)).backward()
    ref = {k: p.grad.numpy() for k, p in tm.named_parameters()}
    assert set(g) == set(ref)
    for k in ref:
        np.testing.assert_allclose(g[k], ref[k].reshape(g[k].shape), rtol=2e-4, atol=2e-6, err_msg=k)


@pytest.mark.parametrize("opt", [brt.SGD(lr=0.05, momentum=0.9), brt.Adam(lr=3e-3)])
def test_gradients_then_apply_gives_the_bits_of_step(opt):
    def run(split):
        net = brt.models.emgnet_logenergy(seed=1)
        tr = brt.Trainer(net, optimizer=opt, batch_size=6, seed=0)
        for i in range(5):
            x, y = _logenergy_batch(seed=i)
            if split:
                tr.apply_gradients(tr.gradients(x, y))
            else:
                tr.step(x, y)
        return tr.checksum(), net.state_dict()
    (c0, s0), (c1, s1) = run(False), run(True)
    assert c0 == c1
    for k in s0:
        assert np.array_equal(s0[k], s1[k]), k


def test_apply_gradients_uses_the_given_values():
    net = brt.models.emgnet_logenergy(seed=2)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.5), strategy="last", batch_size=6)
    x, y = _logenergy_batch()
    g = tr.gradients(x, y)
    assert set(g) == {"classifier.weight", "classifier.bias"}
    rng = np.random.default_rng(5)
    edited = {k: rng.standard_normal(v.shape).astype(np.float32) for k, v in g.items()}
    w0 = net.state_dict()
    tr.apply_gradients(edited)
    w1 = net.state_dict()
    for k in edited:  # plain SGD: w - lr * g, one float32 rounding
        np.testing.assert_array_equal(w1[k], (w0[k] - np.float32(0.5) * edited[k]).astype(np.float32))
    assert np.array_equal(w0["spatial.weight"], w1["spatial.weight"])


def test_apply_gradients_refuses_bad_gradients_and_changes_nothing():
    net = brt.models.emgnet_logenergy(seed=2)
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-2), batch_size=6)
    x, y = _logenergy_batch()
    g = tr.gradients(x, y)
    w0, c0 = net.state_dict(), tr.checksum()
    missing = dict(g)
    missing.pop("classifier.bias")
    with pytest.raises(ValueError, match="no gradient for trainable parameter 'classifier.bias'"):
        tr.apply_gradients(missing)
    with pytest.raises(ValueError, match=r"'spatial.weight' has shape \(3,\)"):
        tr.apply_gradients({**g, "spatial.weight": np.zeros(3, np.float32)})
    nan = {**g, "mix.weight": np.full_like(g["mix.weight"], np.nan)}
    with pytest.raises(ValueError, match="'mix.weight' contains NaN"):
        tr.apply_gradients(nan)
    with pytest.raises(ValueError, match="not trainable"):
        tr.apply_gradients({**g, "nope.weight": np.zeros(1, np.float32)})
    assert tr.checksum() == c0
    assert all(np.array_equal(w0[k], net.state_dict()[k]) for k in w0)
    with pytest.raises(ValueError, match="Trainer.gradients: label 9"):
        tr.gradients(x, np.array([0, 1, 2, 3, 4, 9]))


def test_core_apply_update_refuses_a_non_finite_gradient():
    net = brt.models.emgnet_logenergy(seed=2)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), batch_size=6)
    x, y = _logenergy_batch()
    tr.session.grad_step(x, y.astype(np.int32))
    c0 = tr.checksum()
    tr.session.grad(net.index("classifier"), 0)[3] = np.inf
    with pytest.raises(Exception, match="apply_update"):
        tr.session.apply_update()
    assert tr.checksum() == c0


def test_fixed_split_step_is_one_step_and_refuses_like_float32():
    """Fixed point: gradients() then apply_gradients() of the same gradients is
    bit for bit one step (the gradient scales are kept when the values fit), and
    a bad gradient is refused with nothing changed, as in float32."""
    x, y = _logenergy_batch()
    a = brt.Trainer(brt.models.emgnet_logenergy(seed=2), optimizer=brt.SGD(lr=0.1, momentum=0.9), batch_size=6,
                    dtype="fixed")
    b = brt.Trainer(brt.models.emgnet_logenergy(seed=2), optimizer=brt.SGD(lr=0.1, momentum=0.9), batch_size=6,
                    dtype="fixed")
    for _ in range(3):
        a.step(x, y)
        g = b.gradients(x, y)
        assert all(v.dtype == np.float32 and np.isfinite(v).all() for v in g.values())
        b.apply_gradients(g)
        assert a.checksum() == b.checksum() and a.state_checksum() == b.state_checksum()
    c0, s0 = b.checksum(), b.state_checksum()
    g = b.gradients(x, y)
    key = next(iter(g))
    with pytest.raises(ValueError, match="NaN or Inf"):
        b.apply_gradients({**g, key: np.full_like(g[key], np.nan)})
    with pytest.raises(ValueError, match="no gradient"):
        b.apply_gradients({k: v for k, v in g.items() if k != key})
    assert b.checksum() == c0


def test_fixed_only_calls_say_so_on_a_float32_trainer():
    tr = brt.Trainer(brt.models.emgnet_logenergy(seed=2), optimizer=brt.SGD(lr=0.1), batch_size=6)
    x, _ = _logenergy_batch()
    for call in (lambda: tr.quantize_input(x), lambda: tr.scales(), lambda: tr.input_frac):
        with pytest.raises(ValueError, match="dtype='fixed'"):
            call()


@pytest.mark.parametrize("approximate", ["none", "tanh"])
def test_from_torch_gelu_keeps_its_form(approximate):
    """nn.GELU imports in the form it computes: the exact (erf) form or the tanh form."""
    tm = nn.Sequential(nn.Conv2d(1, 3, (1, 3)), nn.GELU(approximate=approximate), nn.Flatten(), nn.Linear(3 * 6, 2))
    net = brt.from_torch(tm, input_shape=(1, 1, 8))
    assert net.layers[2].opts["approximate"] == approximate
    x = (3 * np.random.default_rng(1).standard_normal((4, 1, 1, 8))).astype(np.float32)
    with torch.no_grad():
        ref = tm(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(brt.Trainer(net, batch_size=4).predict_logits(x), ref, rtol=1e-5, atol=1e-6)
