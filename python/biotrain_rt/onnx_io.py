"""Import from and export to ONNX.

Both directions build on the one layer description (:mod:`biotrain_rt.layers`):
an ONNX node becomes ``net.add_layer(kind, inputs, name, **args)`` with the
kind's own user arguments, and a layer becomes ONNX nodes from its ``opts``
and ``params``. What is here is only the mapping ONNX node <-> layer kind and
arguments, and the bookkeeping of ONNX tensor shapes.

``from_onnx`` reads an inference graph as ``torch.onnx.export`` writes it
(opset 13 and later) or as :func:`to_onnx` writes it, with initializers as
weights:

* Conv (1-D and 2-D), Gemm, MatMul (+ Add of a bias), BatchNormalization,
  InstanceNormalization, GroupNormalization and torch's GroupNorm pattern
  (Reshape, InstanceNormalization, Reshape, Mul, Add), LayerNormalization
  over every feature of a sample, Relu, Elu, Gelu and the elementwise GELU
  patterns (the exact Erf form and the tanh form, each as itself), AveragePool, MaxPool,
  GlobalAveragePool, Flatten, Reshape, Squeeze, Unsqueeze, Transpose (of
  unit axes), Identity, Add of two activations, Dropout, and a trailing
  Softmax or LogSoftmax (dropped: the runtime's output is the logits its
  cross-entropy loss reads; ``Trainer.predict`` gives the probabilities);
* the shape arithmetic torch writes for ``x.view(x.size(0), -1)`` (Shape,
  Gather, Unsqueeze, Concat, Slice, Cast) is evaluated;
* anything else is refused with the node's name, op type and opset.

Concat of activations has no op in the C core and is refused with that
reason. Token sequences ([N, T, D] tensors: attention, per-token
projections, LayerNorm over tokens) are written by ``to_onnx`` but not yet
read back: ``from_onnx`` refuses them naming the node.

The forward part of an onnxruntime-training artifact (``training_model.onnx``
or ``eval_model.onnx``, the graph TrainDeeploy imports) is taken too: the
graph is cut at the logits the loss (SoftmaxCrossEntropyLoss, or
NegativeLogLikelihoodLoss after LogSoftmax) reads, which drops the loss, the
labels and the gradient graph. Such a graph holds its parameters as graph
inputs, their values being in the artifact's checkpoint file; that file is
a flatbuffer only onnxruntime-training reads, so ``from_onnx`` takes the
values as ``weights={name: array}`` (e.g. from onnxruntime-training's
``CheckpointState.load_checkpoint(path).parameters``) and says so when they
are missing.

``to_onnx`` writes an inference model (opset 17 by default; GELU as the
elementwise Erf or tanh pattern below opset 20 and the Gelu op from 20;
every layer kind, the transformer ones included) whose
initializers carry the ``state_dict`` names, so that ``from_onnx`` gives back
the same layers, names and weights.
"""
from __future__ import annotations

import math
import os
from collections import defaultdict
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from .layers import SPECS
from .network import Network

MIN_OPSET = 13
#: ops whose output is their input seen with another shape (no bytes moved)
_VIEW_OPS = ("Reshape", "Squeeze", "Unsqueeze", "Identity", "Transpose")
_SHAPE_OPS = ("Shape", "Gather", "Unsqueeze", "Squeeze", "Concat", "Slice", "Cast", "Identity", "Constant")
_ELEMENTWISE = ("Mul", "Add", "Sub", "Div", "Pow", "Tanh", "Erf", "Sqrt", "Neg")
_LOSS_OPS = ("SoftmaxCrossEntropyLoss", "SoftmaxCrossEntropyLossInternal", "NegativeLogLikelihoodLoss")
_SUPPORTED = ("Conv, Gemm, MatMul(+Add), BatchNormalization, InstanceNormalization, GroupNormalization and the "
              "GroupNorm pattern, LayerNormalization (over a sample's features), Relu, Elu, Gelu and the GELU "
              "patterns, AveragePool, MaxPool, GlobalAveragePool, Flatten, Reshape, Squeeze, Unsqueeze, "
              "Transpose (of unit axes), Identity, Add, Dropout, a final Softmax/LogSoftmax")
# a batch dimension inside shape arithmetic (Shape of an activation)
_BATCH = -(1 << 40)
#: doc_string of the Flatten/Reshape nodes to_onnx writes where ONNX needs another rank than the layer
#: (a linear layer flattens its input itself): from_onnx adds no layer for them
_IMPLICIT = "biotrain-rt: rank change only (no layer)"


def _onnx():
    try:
        import onnx  # noqa: F401
        return onnx
    except ImportError as e:  # pragma: no cover - onnx is a test extra
        raise ImportError("from_onnx/to_onnx need the onnx package: pip install onnx") from e


def _gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def _gelu_erf(x):
    from math import erf
    return 0.5 * x * (1.0 + np.vectorize(erf)(x / np.sqrt(2.0)))


def _f32(v) -> float:
    """A float attribute (stored as float32) as the decimal it was written from: 1e-5, not 9.99999974e-06."""
    return float(str(np.float32(v)))


def _chw(shape: Sequence[int]) -> Tuple[int, int, int]:
    """The runtime's per-sample (c, h, w) of an ONNX per-sample shape."""
    s = tuple(int(v) for v in shape)
    if len(s) == 3:
        return s
    if len(s) == 2:
        return (s[0], 1, s[1])
    if len(s) == 1:
        return (s[0], 1, 1)
    if len(s) == 0:
        return (1, 1, 1)
    raise ValueError(f"rank {len(s) + 1}")


def _like(rank: int, chw: Tuple[int, int, int]) -> Tuple[int, ...]:
    """An output's ONNX per-sample shape: the rank of the op's input, the runtime's sizes."""
    c, h, w = chw
    if rank == 3:
        return (c, h, w)
    if rank == 2:
        return (c, w)
    return (c * h * w,)


class _Refused(ValueError):
    pass


