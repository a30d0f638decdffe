"""Number formats: how a :class:`~biotrain_rt.train.Trainer` crosses between
Python floats and the C core's session.

The C core has one executor for both formats (``csrc/include/biotrain/exec.h``);
the format decides only which kernels run and how losses, scales and updates
are handled. On the Python side the same split holds: the Trainer owns the
loop, the data checks and the plan; a format object owns what differs:

* :class:`Float32Format` passes float32 data and parameters through unchanged.
* :class:`FixedFormat` turns float data into int16 with one power-of-two scale
  (round half to even, saturating, counted), initial weights into int32
  masters with their own scale, and reads the Q16 loss and int8 logits back;
  it calibrates every tensor's scale from data before the first update.

Floats exist only here, at the edges: nothing inside a step is Python.
"""
from __future__ import annotations

import math
from typing import Dict, Optional, Tuple

import numpy as np

from .. import _core

#: Masters are stored with their largest magnitude in [2^22, 2^23): 8 bits of
#: headroom for the weights to grow, ~22 bits of precision below the largest.
MASTER_TOP = 23
#: Inputs enter as int16 with their largest magnitude in [2^14, 2^15).
INPUT_TOP = 15
FRAC_MIN = int(_core.Q_FRAC_MIN)
FRAC_MAX = int(_core.Q_FRAC_MAX)
LOSS_FRAC = int(_core.Q_LOSS_FRAC)
Q15_MAX = 2 ** 15 - 1
Q31_MAX = 2 ** 31 - 1


def check_frac(frac, what: str = "fractional bits") -> int:
    if not isinstance(frac, (int, np.integer)) or not FRAC_MIN <= frac <= FRAC_MAX:
        raise ValueError(f"{what} must be an integer in [{FRAC_MIN}, {FRAC_MAX}], got {frac!r}")
    return int(frac)


def to_fixed(x, frac: int, lim: int) -> Tuple[np.ndarray, int]:
    """(integers with `frac` fractional bits, how many saturated): float data
    into the fixed-point world, round half to even, clamped to [-lim, lim]."""
    v = np.rint(np.asarray(x, dtype=np.float64) * 2.0 ** frac)
    saturated = int(np.count_nonzero(np.abs(v) > lim))
    return np.clip(v, -lim, lim).astype(np.int64), saturated


def _frac_for(values: np.ndarray, top: int, limit: int, default: int) -> int:
    """The fractional bits that put max|values| just below 2^top (within limit)."""
    m = float(np.max(np.abs(values))) if values.size else 0.0
    if m == 0.0:
        return default
    f = top - 1 - math.floor(math.log2(m))
    while m * 2.0 ** f >= limit:   # log2 rounding at exact powers of two
        f -= 1
    return int(min(max(f, FRAC_MIN), FRAC_MAX))


def master_frac(values: np.ndarray) -> int:
    """The fractional bits that put max|values| in [2^22, 2^23) (24 for all zeros)."""
    return _frac_for(values, MASTER_TOP, 2 ** MASTER_TOP, 24)


def input_frac_for(x: np.ndarray) -> int:
    """The fractional bits that fit max|x| into int16 with one bit of margin (8 for all zeros)."""
    return _frac_for(x, INPUT_TOP, 2 ** INPUT_TOP - 1, 8)


