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

#: Parameter names in the order the C core numbers them (0 weight, 1 bias, 2 running mean, 3 running var),
#: for every kind whose spec does not name its slots itself (:meth:`LayerSpec.param_names`).
PARAM_NAMES = ("weight", "bias", "running_mean", "running_var")
#: The parameters that train, for those kinds.
TRAINABLE_NAMES = ("weight", "bias")


def pair(v, what: str = "value") -> Tuple[int, int]:
    """An int or a pair of ints as a pair."""
    if isinstance(v, (tuple, list)):
        if len(v) != 2:
            raise ValueError(f"{what}: expected an int or a pair, got {v!r}")
        return int(v[0]), int(v[1])
    return int(v), int(v)


@dataclass(frozen=True)
class LoraAdapter:
    """A LoRA adapter on the layer's parameter ``target`` (a weight
    [rows, cols]): the layer computes with ``W + (alpha / rank) B A``; A and B
    are the layer's parameters ``{prefix}lora_A.weight`` and
    ``{prefix}lora_B.weight`` (PEFT's names)."""
    target: str
    prefix: str
    rank: int
    alpha: float

    @property
    def names(self) -> Tuple[str, str]:
        return f"{self.prefix}lora_A.weight", f"{self.prefix}lora_B.weight"

    @property
    def scaling(self) -> float:
        return self.alpha / self.rank


@dataclass
class Layer:
    """One node of the network: its kind, the ids of the nodes it reads, its
    options, its per-sample output shape, its parameters and its LoRA
    adapters (in the order the C core numbers their slots)."""
    kind: str
    name: str
    inputs: List[int]
    opts: Dict = field(default_factory=dict)
    shape: Tuple[int, int, int] = (0, 0, 0)
    params: Dict[str, np.ndarray] = field(default_factory=dict)
    lora: List[LoraAdapter] = field(default_factory=list)

    @property
    def spec(self) -> "LayerSpec":
        return SPECS[self.kind]

    @property
    def base_param_names(self) -> Tuple[str, ...]:
        """The op's own parameters present, by C slot."""
        spec = SPECS.get(self.kind)
        names = spec.param_names(self) if spec else PARAM_NAMES
        return tuple(n for n in names if n in self.params)

    @property
    def param_names(self) -> Tuple[str, ...]:
        """Parameter names by C slot (position = slot): the op's own, then each adapter's A and B."""
        return self.base_param_names + tuple(n for a in self.lora for n in a.names)

    @property
    def adapter_names(self) -> Tuple[str, ...]:
        return tuple(n for a in self.lora for n in a.names)

    @property
    def trainable_names(self) -> Tuple[str, ...]:
        spec = SPECS.get(self.kind)
        return (spec.trainable_names(self) if spec else TRAINABLE_NAMES) + self.adapter_names

    @property
    def has_params(self) -> bool:
        return any(k in self.params for k in self.trainable_names)

    def n_trainable(self) -> int:
        return int(sum(self.params[k].size for k in self.trainable_names if k in self.params))

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

    def param_names(self, layer: Layer) -> Tuple[str, ...]:
        """The names of the C core's parameter slots, position = slot (those
        not in ``layer.params`` have no slot): PyTorch's names, so that
        ``state_dict`` keys match the torch module's."""
        return PARAM_NAMES

    def trainable_names(self, layer: Layer) -> Tuple[str, ...]:
        """The parameters that receive gradients (the C core's first slots)."""
        return TRAINABLE_NAMES

    def lora_targets(self, layer: Layer) -> Dict[str, Tuple[str, Tuple[int, ...], Tuple[int, ...]]]:
        """The weights a LoRA adapter may sit on: name -> (prefix of the
        adapter's parameter names, shape of A, shape of B) for rank 1 (the
        rank multiplies the axis of size 1). PEFT's layouts."""
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

    def lora_targets(self, layer):
        # PEFT's Conv2d adapter: A a convolution of the layer's kernel to r channels, B a 1x1 one back
        o = layer.opts
        if o["groups"] != 1:
            return {}
        c_in = layer.params["weight"].shape[1]
        return {"weight": ("", (1, c_in, *o["kernel"]), (o["out_channels"], 1, 1, 1))}

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

    def lora_targets(self, layer):
        return {"weight": ("", (1, layer.opts["in_features"]), (layer.opts["out_features"], 1))}

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
    """GELU as PyTorch names it: approximate="none" the exact erf form, "tanh" the tanh form."""
    kind, prefix = "gelu", "gelu"

    def make(self, net, inputs, approximate="none"):
        if approximate not in ("none", "tanh"):
            raise ValueError(f"gelu: approximate must be 'none' (erf) or 'tanh', got {approximate!r}")
        return dict(approximate=approximate), {}

    def core_opts(self, layer):
        return dict(exact=int(layer.opts.get("approximate", "none") == "none"))

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


