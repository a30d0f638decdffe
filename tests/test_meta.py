"""Meta-learning (first-order MAML) in the C core, against the same algorithm
written independently in PyTorch with the same sampled indices."""
import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import biotrain_rt as brt
from biotrain_rt.meta import MetaConfig, meta_train

torch.set_num_threads(1)


def _data(n=120, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 6, n)
    X = (rng.uniform(0, 1.5, (n, 1, 8, 8)) + 0.3 * y[:, None, None, None] / 6).astype(np.float32)
    return X, y


def _tasks():
    # three "subjects" of 40 windows: 12 support, the rest query
    return [(np.arange(40 * t, 40 * t + 12), np.arange(40 * t + 12, 40 * t + 40)) for t in range(3)]


def _torch_fomaml(model, X, y, tasks, cfg, seed, pool):
    """First-order MAML from the definition: the outer Adam gets the query
    gradient at the fine-tuned copy's weights (+ mix x the plain gradient)."""
    rng = np.random.default_rng(seed + 100)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    outer = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    for _ in range(cfg.episodes):
        sup, qry = tasks[rng.integers(len(tasks))]
        fast = copy.deepcopy(model)
        inner = torch.optim.Adam(fast.parameters(), lr=cfg.inner_lr)
        for _ in range(cfg.inner_steps):
            b = torch.from_numpy(rng.choice(sup, size=min(cfg.inner_batch, len(sup)), replace=False))
            inner.zero_grad()
            F.cross_entropy(fast(Xt[b]), yt[b]).backward()
            inner.step()
        q = torch.from_numpy(rng.choice(qry, size=min(cfg.query_batch, len(qry)), replace=False))
        fast.zero_grad()
        F.cross_entropy(fast(Xt[q]), yt[q]).backward()
        outer.zero_grad()
        if cfg.mix > 0:
            b = torch.from_numpy(rng.choice(pool, size=min(cfg.query_batch, len(pool)), replace=False))
            (cfg.mix * F.cross_entropy(model(Xt[b]), yt[b])).backward()
        for p, pf in zip(model.parameters(), fast.parameters()):
            p.grad = pf.grad.clone() if p.grad is None else p.grad + pf.grad
        outer.step()
    return model


@pytest.mark.parametrize("mix", [0.0, 1.0])
def test_meta_train_matches_torch_first_order_maml(mix):
    X, y = _data()
    tasks = _tasks()
    cfg = MetaConfig(episodes=6, lr=3e-3, inner_steps=5, inner_lr=1e-2, inner_batch=6, query_batch=16, mix=mix)
    net = brt.models.emgnet_logenergy(seed=4)
    ref = brt.to_torch(net)
    start = net.state_dict()
    meta_train(net, X, y, tasks, cfg, make_copy=lambda: brt.models.emgnet_logenergy(seed=9), seed=1,
               pool=np.arange(120))
    _torch_fomaml(ref, X, y, tasks, cfg, seed=1, pool=np.arange(120))
    got = net.state_dict()
    want = {k.replace("_", "."): v.detach().numpy() for k, v in ref.state_dict().items()}
    moved = 0.0
    for k in start:
        np.testing.assert_allclose(got[k], want[k].reshape(got[k].shape), rtol=1e-3, atol=2e-5, err_msg=k)
        moved = max(moved, float(np.abs(got[k] - start[k]).max()))
    assert moved > 1e-3  # the episodes did move the weights (by ~lr per step)


def test_meta_train_zero_episodes_is_a_no_op_and_bad_input_is_refused():
    X, y = _data()
    net = brt.models.emgnet_logenergy(seed=4)
    start = net.state_dict()
    meta_train(net, X, y, _tasks(), MetaConfig(episodes=0), make_copy=brt.models.emgnet_logenergy)
    assert all(np.array_equal(start[k], net.state_dict()[k]) for k in start)
    with pytest.raises(ValueError, match="at least one task"):
        meta_train(net, X, y, [], MetaConfig(episodes=2), make_copy=brt.models.emgnet_logenergy)
    with pytest.raises(ValueError, match="task 1 has 12 support and 0 query"):
        meta_train(net, X, y, [_tasks()[0], (np.arange(12), np.arange(0))], MetaConfig(episodes=2),
                   make_copy=brt.models.emgnet_logenergy)
    with pytest.raises(ValueError, match="inner_steps"):
        MetaConfig(episodes=5, inner_steps=0)
    with pytest.raises(ValueError, match="lr > 0"):
        MetaConfig(episodes=5, lr=-1.0)
    bad = y.copy()
    bad[3] = 7
    with pytest.raises(ValueError, match="label 7"):
        meta_train(net, X, bad, [(np.arange(12), np.arange(12, 40))], MetaConfig(episodes=1, inner_batch=12),
                   make_copy=brt.models.emgnet_logenergy)
    # a refused episode leaves no trainer attached to the network
    assert net._live is None
