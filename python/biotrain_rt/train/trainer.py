"""The training loop's Python face: a Trainer plans a network's memory, holds
its parameters in one C arena, and runs steps there, in either number format.

No Python runs inside a step: ``step`` hands the whole batch to the C core,
which splits it into micro-batches, accumulates the gradients and updates the
parameters once. What differs between float32 and fixed point (how data,
parameters, losses and scales cross the boundary) is the format object
``trainer.format`` (:mod:`.formats`); everything else is this one class.
"""
from __future__ import annotations

from typing import Dict, Optional, Tuple, Union

import numpy as np

from .. import _core
from ..network import Network
from ..optim import SGD, Adam
from ..plan import PlanInfo
from .formats import FixedFormat, Float32Format, NumberFormat, make_format
from .strategy import Strategy, resolve_masks


class Trainer:
    """Fine-tunes a :class:`Network` in the C core.

    Parameters
    ----------
    net : the network; its parameters are copied into the arena, and
        ``net.state_dict()`` reads them back while this trainer is live.
    optimizer : :class:`SGD` or :class:`Adam` (fixed point runs SGD).
    strategy : ``"full"``, ``"last"``, ``"none"``, ``"lora"`` (the network's
        LoRA adapters only), ``"lora+last"``, ``"lora+head"``, a list of layer
        names or a predicate on a layer (trained whole), or a
        :class:`~biotrain_rt.FineTune` (see ``train/strategy.py``).
    batch_size : samples per optimizer step.
    micro_batch : samples per forward/backward pass (gradients accumulate
        over micro-batches). Default 1 for batch-independent norms, so the peak
        does not grow with the batch; batchnorm needs the whole batch.
    dtype : ``"float32"`` or ``"fixed"`` (or a :class:`NumberFormat`).
    **format_options : the format's own options; for ``"fixed"``:
        ``input_frac``, ``calibration_rounds``, ``calibration_samples``
        (see :class:`~biotrain_rt.train.FixedFormat`).
    """

    def __init__(self, net: Network, optimizer: Union[SGD, Adam, None] = None, strategy: Strategy = "full",
                 batch_size: int = 8, micro_batch: Optional[int] = None, seed: int = 0, reuse: bool = True,
                 dtype: Union[str, NumberFormat] = "float32", **format_options):
        if not isinstance(net, Network):
            raise TypeError(f"Trainer needs a biotrain_rt Network, got {type(net).__name__}; "
                            "use brt.from_torch(module, input_shape) for a torch module")
        fmt = make_format(dtype, **format_options)
        if not isinstance(batch_size, (int, np.integer)) or isinstance(batch_size, bool) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
        optimizer = optimizer if optimizer is not None else SGD(lr=1e-3)
        if not isinstance(optimizer, (SGD, Adam)):
            raise TypeError("optimizer must be brt.SGD(...) or brt.Adam(...)")
        fmt.check(net, optimizer)
        batch_size = int(batch_size)
        has_bn = any(l.kind == "batchnorm" for l in net.layers)
        micro_batch = fmt.default_micro_batch(net, batch_size) if micro_batch is None else micro_batch
        if not isinstance(micro_batch, (int, np.integer)) or not 1 <= micro_batch <= batch_size:
            raise ValueError(f"micro_batch must be an integer in [1, batch_size={batch_size}], got {micro_batch!r}")
        if has_bn and micro_batch != batch_size:
            raise ValueError(f"network '{net.name}' has batchnorm, whose statistics need the whole batch: "
                             f"micro_batch must equal batch_size ({batch_size}), got {micro_batch}")
        masks = resolve_masks(net, strategy)
        if net.has_lora and fmt.name != "float32":
            raise ValueError(f"network '{net.name}' has LoRA adapters, which train in float32 only: use "
                             f"dtype='float32', or net.merge_lora() first")
        trainable = sorted(i for i, m in masks.items() if m)
        # Everything that can refuse runs before the network is touched.
        self.net = net.finish()
        self.format = fmt
        self.dtype = fmt.name
        self.optimizer = optimizer
        self.strategy = strategy
        self.batch_size = batch_size
        self.micro_batch = int(micro_batch)
        self.seed = int(seed)
        self.reuse = bool(reuse)
        self.trainable_nodes = trainable
        #: node -> parameter-slot mask (bit k: slot k trains)
        self.trainable_masks = {i: masks[i] for i in trainable}
        self.graph = net.core_graph(self.trainable_masks)
        opt = self.optimizer
        self._core_plan = _core.Plan(self.graph, self.micro_batch, opt.kind,
                                     bool(opt.kind == "sgd" and opt.momentum > 0), self.reuse, fmt.name)
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
        self.format.push_params(self.session, self.net)

    def _pull_params(self) -> None:
        self.format.pull_params(self.session, self.net)

    def release(self) -> None:
        """Copies the parameters back into the network and detaches from it."""
        if self.net._live is self:
            self._pull_params()
            self.net._live = None

    @property
    def n_trainable(self) -> int:
        """Parameter values this trainer updates."""
        return int(sum(int(np.prod(shape)) for _, _, _, shape in self._trainable_params()))

    @property
    def lr(self) -> float:
        return self.format.lr_of(self.session)

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
        ready = self._ready_batch(x, y) if isinstance(self.format, Float32Format) else None
        if ready is None:
            x = self._as_x(x, where)
            y = self._as_y(y, x.shape[0], where)
        else:
            x, y = ready
        if x.shape[0] > self.batch_size and self._core_plan.has_batchnorm:
            raise ValueError(f"{where}: a batch of {x.shape[0]} exceeds batch_size={self.batch_size}, "
                             "which batchnorm's plan was made for")
        xc, xf = self.format.core_input(self, x)
        self.format.prepare(self, xc, y)
        try:
            v = self.session.train_step(xc, y, xf) if update else self.session.grad_step(xc, y, xf)
            return self.format.loss(v)
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
            l, mask = self.net.layers[i], self.trainable_masks[i]
            for k, name in enumerate(l.param_names):
                if (mask >> k) & 1 and name in l.trainable_names:
                    yield i, k, f"{l.name}.{name}", l.params[name].shape

    def gradients(self, x, y) -> Dict[str, np.ndarray]:
        """The mean gradient of the loss over the batch (x, y) for every
        trainable parameter, keyed like ``state_dict`` ("layer.weight");
        the parameters are not updated. With :meth:`apply_gradients` it is
        one :meth:`step`, split so that gradients can be combined in
        between (meta-learning, averaging over devices)."""
        self._run(x, y, "Trainer.gradients", update=False)
        return {key: self.format.read_grad(self.session, i, k).reshape(shape)
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
            self.format.write_grad(self.session, i, k, g.reshape(-1))
        self.session.apply_update()

    def fit(self, X, y, epochs: int = 1, shuffle: bool = True, progress: bool = True,
            drop_last: Optional[bool] = None) -> Dict[str, list]:
        """Trains for ``epochs`` passes over (X, y) in batches of
        ``batch_size``; returns the history of the mean loss per epoch."""
        X = self._as_x(X, "Trainer.fit")
        y = self._as_y(y, X.shape[0], "Trainer.fit")
        if not isinstance(epochs, (int, np.integer)) or epochs < 0:
            raise ValueError(f"epochs must be an integer >= 0, got {epochs!r}")
        Xc, xf = self.format.core_input(self, X)
        self.format.prepare(self, Xc, y)
        rng = np.random.default_rng(self.seed + len(self.history["loss"]))
        n = X.shape[0]
        if drop_last is None:
            drop_last = self._core_plan.has_batchnorm
        bar = None
        if progress:
            from tqdm.auto import tqdm
            bar = tqdm(total=epochs, desc=f"fit {self.net.name} ({self.dtype})", unit="epoch", leave=False)
        for _ in range(epochs):
            order = rng.permutation(n) if shuffle else np.arange(n)
            losses, weights = [], []
            for s in range(0, n, self.batch_size):
                idx = order[s:s + self.batch_size]
                if drop_last and len(idx) < self.batch_size and n >= self.batch_size:
                    continue
                if self._core_plan.has_batchnorm and len(idx) < 2:
                    continue
                losses.append(self.format.loss(self.session.train_step(Xc[idx], y[idx], xf)))
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
        """Logits as float32, [n, classes] (fixed point: the int8 logits scaled)."""
        X = self._as_x(X, "Trainer.predict")
        return self.format.logits(self.session.forward(*self.format.core_input(self, X)))

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
        """The session checksum (parameters, and in fixed point their scales), as the firmware prints it."""
        return int(self.session.checksum())

    def state_checksum(self) -> int:
        """A checksum of the rest of the state the next step reads (optimizer
        state, scales and their adaptation windows, the dropout stream)."""
        return int(self.session.state_checksum())

    # ---------------------------------------------------------- fixed point
    def _fixed(self, what: str) -> FixedFormat:
        if not isinstance(self.format, FixedFormat):
            raise ValueError(f"Trainer.{what} is for dtype='fixed'; this trainer runs {self.dtype}")
        return self.format

    def quantize_input(self, x) -> Tuple[np.ndarray, int]:
        """(int16 array, its fractional bits): how a float batch enters the
        fixed-point executor. Sets the input scale on first use."""
        return self._fixed("quantize_input").quantize(self._as_x(x, "Trainer.quantize_input"))

    def calibrate(self, X, y) -> None:
        """Fixed point: sets every tensor's scale from (X, y) now (forward and
        backward passes, no update); otherwise the first step or fit does it."""
        fmt = self._fixed("calibrate")
        X = self._as_x(X, "Trainer.calibrate")
        y = self._as_y(y, X.shape[0], "Trainer.calibrate")
        xq, _ = fmt.quantize(X)
        fmt.calibrated = False
        fmt.prepare(self, xq, y)

    def predict_logits_q(self, X) -> Tuple[np.ndarray, int]:
        """Fixed point: (int8 logits, their fractional bits)."""
        fmt = self._fixed("predict_logits_q")
        return self.session.forward(*fmt.quantize(self._as_x(X, "Trainer.predict_logits_q")))

    def scales(self) -> Dict[str, np.ndarray]:
        """Fixed point: every tensor's fractional bits (out, dout, wq per node;
        param, grad, mom per node and parameter slot)."""
        return self._fixed("scales").scales(self.session, len(self.net.layers))

    @property
    def input_frac(self) -> Optional[int]:
        return self._fixed("input_frac").input_frac

    @property
    def calibrated(self) -> bool:
        return self._fixed("calibrated").calibrated

    @property
    def input_saturated(self) -> int:
        """Float inputs clamped when entering int16, over this trainer's life."""
        return self._fixed("input_saturated").input_saturated

    @property
    def saturated_last_step(self) -> int:
        """Values clamped inside the C core during the last step."""
        return int(self.session.saturated_last)

    def __repr__(self) -> str:
        return (f"Trainer({self.net.name}, dtype={self.dtype!r}, strategy={self.strategy!r}, batch_size={self.batch_size}, "
                f"micro_batch={self.micro_batch}, peak_bytes={self.plan.peak_bytes})")
