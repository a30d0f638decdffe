"""One description per layer kind, on the Python side.

Each kind of the C core's op table (``_core.op_table()``) has one
:class:`LayerSpec` here, which says everything the Python side needs to know
about it, once:

* ``make(net, inputs, **args)``: the user's arguments (PyTorch's words:
  ``out_channels``, ``kernel``, ``padding``...) checked and turned into the
  layer's options and its initial parameters;
* ``core_opts(layer)``: the options as the C op table names them
  (``c_out``, ``k_h``...), which the graph, the manifest and the firmware
  emitter all use;
* ``macs(layer, net)`` and ``flops(layer, net)``: the arithmetic of one sample
  (forward, input gradient, weight gradient), for FLOP-per-instruction
  figures.

The mapping from and to torch modules lives in :mod:`biotrain_rt.torch_io`.
Adding a layer kind is a row of the C op table and a spec here
(docs/adding_an_op.md).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

#: Parameter names in the order the C core numbers them (0 weight, 1 bias, 2 running mean, 3 running var).
PARAM_NAMES = ("weight", "bias", "running_mean", "running_var")


def pair(v, what: str = "value") -> Tuple[int, int]:
    """An int or a pair of ints as a pair."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what}: expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


@dataclass
class Layer:
    """One node of the network: its kind, the ids of the nodes it reads, its
    options, its per-sample output shape and its parameters."""
    kind: str
    name: str
    inputs: List[int]
    opts: Dict = field(default_factory=dict)
    shape: Tuple[int, int, int] = (0, 0, 0)
    params: Dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def spec(self) -> "LayerSpec":
        return SPECS[self.kind]

    @property
    def has_params(self) -> bool:
        return any(k in self.params for k in ("weight", "bias"))

    def n_trainable(self) -> int:
        return int(sum(self.params[k].size for k in ("weight", "bias") if k in self.params))

    def core_opts(self) -> Dict:
        return self.spec.core_opts(self)


def uniform(rng: np.random.Generator, shape, fan_in: int) -> np.ndarray:
    """PyTorch's default init for conv and linear: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / np.sqrt(max(fan_in, 1))
    return rng.uniform(-bound, bound, size=shape).astype(np.float32)


@dataclass(frozen=True)
class Flops:
    """Arithmetic of one sample through one layer. ``matmul`` counts the
    multiply-adds of convolutions and linear layers alone (2 FLOP each)."""
    forward: float = 0.0
    backward_input: float = 0.0
    backward_weight: float = 0.0
    macs: float = 0.0


class LayerSpec:
    """The description of one layer kind (see the module docstring)."""
    kind: str = ""
    prefix: str = "layer"        # default layer names: prefix + node id

    def make(self, net, inputs: List[int], **args) -> Tuple[Dict, Dict[str, np.ndarray]]:
        """(options, parameters) of a new layer reading `inputs`."""
        if args:
            raise TypeError(f"{self.kind}() got unexpected arguments {sorted(args)}")
        return {}, {}

    def core_opts(self, layer: Layer) -> Dict:
        return {}

    def macs(self, layer: Layer, src_shape: Sequence[int]) -> float:
        """Multiply-adds of one sample's forward (convolutions, linear layers)."""
        return 0.0

    def flops(self, layer: Layer, src_shape: Sequence[int]) -> Flops:
        """FLOPs per sample. Conventions: a multiply-add is 2 FLOP; elementwise
        ops one per element each way unless said otherwise."""
        n = float(np.prod(layer.shape))
        return Flops(n, n, 0.0)


def _numel(shape) -> float:
    return float(np.prod(shape))


