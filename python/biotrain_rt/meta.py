"""Adaptation-aware pretraining: first-order MAML over tasks, in the C core.

Plain pretraining makes a model good *as it is* on the training subjects.
What a new user gets, though, is the model after a few fine-tuning steps on
their first seconds of data. First-order MAML (Finn et al. 2017; the
first-order form of Nichol et al. 2018) trains for that: each episode takes
one training task (a subject), fine-tunes a copy of the model on its support
set (the calibration protocol, shortened), and moves the model along the
gradient of the copy's loss on the task's query set (that subject's next
recording). ``mix`` adds the ordinary loss on a batch of every task's data to
each outer step, so the model stays good before adaptation too.

Every forward and backward runs in the C core (``Trainer.gradients`` /
``Trainer.apply_gradients``); the outer optimizer is the core's Adam.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional, Sequence, Tuple

import numpy as np

from .network import Network
from .optim import Adam
from .train import Trainer


@dataclass
class MetaConfig:
    """Settings of the meta-learning phase; ``episodes=0`` turns it off."""
    episodes: int = 0
    lr: float = 3e-4           # outer Adam
    inner_steps: int = 30      # fine-tuning steps of the copy (Adam)
    inner_lr: float = 4e-3
    inner_batch: int = 10
    query_batch: int = 64
    mix: float = 1.0           # weight of the ordinary loss on a batch of all tasks

    def __post_init__(self):
        if self.episodes < 0 or self.inner_steps < 1 or self.inner_batch < 1 or self.query_batch < 1:
            raise ValueError(f"meta-learning needs episodes >= 0 and inner_steps, inner_batch, query_batch >= 1; "
                             f"got {self}")
        if not (self.lr > 0 and self.inner_lr > 0 and self.mix >= 0):
            raise ValueError(f"meta-learning needs lr > 0, inner_lr > 0 and mix >= 0; got {self}")


Task = Tuple[np.ndarray, np.ndarray]  # (support indices, query indices) into X


def meta_train(net: Network, X: np.ndarray, y: np.ndarray, tasks: Sequence[Task], cfg: MetaConfig,
               make_copy: Callable[[], Network], seed: int = 0, pool: Optional[np.ndarray] = None,
               progress: Optional[Callable[[int], None]] = None) -> Network:
    """Runs ``cfg.episodes`` first-order MAML episodes on ``net`` in place.

    ``make_copy()`` returns a fresh network of the same architecture (its
    weights are overwritten); ``pool`` holds the indices the ``mix`` batches
    are drawn from (default: every support and query index)."""
    if cfg.episodes == 0:
        return net
    if not tasks:
        raise ValueError("meta-learning needs at least one task (support, query); none was given")
    for t, (sup, qry) in enumerate(tasks):
        if len(sup) == 0 or len(qry) == 0:
            raise ValueError(f"meta-learning task {t} has {len(sup)} support and {len(qry)} query samples; "
                             "each needs at least one of both")
    if pool is None:
        pool = np.unique(np.concatenate([np.concatenate(t) for t in tasks]))
    rng = np.random.default_rng(seed + 100)
    outer = Trainer(net, optimizer=Adam(lr=cfg.lr), strategy="full", batch_size=cfg.query_batch, seed=seed)
    fast_net = make_copy()
    try:
        for ep in range(cfg.episodes):
            sup, qry = tasks[rng.integers(len(tasks))]
            fast_net.load_state_dict(net.state_dict())
            fast = Trainer(fast_net, optimizer=Adam(lr=cfg.inner_lr), strategy="full",
                           batch_size=cfg.inner_batch, seed=seed)
            for _ in range(cfg.inner_steps):
                b = rng.choice(sup, size=min(cfg.inner_batch, len(sup)), replace=False)
                fast.step(X[b], y[b])
            q = rng.choice(qry, size=min(cfg.query_batch, len(qry)), replace=False)
            grads = fast.gradients(X[q], y[q])
            fast.release()
            if cfg.mix > 0:
                b = rng.choice(pool, size=min(cfg.query_batch, len(pool)), replace=False)
                g_mix = outer.gradients(X[b], y[b])
                grads = {k: v + np.float32(cfg.mix) * g_mix[k] for k, v in grads.items()}
            outer.apply_gradients(grads)
            if progress is not None:
                progress(ep + 1)
    finally:
        outer.release()
    return net
