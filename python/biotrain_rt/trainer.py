"""The training loop's Python face: a Trainer plans a network's memory, holds
its parameters in one C arena, and runs steps there.

No Python runs inside a step: ``step`` hands the whole batch to the C core,
which splits it into micro-batches, accumulates the gradients and updates the
parameters once.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Union

import numpy as np

from . import _core
from .network import PARAM_NAMES, Network
from .optim import SGD, Adam
from .plan import PlanInfo

Strategy = Union[str, Sequence[str]]


def resolve_strategy(net: Network, strategy: Strategy) -> List[int]:
    """Node ids whose parameters are trained under a strategy:
    ``"full"`` every layer with parameters, ``"last"`` only the final linear
    layer, ``"none"`` nothing, or a list of layer names."""
    with_params = net.param_layers()
    if isinstance(strategy, str):
        if strategy == "full":
            return with_params
        if strategy == "last":
            linears = [i for i in with_params if net.layers[i].kind == "linear"]
            if not linears:
                raise ValueError(f"strategy 'last': network '{net.name}' has no linear layer to train")
            return [linears[-1]]
        if strategy == "none":
            return []
        raise ValueError(f"unknown strategy '{strategy}': use 'full', 'last', 'none' or a list of layer names "
                         f"from {[net.layers[i].name for i in with_params]}")
    ids = []
    for name in strategy:
        try:
            i = net.index(name)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        if i not in with_params:
            raise ValueError(f"layer '{name}' ({net.layers[i].kind}) has no parameters to train")
        ids.append(i)
    return sorted(set(ids))


class Trainer:
    """Fine-tunes a :class:`Network` in the C core.

    Parameters
    ----------
    net : the network; its parameters are copied into the arena, and
        ``net.state_dict()`` reads them back while this trainer is live.
    optimizer : :class:`SGD` or :class:`Adam`.
    strategy : ``"full"``, ``"last"``, ``"none"`` or a list of layer names.
    batch_size : samples per optimizer step.
    micro_batch : samples per forward/backward pass (gradients accumulate
        over micro-batches). Default 1 for batch-independent norms, so the peak
        does not grow with the batch; batchnorm needs the whole batch.
    """

    def __new__(cls, *args, dtype: str = "float32", **kwargs):
        # dtype="fixed" gives the integer trainer (fixed.py), a subclass with the same API
        if cls is Trainer and dtype == "fixed":
            from .fixed import FixedTrainer
            return super().__new__(FixedTrainer)
        return super().__new__(cls)

    def __init__(self, net: Network, optimizer: Union[SGD, Adam, None] = None, strategy: Strategy = "full",
                 batch_size: int = 8, micro_batch: Optional[int] = None, seed: int = 0, reuse: bool = True,
                 dtype: str = "float32"):
        if not isinstance(net, Network):
            raise TypeError(f"Trainer needs a biotrain_rt Network, got {type(net).__name__}; "
                            "use brt.from_torch(module, input_shape) for a torch module")
        if dtype != "float32":
            raise ValueError(f"dtype '{dtype}' is not available: use 'float32' or 'fixed'")
        if not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        self.net = net.finish()
        self.optimizer = optimizer if optimizer is not None else SGD(lr=1e-3)
        if not isinstance(self.optimizer, (SGD, Adam)):
            raise TypeError("optimizer must be brt.SGD(...) or brt.Adam(...)")
        self.strategy = strategy
        self.batch_size = int(batch_size)
        self.seed = int(seed)
        self.dtype = dtype
        has_bn = any(l.kind == "batchnorm" for l in net.layers)
        if micro_batch is None:
            micro_batch = self.batch_size if has_bn else 1
        micro_batch = int(micro_batch)
        if micro_batch < 1 or micro_batch > self.batch_size:
            raise ValueError(f"micro_batch must be in [1, batch_size={self.batch_size}], got {micro_batch}")
        if has_bn and micro_batch != self.batch_size:
            raise ValueError(f"network '{net.name}' has batchnorm, whose statistics need the whole batch: "
                             f"micro_batch must equal batch_size ({self.batch_size}), got {micro_batch}")
        self.micro_batch = micro_batch
        self.trainable_nodes = resolve_strategy(net, strategy)
        self.graph = net.core_graph(self.trainable_nodes)
        opt = self.optimizer
        self._core_plan = _core.Plan(self.graph, micro_batch, opt.kind,
                                     bool(opt.kind == "sgd" and opt.momentum > 0), bool(reuse))
        self.plan = PlanInfo(self._core_plan, [l.name for l in net.layers])
        self.session = _core.Session(self._core_plan, None, opt.kind, float(opt.lr), float(opt.momentum),
                                     float(opt.weight_decay), float(opt.betas[0]), float(opt.betas[1]),
                                     float(opt.eps), self.seed)
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
                    self.session.param(i, k)[...] = l.params[name].reshape(-1)

    def _pull_params(self) -> None:
        for i, l in enumerate(self.net.layers):
            for k, name in enumerate(PARAM_NAMES):
                if name in l.params:
                    l.params[name] = np.array(self.session.param(i, k), copy=True).reshape(l.params[name].shape)

    def release(self) -> None:
        """Copies the parameters back into the network and detaches from it."""
        if self.net._live is self:
            self._pull_params()
            self.net._live = None

    @property
    def n_trainable(self) -> int:
        return int(sum(self.net.layers[i].n_trainable() for i in self.trainable_nodes))

    @property
    def lr(self) -> float:
        return float(self.session.lr)

    def set_lr(self, lr: float) -> None:
        """Sets the learning rate for the following steps."""
        if not np.isfinite(lr) or lr < 0:
            raise ValueError(f"learning rate must be finite and >= 0, got {lr!r}")
        self.session.set_lr(float(lr))
        self.optimizer.lr = float(lr)

    # ---------------------------------------------------------- data checks
    def _as_x(self, x, where: str) -> np.ndarray:
        x = np.asarray(x)
        c, h, w = self.net.input_shape
        if x.ndim == 3 and h == 1 and x.shape[1:] == (c, w):
            x = x.reshape(x.shape[0], c, 1, w)
        elif x.ndim == 3 and c == 1 and x.shape[1:] == (h, w):
            x = x.reshape(x.shape[0], 1, h, w)
        if x.ndim != 4 or x.shape[1:] != (c, h, w):
            raise ValueError(f"{where}: x has shape {x.shape} but network '{self.net.name}' takes "
                             f"(batch, {c}, {h}, {w}); check the channel count and the window length "
                             f"(resample or re-window the data to fit)")
        if not np.issubdtype(x.dtype, np.number):
            raise ValueError(f"{where}: x must be numeric, got dtype {x.dtype}")
        x = np.ascontiguousarray(x, dtype=np.float32)
        bad = ~np.isfinite(x.reshape(x.shape[0], -1)).all(axis=1)
        if bad.any():
            raise ValueError(f"{where}: x contains NaN or Inf in sample(s) {np.flatnonzero(bad)[:8].tolist()} "
                             f"of a batch of shape {x.shape}; the step was refused and the parameters are unchanged")
        return x

    def _as_y(self, y, n: int, where: str) -> np.ndarray:
        y = np.asarray(y)
        if y.ndim != 1 or y.shape[0] != n:
            raise ValueError(f"{where}: labels have shape {y.shape}, expected ({n},) to match x")
        if not np.issubdtype(y.dtype, np.integer):
            if np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
                y = y.astype(np.int64)
            else:
                raise ValueError(f"{where}: labels must be integer class indices, got dtype {y.dtype}")
        classes = self.net.classes
        bad = (y < 0) | (y >= classes)
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{where}: label {int(y[i])} at index {i} is outside the {classes} classes "
                             f"[0, {classes}) of layer '{self.net.output_layer.name}'")
        return y.astype(np.int32)

    # ---------------------------------------------------------- training
    def _ready_batch(self, x, y):
        """(x, y) as the C core takes them when they already have its layout
        (C-contiguous float32 x of the network's input shape, 1-D int32 or
        int64 labels of the same length), else None. The values are then
        checked by the core itself, which refuses a batch with a NaN/Inf or a
        label outside the classes before it changes anything."""
        if type(x) is not np.ndarray or type(y) is not np.ndarray or x.dtype != np.float32 or x.ndim != 4 \
                or y.ndim != 1 or x.shape[0] != y.shape[0] or x.shape[0] == 0 or not x.flags.c_contiguous \
                or x.shape[1:] != self.net.input_shape:
            return None
        if y.dtype == np.int32:
            return x, y
        if y.dtype == np.int64:
            y32 = y.astype(np.int32)
            if (y32 == y).all():  # no label beyond the int32 range wrapped around
                return x, y32
        return None

    def _run(self, x, y, where: str, update: bool) -> float:
        ready = self._ready_batch(x, y)
        if ready is None:
            x = self._as_x(x, where)
            y = self._as_y(y, x.shape[0], where)
        else:
            x, y = ready
        if x.shape[0] > self.batch_size and self._core_plan.has_batchnorm:
            raise ValueError(f"{where}: a batch of {x.shape[0]} exceeds batch_size={self.batch_size}, "
                             "which batchnorm's plan was made for")
        try:
            return float(self.session.train_step(x, y) if update else self.session.grad_step(x, y))
        except ValueError:
            if ready is not None:
                # The core refused the values: the full checks name the sample or label.
                self._as_x(x, where)
                self._as_y(y, x.shape[0], where)
            raise

    def step(self, x, y) -> float:
        """One optimizer step over the batch (x, y); returns the mean loss
        before the update. A refused step leaves the parameters unchanged."""
        return self._run(x, y, "Trainer.step", update=True)

    def _trainable_params(self):
        for i in self.trainable_nodes:
            l = self.net.layers[i]
            for k, name in enumerate(PARAM_NAMES[:2]):
                if name in l.params:
                    yield i, k, f"{l.name}.{name}", l.params[name].shape

    def gradients(self, x, y) -> Dict[str, np.ndarray]:
        """The mean gradient of the loss over the batch (x, y) for every
        trainable parameter, keyed like ``state_dict`` ("layer.weight");
        the parameters are not updated. With :meth:`apply_gradients` it is
        one :meth:`step`, split so that gradients can be combined in
        between (meta-learning, averaging over devices)."""
        self._run(x, y, "Trainer.gradients", update=False)
        return {key: np.array(self.session.grad(i, k), copy=True).reshape(shape)
                for i, k, key, shape in self._trainable_params()}

    def apply_gradients(self, grads: Dict[str, np.ndarray]) -> None:
        """One optimizer step (with its state: momentum, Adam moments) from the
        given gradients, one per trainable parameter as :meth:`gradients`
        returns them. Nothing changes if one is missing, misshapen or not finite."""
        todo, params = [], list(self._trainable_params())
        for i, k, key, shape in params:
            if key not in grads:
                raise ValueError(f"Trainer.apply_gradients: no gradient for trainable parameter '{key}' "
                                 f"of shape {shape}; pass one per key of Trainer.gradients()")
            g = np.asarray(grads[key], dtype=np.float32)
            if g.shape != tuple(shape):
                raise ValueError(f"Trainer.apply_gradients: gradient for '{key}' has shape {g.shape}, "
                                 f"the parameter has {tuple(shape)}")
            if not np.isfinite(g).all():
                raise ValueError(f"Trainer.apply_gradients: gradient for '{key}' contains NaN or Inf; "
                                 "the parameters are unchanged")
            todo.append((i, k, g))
        extra = set(grads) - {key for _, _, key, _ in params}
        if extra:
            raise ValueError(f"Trainer.apply_gradients: {sorted(extra)[:4]} are not trainable parameters under "
                             f"strategy {self.strategy!r}")
        for i, k, g in todo:
            self.session.grad(i, k)[...] = g.reshape(-1)
        self.session.apply_update()

    def fit(self, X, y, epochs: int = 1, shuffle: bool = True, progress: bool = True,
            drop_last: Optional[bool] = None) -> Dict[str, list]:
        """Trains for ``epochs`` passes over (X, y) in batches of
        ``batch_size``; returns the history of the mean loss per epoch."""
        X = self._as_x(X, "Trainer.fit")
        y = self._as_y(y, X.shape[0], "Trainer.fit")
        if epochs < 0:
            raise ValueError(f"epochs must be >= 0, got {epochs}")
        rng = np.random.default_rng(self.seed + len(self.history["loss"]))
        n = X.shape[0]
        if drop_last is None:
            drop_last = self._core_plan.has_batchnorm
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, desc=f"fit {self.net.name}", unit="epoch", leave=False)
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            losses, weights = [], []
            for s in range(0, n, self.batch_size):
                idx = order[s:s + self.batch_size]
                if drop_last and len(idx) < self.batch_size and n >= self.batch_size:
                    continue
                if self._core_plan.has_batchnorm and len(idx) < 2:
                    continue
                losses.append(float(self.session.train_step(X[idx], y[idx])))
                weights.append(len(idx))
            self.history["loss"].append(float(np.average(losses, weights=weights)) if losses else float("nan"))
            if bar is not None:
                bar.update(1)
                bar.set_postfix(loss=f"{self.history['loss'][-1]:.4f}")
        if bar is not None:
            bar.close()
        return self.history

    # ---------------------------------------------------------- inference
    def predict_logits(self, X) -> np.ndarray:
        X = self._as_x(X, "Trainer.predict")
        return np.asarray(self.session.forward(X))

    def predict(self, X) -> np.ndarray:
        """Class probabilities, [n, classes] (batchnorm in eval mode, no dropout)."""
        z = self.predict_logits(X).astype(np.float64)
        z -= z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return (e / e.sum(axis=1, keepdims=True)).astype(np.float32)

    def evaluate(self, X, y) -> float:
        """Accuracy on (X, y)."""
        X = self._as_x(X, "Trainer.evaluate")
        y = self._as_y(y, X.shape[0], "Trainer.evaluate")
        return float(np.mean(self.predict_logits(X).argmax(axis=1) == y))

    def checksum(self) -> int:
        return int(self.session.checksum())

    def __repr__(self) -> str:
        return (f"Trainer({self.net.name}, strategy={self.strategy!r}, batch_size={self.batch_size}, "
                f"micro_batch={self.micro_batch}, peak_bytes={self.plan.peak_bytes})")
