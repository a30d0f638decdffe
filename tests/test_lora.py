"""LoRA in the C core against PEFT: the same model wrapped by peft and
adapted in the runtime trains to the same adapter values step by step (SGD
with momentum and Adam), merging keeps the function, the planner gives the
frozen weights no gradient, and every misuse is refused with nothing changed."""
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
peft = pytest.importorskip("peft")
import torch.nn as nn  # noqa: E402

import biotrain_rt as brt  # noqa: E402

S_H, S_W, D, HEADS, CLASSES = 4, 4, 8, 2, 4   # a (2, 4, 12) input: 16 tokens of 8 features
R, ALPHA = 4, 8.0


class TinyTransformer(nn.Module):
    """Every layer kind that takes an adapter: a convolution, attention, per-token linears, a head."""

    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, D, (1, 3), stride=(1, 3))
        self.ln = nn.LayerNorm(D)
        self.attn = nn.MultiheadAttention(D, HEADS, batch_first=True)
        self.fc1 = nn.Linear(D, 12)
        self.fc2 = nn.Linear(12, D)
        self.head = nn.Linear(D, CLASSES)

    def forward(self, x):
        t = self.conv(x).flatten(2).transpose(1, 2)
        h = self.ln(t)
        t = t + self.attn(h, h, h, need_weights=False)[0]
        t = t + self.fc2(nn.functional.gelu(self.fc1(t)))
        return self.head(t.mean(1))


def twin_network(m: TinyTransformer) -> brt.Network:
    net = brt.Network((2, S_H, 3 * S_W), name="tiny")
    x = net.conv2d(0, D, (1, 3), stride=(1, 3), bias=True, name="conv")
    t = net.tokens(x, name="tokens")
    h = net.layernorm(t, name="ln")
    t = net.add(t, net.mhsa(h, HEADS, name="attn"), name="res1")
    h = net.token_linear(net.gelu(net.token_linear(t, 12, name="fc1"), name="act"), D, name="fc2")
    t = net.add(t, h, name="res2")
    net.linear(net.token_mean(t, name="pool"), CLASSES, name="head")
    net.load_state_dict({k: v for k, v in m.state_dict().items()})
    return net


class LoraAttention(nn.Module):
    """LoRA on nn.MultiheadAttention's in- and out-projections written from the math (torch autograd):
    W + (alpha / r) B A for both. PEFT 0.21's MultiheadAttention adapter adds the out-projection's
    delta twice in its forward (its merge adds it and then merges the wrapped out_proj again), so the
    attention adapters are checked against this instead; every other kind against PEFT itself."""

    def __init__(self, mha: nn.MultiheadAttention, r: int, alpha: float):
        super().__init__()
        self.mha, self.scaling = mha, alpha / r
        for p in mha.parameters():
            p.requires_grad_(False)
        d = mha.embed_dim
        bound = 1.0 / np.sqrt(d)
        self.lora_A = nn.Parameter(torch.empty(r, d).uniform_(-bound, bound))
        self.lora_B = nn.Parameter(torch.zeros(3 * d, r))
        self.out_A = nn.Parameter(torch.empty(r, d).uniform_(-bound, bound))
        self.out_B = nn.Parameter(torch.zeros(d, r))

    def forward(self, q, k, v, need_weights=False):
        m = self.mha
        w_in = m.in_proj_weight + (self.lora_B @ self.lora_A) * self.scaling
        w_out = m.out_proj.weight + (self.out_B @ self.out_A) * self.scaling
        t = q.transpose(0, 1)
        y, _ = nn.functional.multi_head_attention_forward(
            t, t, t, m.embed_dim, m.num_heads, w_in, m.in_proj_bias, None, None, False, 0.0, w_out,
            m.out_proj.bias, training=False, need_weights=False)
        return y.transpose(0, 1), None


def torch_key(name: str) -> str:
    """Our adapter name -> the twin's parameter name (PEFT's, or LoraAttention's)."""
    layer, rest = name.split(".", 1)
    if layer == "attn":
        return {"lora_A.weight": "base_model.model.attn.lora_A", "lora_B.weight": "base_model.model.attn.lora_B",
                "out_proj.lora_A.weight": "base_model.model.attn.out_A",
                "out_proj.lora_B.weight": "base_model.model.attn.out_B"}[rest]
    ab, w = rest.split(".")
    return f"base_model.model.{layer}.{ab}.default.{w}"