class _Importer:
    def __init__(self, model, input_shape, name, weights):
        onnx = _onnx()
        from onnx import numpy_helper
        self.onnx, self.nh = onnx, numpy_helper
        self.model = model
        self.graph = model.graph
        self.opset = max([o.version for o in model.opset_import if o.domain in ("", "ai.onnx")] or [0])
        if self.opset < MIN_OPSET:
            raise ValueError(f"from_onnx: the model has opset {self.opset}; opset {MIN_OPSET} and later are "
                             f"supported (torch.onnx.export(..., opset_version=17))")
        self.user_input_shape = tuple(int(s) for s in input_shape) if input_shape is not None else None
        self.name = name or (self.graph.name or "onnx_model")
        self.const: Dict[str, np.ndarray] = {}
        for init in self.graph.initializer:
            self.const[init.name] = numpy_helper.to_array(init)
        for k, v in (weights or {}).items():
            self.const[k] = v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)
        self.act: Dict[str, Tuple[int, Tuple[int, ...]]] = {}
        self.net: Optional[Network] = None
        self.names = set()
        self.done = set()
        self.dropped_softmax = False

    # ---------------------------------------------------------------- helpers
    def refuse(self, node, why: str):
        raise _Refused(f"from_onnx: node '{node.name or '(unnamed)'}' ({node.op_type}, opset {self.opset}): {why}")

    def attr(self, node, name, default=None):
        for a in node.attribute:
            if a.name == name:
                return self.onnx.helper.get_attribute_value(a)
        return default

    def is_const(self, t: str) -> bool:
        return t in self.const

    def layer_name(self, node, weight: Optional[str] = None) -> str:
        if weight and weight.endswith(".weight") and weight in self.const:
            base = weight[:-len(".weight")]
        else:
            raw = node.name or node.output[0]
            parts = [p for p in raw.split("/") if p]
            if raw.startswith("/") and len(parts) > 1:
                parts = parts[:-1]     # torch: /module/path/OpType_n -> module.path
            base = ".".join(parts) or node.op_type.lower()
        name, i = base, 1
        while name in self.names or name == "input":
            name, i = f"{base}_{i}", i + 1
        self.names.add(name)
        return name

    def ensure_net(self, shape) -> None:
        if self.net is not None:
            return
        chw = _chw(self.user_input_shape) if self.user_input_shape is not None else _chw(shape)
        if int(np.prod(chw)) != int(np.prod(shape)):
            raise ValueError(f"from_onnx: input_shape {self.user_input_shape} has {int(np.prod(chw))} values per "
                             f"sample, the model's input {int(np.prod(shape))}")
        self.net = Network(chw, name=self.name)

    def src(self, node, t: str, layout: bool = True) -> int:
        """The node id of an activation input; with ``layout`` the ONNX shape
        must be the runtime's (c, h, w) of that node."""
        if t not in self.act:
            self.refuse(node, f"input '{t}' is neither an activation nor a weight this importer knows")
        nid, shape = self.act[t]
        if nid == 0:
            self.ensure_net(shape)
        if layout:
            try:
                chw = _chw(shape)
            except ValueError:
                self.refuse(node, f"input '{t}' has rank {len(shape) + 1}; the runtime holds (batch, c, h, w)")
            if chw != tuple(self.net.layers[nid].shape):
                self.refuse(node, f"input '{t}' has per-sample shape {shape}, which the runtime holds as "
                                  f"{tuple(self.net.layers[nid].shape)}; a reshape between feature-map layouts "
                                  "has no layer in the core")
        return nid

    def add(self, node, kind, inputs, name, rank, **args) -> int:
        try:
            i = self.net.add_layer(kind, inputs, name, **args)
        except ValueError as e:
            self.refuse(node, str(e))
        self.act[node.output[0]] = (i, _like(rank, self.net.layers[i].shape))
        return i

    def set_params(self, i: int, **params) -> None:
        layer = self.net.layers[i]
        for k, v in params.items():
            v = np.asarray(v, dtype=np.float32)
            want = layer.params[k].shape
            if v.size != int(np.prod(want)):
                raise ValueError(f"from_onnx: layer '{layer.name}' {k} has {v.size} values, needs {want}")
            layer.params[k] = np.ascontiguousarray(v.reshape(want))

    def weight(self, node, t: str, what: str) -> np.ndarray:
        if t not in self.const:
            if any(i.name == t for i in self.graph.input):
                self.refuse(node, f"its {what} '{t}' is a graph input without a value (as in an onnxruntime-"
                                  "training artifact, whose values are in the checkpoint): pass "
                                  "weights={name: array}")
            self.refuse(node, f"its {what} '{t}' is computed, not a weight (initializer or Constant)")
        return self.const[t]

    # ---------------------------------------------------------------- the walk
    def run(self) -> Network:
        g = self.graph
        nodes = list(g.node)
        self.consumers = defaultdict(list)
        for n in nodes:
            for t in n.input:
                if t:
                    self.consumers[t].append(n)
        outputs = [o.name for o in g.output]
        logits = self.cut_training(nodes, outputs)
        if logits is not None:
            nodes = self.cone(nodes, logits)
            outputs = [logits]
        elif len(outputs) != 1:
            raise ValueError(f"from_onnx: the graph has {len(outputs)} outputs {outputs}; the runtime's network "
                             "has one (the logits)")
        self.outputs = outputs
        for n in nodes:  # constants first: patterns look ahead at them
            if n.op_type == "Constant" and n.domain in ("", "ai.onnx"):
                self.constant(n)
                self.done.add(id(n))
        data_inputs = [i for i in g.input if i.name not in self.const and
                       any(i.name in n.input for n in nodes)]
        if not data_inputs:
            raise ValueError("from_onnx: the graph has no data input")
        # the first is the data; any other input without a value is refused by the node reading it
        inp = data_inputs[0]
        dims = [d.dim_value if d.HasField("dim_value") else None for d in inp.type.tensor_type.shape.dim]
        self.static_batch = dims[0] if dims else None
        per_sample = dims[1:]
        if any(d is None for d in per_sample):
            if self.user_input_shape is None:
                raise ValueError(f"from_onnx: input '{inp.name}' has dynamic per-sample dimensions {dims}; "
                                 "pass input_shape=(c, h, w)")
            per_sample = list(self.user_input_shape)
        if len(per_sample) > 3:
            raise ValueError(f"from_onnx: input '{inp.name}' has rank {len(dims)}; the runtime takes "
                             "(batch, c, h, w) at most")
        self.act[inp.name] = (0, tuple(int(d) for d in per_sample))
        for n in nodes:
            if id(n) in self.done:
                continue
            self.visit(n)
        out = outputs[0]
        if out not in self.act:
            raise ValueError(f"from_onnx: the graph's output '{out}' is not computed from the input")
        nid, _ = self.act[out]
        if self.net is None or nid != len(self.net.layers) - 1 or nid == 0:
            raise ValueError("from_onnx: the graph's output must be its last layer (the logits)")
        return self.net.finish()

    def cut_training(self, nodes, outputs) -> Optional[str]:
        """The logits tensor of a graph that ends in a loss (an onnxruntime-training artifact), else None."""
        for n in nodes:
            if n.op_type in _LOSS_OPS:
                x = n.input[0]
                prod = [p for p in nodes if x in p.output]
                if n.op_type == "NegativeLogLikelihoodLoss" and prod and prod[0].op_type == "LogSoftmax":
                    x = prod[0].input[0]
                return x
        return None

    def cone(self, nodes, tensor: str):
        need, keep = {tensor}, set()
        for n in reversed(nodes):
            if any(o in need for o in n.output):
                keep.add(id(n))
                need.update(t for t in n.input if t)
        return [n for n in nodes if id(n) in keep]

    def visit(self, n):
        op = n.op_type
        if n.domain not in ("", "ai.onnx"):
            self.refuse(n, f"domain '{n.domain}' is not supported; supported: {_SUPPORTED}")
        if op == "Constant":
            return self.constant(n)
        ins = [t for t in n.input if t]
        if ins and all(self.is_const(t) for t in ins):
            return self.fold(n)
        if op == "Shape":
            nid, shape = self.act.get(n.input[0], (None, None))
            if nid is None:
                self.refuse(n, "reads an unknown tensor")
            full = np.array([_BATCH, *shape], dtype=np.int64)
            start, end = self.attr(n, "start", 0), self.attr(n, "end", None)
            self.const[n.output[0]] = full[start:end]
            return
        handler = getattr(self, "op_" + op, None)
        if handler is None:
            if op == "Concat":
                self.refuse(n, "Concat of activations has no op in the C core (the network is a chain with "
                               "residual Adds)")
            self.refuse(n, f"not supported; supported: {_SUPPORTED}")
        handler(n)

    # ---------------------------------------------------------------- constants and shape arithmetic
    def constant(self, n):
        t = n.attribute[0]
        if t.name == "value":
            self.const[n.output[0]] = self.nh.to_array(t.t)
        elif t.name in ("value_float", "value_int"):
            self.const[n.output[0]] = np.array(self.onnx.helper.get_attribute_value(t))
        elif t.name in ("value_floats", "value_ints"):
            self.const[n.output[0]] = np.array(self.onnx.helper.get_attribute_value(t))
        else:
            self.refuse(n, f"Constant with {t.name}")

    def axes(self, n, rank):
        ax = self.attr(n, "axes")
        if ax is None and len(n.input) > 1 and n.input[1]:
            ax = self.const[n.input[1]].tolist()
        return None if ax is None else [a + rank if a < 0 else a for a in ax]

    def fold(self, n):
        """An op on constants only: computed here (shape arithmetic, constant weights)."""
        op, c = n.op_type, [self.const[t] if t else None for t in n.input]
        if op == "Gather":
            axis = self.attr(n, "axis", 0)
            v = np.take(c[0], c[1], axis=axis)
        elif op == "Unsqueeze":
            v = c[0]
            for a in sorted(self.axes(n, c[0].ndim + len(self.axes(n, 99) or []))):
                v = np.expand_dims(v, a)
        elif op == "Squeeze":
            ax = self.axes(n, c[0].ndim)
            v = np.squeeze(c[0], axis=tuple(ax) if ax else None)
        elif op == "Concat":
            v = np.concatenate([x.reshape(-1) if x.ndim == 0 else x for x in c], axis=self.attr(n, "axis", 0))
        elif op == "Slice":
            starts, ends = c[1], c[2]
            axes = c[3] if len(c) > 3 and c[3] is not None else np.arange(len(starts))
            steps = c[4] if len(c) > 4 and c[4] is not None else np.ones(len(starts), np.int64)
            sl = [slice(None)] * c[0].ndim
            for s, e, a, st in zip(starts, ends, axes, steps):
                sl[int(a)] = slice(int(s), int(min(e, 1 << 62)) if e >= 0 else int(e), int(st))
            v = c[0][tuple(sl)]
        elif op == "Cast":
            from onnx import helper
            v = c[0].astype(helper.tensor_dtype_to_np_dtype(self.attr(n, "to")))
        elif op in ("Identity", "Reshape") and op == "Identity":
            v = c[0]
        elif op in ("Mul", "Add", "Sub", "Div") and c[0].dtype.kind == "f":
            v = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide}[op](c[0], c[1])
        elif op == "Reshape":
            v = c[0].reshape([int(d) if d != 0 else c[0].shape[i] for i, d in enumerate(c[1])])
        elif op == "Transpose":
            v = np.transpose(c[0], self.attr(n, "perm"))
        else:
            self.refuse(n, "an op on constants that this importer does not evaluate")
        self.const[n.output[0]] = np.asarray(v)

    # ---------------------------------------------------------------- views
    def view(self, n, shape):
        nid, _ = self.act[n.input[0]]
        self.act[n.output[0]] = (nid, tuple(int(s) for s in shape))

    def in_shape(self, n, t=None):
        t = t or n.input[0]
        if t not in self.act:
            self.refuse(n, f"input '{t}' is not an activation")
        return self.act[t][1]

    def op_Identity(self, n):
        self.view(n, self.in_shape(n))

    def op_Reshape(self, n):
        if self.try_groupnorm_pattern(n):
            return
        s = self.in_shape(n)
        numel = int(np.prod(s))
        if n.input[1] not in self.const:
            self.refuse(n, "its target shape is computed from data this importer cannot evaluate")
        tgt = [int(v) for v in self.const[n.input[1]].reshape(-1)]
        if not tgt:
            self.refuse(n, "reshape to a scalar")
        b = tgt[0]
        if b in (0, _BATCH) or (self.static_batch and b == self.static_batch):
            rest = tgt[1:]
        elif b == -1 and -1 not in tgt[1:]:
            rest = tgt[1:]
        else:
            self.refuse(n, f"target shape {tgt} does not keep the batch dimension first")
        rest = [s[i] if d == 0 and i < len(s) else d for i, d in enumerate(rest)]
        if rest.count(-1) > 1 or any(d < -1 or d == _BATCH for d in rest):
            self.refuse(n, f"target shape {tgt}")
        if -1 in rest:
            known = int(np.prod([d for d in rest if d != -1]))
            if known == 0 or numel % known:
                self.refuse(n, f"target shape {tgt} does not fit {numel} values per sample")
            rest[rest.index(-1)] = numel // known
        if int(np.prod(rest)) != numel:
            self.refuse(n, f"target shape {tgt} does not fit the per-sample shape {s}")
        self.reshape_to(n, rest)

    def reshape_to(self, n, rest):
        """A reshape: to one flat feature axis from a feature map is the flatten layer; any other
        reshape keeps the bytes in place (a view)."""
        nid, s = self.act[n.input[0]]
        if len(rest) == 1 and len(s) > 1 and n.doc_string != _IMPLICIT:
            name = self.layer_name(n)
            self.add(n, "flatten", [self.src(n, n.input[0], layout=False)], name, 1)
            return
        self.view(n, rest)

    def op_Flatten(self, n):
        axis = self.attr(n, "axis", 1)
        s = self.in_shape(n)
        if axis < 0:
            axis += len(s) + 1
        if axis != 1:
            self.refuse(n, f"Flatten(axis={axis}); only axis=1 keeps the batch")
        self.reshape_to(n, [int(np.prod(s))])

    def op_Squeeze(self, n):
        s = self.in_shape(n)
        ax = self.axes(n, len(s) + 1)
        if ax is None:
            ax = [i + 1 for i, d in enumerate(s) if d == 1]
        if 0 in ax or any(s[a - 1] != 1 for a in ax):
            self.refuse(n, f"squeezes axes {ax} of (batch, {', '.join(map(str, s))})")
        self.view(n, [d for i, d in enumerate(s) if i + 1 not in ax])

    def op_Unsqueeze(self, n):
        s = self.in_shape(n)
        ax = self.axes(n, len(s) + 1 + len(self.axes(n, 99) or []))
        if 0 in ax:
            self.refuse(n, "unsqueezes the batch axis")
        out = [None] + list(s)
        for a in sorted(ax):
            out.insert(a, 1)
        self.view(n, out[1:])

    def op_Transpose(self, n):
        s = self.in_shape(n)
        perm = list(self.attr(n, "perm", list(range(len(s), -1, -1))))
        if perm[0] != 0:
            self.refuse(n, f"Transpose(perm={perm}) moves the batch axis")
        full = [None] + list(s)
        moved = [p for p in perm[1:] if full[p] != 1]
        if moved != sorted(moved):
            if len(s) == 2 and perm == [0, 2, 1]:
                self.refuse(n, f"Transpose(perm={perm}) of per-sample shape {s}: a feature map as a token "
                               "sequence (x.flatten(2).transpose(1, 2)); from_onnx does not read token sequences "
                               "yet (Network.tokens builds it)")
            self.refuse(n, f"Transpose(perm={perm}) of per-sample shape {s} reorders the data; the core has "
                           "no transpose layer (only transposes of unit axes, which move no data, are taken)")
        self.view(n, [full[p] for p in perm[1:]])

    # ---------------------------------------------------------------- layers
    def spatial(self, n, what, rank_ok=(2, 3)):
        s = self.in_shape(n)
        if len(s) not in rank_ok:
            self.refuse(n, f"{what} on a tensor of rank {len(s) + 1}")
        return len(s)

    def hw(self, n, name, rank, default):
        """A 2-D attribute (kernel_shape, strides, dilations, pads) of a 1-D or 2-D op as the 2-D one."""
        v = self.attr(n, name)
        if v is None:
            return default
        v = [int(a) for a in v]
        if rank == 2:   # a 1-D op over (c, w): height 1
            return [0, v[0], 0, v[1]] if name == "pads" else [1, v[0]]
        return v

    def pads(self, n, rank, kernel, dil, stride):
        auto = self.attr(n, "auto_pad", b"NOTSET")
        auto = auto.decode() if isinstance(auto, bytes) else auto
        if auto in ("SAME_UPPER", "SAME_LOWER"):
            if any(st != 1 for st in stride):
                self.refuse(n, f"auto_pad={auto} with a stride")
            eff = [d * (k - 1) for d, k in zip(dil, kernel)]
            if any(e % 2 for e in eff):
                self.refuse(n, f"auto_pad={auto} with an even kernel pads asymmetrically")
            return (eff[0] // 2, eff[1] // 2)
        p = self.hw(n, "pads", rank, [0, 0, 0, 0])
        if p[0] != p[2] or p[1] != p[3]:
            self.refuse(n, f"asymmetric pads {p}; the core pads both sides alike")
        return (p[0], p[1])

    def op_Conv(self, n):
        rank = self.spatial(n, "Conv")
        x = self.src(n, n.input[0])
        w = self.weight(n, n.input[1], "weight")
        if w.ndim != rank + 1:
            self.refuse(n, f"weight of shape {w.shape} on an input of rank {rank + 1}")
        k = (w.shape[2], w.shape[3]) if rank == 3 else (1, w.shape[2])
        st = self.hw(n, "strides", rank, [1, 1])
        dil = self.hw(n, "dilations", rank, [1, 1])
        pad = self.pads(n, rank, k, dil, st)
        has_b = len(n.input) > 2 and bool(n.input[2])
        bias_add = None
        if not has_b:
            bias_add = self.bias_consumer(n, w.shape[0], rank)
        i = self.add(n, "conv2d", [x], self.layer_name(n, n.input[1]), rank, out_channels=int(w.shape[0]),
                     kernel=k, stride=tuple(st), padding=pad, dilation=tuple(dil), groups=int(self.attr(n, "group", 1)),
                     bias=has_b or bias_add is not None)
        self.set_params(i, weight=w)
        if has_b:
            self.set_params(i, bias=self.weight(n, n.input[2], "bias"))
        elif bias_add is not None:
            self.take_bias(i, bias_add, n.output[0])

    def bias_consumer(self, n, out, rank):
        """The Add of a constant [out] (per channel) right after a layer without bias, if any."""
        cons = self.consumers[n.output[0]]
        if len(cons) != 1 or cons[0].op_type != "Add" or n.output[0] in self.outputs:
            return None
        a = cons[0]
        other = a.input[1] if a.input[0] == n.output[0] else a.input[0]
        if other not in self.const:
            return None
        shape = list(self.const[other].shape)
        while shape and shape[0] == 1 and len(shape) > rank:
            shape.pop(0)
        if not shape or shape[0] != out or any(d != 1 for d in shape[1:]) or len(shape) != rank:
            return None
        return a

    def take_bias(self, i, add_node, tensor):
        other = add_node.input[1] if add_node.input[0] == tensor else add_node.input[0]
        self.set_params(i, bias=self.const[other].reshape(-1))
        self.act[add_node.output[0]] = self.act[tensor]
        self.done.add(id(add_node))

    def linear_input(self, n, t):
        s = self.in_shape(n, t)
        if len(s) != 1:
            self.refuse(n, f"{n.op_type} over the last axis of a per-sample {s} tensor is a per-position "
                           "projection (as in attention); the core's linear layer reads a sample's features "
                           "flattened: Flatten before it")
        return self.src(n, t, layout=False)

    def op_Gemm(self, n):
        if self.attr(n, "transA", 0):
            self.refuse(n, "transA=1")
        x = self.linear_input(n, n.input[0])
        w = self.weight(n, n.input[1], "weight").astype(np.float32)
        w = w if self.attr(n, "transB", 0) else w.T
        w = w * np.float32(self.attr(n, "alpha", 1.0))
        has_b = len(n.input) > 2 and bool(n.input[2])
        i = self.add(n, "linear", [x], self.layer_name(n, n.input[1]), 1, out_features=int(w.shape[0]), bias=has_b)
        self.set_params(i, weight=w)
        if has_b:
            self.set_params(i, bias=self.weight(n, n.input[2], "bias").reshape(-1) * np.float32(self.attr(n, "beta", 1.0)))

    def op_MatMul(self, n):
        a, b = n.input
        if a not in self.const and b not in self.const:
            self.refuse(n, "a MatMul of two activations (attention): from_onnx does not read attention yet "
                           "(build the model with Network.mhsa, or from the zoo)")
        if a in self.const:
            self.refuse(n, "weights on the left of a MatMul")
        x = self.linear_input(n, a)
        w = self.const[b]
        if w.ndim != 2:
            self.refuse(n, f"weight of shape {w.shape}")
        add = self.bias_consumer(n, w.shape[1], 1)
        i = self.add(n, "linear", [x], self.layer_name(n, b), 1, out_features=int(w.shape[1]), bias=add is not None)
        self.set_params(i, weight=w.T)
        if add is not None:
            self.take_bias(i, add, n.output[0])

    def op_BatchNormalization(self, n):
        if self.attr(n, "training_mode", 0) or len([o for o in n.output if o]) > 1:
            self.refuse(n, "BatchNormalization in training mode; export the model in eval mode")
        rank = self.spatial(n, "BatchNormalization", (1, 2, 3))
        x = self.src(n, n.input[0])
        sc, b, m, v = (self.weight(n, t, w) for t, w in zip(n.input[1:5], ("scale", "bias", "mean", "var")))
        i = self.add(n, "batchnorm", [x], self.layer_name(n, n.input[1]), rank,
                     momentum=_f32(1.0 - _f32(self.attr(n, "momentum", 0.9))), eps=_f32(self.attr(n, "epsilon", 1e-5)))
        self.set_params(i, weight=sc, bias=b, running_mean=m, running_var=v)

    def op_InstanceNormalization(self, n):
        rank = self.spatial(n, "InstanceNormalization")
        x = self.src(n, n.input[0])
        sc, b = self.weight(n, n.input[1], "scale"), self.weight(n, n.input[2], "bias")
        c = self.net.layers[x].shape[0]
        i = self.add(n, "groupnorm", [x], self.layer_name(n, n.input[1]), rank, groups=c, affine=True,
                     eps=_f32(self.attr(n, "epsilon", 1e-5)))
        self.set_params(i, weight=sc, bias=b)

    def op_GroupNormalization(self, n):
        rank = self.spatial(n, "GroupNormalization")
        x = self.src(n, n.input[0])
        c = self.net.layers[x].shape[0]
        g = int(self.attr(n, "num_groups"))
        sc, b = self.weight(n, n.input[1], "scale").reshape(-1), self.weight(n, n.input[2], "bias").reshape(-1)
        if sc.size == g and g != c:   # opset 18: scale and bias per group
            sc, b = np.repeat(sc, c // g), np.repeat(b, c // g)
        i = self.add(n, "groupnorm", [x], self.layer_name(n, n.input[1]), rank, groups=g, affine=True,
                     eps=_f32(self.attr(n, "epsilon", 1e-5)))
        self.set_params(i, weight=sc, bias=b)

    def try_groupnorm_pattern(self, n) -> bool:
        """torch's GroupNorm: Reshape(x, [0, G, -1]) -> InstanceNormalization(ones, zeros) ->
        Reshape(back to x's shape) [-> Mul(weight [C,1..]) -> Add(bias [C,1..])]."""
        cons = self.consumers[n.output[0]]
        if len(cons) != 1 or cons[0].op_type != "InstanceNormalization" or n.input[1] not in self.const:
            return False
        inorm = cons[0]
        s = self.in_shape(n)
        tgt = [int(v) for v in self.const[n.input[1]].reshape(-1)]
        if len(tgt) != 3 or len(s) not in (1, 2, 3):
            return False
        G = tgt[1]
        c = s[0]
        if G <= 0 or c % G:
            return False
        sc, bi = self.const.get(inorm.input[1]), self.const.get(inorm.input[2])
        if sc is None or bi is None or sc.size != G or not (np.all(sc == 1) and np.all(bi == 0)):
            return False
        back = self.consumers[inorm.output[0]]
        if len(back) != 1 or back[0].op_type != "Reshape":
            return False
        back = back[0]
        if back.input[1] in self.const:
            bt = [int(v) for v in self.const[back.input[1]].reshape(-1)]
            if [d for d in bt[1:]] != list(s):
                return False
        chain, t = [n, inorm, back], back.output[0]
        w = b = None
        for op in ("Mul", "Add"):
            nx = self.consumers[t]
            if len(nx) != 1 or nx[0].op_type != op or t in self.outputs:
                break
            other = nx[0].input[1] if nx[0].input[0] == t else nx[0].input[0]
            v = self.const.get(other)
            if v is None or v.size != c:
                break
            if op == "Mul":
                w = (other, v.reshape(-1))
            else:
                b = (other, v.reshape(-1))
            chain.append(nx[0])
            t = nx[0].output[0]
        x = self.src(n, n.input[0])
        affine = w is not None or b is not None
        name = self.layer_name(inorm, w[0] if w else None)
        for m in chain:
            self.done.add(id(m))
        i = self.add(chain[-1], "groupnorm", [x], name, len(s), groups=G, affine=affine,
                     eps=_f32(self.attr(inorm, "epsilon", 1e-5)))
        if affine:
            self.set_params(i, weight=w[1] if w else np.ones(c, np.float32),
                            bias=b[1] if b else np.zeros(c, np.float32))
        return True

    def op_LayerNormalization(self, n):
        s = self.in_shape(n)
        axis = self.attr(n, "axis", -1)
        axis = axis + len(s) + 1 if axis < 0 else axis
        if axis != 1:
            self.refuse(n, f"LayerNormalization(axis={axis}) of per-sample shape {s} normalises part of a sample "
                           "(per position, as in a transformer); the core normalises whole samples or groups of "
                           "channels (GroupNorm)")
        x = self.src(n, n.input[0])
        chw = self.net.layers[x].shape
        sc = self.weight(n, n.input[1], "scale")
        b = self.weight(n, n.input[2], "bias") if len(n.input) > 2 and n.input[2] else np.zeros_like(sc)
        full_sc = np.broadcast_to(sc, s).reshape(chw[0], -1)
        full_b = np.broadcast_to(b, s).reshape(chw[0], -1)
        if not (np.all(full_sc == full_sc[:, :1]) and np.all(full_b == full_b[:, :1])):
            self.refuse(n, f"LayerNormalization over a {s} feature map with an affine that varies within a "
                           "channel; the core's GroupNorm(1) has one scale and bias per channel")
        i = self.add(n, "groupnorm", [x], self.layer_name(n, n.input[1]), len(s), groups=1, affine=True,
                     eps=_f32(self.attr(n, "epsilon", 1e-5)))
        self.set_params(i, weight=full_sc[:, 0], bias=full_b[:, 0])

    def unary(self, n, kind, **args):
        s = self.in_shape(n)
        x = self.src(n, n.input[0], layout=False)
        self.add(n, kind, [x], self.layer_name(n), 1, **args)
        self.act[n.output[0]] = (len(self.net.layers) - 1, s)

    def op_Relu(self, n):
        self.unary(n, "relu")

    def op_Elu(self, n):
        self.unary(n, "elu", alpha=_f32(self.attr(n, "alpha", 1.0)))

    def op_Gelu(self, n):
        appr = self.attr(n, "approximate", b"none")
        appr = appr.decode() if isinstance(appr, bytes) else appr
        if appr not in ("none", "tanh"):
            self.refuse(n, f"Gelu with approximate={appr!r}")
        self.unary(n, "gelu", approximate=appr)

    def op_Dropout(self, n):
        ratio = self.attr(n, "ratio", None)
        if ratio is None:
            ratio = float(self.const[n.input[1]]) if len(n.input) > 1 and n.input[1] else 0.5
        if len(n.input) > 2 and n.input[2] and bool(self.const.get(n.input[2], False)):
            self.refuse(n, "Dropout in training mode")
        self.unary(n, "dropout", p=_f32(ratio))

    def pool(self, n, kind):
        rank = self.spatial(n, n.op_type)
        x = self.src(n, n.input[0])
        k = self.hw(n, "kernel_shape", rank, None)
        st = self.hw(n, "strides", rank, [1, 1])
        if self.attr(n, "ceil_mode", 0):
            self.refuse(n, "ceil_mode=1")
        if kind == "maxpool2d":
            if any(d != 1 for d in (self.attr(n, "dilations") or [1])) or len([o for o in n.output if o]) > 1:
                self.refuse(n, "MaxPool with dilations or indices")
        pad = self.pads(n, rank, k, [1, 1], st)
        if kind == "avgpool2d" and any(pad) and not self.attr(n, "count_include_pad", 0):
            self.refuse(n, "AveragePool with padding and count_include_pad=0; the core divides by the whole window")
        self.add(n, kind, [x], self.layer_name(n), rank, kernel=tuple(k), stride=tuple(st), padding=pad)

    def op_AveragePool(self, n):
        self.pool(n, "avgpool2d")

    def op_MaxPool(self, n):
        self.pool(n, "maxpool2d")

    def op_GlobalAveragePool(self, n):
        rank = self.spatial(n, "GlobalAveragePool")
        self.add(n, "global_avgpool", [self.src(n, n.input[0])], self.layer_name(n), rank)

    def op_Add(self, n):
        a, b = n.input
        if a in self.const or b in self.const:
            if self.try_elementwise(n):
                return
            self.refuse(n, "Add of a constant that is not the bias of the layer before")
        sa, sb = self.in_shape(n, a), self.in_shape(n, b)
        xa, xb = self.src(n, a, layout=False), self.src(n, b, layout=False)
        if _chw(sa) != _chw(sb) and sa != sb:
            self.refuse(n, f"Add of shapes {sa} and {sb} (broadcasting)")
        self.add(n, "add", [xa, xb], self.layer_name(n), 1)
        self.act[n.output[0]] = (len(self.net.layers) - 1, sa)

    def op_Mul(self, n):
        if not self.try_elementwise(n):
            self.refuse(n, "a Mul that is not part of a GELU or GroupNorm pattern")

    op_Div = op_Pow = op_Tanh = op_Erf = op_Sub = op_Sqrt = op_Neg = op_Mul

    def try_elementwise(self, n) -> bool:
        """A GELU written out elementwise (torch's tanh and Erf forms): the nodes reachable from
        one tensor x through elementwise ops with constants, evaluated on probe values."""
        x = next((t for t in n.input if t in self.act), None)
        if x is None:
            return False
        region, have = [], {x}
        pending = True
        while pending:
            pending = False
            for m in self.consumers_of(have):
                if id(m) in self.done or m in region or m.op_type not in _ELEMENTWISE:
                    continue
                if all((t in have) or (t in self.const) for t in m.input if t):
                    region.append(m)
                    have.update(m.output)
                    pending = True
        if not any(m.op_type in ("Tanh", "Erf") for m in region):
            return False
        inside = {id(m) for m in region}
        outs = [t for m in region for t in m.output
                if t in self.outputs or any(id(c) not in inside for c in self.consumers[t])]
        if len(outs) != 1:
            return False
        probe = np.linspace(-6, 6, 241)
        vals = {x: probe}
        order = [m for m in self.graph.node if id(m) in inside]
        ops = {"Mul": np.multiply, "Add": np.add, "Sub": np.subtract, "Div": np.divide, "Pow": np.power,
               "Tanh": np.tanh, "Sqrt": np.sqrt, "Neg": np.negative}
        for m in order:
            if any(t in self.const and self.const[t].size != 1 for t in m.input if t):
                return False
            args = [vals[t] if t in vals else self.const[t].astype(np.float64).reshape(()) for t in m.input if t]
            if m.op_type == "Erf":
                from math import erf
                vals[m.output[0]] = np.vectorize(erf)(args[0])
            else:
                vals[m.output[0]] = ops[m.op_type](*args)
        y = vals[outs[0]]
        last = next(m for m in order if outs[0] in m.output)
        if np.allclose(y, _gelu_tanh(probe), rtol=1e-6, atol=1e-6):
            approximate = "tanh"
        elif np.allclose(y, _gelu_erf(probe), rtol=1e-6, atol=1e-6):
            approximate = "none"
        else:
            return False
        for m in order:
            self.done.add(id(m))
        s = self.in_shape(n, x)
        i = self.add(last, "gelu", [self.src(n, x, layout=False)], self.layer_name(last), 1,
                     approximate=approximate)
        self.act[outs[0]] = (i, s)
        return True

    def consumers_of(self, tensors):
        seen = []
        for t in list(tensors):
            for c in self.consumers[t]:
                if c not in seen:
                    seen.append(c)
        return seen

    def op_Softmax(self, n):
        if n.output[0] not in self.outputs:
            self.refuse(n, "a Softmax inside the network (as in attention); only a final one (dropped: the "
                           "runtime outputs the logits) is taken")
        s = self.in_shape(n)
        axis = self.attr(n, "axis", -1 if self.opset >= 13 else 1)
        if len(s) != 1 or axis not in (1, -1):
            self.refuse(n, f"a final {n.op_type} over axis {axis} of per-sample shape {s}")
        self.view(n, s)
        self.dropped_softmax = True

    op_LogSoftmax = op_Softmax


def from_onnx(model, input_shape: Optional[Sequence[int]] = None, name: Optional[str] = None,
              weights: Optional[Dict[str, np.ndarray]] = None) -> Network:
    """A :class:`Network` from an ONNX model (a path, bytes or an ``onnx.ModelProto``).

    ``input_shape`` is one sample's shape, needed when the model's input has
    dynamic per-sample dimensions, or to hold a [N, C, T] input as (1, C, T)
    rather than (C, 1, T) (either way round when the graph unsqueezes it
    itself, the importer picks the layout of the first layer). ``weights``
    gives values to parameters that are graph inputs (onnxruntime-training
    artifacts). See the module docstring for the ops taken."""
    onnx = _onnx()
    if isinstance(model, (str, os.PathLike)):
        model = onnx.load(os.fspath(model))
    elif isinstance(model, (bytes, bytearray)):
        model = onnx.load_from_string(bytes(model))
    elif not isinstance(model, onnx.ModelProto):
        raise TypeError(f"from_onnx takes a path, bytes or an onnx.ModelProto, got {type(model).__name__}")
    return _Importer(model, input_shape, name, weights).run()


# ==================================================================== export
class _TokenGraph:
    """What a token-sequence exporter needs: node and initializer makers."""

    def __init__(self, helper, nodes, init, const, opset):
        self.helper, self.nodes, self.init, self.const, self.opset = helper, nodes, init, const, opset

    def node(self, op, ins, out, name, **kw):
        self.nodes.append(self.helper.make_node(op, ins, [out] if isinstance(out, str) else out, name, **kw))
        return out

    def weight_t(self, name, w):
        """MatMul's right-hand side for a [out, in] weight kept under its state_dict name."""
        return self.node("Transpose", [self.init(name, w)], f"{name}/T", f"{name}/T", perm=[1, 0])

    def linear(self, x, name, w, b, out):
        """x @ w.T (+ b) over the last axis of a tensor of any rank."""
        mm = f"{out}/matmul" if b is not None else out
        y = self.node("MatMul", [x, self.weight_t(f"{name}.weight", w)], mm, mm)
        if b is not None:
            y = self.node("Add", [y, self.init(f"{name}.bias", b)], out, out)
        return y

    def as3(self, x, r, shape):
        """x as [batch, S, D] from [batch, 1, S, D] (the runtime's (1, S, D))."""
        if r == 3:
            return x
        return self.node("Reshape", [x, self.const(f"{x}/seq", [0, shape[1], shape[2]])], f"{x}/seq", f"{x}/seq")


def _export_tokens(g, l, state, x, y, r, shape):
    c, h, w = shape
    t = g.node("Reshape", [x, g.const(f"{l.name}/flat_shape", [0, c, h * w])], f"{l.name}/flat", f"{l.name}/flatten")
    g.node("Transpose", [t], y, l.name, perm=[0, 2, 1])
    return 3


def _export_layernorm(g, l, state, x, y, r, shape):
    d = l.shape[2]
    if l.opts["affine"]:
        sc, b = g.init(f"{l.name}.weight", state[f"{l.name}.weight"]), g.init(f"{l.name}.bias", state[f"{l.name}.bias"])
    else:
        sc, b = g.init(f"{l.name}/ones", np.ones(d)), g.init(f"{l.name}/zeros", np.zeros(d))
    g.node("LayerNormalization", [x, sc, b], y, l.name, axis=-1, epsilon=l.opts["eps"])
    return r


def _export_softmax(g, l, state, x, y, r, shape):
    g.node("Softmax", [x], y, l.name, axis=-1)
    return r


def _export_token_linear(g, l, state, x, y, r, shape):
    b = state[f"{l.name}.bias"] if l.opts["bias"] else None
    g.linear(x, l.name, state[f"{l.name}.weight"], b, y)
    return r


def _export_pos_embed(g, l, state, x, y, r, shape):
    g.node("Add", [x, g.init(f"{l.name}.weight", state[f"{l.name}.weight"])], y, l.name)
    return r


def _reduce_mean(g, x, y, name, axis):
    if g.opset >= 18:
        return g.node("ReduceMean", [x, g.const(f"{name}/axes", [axis])], y, name, keepdims=1)
    return g.node("ReduceMean", [x], y, name, axes=[axis], keepdims=1)


def _export_token_mean(g, l, state, x, y, r, shape):
    _reduce_mean(g, x, y, l.name, -2)
    return r


def _export_seq_pool(g, l, state, x, y, r, shape):
    nm = l.name
    x = g.as3(x, r, shape)
    s = g.linear(x, nm, state[f"{nm}.weight"], state[f"{nm}.bias"], f"{nm}/scores")     # [N, S, 1]
    p = g.node("Softmax", [s], f"{nm}/weights", f"{nm}/softmax", axis=1)
    pt = g.node("Transpose", [p], f"{nm}/weights_t", f"{nm}/transpose", perm=[0, 2, 1])  # [N, 1, S]
    g.node("MatMul", [pt, x], y, nm)                                                       # [N, 1, D]
    return 3


def _export_drop_path(g, l, state, x, y, r, shape):
    g.node("Identity", [x], y, l.name)
    return r


def _rope_tables(S, hd):
    """cos and sin per position and feature, each pair (2i, 2i+1) sharing its angle, and the
    matrix that maps a head's features (t0, t1) pairs to (-t1, t0)."""
    inv = 10000.0 ** (-np.arange(0, hd, 2, dtype=np.float64) / hd)
    ang = np.repeat(np.arange(S, dtype=np.float64)[:, None] * inv[None, :], 2, axis=1)
    rot = np.zeros((hd, hd), np.float32)
    for i in range(hd // 2):
        rot[2 * i + 1, 2 * i] = -1.0
        rot[2 * i, 2 * i + 1] = 1.0
    return np.cos(ang).astype(np.float32), np.sin(ang).astype(np.float32), rot


def _export_mhsa(g, l, state, x, y, r, shape):
    """nn.MultiheadAttention's computation written out: one in-projection, heads split by
    Reshape/Transpose, scaled scores, Softmax, the weighted values, the out-projection."""
    o, nm = l.opts, l.name
    S, D, H = o["tokens"], o["embed_dim"], o["num_heads"]
    hd = D // H
    x = g.as3(x, r, shape)
    qkv = g.node("MatMul", [x, g.weight_t(f"{nm}.in_proj_weight", state[f"{nm}.in_proj_weight"])],
                 f"{nm}/qkv0", f"{nm}/in_proj")
    if o["qkv_bias"]:
        qkv = g.node("Add", [qkv, g.init(f"{nm}.in_proj_bias", state[f"{nm}.in_proj_bias"])], f"{nm}/qkv",
                     f"{nm}/in_proj_bias")
    parts = g.node("Split", [qkv, g.const(f"{nm}/split_sizes", [D, D, D])], [f"{nm}/q0", f"{nm}/k0", f"{nm}/v0"],
                   f"{nm}/split", axis=-1)
    heads = g.const(f"{nm}/heads_shape", [0, S, H, hd])
    qkv_h = []
    for t in parts:
        t4 = g.node("Reshape", [t, heads], f"{t}/h", f"{t}/reshape")
        qkv_h.append(g.node("Transpose", [t4], f"{t}/hT", f"{t}/transpose", perm=[0, 2, 1, 3]))  # [N, H, S, hd]
    q, k, v = qkv_h
    if o["rope"]:
        cos, sin, rot = _rope_tables(S, hd)
        c, s_, R = g.init(f"{nm}/rope_cos", cos), g.init(f"{nm}/rope_sin", sin), g.init(f"{nm}/rope_rot", rot)
        rotated = []
        for t in (q, k):
            a = g.node("Mul", [t, c], f"{t}/cos", f"{t}/rope_cos")
            b = g.node("Mul", [g.node("MatMul", [t, R], f"{t}/rot", f"{t}/rope_rot"), s_], f"{t}/sin",
                       f"{t}/rope_sin")
            rotated.append(g.node("Add", [a, b], f"{t}/rope", f"{t}/rope"))
        q, k = rotated
    kt = g.node("Transpose", [k], f"{nm}/kT", f"{nm}/k_transpose", perm=[0, 1, 3, 2])
    sc = g.node("MatMul", [q, kt], f"{nm}/qk", f"{nm}/scores")
    sc = g.node("Mul", [sc, g.init(f"{nm}/scale", np.float32(1.0 / math.sqrt(hd)))], f"{nm}/scores", f"{nm}/scale")
    p = g.node("Softmax", [sc], f"{nm}/probs", f"{nm}/softmax", axis=-1)
    a = g.node("MatMul", [p, v], f"{nm}/pv", f"{nm}/weighted")
    a = g.node("Transpose", [a], f"{nm}/pvT", f"{nm}/merge_transpose", perm=[0, 2, 1, 3])
    a = g.node("Reshape", [a, g.const(f"{nm}/merged_shape", [0, S, D])], f"{nm}/merged", f"{nm}/merge")
    ob = state[f"{nm}.out_proj.bias"] if o["out_bias"] else None
    g.linear(a, f"{nm}.out_proj", state[f"{nm}.out_proj.weight"], ob, y)
    return 3


#: layer kinds on token sequences: kind -> exporter(graph, layer, state, x, y, rank of x, shape of x) -> rank of y
_TOKEN_EXPORTERS = {
    "tokens": _export_tokens, "layernorm": _export_layernorm, "softmax": _export_softmax,
    "token_linear": _export_token_linear, "pos_embed": _export_pos_embed, "token_mean": _export_token_mean,
    "seq_pool": _export_seq_pool, "drop_path": _export_drop_path, "mhsa": _export_mhsa,
}


def to_onnx(net: Network, path=None, opset: int = 17, softmax: bool = False, batch: Optional[int] = None):
    """Writes ``net`` as an ONNX inference model (to ``path`` if given) and
    returns the ``onnx.ModelProto``. The input is ``input`` [batch, c, h, w]
    (``batch`` fixed or, by default, dynamic), the output ``logits``
    [batch, classes] (probabilities with ``softmax=True``). Batchnorm uses its
    running statistics and dropout is the identity, as in ``Trainer.predict``.
    Initializers carry the ``state_dict`` names."""
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper
    if not isinstance(net, Network):
        raise TypeError(f"to_onnx needs a biotrain_rt Network, got {type(net).__name__}")
    if opset < MIN_OPSET:
        raise ValueError(f"to_onnx: opset {opset}; {MIN_OPSET} and later are written")
    net.finish()
    state = net.state_dict()
    nodes, inits = [], []

    def init(name, arr, dtype=np.float32):
        inits.append(numpy_helper.from_array(np.array(arr, dtype=dtype, order="C"), name))
        return name

    def const(name, arr, dtype=np.int64):
        return init(name, arr, dtype)

    layers = net.layers
    tname = ["input"] + [l.name for l in layers[1:]]
    rank = {"input": 4}

    def implicit(op, ins, out, name, **kw):
        nd = helper.make_node(op, ins, [out], name, **kw)
        nd.doc_string = _IMPLICIT
        nodes.append(nd)
        rank[out] = 2 if op == "Flatten" else 4
        return out

    def as4(t, j):
        """tensor t (of node j) as [batch, c, h, w]"""
        if rank[t] == 4:
            return t
        return implicit("Reshape", [t, const(f"{t}/chw", [0, *layers[j].shape])], f"{t}/4d", f"{t}/4d")

    def as2(t):
        if rank[t] == 2:
            return t
        return implicit("Flatten", [t], f"{t}/flat", f"{t}/flatten", axis=1)

    for i, l in enumerate(layers[1:], start=1):
        o, y, nm, k = l.opts, tname[i], l.name, l.kind
        x = [tname[j] for j in l.inputs]
        xr = rank[x[0]] if x else 4
        rank[y] = xr
        if k == "conv2d":
            ins = [as4(x[0], l.inputs[0]), init(f"{nm}.weight", state[f"{nm}.weight"])]
            if o["bias"]:
                ins.append(init(f"{nm}.bias", state[f"{nm}.bias"]))
            nodes.append(helper.make_node("Conv", ins, [y], nm, kernel_shape=list(o["kernel"]),
                                          strides=list(o["stride"]), dilations=list(o["dilation"]),
                                          pads=[o["padding"][0], o["padding"][1]] * 2, group=o["groups"]))
            rank[y] = 4
        elif k == "linear":
            ins = [as2(x[0]), init(f"{nm}.weight", state[f"{nm}.weight"])]
            if o["bias"]:
                ins.append(init(f"{nm}.bias", state[f"{nm}.bias"]))
            nodes.append(helper.make_node("Gemm", ins, [y], nm, transB=1))
            rank[y] = 2
        elif k == "batchnorm":
            ins = [x[0]] + [init(f"{nm}.{p}", state[f"{nm}.{p}"]) for p in ("weight", "bias", "running_mean",
                                                                           "running_var")]
            nodes.append(helper.make_node("BatchNormalization", ins, [y], nm, epsilon=o["eps"],
                                          momentum=1.0 - o["momentum"]))
        elif k == "groupnorm":
            c, h, w = l.shape
            G = o["groups"]
            per_c = (c, 1, 1) if xr == 4 else (c,)
            if G == c and o["affine"] and xr == 4:
                nodes.append(helper.make_node("InstanceNormalization",
                                              [x[0], init(f"{nm}.weight", state[f"{nm}.weight"]),
                                               init(f"{nm}.bias", state[f"{nm}.bias"])], [y], nm, epsilon=o["eps"]))
            else:
                t1, t2, t3 = f"{nm}/grouped", f"{nm}/normed", (f"{nm}/back" if o["affine"] else y)
                back = [0, c, h, w] if xr == 4 else [0, c * h * w]
                nodes += [helper.make_node("Reshape", [x[0], const(f"{nm}/groups", [0, G, -1])], [t1], f"{nm}/reshape"),
                          helper.make_node("InstanceNormalization",
                                           [t1, init(f"{nm}/ones", np.ones(G)), init(f"{nm}/zeros", np.zeros(G))],
                                           [t2], nm if not o["affine"] else f"{nm}/instancenorm", epsilon=o["eps"]),
                          helper.make_node("Reshape", [t2, const(f"{nm}/shape", back)], [t3], f"{nm}/reshape_back")]
                if o["affine"]:
                    t4 = f"{nm}/scaled"
                    nodes += [helper.make_node("Mul", [t3, init(f"{nm}.weight", state[f"{nm}.weight"].reshape(per_c))],
                                               [t4], f"{nm}/mul"),
                              helper.make_node("Add", [t4, init(f"{nm}.bias", state[f"{nm}.bias"].reshape(per_c))],
                                               [y], nm)]
        elif k == "relu":
            nodes.append(helper.make_node("Relu", x, [y], nm))
        elif k == "elu":
            nodes.append(helper.make_node("Elu", x, [y], nm, alpha=o["alpha"]))
        elif k == "gelu" and o.get("approximate", "none") == "none":
            if opset >= 20:
                nodes.append(helper.make_node("Gelu", x, [y], nm, approximate="none"))
            else:
                r2 = init(f"{nm}/sqrt2", np.float32(math.sqrt(2.0)))
                one, half = init(f"{nm}/one", np.float32(1.0)), init(f"{nm}/half", np.float32(0.5))
                t = [f"{nm}/t{j}" for j in range(4)]
                nodes += [helper.make_node("Div", [x[0], r2], [t[0]], f"{nm}/div"),
                          helper.make_node("Erf", [t[0]], [t[1]], f"{nm}/erf"),
                          helper.make_node("Add", [t[1], one], [t[2]], f"{nm}/add"),
                          helper.make_node("Mul", [x[0], t[2]], [t[3]], f"{nm}/mul"),
                          helper.make_node("Mul", [t[3], half], [y], nm)]
        elif k == "gelu":
            if opset >= 20:
                nodes.append(helper.make_node("Gelu", x, [y], nm, approximate="tanh"))
            else:
                c0 = init(f"{nm}/c0", np.float32(0.044715))
                c1 = init(f"{nm}/c1", np.float32(math.sqrt(2.0 / math.pi)))
                one, half = init(f"{nm}/one", np.float32(1.0)), init(f"{nm}/half", np.float32(0.5))
                t = [f"{nm}/t{j}" for j in range(8)]
                nodes += [helper.make_node("Mul", [x[0], x[0]], [t[0]], f"{nm}/sq"),
                          helper.make_node("Mul", [x[0], t[0]], [t[1]], f"{nm}/cube"),
                          helper.make_node("Mul", [c0, t[1]], [t[2]], f"{nm}/mul0"),
                          helper.make_node("Add", [x[0], t[2]], [t[3]], f"{nm}/add0"),
                          helper.make_node("Mul", [c1, t[3]], [t[4]], f"{nm}/mul1"),
                          helper.make_node("Tanh", [t[4]], [t[5]], f"{nm}/tanh"),
                          helper.make_node("Add", [one, t[5]], [t[6]], f"{nm}/add1"),
                          helper.make_node("Mul", [x[0], t[6]], [t[7]], f"{nm}/mul2"),
                          helper.make_node("Mul", [half, t[7]], [y], nm)]
        elif k in ("avgpool2d", "maxpool2d"):
            kw = dict(kernel_shape=list(o["kernel"]), strides=list(o["stride"]), pads=list(o["padding"]) * 2)
            if k == "avgpool2d":
                kw["count_include_pad"] = 1
            nodes.append(helper.make_node("AveragePool" if k == "avgpool2d" else "MaxPool",
                                          [as4(x[0], l.inputs[0])], [y], nm, **kw))
            rank[y] = 4
        elif k == "global_avgpool":
            nodes.append(helper.make_node("GlobalAveragePool", [as4(x[0], l.inputs[0])], [y], nm))
            rank[y] = 4
        elif k == "add":
            a, b = x
            if rank[a] != rank[b]:
                a, b = as4(a, l.inputs[0]), as4(b, l.inputs[1])
            nodes.append(helper.make_node("Add", [a, b], [y], nm))
            rank[y] = rank[a]
        elif k == "flatten":
            nodes.append(helper.make_node("Flatten", x, [y], nm, axis=1))
            rank[y] = 2
        elif k == "dropout":
            nodes.append(helper.make_node("Dropout", [x[0], init(f"{nm}.ratio", np.float32(o["p"]))], [y], nm))
        elif k in _TOKEN_EXPORTERS:
            if k == "layernorm" and opset < 17:
                raise ValueError(f"to_onnx: layer '{nm}' (layernorm) needs LayerNormalization, which is in "
                                 f"opset 17 and later; pass opset=17 or later")
            src = x[0] if rank[x[0]] >= 3 else as4(x[0], l.inputs[0])
            rank[y] = _TOKEN_EXPORTERS[k](_TokenGraph(helper, nodes, init, const, opset), l, state, src, y,
                                          rank[src], layers[l.inputs[0]].shape)
        else:  # pragma: no cover - every kind of layers.SPECS has a branch
            raise ValueError(f"to_onnx: layer '{nm}' of kind {k} has no ONNX form")
    last = as2(tname[-1])
    out = "logits"
    if softmax:
        nodes.append(helper.make_node("Softmax", [last], [out], "softmax", axis=-1))
    else:
        nodes.append(helper.make_node("Identity", [last], [out], "logits"))
    b = batch if batch is not None else "batch"
    graph = helper.make_graph(nodes, net.name, [helper.make_tensor_value_info("input", TensorProto.FLOAT,
                                                                             [b, *net.input_shape])],
                              [helper.make_tensor_value_info(out, TensorProto.FLOAT, [b, net.classes])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], producer_name="biotrain-rt")
    model.ir_version = min(model.ir_version, 10)
    onnx.checker.check_model(model, full_check=True)
    if path is not None:
        onnx.save(model, os.fspath(path))
    return model
