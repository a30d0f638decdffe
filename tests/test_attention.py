"""Multi-head self-attention (the mhsa op) end to end: against
torch.nn.MultiheadAttention through the whole executor (forward and every
gradient, in float64 on the torch side), the one-head backward against the
whole-map backward (the same bits), the planner's lifetimes (scratch at the
backward step only), and the refusals. The op's kernels against the NumPy
reference and finite differences are rows of tests/test_ops.py."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

import biotrain_rt as brt
from biotrain_rt import _core


def rel_err(got, ref):
    got, ref = np.asarray(got, np.float64).ravel(), np.asarray(ref, np.float64).ravel()
    return float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-30))


def attention_net(S, D, heads, keep_probs=False, rope=False, bias=True, seed=0):
    """scale (a 1x1 conv: the first attention's input gradient flows) -> two
    attention layers; the logits are the second one's S x D outputs."""
    net = brt.Network((1, S, D), name="attn", seed=seed)
    x = net.conv2d(0, 1, (1, 1), bias=True, name="scale")
    x = net.mhsa(x, heads, bias=bias, rope=rope, keep_probs=keep_probs, name="attn1")
    net.mhsa(x, heads, qkv_bias=False, out_bias=True, rope=rope, keep_probs=keep_probs, name="attn2")
    return net.finish()


class TorchAttention(torch.nn.Module):
    def __init__(self, S, D, heads, bias):
        super().__init__()
        self.scale = torch.nn.Conv2d(1, 1, 1, bias=True)
        self.attn1 = torch.nn.MultiheadAttention(D, heads, bias=bias, batch_first=True)
        self.attn2 = torch.nn.MultiheadAttention(D, heads, bias=True, batch_first=True)

    def forward(self, x):
        h = self.scale(x)[:, 0]                       # [N, S, D]
        h = self.attn1(h, h, h, need_weights=False)[0]
        h = self.attn2(h, h, h, need_weights=False)[0]
        return h.reshape(h.shape[0], -1)


def torch_twin(net, S, D, heads, bias):
    """The torch module with the network's parameters, by state_dict key
    (attn2's q/k/v have no bias in the network: zeros on the torch side)."""
    m = TorchAttention(S, D, heads, bias).double()
    sd = {k: torch.from_numpy(v.astype(np.float64)) for k, v in net.state_dict().items()}
    own = m.state_dict()
    missing = set(own) - set(sd)
    assert missing == {"attn2.in_proj_bias"}, missing  # every other key matches PyTorch's names
    sd["attn2.in_proj_bias"] = torch.zeros_like(own["attn2.in_proj_bias"])
    m.load_state_dict(sd)
    return m


@pytest.mark.parametrize("S,D,heads,bias", [(10, 16, 4, True), (7, 12, 1, False)], ids=["H4-bias", "H1-nobias"])
def test_against_torch_multihead_attention(S, D, heads, bias):
    """Forward logits and the gradient of every parameter, through the
    executor (micro-batches of one sample accumulated), within 1e-5 relative
    of nn.MultiheadAttention in float64."""
    net = attention_net(S, D, heads, bias=bias)
    rng = np.random.default_rng(3)
    for l in net.layers[1:]:                    # biases away from zero, so their gradients are tested too
        for k in l.params:
            l.params[k] = (l.params[k] + rng.normal(0, 0.1, l.params[k].shape)).astype(np.float32)
    x = rng.standard_normal((3, 1, S, D)).astype(np.float32)
    y = rng.integers(0, S * D, 3)
    m = torch_twin(net, S, D, heads, bias)
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), batch_size=3)
    logits = tr.predict_logits(x)
    xt = torch.from_numpy(x.astype(np.float64))
    out = m(xt)
    assert rel_err(logits, out.detach().numpy()) <= 1e-5
    loss = F.cross_entropy(out, torch.from_numpy(y).long())
    loss.backward()
    grads = tr.gradients(x, y)
    torch_grads = {k: p.grad.numpy() for k, p in m.named_parameters()}
    assert set(grads) == set(torch_grads) - {"attn2.in_proj_bias"}
    worst = {k: rel_err(g, torch_grads[k]) for k, g in grads.items()}
    print({k: f"{v:.1e}" for k, v in worst.items()})
    assert max(worst.values()) <= 1e-5, worst
    tr.release()


def test_one_head_backward_equals_whole_map_backward():
    """The backward that recomputes one head's map from the row statistics
    gives the bits of the one that keeps every map (RoPE on, three steps of
    Adam), with less memory."""
    S, D, H = 12, 16, 4
    rng = np.random.default_rng(5)
    x = rng.standard_normal((4, 1, S, D)).astype(np.float32)
    y = rng.integers(0, S * D, 4)
    runs = []
    for keep in (False, True):
        tr = brt.Trainer(attention_net(S, D, H, keep_probs=keep, rope=True), optimizer=brt.Adam(lr=1e-2),
                         batch_size=4)
        losses = [tr.step(x, y) for _ in range(3)]
        runs.append((losses, tr.net.state_dict(), tr.plan.peak_bytes))
        tr.release()
    (l0, s0, p0), (l1, s1, p1) = runs
    assert l0 == l1
    for k in s0:
        assert np.array_equal(s0[k], s1[k]), k
    assert p0 < p1