def make_pair(seed=0, targets=("conv", "attn", "fc1", "fc2", "head")):
    """The torch twin (PEFT on every kind but attention, LoraAttention there) and the runtime's network
    with the same weights and the same adapter values."""
    torch.manual_seed(seed)
    m = TinyTransformer()
    net = twin_network(m)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pm = peft.get_peft_model(m, peft.LoraConfig(r=R, lora_alpha=ALPHA,
                                                    target_modules=[t for t in targets if t != "attn"]))
    if "attn" in targets:
        pm.base_model.model.attn = LoraAttention(pm.base_model.model.attn, R, ALPHA)
    net.add_lora(list(targets), rank=R, alpha=ALPHA, seed=seed)
    params = dict(pm.named_parameters())
    # A: both draw Kaiming-uniform; take the twin's values so that the runs start equal. B is zero in both.
    state = {}
    for l in net.layers:
        for n in l.adapter_names:
            key = f"{l.name}.{n}"
            ref = params[torch_key(key)].detach().numpy()
            assert ref.shape == l.params[n].shape, key
            if "lora_B" in n:
                assert not ref.any() and not l.params[n].any()
            state[key] = ref
    full = net.state_dict()
    full.update(state)
    net.load_state_dict(full)
    return pm, net


def data(seed, n=6):
    g = np.random.default_rng(seed)
    return g.normal(size=(n, 2, S_H, 3 * S_W)).astype(np.float32), g.integers(0, CLASSES, n)


def rel(got, ref):
    return float(np.max(np.abs(got - ref)) / max(np.max(np.abs(ref)), 1e-12))


@pytest.mark.parametrize("opt", ["sgd_momentum", "adam"])
def test_training_matches_peft_step_by_step(opt):
    pm, net = make_pair(seed=1)
    base = {k: v for k, v in net.state_dict().items() if "lora_" not in k}
    trainable = [n for n, p in pm.named_parameters() if p.requires_grad]
    if opt == "adam":
        topt, bopt = torch.optim.Adam([p for p in pm.parameters() if p.requires_grad], lr=1e-2), brt.Adam(lr=1e-2)
    else:
        topt = torch.optim.SGD([p for p in pm.parameters() if p.requires_grad], lr=5e-2, momentum=0.9)
        bopt = brt.SGD(lr=5e-2, momentum=0.9)
    tr = brt.Trainer(net, optimizer=bopt, strategy="lora", batch_size=6)
    # the adapters are what trains: 8 tensors (attention has two adapters), as in peft
    assert sorted(torch_key(k) for _, _, k, _ in tr._trainable_params()) == sorted(trainable)
    assert tr.n_trainable == sum(p.numel() for p in pm.parameters() if p.requires_grad)
    worst = 0.0
    for step in range(20):
        x, y = data(100 + step)
        loss = tr.step(x, y)
        topt.zero_grad()
        tl = nn.functional.cross_entropy(pm(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        topt.step()
        assert abs(loss - tl.item()) <= 1e-5 * max(1.0, abs(tl.item())), step
        sd = net.state_dict()
        tp = dict(pm.named_parameters())
        for _, _, key, _ in tr._trainable_params():
            ref = tp[torch_key(key)].detach().numpy()
            if step == 0 and "lora_A" in key:
                continue  # B = 0: A's first gradient is zero, A has not moved yet
            e = rel(sd[key], ref)
            worst = max(worst, e)
            assert e <= 1e-4, (step, key, e)
    tr.release()
    # the frozen base weights did not move
    after = net.state_dict()
    for k, v in base.items():
        np.testing.assert_array_equal(after[k], v, err_msg=k)
    assert any(np.abs(after[k]).max() > 0 for k in after if "lora_B" in k)
    print(f"{opt}: worst relative difference to peft over 20 steps {worst:.2e}")


def logits(net, x):
    tr = brt.Trainer(net, strategy="none", batch_size=1)
    try:
        return tr.predict_logits(x)
    finally:
        tr.release()


def test_merge_keeps_the_function_and_gives_plain_names():
    pm, net = make_pair(seed=2)
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=3e-2), strategy="lora", batch_size=6)
    for s in range(5):
        tr.step(*data(s))
    tr.release()
    x, _ = data(50, n=5)
    before = logits(net, x)
    # peft computes the same function with the same adapter values
    tp = dict(pm.named_parameters())
    with torch.no_grad():
        for k, v in net.state_dict().items():
            if "lora_" in k:
                tp[torch_key(k)].copy_(torch.from_numpy(v))
        ref = pm(torch.from_numpy(x)).numpy()
    assert rel(before, ref) <= 1e-5
    keys_before = set(net.state_dict())
    assert {k for k in keys_before if "lora_" in k} == {
        "conv.lora_A.weight", "conv.lora_B.weight", "attn.lora_A.weight", "attn.lora_B.weight",
        "attn.out_proj.lora_A.weight", "attn.out_proj.lora_B.weight", "fc1.lora_A.weight", "fc1.lora_B.weight",
        "fc2.lora_A.weight", "fc2.lora_B.weight", "head.lora_A.weight", "head.lora_B.weight"}
    merged = net.merge_lora()
    assert merged == ["conv", "attn", "fc1", "fc2", "head"]
    assert set(net.state_dict()) == {k for k in keys_before if "lora_" not in k}
    after = logits(net, x)
    assert rel(after, before) <= 1e-6, rel(after, before)
    # and peft's own merge gives the same weights (attention: W + (alpha / r) B A from the twin)
    att = pm.base_model.model.attn
    with torch.no_grad():
        expect = {"attn.in_proj_weight": att.mha.in_proj_weight + (att.lora_B @ att.lora_A) * att.scaling,
                  "attn.out_proj.weight": att.mha.out_proj.weight + (att.out_B @ att.out_A) * att.scaling}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plain = pm.merge_and_unload()
    expect.update({k: v for k, v in plain.state_dict().items() if not k.startswith("attn.")})
    sd = net.state_dict()
    for k, v in expect.items():
        np.testing.assert_allclose(sd[k], v.numpy(), rtol=1e-6, atol=1e-6, err_msg=k)
    assert {"conv.weight", "attn.in_proj_weight", "attn.out_proj.weight", "fc1.weight", "fc2.weight",
            "head.weight"} <= set(expect)