class NumberFormat:
    """What a number format decides for a Trainer; one instance per Trainer."""

    name = ""
    #: the optimizers (``opt.kind``) the format runs
    optimizers: Tuple[str, ...] = ()

    def check(self, net, optimizer) -> None:
        """Refuses a network or optimizer the format cannot run (before any C object exists)."""
        if optimizer.kind not in self.optimizers:
            names = {"sgd": "SGD (with momentum and weight decay)", "adam": "Adam"}
            raise ValueError(f"{self.name} training runs {' or '.join(names[k] for k in self.optimizers)}; "
                             f"got {type(optimizer).__name__}")
        kernels = {o["name"]: o["formats"] for o in _core.op_table()}
        bad = [f"{l.name} ({l.kind})" for l in net.layers[1:] if self.name not in kernels.get(l.kind, ())]
        if bad:
            raise ValueError(f"{self.name} training has no kernels for layers {bad}; "
                             f"layers with {self.name} kernels: "
                             f"{sorted(k for k, f in kernels.items() if self.name in f and k != 'input')}")

    def default_micro_batch(self, net, batch_size: int) -> int:
        return 1

    def push_params(self, session, net) -> None:
        raise NotImplementedError

    def pull_params(self, session, net) -> None:
        raise NotImplementedError

    def core_input(self, trainer, x: np.ndarray) -> Tuple[np.ndarray, int]:
        """(x as the session takes it, its fractional bits)."""
        raise NotImplementedError

    def prepare(self, trainer, x_core, y) -> None:
        """Runs before the first update over data the trainer is about to train on."""

    def loss(self, value) -> float:
        raise NotImplementedError

    def logits(self, out) -> np.ndarray:
        raise NotImplementedError

    def lr_of(self, session) -> float:
        return float(session.lr)

    def read_grad(self, session, node: int, which: int) -> np.ndarray:
        """The accumulated mean gradient of one parameter slot, as float32."""
        raise NotImplementedError

    def write_grad(self, session, node: int, which: int, g: np.ndarray) -> None:
        """Sets one slot's gradient from float32 values (checked finite)."""
        raise NotImplementedError


class Float32Format(NumberFormat):
    name = "float32"
    optimizers = ("sgd", "adam")

    def default_micro_batch(self, net, batch_size: int) -> int:
        # batch-independent norms keep the peak flat in the batch; batchnorm needs the whole batch
        return batch_size if any(l.kind == "batchnorm" for l in net.layers) else 1

    def push_params(self, session, net) -> None:
        for i, l in enumerate(net.layers):
            for k, name in enumerate(l.param_names):
                if name in l.params:
                    session.param(i, k)[...] = l.params[name].reshape(-1)

    def pull_params(self, session, net) -> None:
        for i, l in enumerate(net.layers):
            for k, name in enumerate(l.param_names):
                if name in l.params:
                    l.params[name] = np.array(session.param(i, k), copy=True).reshape(l.params[name].shape)

    def core_input(self, trainer, x):
        return x, 0

    def loss(self, value) -> float:
        return float(value)

    def logits(self, out) -> np.ndarray:
        return np.asarray(out)

    def read_grad(self, session, node, which):
        return np.array(session.grad(node, which), copy=True)

    def write_grad(self, session, node, which, g):
        session.grad(node, which)[...] = g