class LayerNormSpec(NormSpec):
    """LayerNorm over the last axis (the features of each token), as nn.LayerNorm(D)."""
    kind, prefix = "layernorm", "ln"

    def make(self, net, inputs, normalized_shape=None, eps=1e-5, elementwise_affine=True):
        d = net.layers[inputs[0]].shape[2]
        if normalized_shape is not None:
            ns = tuple(normalized_shape) if isinstance(normalized_shape, (tuple, list)) else (int(normalized_shape),)
            if ns != (d,):
                raise ValueError(f"layernorm: normalises the last axis of size {d}; normalized_shape {ns} "
                                 f"is not ({d},)")
        params = {"weight": np.ones(d, np.float32), "bias": np.zeros(d, np.float32)} if elementwise_affine else {}
        return dict(eps=float(eps), affine=bool(elementwise_affine)), params

    def core_opts(self, layer):
        return dict(affine=int(layer.opts["affine"]), eps=layer.opts["eps"])


class SoftmaxSpec(LayerSpec):
    kind, prefix = "softmax", "softmax"

    def flops(self, layer, src_shape):
        n = _numel(layer.shape)
        return Flops(4 * n, 4 * n, 0.0)


class TokenLinearSpec(LayerSpec):
    """A linear layer over the last axis, shared by every token (nn.Linear on a (batch, S, D) tensor)."""
    kind, prefix = "token_linear", "fc"

    def make(self, net, inputs, out_features, bias=True):
        in_f = int(net.layers[inputs[0]].shape[2])
        out_features = int(out_features)
        if out_features <= 0:
            raise ValueError(f"token_linear: out_features must be positive, got {out_features}")
        params = {"weight": uniform(net._rng, (out_features, in_f), in_f)}
        if bias:
            params["bias"] = uniform(net._rng, (out_features,), in_f)
        return dict(out_features=out_features, bias=bool(bias), in_features=in_f), params

    def core_opts(self, layer):
        return dict(out_f=layer.opts["out_features"], has_bias=int(layer.opts["bias"]))

    def lora_targets(self, layer):
        return {"weight": ("", (1, layer.opts["in_features"]), (layer.opts["out_features"], 1))}

    def macs(self, layer, src_shape):
        return _numel(layer.shape) * float(src_shape[2])

    def flops(self, layer, src_shape):
        m = self.macs(layer, src_shape)
        bias = _numel(layer.shape) if layer.opts["bias"] else 0.0
        return Flops(2 * m + bias, 2 * m, 2 * m + bias, m)


class TokensSpec(LayerSpec):
    """A (C, H, W) feature map as H*W tokens of C features: x.flatten(2).transpose(1, 2) in PyTorch."""
    kind, prefix = "tokens", "tokens"

    def flops(self, layer, src_shape):
        return Flops()


class PosEmbedSpec(LayerSpec):
    """A learned positional embedding of the input's shape (CCT: zeros then trunc-normal(0.2))."""
    kind, prefix = "pos_embed", "pos"

    def make(self, net, inputs, std=0.2):
        shape = tuple(net.layers[inputs[0]].shape)
        w = np.clip(net._rng.standard_normal(shape) * std, -2 * std, 2 * std).astype(np.float32)
        return dict(std=float(std)), {"weight": w.reshape(shape[1:]) if shape[0] == 1 else w}


