"""Optimizer settings. The updates themselves run in the C core (csrc/src/optim/)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple


def _check(name, value, lo, hi, hi_open=False):
    if not isinstance(value, (int, float)) or not math.isfinite(value) or value < lo or (
            value >= hi if hi_open else value > hi):
        bound = f"[{lo}, {hi})" if hi_open else f"[{lo}, {hi}]"
        raise ValueError(f"{name} must be a finite number in {bound}, got {value!r}")


@dataclass
class SGD:
    """Stochastic gradient descent as ``torch.optim.SGD`` (dampening 0, no Nesterov)."""
    lr: float = 1e-3
    momentum: float = 0.0
    weight_decay: float = 0.0
    kind: str = "sgd"

    def __post_init__(self):
        _check("SGD lr", self.lr, 0.0, float("inf"), hi_open=True)
        _check("SGD momentum", self.momentum, 0.0, 1.0, hi_open=True)
        _check("SGD weight_decay", self.weight_decay, 0.0, float("inf"), hi_open=True)

    @property
    def betas(self) -> Tuple[float, float]:
        return (0.9, 0.999)

    eps = 1e-8


@dataclass
class Adam:
    """Adam as ``torch.optim.Adam`` (L2 weight decay added to the gradient)."""
    lr: float = 1e-3
    betas: Tuple[float, float] = (0.9, 0.999)
    eps: float = 1e-8
    weight_decay: float = 0.0
    kind: str = "adam"

    def __post_init__(self):
        _check("Adam lr", self.lr, 0.0, float("inf"), hi_open=True)
        _check("Adam beta1", self.betas[0], 0.0, 1.0, hi_open=True)
        _check("Adam beta2", self.betas[1], 0.0, 1.0, hi_open=True)
        _check("Adam eps", self.eps, 1e-30, float("inf"), hi_open=True)
        _check("Adam weight_decay", self.weight_decay, 0.0, float("inf"), hi_open=True)

    momentum = 0.0
