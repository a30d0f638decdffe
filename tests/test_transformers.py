"""The transformers of the zoo (CCT-2, the EMG transformer) against PyTorch:
parameter counts, and 20 training steps side by side with SGD + momentum
and with Adam, every parameter within 1e-4 relative at every step.

The PyTorch models (torch_transformers.py) are written from the papers'
descriptions, independently of the runtime; the runtime's initial weights are
copied in."""
import numpy as np
import pytest
import torch

import biotrain_rt as brt
from torch_transformers import TorchCCT2, TorchEMGTransformer, _cct_pairs, _emg_pairs, load_into

F = torch.nn.functional
torch.set_num_threads(1)


MODELS = {
    "cct2": (lambda: brt.models.cct2(seed=1), TorchCCT2, _cct_pairs, (3, 32, 32), 10),
    "emg_transformer": (lambda: brt.models.emg_transformer(seed=1), TorchEMGTransformer, _emg_pairs, (1, 8, 200), 6),
}


def test_parameter_counts():
    assert brt.models.cct2().n_params() == 283_723
    assert brt.models.emg_transformer().n_params() == 18_022
    for name, (make, tmod, pairs, _, _) in MODELS.items():
        net, tm = make(), tmod()
        n_torch = sum(p.numel() for p in tm.parameters() if p.requires_grad)
        if name == "cct2":   # nn.MultiheadAttention's q/k/v bias, held at zero and frozen here
            n_torch -= sum(b.attn.in_proj_bias.numel() for b in tm.blocks)
        assert net.n_params() == n_torch, name
        assert {k for k, _ in pairs(tm)} == set(net.state_dict()), name


@pytest.mark.parametrize("opt", ["sgd", "adam"])
@pytest.mark.parametrize("model", list(MODELS))
def test_twenty_steps_match_pytorch(model, opt):
    make, tmod, pairs, shape, classes = MODELS[model]
    net, tm = make(), tmod()
    load_into(net, tm, pairs)
    batch = 2 if model == "cct2" else 4
    if opt == "sgd":
        ours = brt.SGD(lr=0.01, momentum=0.9)
        theirs = torch.optim.SGD([p for p in tm.parameters() if p.requires_grad], lr=0.01, momentum=0.9)
    else:
        ours = brt.Adam(lr=1e-3)
        theirs = torch.optim.Adam([p for p in tm.parameters() if p.requires_grad], lr=1e-3)
    tr = brt.Trainer(net, optimizer=ours, batch_size=batch)
    rng = np.random.default_rng(5)
    worst = 0.0
    for step in range(20):
        x = rng.standard_normal((batch,) + shape).astype(np.float32)
        y = rng.integers(0, classes, batch)
        loss = tr.step(x, y)
        theirs.zero_grad()
        tl = F.cross_entropy(tm(torch.from_numpy(x)), torch.from_numpy(y))
        tl.backward()
        theirs.step()
        assert abs(loss - tl.item()) <= 1e-4 * max(1.0, abs(tl.item())), (step, loss, tl.item())
        sd = net.state_dict()
        for k, p in pairs(tm):
            if opt == "adam" and k == "attention_pool.bias":
                # softmax over tokens ignores a bias shared by every token: its gradient is 0 in exact
                # arithmetic and rounding noise in float32 on both sides, which Adam scales up to +-lr.
                continue
            a, b = sd[k].reshape(-1).astype(np.float64), p.detach().numpy().reshape(-1).astype(np.float64)
            rel = np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-6)
            worst = max(worst, rel)
            assert rel <= 1e-4, (model, opt, step, k, rel)
    print(f"{model} {opt}: worst relative parameter difference over 20 steps {worst:.2e}")