def test_planner_keeps_the_head_map_at_the_backward_step_only():
    S, D, H = 16, 8, 2
    for keep in (0, 1):
        tr = brt.Trainer(attention_net(S, D, H, keep_probs=bool(keep)), batch_size=2, micro_batch=2)
        n = len(tr.net.layers)
        ts = {(t["node"], t["role"]): t for t in tr.plan.tensors()}
        for node in (2, 3):
            sc = ts[(node, "attn_scratch")]
            assert sc["kind"] == "scratch" and sc["first"] == sc["last"] == 2 * n - node
            hd = D // H
            assert sc["bytes"] == (D + H * S + S * hd + 2 * hd) * 4      # no S x S map, kept or not
            qkv = ts[(node, "qkv")]
            assert qkv["first"] == node and qkv["last"] == 2 * n - node and qkv["bytes"] == 2 * S * 3 * D * 4
            if keep:
                assert ts[(node, "probs")]["bytes"] == 2 * H * S * S * 4 and (node, "row_stats") not in ts
            else:
                assert ts[(node, "row_stats")]["bytes"] == 2 * H * S * 2 * 4 and (node, "probs") not in ts
        tr.release()
    # frozen and with no gradient below: nothing for the backward is planned
    tr = brt.Trainer(attention_net(S, D, H), strategy="none", batch_size=2)
    roles = {t["role"] for t in tr.plan.tensors() if t["node"] in (2, 3)}
    assert roles.isdisjoint({"attn_scratch", "row_stats", "grad_out"}), roles
    tr.release()


def test_frozen_attention_still_passes_its_input_gradient():
    """attn2 frozen, attn1 and the scale trained: attn2's input gradient
    computes the attention backward itself (no weight gradient ran first)."""
    S, D, H = 6, 8, 2
    net = attention_net(S, D, H)
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 1, S, D)).astype(np.float32)
    y = rng.integers(0, S * D, 2)
    m = torch_twin(net, S, D, H, True)
    F.cross_entropy(m(torch.from_numpy(x.astype(np.float64))), torch.from_numpy(y).long()).backward()
    tr = brt.Trainer(net, optimizer=brt.SGD(lr=0.1), strategy=["scale", "attn1"], batch_size=2)
    grads = tr.gradients(x, y)
    assert set(grads) == {"scale.weight", "scale.bias", "attn1.in_proj_weight", "attn1.in_proj_bias",
                          "attn1.out_proj.weight", "attn1.out_proj.bias"}
    tg = dict(m.named_parameters())
    for k, g in grads.items():
        assert rel_err(g, tg[k].grad.numpy()) <= 1e-5, k
    tr.release()


def test_refusals_name_the_layer_and_the_fix():
    net = brt.Network((1, 8, 12))
    with pytest.raises(ValueError, match=r"num_heads=5 does not divide the embedding of 12.*\[1, 2, 3, 4, 6, 12\]"):
        net.mhsa(0, 5)
    with pytest.raises(ValueError, match=r"head size 12 / 4 = 3 is odd"):
        net.mhsa(0, 4, rope=True)
    with pytest.raises(ValueError, match="positive integer"):
        net.mhsa(0, 0)
    assert len(net.layers) == 1                  # nothing was added
    img = brt.Network((3, 8, 12))
    with pytest.raises(ValueError, match=r"shape \(3, 8, 12\), not a token sequence \(1, S tokens, D features\)"):
        img.mhsa(0, 2)
    # the C core refuses the same on its own, naming the layer
    g = _core.Graph(1, 8, 12)
    with pytest.raises(ValueError, match="mhsa layer 'a'"):
        g.add("mhsa", [0], {"heads": 5}, "a")
    with pytest.raises(ValueError, match="mhsa layer 'b'"):
        g.add("mhsa", [0], {"heads": 4, "rope": 1}, "b")
    with pytest.raises(ValueError, match="mhsa layer 'c'"):
        _core.Graph(2, 8, 12).add("mhsa", [0], {"heads": 2}, "c")
    with pytest.raises(ValueError, match="mhsa layer 'd'"):
        g.add("mhsa", [0], {"heads": 2, "keep_probs": 2}, "d")
    assert g.n_nodes == 1
    # fixed point has no attention kernels: refused before anything runs, naming the layer
    ok = brt.Network((1, 8, 12))
    ok.mhsa(0, 2, name="attention")
    with pytest.raises(ValueError, match=r"fixed training has no kernels for layers \['attention \(mhsa\)'\]"):
        brt.Trainer(ok.finish(), dtype="fixed")


def test_op_call_refuses_a_wrong_parameter_count():
    x = np.zeros((1, 1, 4, 8), np.float32)
    with pytest.raises(ValueError, match="3 parameter tensor"):
        _core.op_call("mhsa", [x], dict(heads=2, qkv_bias=1, out_bias=0), params=[np.zeros((24, 8), np.float32)])