class FixedFormat(NumberFormat):
    """Fixed point: int8 activations and gradients with one power-of-two scale
    per tensor, adapted after every step; int32 masters (about 24 significant
    bits, so small SGD updates are kept) read through an int8 copy; int32
    gradients and momentum.

    input_frac : fractional bits of the int16 input; by default chosen from
        the first data seen so that it fits (later data beyond it saturate,
        counted in ``input_saturated``).
    calibration_rounds : passes of forward and backward, before the first
        update, that set the scales of every tensor (over the first batch
        given to ``step``, or up to ``calibration_samples`` samples spread
        over the data given to ``fit``).
    """

    name = "fixed"
    optimizers = ("sgd",)

    def __init__(self, input_frac: Optional[int] = None, calibration_rounds: int = 3,
                 calibration_samples: int = 256):
        if input_frac is not None:
            check_frac(input_frac, "input_frac")
        if not isinstance(calibration_rounds, (int, np.integer)) or calibration_rounds < 1:
            raise ValueError(f"calibration_rounds must be an integer >= 1, got {calibration_rounds!r}")
        self.input_frac = None if input_frac is None else int(input_frac)
        self.calibration_rounds = int(calibration_rounds)
        self.calibration_samples = max(1, int(calibration_samples))
        self.calibrated = False
        self.input_saturated = 0      # float inputs clamped when entering int16

    def push_params(self, session, net) -> None:
        for i, l in enumerate(net.layers):
            for k, name in enumerate(l.param_names):
                if name in l.params:
                    v = np.asarray(l.params[name], dtype=np.float32).reshape(-1)
                    f = master_frac(v)
                    session.param(i, k)[...] = to_fixed(v, f, Q31_MAX)[0].astype(np.int32)
                    session.set_frac(i, "param", k, f)

    def pull_params(self, session, net) -> None:
        for i, l in enumerate(net.layers):
            for k, name in enumerate(l.param_names):
                if name in l.params:
                    q = np.array(session.param(i, k), dtype=np.float64)
                    v = q * 2.0 ** -session.frac(i, "param", k)
                    l.params[name] = v.astype(np.float32).reshape(l.params[name].shape)

    def quantize(self, x: np.ndarray) -> Tuple[np.ndarray, int]:
        """(int16 array, its fractional bits) of a checked float batch; sets
        the input scale on first use."""
        if self.input_frac is None:
            self.input_frac = input_frac_for(x)
        q, saturated = to_fixed(x, self.input_frac, Q15_MAX)
        self.input_saturated += saturated
        return q.astype(np.int16), self.input_frac

    def core_input(self, trainer, x):
        return self.quantize(x)

    def prepare(self, trainer, x_core, y) -> None:
        """Sets every scale from data before the first update: up to
        `calibration_samples` samples spread evenly over the data given."""
        if self.calibrated:
            return
        n = len(y)
        idx = np.unique(np.linspace(0, n - 1, min(n, self.calibration_samples)).astype(np.int64))
        trainer.session.calibrate(np.ascontiguousarray(x_core[idx]), np.ascontiguousarray(y[idx]),
                                  self.input_frac, self.calibration_rounds)
        self.calibrated = True

    def loss(self, value) -> float:
        return float(value) / 2.0 ** LOSS_FRAC

    def logits(self, out) -> np.ndarray:
        z, f = out
        return (np.asarray(z, dtype=np.float32) * np.float32(2.0 ** -f)).astype(np.float32)

    def read_grad(self, session, node, which):
        q = np.asarray(session.grad(node, which), dtype=np.float64)
        return (q * 2.0 ** -session.frac(node, "grad", which)).astype(np.float32)

    def write_grad(self, session, node, which, g):
        # Keep the session's gradient scale when the values fit int32 (so that
        # gradients() -> apply_gradients() is exactly one step); else the
        # scale that fits them.
        f = session.frac(node, "grad", which)
        m = float(np.max(np.abs(g))) if g.size else 0.0
        if m * 2.0 ** f >= 2 ** 31 - 1:
            f = _frac_for(g, 31, 2 ** 31 - 1, f)
        q, _ = to_fixed(g, f, Q31_MAX)
        session.set_frac(node, "grad", which, f)
        session.grad(node, which)[...] = q.astype(np.int32)

    def scales(self, session, n_nodes: int) -> Dict[str, np.ndarray]:
        """Every tensor's fractional bits: out, dout, wq per node; param, grad,
        mom per node and parameter slot."""
        P = int(_core.MAX_PARAMS_PER_NODE)
        d = {k: np.array([session.frac(v, k) for v in range(n_nodes)], np.int32) for k in ("out", "dout", "wq")}
        for k in ("param", "grad", "mom"):
            d[k] = np.array([[session.frac(v, k, j) for j in range(P)] for v in range(n_nodes)], np.int32)
        return d


FORMATS = {"float32": Float32Format, "fixed": FixedFormat}


def make_format(dtype, **options) -> NumberFormat:
    """The format object for ``dtype`` ("float32" or "fixed"; a NumberFormat
    instance is taken as is). Options are the format's own (FixedFormat:
    input_frac, calibration_rounds, calibration_samples)."""
    if isinstance(dtype, NumberFormat):
        if options:
            raise ValueError(f"options {sorted(options)} go to the format's constructor, not next to an instance")
        return dtype
    if dtype not in FORMATS:
        raise ValueError(f"dtype {dtype!r} is not available: use {' or '.join(repr(k) for k in FORMATS)}")
    cls = FORMATS[dtype]
    try:
        return cls(**options)
    except TypeError:
        import inspect
        allowed = [p for p in inspect.signature(cls.__init__).parameters if p != "self"]
        raise ValueError(f"dtype {dtype!r} takes the options {allowed or 'none'}; got {sorted(options)}") from None
