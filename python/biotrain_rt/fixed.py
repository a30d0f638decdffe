"""Fixed-point training: the same Network, plan and training loop as
:class:`~biotrain_rt.trainer.Trainer`, run by the integer executor of the C
core (``csrc/include/biotrain/exec_fixed.h``, kernels in ``kernels_fixed.h``).

Activations and their gradients are int8 with one power-of-two scale per
tensor, adapted after every step; weights live as int32 masters (about 24
significant bits, so small SGD updates are kept) and the conv/linear kernels
read an int8 copy; gradients and momentum are int32. Floats exist only here,
at the edges: the initial weights and the data are turned into integers
(round half to even, saturating, counted), the loss and the weights are read
back as floats.

Use it as ``brt.Trainer(net, ..., dtype="fixed")`` or directly::

    tr = brt.FixedTrainer(net, optimizer=brt.SGD(lr=0.01, momentum=0.9), batch_size=8)
    loss = tr.step(x, y)
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Union

import numpy as np

from . import _core
from .network import PARAM_NAMES, Network
from .optim import SGD, Adam
from .plan import PlanInfo
from .reference import fixed as qref
from .trainer import Strategy, Trainer, resolve_strategy

#: Masters are stored with their largest magnitude in [2^22, 2^23): 8 bits of
#: headroom for the weights to grow, ~22 bits of precision below the largest.
MASTER_TOP = 23
#: Inputs enter as int16 with their largest magnitude in [2^14, 2^15).
INPUT_TOP = 15


def master_frac(values: np.ndarray) -> int:
    """The fractional bits that put max|values| in [2^22, 2^23) (24 for all zeros)."""
    m = float(np.max(np.abs(values))) if values.size else 0.0
    if m == 0.0:
        return 24
    f = MASTER_TOP - 1 - math.floor(math.log2(m))
    while m * 2.0 ** f >= 2 ** MASTER_TOP:   # log2 rounding at exact powers of two
        f -= 1
    return int(min(max(f, qref.FRAC_MIN), qref.FRAC_MAX))


def input_frac_for(x: np.ndarray) -> int:
    m = float(np.max(np.abs(x))) if x.size else 0.0
    if m == 0.0:
        return 8
    f = INPUT_TOP - 1 - math.floor(math.log2(m))
    while m * 2.0 ** f >= 2 ** INPUT_TOP - 1:
        f -= 1
    return int(min(max(f, qref.FRAC_MIN), qref.FRAC_MAX))


class FixedTrainer(Trainer):
    """Fine-tunes a :class:`Network` in fixed point (see the module docstring).

    Parameters as :class:`Trainer` (``dtype`` must be ``"fixed"``), plus
    input_frac : fractional bits of the int16 input; by default chosen from
        the first data seen so that it fits (later data beyond it saturate,
        counted in ``input_saturated``).
    calibration_rounds : passes of forward and backward, before the first
        update, that set the scales of every tensor (over the first batch
        given to ``step``, or up to ``calibration_samples`` samples spread over
        the data given to ``fit``).
    """

    def __init__(self, net: Network, optimizer: Union[SGD, Adam, None] = None, strategy: Strategy = "full",
                 batch_size: int = 8, micro_batch: Optional[int] = None, seed: int = 0, reuse: bool = True,
                 dtype: str = "fixed", input_frac: Optional[int] = None, calibration_rounds: int = 3,
                 calibration_samples: int = 256):
        if not isinstance(net, Network):
            raise TypeError(f"FixedTrainer needs a biotrain_rt Network, got {type(net).__name__}")
        if dtype != "fixed":
            raise ValueError(f"FixedTrainer trains in dtype 'fixed', got '{dtype}'")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.net = net.finish()
        self.optimizer = optimizer if optimizer is not None else SGD(lr=1e-3)
        if not isinstance(self.optimizer, SGD):
            raise ValueError("fixed-point training runs SGD (with momentum and weight decay); "
                             f"got {type(self.optimizer).__name__}")
        bad = [l.name for l in net.layers if l.kind in ("batchnorm", "gelu")]
        if bad:
            raise ValueError(f"fixed-point training does not run layers {bad} (batchnorm, gelu); "
                             "use groupnorm and relu/elu")
        if input_frac is not None:
            qref.check_frac(input_frac)
        if calibration_rounds < 1:
            raise ValueError(f"calibration_rounds must be >= 1, got {calibration_rounds}")
        self.strategy = strategy
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.dtype = "fixed"
        micro_batch = 1 if micro_batch is None else int(micro_batch)
        if micro_batch < 1 or micro_batch > self.batch_size:
            raise ValueError(f"micro_batch must be in [1, batch_size={self.batch_size}], got {micro_batch}")
        self.micro_batch = micro_batch
        self.trainable_nodes = resolve_strategy(net, strategy)
        self.graph = net.core_graph(self.trainable_nodes)
        opt = self.optimizer
        self._core_plan = _core.Plan(self.graph, micro_batch, "sgd", bool(opt.momentum > 0), bool(reuse), "fixed")
        self.plan = PlanInfo(self._core_plan, [l.name for l in net.layers])
        self.session = _core.FixedSession(self._core_plan, None, lr=qref.decode_f32(opt.lr),
                                          momentum=qref.decode_f32(opt.momentum),
                                          weight_decay=qref.decode_f32(opt.weight_decay), seed=self.seed)
        self.input_frac = input_frac
        self.calibration_rounds = int(calibration_rounds)
        self.calibration_samples = max(1, int(calibration_samples))
        self.calibrated = False
        self.input_saturated = 0      # float inputs clamped when entering int16
        if net._live is not None and net._live is not self:
            net._live._pull_params()
        self._push_params()
        net._live = self
        self.history: Dict[str, list] = {"loss": []}

    # ---------------------------------------------------------- parameters
    def _push_params(self) -> None:
        for i, l in enumerate(self.net.layers):
            for k, name in enumerate(PARAM_NAMES):
                if name in l.params:
                    v = np.asarray(l.params[name], dtype=np.float32).reshape(-1)
                    f = master_frac(v)
                    self.session.param(i, k)[...] = qref.to_fixed(v, f, qref.Q31_MAX).astype(np.int32)
                    self.session.set_param_frac(i, k, f)

    def _pull_params(self) -> None:
        for i, l in enumerate(self.net.layers):
            for k, name in enumerate(PARAM_NAMES):
                if name in l.params:
                    q = np.array(self.session.param(i, k), dtype=np.float64)
                    v = q * 2.0 ** -self.session.param_frac(i, k)
                    l.params[name] = v.astype(np.float32).reshape(l.params[name].shape)

    @property
    def lr(self) -> float:
        m, e = self.session.lr
        return float(m * 2.0 ** -e)

    def set_lr(self, lr: float) -> None:
        if not np.isfinite(lr) or lr < 0:
            raise ValueError(f"learning rate must be finite and >= 0, got {lr!r}")
        self.session.set_lr(qref.decode_f32(lr))
        self.optimizer.lr = float(lr)

    # ---------------------------------------------------------- data
    def quantize_input(self, x) -> tuple:
        """(int16 array, its fractional bits): how a float batch enters the
        integer executor. Sets the input scale on first use."""
        x = self._as_x(x, "FixedTrainer")
        if self.input_frac is None:
            self.input_frac = input_frac_for(x)
        st = qref.Stats()
        q = qref.to_fixed(x, self.input_frac, qref.Q15_MAX, st).astype(np.int16)
        self.input_saturated += st.saturated
        return q, self.input_frac

    def _calibrate(self, xq, y) -> None:
        """Sets every scale from data before the first update: up to
        `calibration_samples` samples spread evenly over the data given."""
        if not self.calibrated:
            n = len(y)
            idx = np.unique(np.linspace(0, n - 1, min(n, self.calibration_samples)).astype(np.int64))
            self.session.calibrate(np.ascontiguousarray(xq[idx]), self.input_frac, np.ascontiguousarray(y[idx]),
                                   self.calibration_rounds)
            self.calibrated = True

    def calibrate(self, X, y) -> None:
        """Sets every tensor's scale from (X, y) now (forward and backward
        passes, no update); otherwise the first step or fit does it."""
        X = self._as_x(X, "FixedTrainer.calibrate")
        y = self._as_y(y, X.shape[0], "FixedTrainer.calibrate")
        xq, _ = self.quantize_input(X)
        self.calibrated = False
        self._calibrate(xq, y)

    # ---------------------------------------------------------- training
    def step(self, x, y) -> float:
        """One optimizer step; returns the batch's mean loss before the update.
        The first call first calibrates the scales on this batch."""
        x = self._as_x(x, "FixedTrainer.step")
        y = self._as_y(y, x.shape[0], "FixedTrainer.step")
        xq, f = self.quantize_input(x)
        self._calibrate(xq, y)
        return self.session.train_step(xq, f, y) / 2.0 ** qref.LOSS_FRAC

    def gradients(self, x, y):
        raise NotImplementedError("Trainer.gradients is float32 only: the fixed-point step keeps its gradients "
                                  "in per-step integer scales and updates in place; use dtype='float32' to "
                                  "combine gradients yourself")

    def apply_gradients(self, grads) -> None:
        raise NotImplementedError("Trainer.apply_gradients is float32 only; use dtype='float32'")

    def fit(self, X, y, epochs: int = 1, shuffle: bool = True, progress: bool = True,
            drop_last: Optional[bool] = None) -> Dict[str, list]:
        X = self._as_x(X, "FixedTrainer.fit")
        y = self._as_y(y, X.shape[0], "FixedTrainer.fit")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        Xq, f = self.quantize_input(X)
        self._calibrate(Xq, y)
        rng = np.random.default_rng(self.seed + len(self.history["loss"]))
        n = X.shape[0]
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, desc=f"fit {self.net.name} (fixed)", unit="epoch", leave=False)
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            losses, weights = [], []
            for s in range(0, n, self.batch_size):
                idx = order[s:s + self.batch_size]
                if drop_last and len(idx) < self.batch_size and n >= self.batch_size:
                    continue
                losses.append(self.session.train_step(Xq[idx], f, y[idx]) / 2.0 ** qref.LOSS_FRAC)
                weights.append(len(idx))
            self.history["loss"].append(float(np.average(losses, weights=weights)) if losses else float("nan"))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{self.history['loss'][-1]:.4f}")
        if bar is not None:
            bar.close()
        return self.history

    # ---------------------------------------------------------- inference
    def predict_logits_q(self, X) -> tuple:
        """(int8 logits, their fractional bits)."""
        xq, f = self.quantize_input(X)
        return self.session.forward(xq, f)

    def predict_logits(self, X) -> np.ndarray:
        z, f = self.predict_logits_q(X)
        return (np.asarray(z, dtype=np.float32) * np.float32(2.0 ** -f)).astype(np.float32)

    def checksum(self) -> int:
        return int(self.session.checksum())

    def scales(self) -> Dict[str, np.ndarray]:
        """Every tensor's fractional bits (out, dout, wq per node; param, grad, mom per node and parameter)."""
        return self.session.scales()

    @property
    def saturated_last_step(self) -> int:
        return int(self.session.saturated_last)

    def __repr__(self) -> str:
        return (f"FixedTrainer({self.net.name}, strategy={self.strategy!r}, batch_size={self.batch_size}, "
                f"micro_batch={self.micro_batch}, peak_bytes={self.plan.peak_bytes})")
