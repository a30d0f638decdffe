"""The network description on the Python side.

A :class:`Network` is a list of :class:`Layer` objects forming a DAG (node 0
is the input). It owns the parameters as NumPy arrays under PyTorch's names
(``<layer>.weight``, ``<layer>.bias``, ``<layer>.running_mean`` ...), and
builds the C core's graph (``_core.Graph``) from its layers. Training happens in
a :class:`~biotrain_rt.trainer.Trainer`, which copies the parameters into the
C arena and back.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from . import _core
from .layers import LAYER_KINDS, PARAM_NAMES, SPECS, Layer, pair as _pair  # noqa: F401 (re-exported)


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

    def _check_input(self, i) -> int:
        if not isinstance(i, (int, np.integer)) or i < 0 or i >= len(self.layers):
            raise ValueError(f"Network: input node {i!r} does not exist (the network has {len(self.layers)} nodes)")
        return int(i)

    def add_layer(self, kind: str, inputs: Sequence[int], name: Optional[str] = None, **args) -> int:
        """Appends a layer of any kind of the op table (``brt.layers.SPECS``)
        reading `inputs`; the arguments are the kind's (see its method, e.g.
        :meth:`conv2d`). Returns the new node's id. A refused layer leaves the
        network as it was."""
        if kind not in SPECS:
            raise ValueError(f"Network: unknown layer kind {kind!r}; kinds: {', '.join(LAYER_KINDS)}")
        spec = SPECS[kind]
        inputs = [self._check_input(i) for i in inputs]
        name = self._unique(name, spec.prefix)
        rng_state = self._rng.bit_generator.state
        try:
            opts, params = spec.make(self, inputs, **args)
            layer = Layer(kind, name, inputs, opts, (0, 0, 0), params)
            node_id = self._graph.add(kind, inputs, layer.core_opts(), name[:31])
        except Exception:
            self._rng.bit_generator.state = rng_state  # the next layer's weights as if this one was never tried
            raise
        layer.shape = tuple(self._graph.node(node_id)["shape"])
        self.layers.append(layer)
        self._finished = False
        return node_id

    def conv2d(self, x, out_channels, kernel, stride=1, padding=0, dilation=1, groups=1, bias=False, name=None) -> int:
        return self.add_layer("conv2d", [x], name, out_channels=out_channels, kernel=kernel, stride=stride,
                              padding=padding, dilation=dilation, groups=groups, bias=bias)

    def linear(self, x, out_features, bias=True, name=None) -> int:
        return self.add_layer("linear", [x], name, out_features=out_features, bias=bias)

    def groupnorm(self, x, groups, affine=True, eps=1e-5, name=None) -> int:
        return self.add_layer("groupnorm", [x], name, groups=groups, affine=affine, eps=eps)

    def batchnorm(self, x, momentum=0.1, eps=1e-5, name=None) -> int:
        return self.add_layer("batchnorm", [x], name, momentum=momentum, eps=eps)

    def relu(self, x, name=None) -> int:
        return self.add_layer("relu", [x], name)

    def elu(self, x, alpha=1.0, name=None) -> int:
        return self.add_layer("elu", [x], name, alpha=alpha)

    def gelu(self, x, approximate="none", name=None) -> int:
        """GELU; approximate="none" the exact erf form (PyTorch's default), "tanh" the tanh form."""
        return self.add_layer("gelu", [x], name, approximate=approximate)

    # ------------------------------------------------------------ token sequences (1, S, D)
    def tokens(self, x, name=None) -> int:
        """A (C, H, W) feature map as a sequence (1, H*W, C) of tokens."""
        return self.add_layer("tokens", [x], name)

    def layernorm(self, x, eps=1e-5, elementwise_affine=True, name=None) -> int:
        """LayerNorm over the last axis (each token's features)."""
        return self.add_layer("layernorm", [x], name, eps=eps, elementwise_affine=elementwise_affine)

    def softmax(self, x, name=None) -> int:
        """Softmax over the last axis."""
        return self.add_layer("softmax", [x], name)

    def token_linear(self, x, out_features, bias=True, name=None) -> int:
        """A linear layer applied to every token (shared weight [out_features, D])."""
        return self.add_layer("token_linear", [x], name, out_features=out_features, bias=bias)

    def pos_embed(self, x, std=0.2, name=None) -> int:
        """A learned positional embedding added to the sequence."""
        return self.add_layer("pos_embed", [x], name, std=std)

    def token_mean(self, x, name=None) -> int:
        """The mean over the tokens: (1, S, D) -> (1, 1, D)."""
        return self.add_layer("token_mean", [x], name)

    def seq_pool(self, x, name=None) -> int:
        """CCT's sequence pooling: (1, S, D) -> (1, 1, D)."""
        return self.add_layer("seq_pool", [x], name)

    def drop_path(self, x, p=0.1, name=None) -> int:
        """Stochastic depth on a residual branch (whole samples dropped in training)."""
        return self.add_layer("drop_path", [x], name, p=p)

    def avgpool2d(self, x, kernel, stride=None, padding=0, name=None) -> int:
        return self.add_layer("avgpool2d", [x], name, kernel=kernel, stride=stride, padding=padding)

    def maxpool2d(self, x, kernel, stride=None, padding=0, name=None) -> int:
        return self.add_layer("maxpool2d", [x], name, kernel=kernel, stride=stride, padding=padding)

    def global_avgpool(self, x, name=None) -> int:
        return self.add_layer("global_avgpool", [x], name)

    def add(self, a, b, name=None) -> int:
        return self.add_layer("add", [a, b], name)

    def flatten(self, x, name=None) -> int:
        return self.add_layer("flatten", [x], name)

    def dropout(self, x, p=0.5, name=None) -> int:
        return self.add_layer("dropout", [x], name, p=p)

    def mhsa(self, x, heads, bias=True, rope=False, qkv_bias=None, out_bias=None, keep_probs=False,
             name=None) -> int:
        """Multi-head self-attention over the token sequence x of shape (1, S, D)
        (``brt.layers.MhsaSpec``): ``nn.MultiheadAttention(D, heads, bias)``'s
        self-attention, optionally with rotary position embeddings."""
        return self.add_layer("mhsa", [x], name, num_heads=heads, bias=bias, rope=rope, qkv_bias=qkv_bias,
                              out_bias=out_bias, keep_probs=keep_probs)

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

    def core_graph(self, trainable=()) -> "_core.Graph":
        """A fresh C graph of this network with its LoRA adapters and the given
        nodes trainable (a sequence: whole nodes; a dict: node -> slot mask)."""
        self.finish()
        return core_graph(self.input_shape, [(l.kind, l.inputs, l.core_opts(), l.name) for l in self.layers[1:]],
                          trainable, self.lora_rows())

    # ------------------------------------------------------------ LoRA
    def add_lora(self, layers=None, rank: int = 8, alpha: Optional[float] = None, seed: int = 0) -> List[str]:
        """LoRA adapters on the selected layers (see :func:`biotrain_rt.lora.add_lora`)."""
        from .lora import add_lora
        return add_lora(self, layers, rank, alpha, seed)

    def merge_lora(self) -> List[str]:
        """Folds the adapters into their weights (see :func:`biotrain_rt.lora.merge_lora`)."""
        from .lora import merge_lora
        return merge_lora(self)

    @property
    def has_lora(self) -> bool:
        return any(l.lora for l in self.layers)

    def lora_rows(self) -> List[Tuple[int, int, int, float]]:
        """(node, slot, rank, alpha) of every adapter, in slot order: what the C graph is given."""
        out = []
        for i, l in enumerate(self.layers):
            base = l.base_param_names
            for ad in l.lora:
                out.append((i, base.index(ad.target), ad.rank, ad.alpha))
        return out

    # ------------------------------------------------------------ copies
    def __getstate__(self):
        """Pickling (copies, processes, clusters): the layers and parameters; the C graph is rebuilt."""
        if self._live is not None:
            self._live._pull_params()
        state = {k: v for k, v in self.__dict__.items() if k not in ("_graph", "_live")}
        state["layers"] = [Layer(l.kind, l.name, list(l.inputs), dict(l.opts), tuple(l.shape),
                                 {k: v.copy() for k, v in l.params.items()}, list(l.lora)) for l in self.layers]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._live = None
        self._graph = _core.Graph(*self.input_shape)
        for l in self.layers[1:]:
            self._graph.add(l.kind, list(l.inputs), l.core_opts(), l.name[:31])
        if self._finished:
            self._graph.finish()

    def copy(self) -> "Network":
        """An independent copy (layers, parameters, the initialiser's generator)."""
        import copy
        return copy.deepcopy(self)

    # ------------------------------------------------------------ state
    def state_dict(self) -> Dict[str, np.ndarray]:
        """Parameters as NumPy arrays (copies) under PyTorch's names."""
        if self._live is not None:
            self._live._pull_params()
        out = {}
        for l in self.layers[1:]:
            for k in l.param_names:
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
        adapters = sorted({k.split(".lora_")[0].removesuffix(".out_proj") for k in extra if ".lora_" in k})
        if adapters:
            raise ValueError(f"load_state_dict: the state holds LoRA adapters for layers {adapters} that have none "
                             f"in network '{self.name}'; add them first (net.add_lora({adapters!r}, rank=...)) "
                             f"or merge them into the weights where they were trained (merge_lora)")
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


def core_graph(input_shape, layers, trainable=(), lora=()) -> "_core.Graph":
    """The C graph of (kind, inputs, core options, name) layers after the
    input, finished, with the (node, slot, rank, alpha) LoRA adapters and the
    given nodes trainable (whole nodes, or a dict node -> slot mask): what a
    Network, a firmware manifest and the exported C all build, with the same
    calls."""
    g = _core.Graph(*[int(s) for s in input_shape])
    for i, (kind, inputs, opts, name) in enumerate(layers, start=1):
        nid = g.add(kind, [int(x) for x in inputs], dict(opts), str(name)[:31])
        if nid != i:  # pragma: no cover - the C graph numbers nodes in order
            raise RuntimeError(f"layer '{name}': the graph numbered it {nid}, expected {i}")
    g.finish()
    for node, slot, rank, alpha in lora:
        g.add_lora(int(node), int(slot), int(rank), float(alpha))
    if isinstance(trainable, dict):
        for i, mask in trainable.items():
            g.set_trainable_mask(int(i), int(mask))
    else:
        for i in trainable:
            g.set_trainable(int(i), True)
    return g