class TokenMeanSpec(LayerSpec):
    kind, prefix = "token_mean", "mean"

    def make(self, net, inputs):
        token_shape(net, inputs, self.kind)
        return {}, {}

    def flops(self, layer, src_shape):
        return Flops(_numel(src_shape), _numel(src_shape), 0.0)


class SeqPoolSpec(LayerSpec):
    """CCT's sequence pooling: softmax over tokens of a linear D -> 1, then the weighted sum."""
    kind, prefix = "seq_pool", "seqpool"

    def make(self, net, inputs):
        s, d = token_shape(net, inputs, self.kind)
        return {}, {"weight": uniform(net._rng, (1, d), d), "bias": uniform(net._rng, (1,), d)}

    def macs(self, layer, src_shape):
        return 2.0 * _numel(src_shape)

    def flops(self, layer, src_shape):
        n = _numel(src_shape)
        return Flops(4 * n, 6 * n, 2 * n, 2 * n)


class DropPathSpec(LayerSpec):
    kind, prefix = "drop_path", "droppath"

    def make(self, net, inputs, p=0.1):
        p = float(p)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"drop_path: p must be in [0, 1), got {p}")
        return dict(p=p), {}

    def core_opts(self, layer):
        return dict(p=layer.opts["p"])

def token_shape(net, inputs, kind: str) -> Tuple[int, int]:
    """(S tokens, D features) of a token-sequence input (1, S, D), or a clear refusal."""
    c, h, w = net.layers[inputs[0]].shape
    if c != 1:
        raise ValueError(f"{kind}: its input '{net.layers[inputs[0]].name}' has shape {(c, h, w)}, not a token "
                         f"sequence (1, S tokens, D features); reshape the features into the last axis "
                         f"(e.g. a (1, {c * h}, {w}) sequence) first")
    return h, w


