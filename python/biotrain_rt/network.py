"""The network description on the Python side.

A :class:`Network` is a list of :class:`Layer` objects forming a DAG (node 0
is the input). It owns the parameters as NumPy arrays under PyTorch's names
(``<layer>.weight``, ``<layer>.bias``, ``<layer>.running_mean`` ...), and
builds the C core's graph (``_core.Graph``) from its layers. Training happens in
a :class:`~biotrain_rt.trainer.Trainer`, which copies the parameters into the
C arena and back.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core

#: Parameter names in the order the C core numbers them (0 weight, 1 bias, 2 running mean, 3 running var).
PARAM_NAMES = ("weight", "bias", "running_mean", "running_var")

LAYER_KINDS = ("conv2d", "linear", "groupnorm", "batchnorm", "relu", "elu", "gelu", "avgpool2d",
               "maxpool2d", "global_avgpool", "add", "flatten", "dropout")


def _pair(v) -> Tuple[int, int]:
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"expected an int or a pair, got {v!r}")
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
    def has_params(self) -> bool:
        return any(k in self.params for k in ("weight", "bias"))

    def n_trainable(self) -> int:
        return int(sum(self.params[k].size for k in ("weight", "bias") if k in self.params))


class _Short:
    """A layer seen with the name the C graph keeps (31 characters)."""

    def __init__(self, layer: Layer):
        self.kind, self.inputs, self.name = layer.kind, layer.inputs, layer.name[:31]


class Network:
    """A DAG of layers over one input of shape ``(c, h, w)`` per sample.

    Build it with the layer methods, each of which returns the new node's id::

        net = Network((1, 8, 1900), name="mynet")
        x = net.conv2d(0, 8, (8, 1), bias=False, name="spatial")
        x = net.groupnorm(x, 1, name="norm1")
        ...
    """

    def __init__(self, input_shape: Sequence[int], name: str = "network", seed: int = 0):
        shape = tuple(int(s) for s in input_shape)
        if len(shape) == 2:           # (channels, time): a Conv1d-style input, H = 1
            shape = (shape[0], 1, shape[1])
        if len(shape) != 3 or min(shape) <= 0:
            raise ValueError(f"Network: input_shape must be (c, h, w) or (c, t) with positive sizes, got {input_shape!r}")
        self.name = name
        self.input_shape: Tuple[int, int, int] = shape
        self.layers: List[Layer] = [Layer("input", "input", [], {}, shape)]
        self._rng = np.random.default_rng(seed)
        self._graph = _core.Graph(*shape)
        self._finished = False
        #: set by a Trainer while it holds the live parameters in its arena
        self._live = None

    # ------------------------------------------------------------ building
    def _unique(self, name: Optional[str], kind: str) -> str:
        if not name:
            name = f"{kind}{len(self.layers)}"
        if any(l.name == name for l in self.layers):
            raise ValueError(f"Network: a layer named '{name}' exists already; layer names must be unique")
        return name

    def _append(self, kind, name, inputs, opts, node_id, params=None) -> int:
        info = self._graph.node(node_id)
        layer = Layer(kind, name, list(inputs), dict(opts), tuple(info["shape"]), params or {})
        self.layers.append(layer)
        self._finished = False
        return node_id

    def _check_input(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or i < 0 or i >= len(self.layers):
            raise ValueError(f"Network: input node {i!r} does not exist (the network has {len(self.layers)} nodes)")
        return int(i)

    def _uniform(self, shape, fan_in):
        bound = 1.0 / np.sqrt(max(fan_in, 1))
        return self._rng.uniform(-bound, bound, size=shape).astype(np.float32)

    def conv2d(self, x, out_channels, kernel, stride=1, padding=0, dilation=1, groups=1, bias=False, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "conv")
        k, s, p, d = _pair(kernel), _pair(stride), _pair(padding), _pair(dilation)
        nid = self._graph.conv2d(x, int(out_channels), k, s, p, d, int(groups), bool(bias), name[:31])
        c_in = self.layers[x].shape[0]
        fan_in = (c_in // groups) * k[0] * k[1]
        params = {"weight": self._uniform((out_channels, c_in // groups, k[0], k[1]), fan_in)}
        if bias:
            params["bias"] = self._uniform((out_channels,), fan_in)
        opts = dict(out_channels=int(out_channels), kernel=k, stride=s, padding=p, dilation=d, groups=int(groups),
                    bias=bool(bias))
        return self._append("conv2d", name, [x], opts, nid, params)

    def linear(self, x, out_features, bias=True, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "linear")
        nid = self._graph.linear(x, int(out_features), bool(bias), name[:31])
        in_f = int(np.prod(self.layers[x].shape))
        params = {"weight": self._uniform((out_features, in_f), in_f)}
        if bias:
            params["bias"] = self._uniform((out_features,), in_f)
        return self._append("linear", name, [x], dict(out_features=int(out_features), bias=bool(bias),
                                                          in_features=in_f), nid, params)

    def groupnorm(self, x, groups, affine=True, eps=1e-5, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "norm")
        nid = self._graph.groupnorm(x, int(groups), bool(affine), float(eps), name[:31])
        c = self.layers[x].shape[0]
        params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)} if affine else {}
        return self._append("groupnorm", name, [x], dict(groups=int(groups), affine=bool(affine), eps=float(eps)),
                            nid, params)

    def batchnorm(self, x, momentum=0.1, eps=1e-5, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "bn")
        nid = self._graph.batchnorm(x, float(momentum), float(eps), name[:31])
        c = self.layers[x].shape[0]
        params = {"weight": np.ones(c, np.float32), "bias": np.zeros(c, np.float32),
                  "running_mean": np.zeros(c, np.float32), "running_var": np.ones(c, np.float32)}
        return self._append("batchnorm", name, [x], dict(momentum=float(momentum), eps=float(eps)), nid, params)

    def relu(self, x, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "relu")
        return self._append("relu", name, [x], {}, self._graph.relu(x, name[:31]))

    def elu(self, x, alpha=1.0, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "elu")
        return self._append("elu", name, [x], dict(alpha=float(alpha)), self._graph.elu(x, float(alpha), name[:31]))

    def gelu(self, x, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "gelu")
        return self._append("gelu", name, [x], {}, self._graph.gelu(x, name[:31]))

    def avgpool2d(self, x, kernel, stride=None, padding=0, name=None) -> int:
        return self._pool(x, False, kernel, stride, padding, name)

    def maxpool2d(self, x, kernel, stride=None, padding=0, name=None) -> int:
        return self._pool(x, True, kernel, stride, padding, name)

    def _pool(self, x, is_max, kernel, stride, padding, name) -> int:
        x = self._check_input(x)
        kind = "maxpool2d" if is_max else "avgpool2d"
        name = self._unique(name, "pool")
        k = _pair(kernel)
        s = _pair(stride) if stride is not None else k
        p = _pair(padding)
        nid = self._graph.pool(x, is_max, k, s, p, name[:31])
        return self._append(kind, name, [x], dict(kernel=k, stride=s, padding=p), nid)

    def global_avgpool(self, x, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "gap")
        return self._append("global_avgpool", name, [x], {}, self._graph.global_avgpool(x, name[:31]))

    def add(self, a, b, name=None) -> int:
        a, b = self._check_input(a), self._check_input(b)
        name = self._unique(name, "add")
        return self._append("add", name, [a, b], {}, self._graph.add(a, b, name[:31]))

    def flatten(self, x, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "flatten")
        return self._append("flatten", name, [x], {}, self._graph.flatten(x, name[:31]))

    def dropout(self, x, p=0.5, name=None) -> int:
        x = self._check_input(x)
        name = self._unique(name, "dropout")
        return self._append("dropout", name, [x], dict(p=float(p)), self._graph.dropout(x, float(p), name[:31]))

    # ------------------------------------------------------------ queries
    @property
    def classes(self) -> int:
        return int(np.prod(self.layers[-1].shape))

    @property
    def output_layer(self) -> Layer:
        return self.layers[-1]

    def layer(self, name: str) -> Layer:
        for l in self.layers:
            if l.name == name:
                return l
        raise KeyError(f"no layer named '{name}' in network '{self.name}'; layers: {[l.name for l in self.layers[1:]]}")

    def index(self, name: str) -> int:
        for i, l in enumerate(self.layers):
            if l.name == name:
                return i
        raise KeyError(f"no layer named '{name}' in network '{self.name}'; layers: {[l.name for l in self.layers[1:]]}")

    def n_params(self, trainable_only: bool = True) -> int:
        if trainable_only:
            return sum(l.n_trainable() for l in self.layers)
        return int(sum(a.size for l in self.layers for a in l.params.values()))

    def param_layers(self) -> List[int]:
        return [i for i, l in enumerate(self.layers) if l.has_params]

    def finish(self) -> "Network":
        if not self._finished:
            self._graph.finish()
            self._finished = True
        return self

    def core_graph(self, trainable: Sequence[int] = ()) -> "_core.Graph":
        """A fresh C graph of this network with the given nodes marked trainable."""
        self.finish()
        g = _core.Graph(*self.input_shape)
        for i, layer in enumerate(self.layers[1:], start=1):
            o = layer.opts
            l = _Short(layer)
            if l.kind == "conv2d":
                nid = g.conv2d(l.inputs[0], o["out_channels"], o["kernel"], o["stride"], o["padding"], o["dilation"],
                               o["groups"], o["bias"], l.name)
            elif l.kind == "linear":
                nid = g.linear(l.inputs[0], o["out_features"], o["bias"], l.name)
            elif l.kind == "groupnorm":
                nid = g.groupnorm(l.inputs[0], o["groups"], o["affine"], o["eps"], l.name)
            elif l.kind == "batchnorm":
                nid = g.batchnorm(l.inputs[0], o["momentum"], o["eps"], l.name)
            elif l.kind in ("relu", "gelu", "flatten", "global_avgpool"):
                nid = getattr(g, l.kind)(l.inputs[0], l.name)
            elif l.kind == "elu":
                nid = g.elu(l.inputs[0], o["alpha"], l.name)
            elif l.kind in ("avgpool2d", "maxpool2d"):
                nid = g.pool(l.inputs[0], l.kind == "maxpool2d", o["kernel"], o["stride"], o["padding"], l.name)
            elif l.kind == "add":
                nid = g.add(l.inputs[0], l.inputs[1], l.name)
            elif l.kind == "dropout":
                nid = g.dropout(l.inputs[0], o["p"], l.name)
            else:  # pragma: no cover - layers are only made by the methods above
                raise ValueError(f"unknown layer kind {l.kind!r}")
            assert nid == i
        g.finish()
        for i in trainable:
            g.set_trainable(int(i), True)
        return g

    # ------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Parameters as NumPy arrays (copies) under PyTorch's names."""
        if self._live is not None:
            self._live._pull_params()
        out = {}
        for l in self.layers[1:]:
            for k in PARAM_NAMES:
                if k in l.params:
                    out[f"{l.name}.{k}"] = l.params[k].copy()
        return out

    def load_state_dict(self, state: Dict[str, np.ndarray], strict: bool = True) -> None:
        """Loads parameters by name; shapes must match. Accepts torch tensors too."""
        expected = {}
        for l in self.layers[1:]:
            for k in l.params:
                expected[f"{l.name}.{k}"] = (l, k)
        extra = [k for k in state if k not in expected and not k.endswith("num_batches_tracked")]
        missing = [k for k in expected if k not in state]
        if strict and (extra or missing):
            raise ValueError(f"load_state_dict: missing keys {missing}, unexpected keys {extra}")
        for key, (l, k) in expected.items():
            if key not in state:
                continue
            v = state[key]
            v = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
            if v.shape != l.params[k].shape:
                raise ValueError(f"load_state_dict: '{key}' has shape {tuple(v.shape)}, layer '{l.name}' "
                                 f"({l.kind}) needs {tuple(l.params[k].shape)}")
            if not np.all(np.isfinite(v)):
                raise ValueError(f"load_state_dict: '{key}' contains NaN or Inf")
            l.params[k] = v.astype(np.float32).copy()
        if self._live is not None:
            self._live._push_params()

    def summary(self) -> str:
        lines = [f"{self.name}: input {self.input_shape}, {self.n_params()} trainable parameters"]
        for i, l in enumerate(self.layers[1:], start=1):
            n = l.n_trainable()
            lines.append(f"  [{i:2d}] {l.name:<14s} {l.kind:<14s} <- {l.inputs}  out {l.shape}  params {n}")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"Network('{self.name}', input={self.input_shape}, layers={len(self.layers) - 1}, params={self.n_params()})"