def test_planner_gives_the_frozen_weights_no_gradient():
    _, net = make_pair(seed=3)
    tr = brt.Trainer(net, optimizer=brt.Adam(lr=1e-3), strategy="lora", batch_size=2)
    rows = tr.plan.tensors()
    grads = {(r["node"], r["index"]) for r in rows if r["role"] == "param_grad"}
    moments = {(r["node"], r["index"]) for r in rows if r["role"] in ("opt_m", "opt_v")}
    for i, l in enumerate(net.layers):
        for k, name in enumerate(l.param_names):
            trains = name in l.adapter_names
            assert ((i, k) in grads) == trains, (l.name, name)
            assert ((i, k) in moments) == trains, (l.name, name)
    # the effective weights live at one step each (forward, backward), as scratch
    eff = [r for r in rows if r["role"] in ("lora_weight", "lora_weight_grad")]
    assert eff and all(r["first"] == r["last"] and r["kind"] == "scratch" for r in eff)
    tr.release()
    full = brt.Trainer(net, optimizer=brt.Adam(lr=1e-3), strategy="full", batch_size=2)
    assert tr.plan.peak_bytes < full.plan.peak_bytes
    full.release()


def test_strategies_resolve_to_slots():
    _, net = make_pair(seed=4, targets=("attn", "fc1", "fc2"))
    def trained(strategy):
        tr = brt.Trainer(net, strategy=strategy, batch_size=2)
        try:
            return sorted(k for _, _, k, _ in tr._trainable_params())
        finally:
            tr.release()
    lora = trained("lora")
    assert lora == sorted(["attn.lora_A.weight", "attn.lora_B.weight", "attn.out_proj.lora_A.weight",
                           "attn.out_proj.lora_B.weight", "fc1.lora_A.weight", "fc1.lora_B.weight",
                           "fc2.lora_A.weight", "fc2.lora_B.weight"])
    assert trained("lora+last") == sorted(lora + ["head.weight", "head.bias"])
    # the layers after the last adapted one: the pool has none, the head has two
    assert trained("lora+head") == sorted(lora + ["head.weight", "head.bias"])
    assert trained(brt.FineTune(lora=True, bias=True)) == sorted(
        lora + ["attn.in_proj_bias", "attn.out_proj.bias", "fc1.bias", "fc2.bias"])
    assert trained(brt.FineTune(layers=lambda l: l.kind == "layernorm")) == ["ln.bias", "ln.weight"]
    assert trained(["fc2"]) == sorted(["fc2.weight", "fc2.bias", "fc2.lora_A.weight", "fc2.lora_B.weight"])