class MhsaSpec(LayerSpec):
    """Multi-head self-attention over a token sequence (1, S, D), as
    ``nn.MultiheadAttention(D, num_heads, bias, batch_first=True)`` computes
    ``attn(x, x, x)[0]``, with its parameter names (``in_proj_weight``,
    ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``) and init.
    ``bias`` sets both biases like PyTorch; ``qkv_bias`` / ``out_bias``
    override one (CCT: q/k/v without bias, the projection with). ``rope``:
    rotary position embedding on q and k (pairs (2i, 2i+1) of each head, base
    10000). ``keep_probs``: keep the whole H x S x S map for the backward
    instead of recomputing one head's map at a time (same gradients, more
    memory: for memory comparisons)."""
    kind, prefix = "mhsa", "attn"

    def make(self, net, inputs, num_heads, bias=True, rope=False, qkv_bias=None, out_bias=None,
             keep_probs=False):
        S, D = token_shape(net, inputs, "mhsa")
        if isinstance(num_heads, bool) or not isinstance(num_heads, (int, np.integer)) or num_heads <= 0:
            raise ValueError(f"mhsa: num_heads must be a positive integer, got {num_heads!r}")
        heads = int(num_heads)
        if D % heads:
            divisors = [h for h in range(1, D + 1) if D % h == 0]
            raise ValueError(f"mhsa: num_heads={heads} does not divide the embedding of {D} features "
                             f"(input shape (1, {S}, {D})); each head takes D / num_heads features: "
                             f"choose num_heads in {divisors}")
        hd = D // heads
        if rope and hd % 2:
            raise ValueError(f"mhsa: rope rotates feature pairs, but the head size {D} / {heads} = {hd} is odd; "
                             f"choose num_heads so that D / num_heads is even, or rope=False")
        qb = bool(bias) if qkv_bias is None else bool(qkv_bias)
        ob = bool(bias) if out_bias is None else bool(out_bias)
        # nn.MultiheadAttention._reset_parameters: xavier_uniform_ in_proj, zero biases;
        # out_proj keeps nn.Linear's U(-1/sqrt(D), 1/sqrt(D)) weight
        bound = np.sqrt(6.0 / (D + 3 * D))
        params = {"in_proj_weight": net._rng.uniform(-bound, bound, (3 * D, D)).astype(np.float32)}
        if qb:
            params["in_proj_bias"] = np.zeros(3 * D, np.float32)
        params["out_proj.weight"] = uniform(net._rng, (D, D), D)
        if ob:
            params["out_proj.bias"] = np.zeros(D, np.float32)
        opts = dict(num_heads=heads, embed_dim=D, tokens=S, qkv_bias=qb, out_bias=ob, rope=bool(rope),
                    keep_probs=bool(keep_probs))
        return opts, params

    def core_opts(self, layer):
        o = layer.opts
        return dict(heads=o["num_heads"], qkv_bias=int(o["qkv_bias"]), out_bias=int(o["out_bias"]),
                    rope=int(o["rope"]), keep_probs=int(o["keep_probs"]))

    def param_names(self, layer):
        o = layer.opts
        return tuple(n for n, present in (("in_proj_weight", True), ("in_proj_bias", o["qkv_bias"]),
                                          ("out_proj.weight", True), ("out_proj.bias", o["out_bias"])) if present)

    def trainable_names(self, layer):
        return self.param_names(layer)

    def lora_targets(self, layer):
        # as PEFT adapts nn.MultiheadAttention: the in-projection (q, k, v together) and the out-projection
        D = layer.opts["embed_dim"]
        return {"in_proj_weight": ("", (1, D), (3 * D, 1)), "out_proj.weight": ("out_proj.", (1, D), (D, 1))}

    def macs(self, layer, src_shape):
        # projections 3 S D^2 + S D^2, scores and P V 2 S^2 D
        S, D = layer.opts["tokens"], layer.opts["embed_dim"]
        return 4.0 * S * D * D + 2.0 * S * S * D

    def flops(self, layer, src_shape):
        S, D, H = layer.opts["tokens"], layer.opts["embed_dim"], layer.opts["num_heads"]
        proj, att = 4.0 * S * D * D, 2.0 * S * S * D
        soft = 5.0 * H * S * S          # max, subtract, exp (counted as one), sum, scale
        rope = 6.0 * S * D if layer.opts["rope"] else 0.0
        # backward: dO_h (S D^2), recomputed scores (S^2 D), dV, dP, dK, dQ (4 S^2 D), dX (3 S D^2);
        # weight: dWo (S D^2), dWqkv (3 S D^2)
        return Flops(2 * (proj + att) + soft + rope,
                     2 * (4.0 * S * D * D + 5.0 * S * S * D) + 2 * soft + rope,
                     2 * 4.0 * S * D * D, proj + att)


SPECS: Dict[str, LayerSpec] = {s.kind: s for s in (
    Conv2dSpec(), LinearSpec(), GroupNormSpec(), BatchNormSpec(), ReluSpec(), EluSpec(), GeluSpec(),
    AvgPool2dSpec(), MaxPool2dSpec(), GlobalAvgPoolSpec(), AddSpec(), FlattenSpec(), DropoutSpec(),
    LayerNormSpec(), SoftmaxSpec(), TokenLinearSpec(), TokensSpec(), PosEmbedSpec(), TokenMeanSpec(), SeqPoolSpec(),
    DropPathSpec(), MhsaSpec())}

#: Every layer kind, in the C op table's order.
LAYER_KINDS = tuple(op["name"] for op in _core.op_table() if op["name"] in SPECS)

_missing = [op["name"] for op in _core.op_table() if op["name"] != "input" and op["name"] not in SPECS]
if _missing:  # pragma: no cover - a C op without its Python description is a build error
    raise ImportError(f"the C op table has ops without a Python layer description: {_missing}")