class Conv2dSpec(LayerSpec):
    kind, prefix = "conv2d", "conv"

    def make(self, net, inputs, out_channels, kernel, stride=1, padding=0, dilation=1, groups=1, bias=False):
        k, s = pair(kernel, "conv2d kernel"), pair(stride, "conv2d stride")
        p, d = pair(padding, "conv2d padding"), pair(dilation, "conv2d dilation")
        c_in = net.layers[inputs[0]].shape[0]
        groups, out_channels = int(groups), int(out_channels)
        if groups <= 0 or c_in % groups:
            raise ValueError(f"conv2d: groups={groups} must divide the {c_in} input channels")
        fan_in = (c_in // groups) * k[0] * k[1]
        params = {"weight": uniform(net._rng, (out_channels, c_in // groups, k[0], k[1]), fan_in)}
        if bias:
            params["bias"] = uniform(net._rng, (out_channels,), fan_in)
        opts = dict(out_channels=out_channels, kernel=k, stride=s, padding=p, dilation=d, groups=groups,
                    bias=bool(bias))
        return opts, params

    def core_opts(self, layer):
        o = layer.opts
        return dict(c_out=o["out_channels"], k_h=o["kernel"][0], k_w=o["kernel"][1], stride_h=o["stride"][0],
                    stride_w=o["stride"][1], pad_h=o["padding"][0], pad_w=o["padding"][1], dil_h=o["dilation"][0],
                    dil_w=o["dilation"][1], groups=o["groups"], has_bias=int(o["bias"]))

    def macs(self, layer, src_shape):
        kh, kw = layer.opts["kernel"]
        return _numel(layer.shape) * (src_shape[0] // layer.opts["groups"]) * kh * kw

    def flops(self, layer, src_shape):
        m = self.macs(layer, src_shape)
        bias = _numel(layer.shape) if layer.opts["bias"] else 0.0
        return Flops(2 * m + bias, 2 * m, 2 * m + bias, m)


class LinearSpec(LayerSpec):
    kind, prefix = "linear", "linear"

    def make(self, net, inputs, out_features, bias=True):
        in_f = int(np.prod(net.layers[inputs[0]].shape))
        out_features = int(out_features)
        params = {"weight": uniform(net._rng, (out_features, in_f), in_f)}
        if bias:
            params["bias"] = uniform(net._rng, (out_features,), in_f)
        return dict(out_features=out_features, bias=bool(bias), in_features=in_f), params

    def core_opts(self, layer):
        return dict(out_f=layer.opts["out_features"], has_bias=int(layer.opts["bias"]))

    def macs(self, layer, src_shape):
        return _numel(layer.shape) * _numel(src_shape)

    def flops(self, layer, src_shape):
        m = self.macs(layer, src_shape)
        bias = _numel(layer.shape) if layer.opts["bias"] else 0.0
        return Flops(2 * m + bias, 2 * m, 2 * m + bias, m)


class NormSpec(LayerSpec):
    """Norms: forward 8 FLOP per element (statistics 4, normalise 2, affine 2),
    input gradient 10, weight gradient 5."""

    def flops(self, layer, src_shape):
        n = _numel(layer.shape)
        return Flops(8 * n, 10 * n, 5 * n)


class GroupNormSpec(NormSpec):
    kind, prefix = "groupnorm", "norm"

    def make(self, net, inputs, groups, affine=True, eps=1e-5):
        c = net.layers[inputs[0]].shape[0]
        params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)} if affine else {}
        return dict(groups=int(groups), affine=bool(affine), eps=float(eps)), params

    def core_opts(self, layer):
        return dict(groups=layer.opts["groups"], affine=int(layer.opts["affine"]), eps=layer.opts["eps"])


class BatchNormSpec(NormSpec):
    kind, prefix = "batchnorm", "bn"

    def make(self, net, inputs, momentum=0.1, eps=1e-5):
        c = net.layers[inputs[0]].shape[0]
        params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32),
                  "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        return dict(momentum=float(momentum), eps=float(eps)), params

    def core_opts(self, layer):
        return dict(momentum=layer.opts["momentum"], eps=layer.opts["eps"], affine=1)


class ReluSpec(LayerSpec):
    kind, prefix = "relu", "relu"


class EluSpec(LayerSpec):
    kind, prefix = "elu", "elu"

    def make(self, net, inputs, alpha=1.0):
        return dict(alpha=float(alpha)), {}

    def core_opts(self, layer):
        return dict(alpha=layer.opts["alpha"])

    def flops(self, layer, src_shape):
        n = _numel(layer.shape)
        return Flops(4 * n, 2 * n, 0.0)


class GeluSpec(LayerSpec):
    kind, prefix = "gelu", "gelu"

    def flops(self, layer, src_shape):
        n = _numel(layer.shape)
        return Flops(20 * n, 25 * n, 0.0)


class DropoutSpec(LayerSpec):
    kind, prefix = "dropout", "dropout"

    def make(self, net, inputs, p=0.5):
        return dict(p=float(p)), {}

    def core_opts(self, layer):
        return dict(p=layer.opts["p"])


class Pool2dSpec(LayerSpec):
    prefix = "pool"

    def make(self, net, inputs, kernel, stride=None, padding=0):
        k = pair(kernel, f"{self.kind} kernel")
        s = pair(stride, f"{self.kind} stride") if stride is not None else k
        return dict(kernel=k, stride=s, padding=pair(padding, f"{self.kind} padding")), {}

    def core_opts(self, layer):
        o = layer.opts
        return dict(k_h=o["kernel"][0], k_w=o["kernel"][1], stride_h=o["stride"][0], stride_w=o["stride"][1],
                    pad_h=o["padding"][0], pad_w=o["padding"][1])

    def flops(self, layer, src_shape):
        kh, kw = layer.opts["kernel"]
        n = _numel(layer.shape)
        return Flops(n * (kh * kw + (1 if self.kind == "avgpool2d" else 0)), n * kh * kw, 0.0)


class AvgPool2dSpec(Pool2dSpec):
    kind = "avgpool2d"


class MaxPool2dSpec(Pool2dSpec):
    kind = "maxpool2d"


class GlobalAvgPoolSpec(LayerSpec):
    kind, prefix = "global_avgpool", "gap"

    def flops(self, layer, src_shape):
        return Flops(_numel(src_shape) + _numel(layer.shape), _numel(src_shape), 0.0)


class AddSpec(LayerSpec):
    kind, prefix = "add", "add"


class FlattenSpec(LayerSpec):
    kind, prefix = "flatten", "flatten"

    def flops(self, layer, src_shape):
        return Flops()


SPECS: Dict[str, LayerSpec] = {s.kind: s for s in (
    Conv2dSpec(), LinearSpec(), GroupNormSpec(), BatchNormSpec(), ReluSpec(), EluSpec(), GeluSpec(),
    AvgPool2dSpec(), MaxPool2dSpec(), GlobalAvgPoolSpec(), AddSpec(), FlattenSpec(), DropoutSpec())}

#: Every layer kind, in the C op table's order.
LAYER_KINDS = tuple(op["name"] for op in _core.op_table() if op["name"] in SPECS)

_missing = [op["name"] for op in _core.op_table() if op["name"] != "input" and op["name"] not in SPECS]
if _missing:  # pragma: no cover - a C op without its Python description is a build error
    raise ImportError(f"the C op table has ops without a Python layer description: {_missing}")