def _snapshot(net):
    return [(l.name, sorted(l.params), list(l.lora)) for l in net.layers], net.state_dict()


def _unchanged(net, snap):
    now = _snapshot(net)
    assert now[0] == snap[0]
    assert set(now[1]) == set(snap[1])
    for k in snap[1]:
        np.testing.assert_array_equal(now[1][k], snap[1][k])


def test_refusals_name_the_layer_and_change_nothing():
    torch.manual_seed(0)
    net = twin_network(TinyTransformer())
    snap = _snapshot(net)
    cases = [
        (dict(layers=["fc1"], rank=0), r"rank must be a positive integer"),
        (dict(layers=["head"], rank=5), r"rank 5 is above min\(out, in\) = min\(4, 8\) of .head.weight."),
        (dict(layers=["fc1", "act"], rank=2), r"layer 'act' \(gelu\) takes no LoRA adapter"),
        (dict(layers=["fc1", "nope"], rank=2), r"no layer named 'nope'"),
        (dict(layers=["fc1"], rank=2, alpha=float("nan")), r"alpha must be positive"),
    ]
    for kw, msg in cases:
        with pytest.raises(ValueError, match=msg):
            net.add_lora(**kw)
        _unchanged(net, snap)
    with pytest.raises(ValueError, match=r"no LoRA adapters to merge.*add_lora"):
        net.merge_lora()
    with pytest.raises(ValueError, match=r"strategy 'lora'.*no LoRA adapters; add them first"):
        brt.Trainer(net, strategy="lora")
    # a LoRA state_dict into a network without adapters
    _, adapted = make_pair(seed=5)
    with pytest.raises(ValueError, match=r"LoRA adapters for layers .*'attn'.*add_lora"):
        net.load_state_dict(adapted.state_dict())
    _unchanged(net, snap)
    # a second adapter on the same weight
    net.add_lora(["fc1"], rank=2)
    snap2 = _snapshot(net)
    with pytest.raises(ValueError, match=r"'fc1' has an adapter on 'weight' already"):
        net.add_lora(["fc2", "fc1"], rank=2)
    _unchanged(net, snap2)
    # grouped convolutions and fixed point
    g = brt.Network((4, 1, 16), name="grouped")
    g.linear(g.conv2d(0, 4, (1, 3), groups=2, name="dw"), 2, name="out")
    with pytest.raises(ValueError, match=r"'dw' \(conv2d \(a grouped convolution\)\) takes no LoRA adapter"):
        g.add_lora(["dw"], rank=1)
    cnn = brt.models.emgnet(seed=0)
    cnn.add_lora(rank=2)
    with pytest.raises(ValueError, match=r"LoRA adapters, which train in float32 only.*merge_lora"):
        brt.Trainer(cnn, strategy="lora", dtype="fixed")


def test_the_c_graph_refuses_what_python_refuses():
    """The same checks in the C core, for the firmware and the plain-C face."""
    from biotrain_rt import _core
    g = _core.Graph(1, 4, 8)
    g.add("token_linear", [0], {"out_f": 6, "has_bias": 1}, "fc")
    g.add("gelu", [1], {}, "act")
    g.add("linear", [2], {"out_f": 3, "has_bias": 1}, "head")
    g.finish()
    for node, slot, rank, msg in ((1, 0, 0, "out of range"), (1, 0, 9, "out of range"), (1, 1, 2, "unsupported"),
                                  (2, 0, 1, "unsupported"), (9, 0, 1, "out of range")):
        with pytest.raises(ValueError, match=msg):
            g.add_lora(node, slot, rank, 8.0)
    assert g.node(1)["lora"] == []
    g.add_lora(1, 0, 2, 4.0)
    assert g.node(1)["lora"] == [(0, 2, 4.0)] and g.node(1)["param_numel"] == [48, 6, 16, 12]
    with pytest.raises(RuntimeError, match="out of order"):
        g.add_lora(1, 0, 2, 4.0)
    # freezing the head's weight while its bias trains: the kernels write every weight gradient
    with pytest.raises(ValueError, match="set_trainable_mask"):
        g.set_trainable_mask(3, 0b10)
    g.set_trainable_mask(1, 0b1100)   # fc: its adapter only
