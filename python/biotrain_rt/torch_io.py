"""Import from and export to PyTorch.

``from_torch`` traces a module with ``torch.fx`` (so residual connections
survive) and maps every node onto a biotrain-rt layer, copying the weights. A
layer it cannot take raises a ValueError naming the module path and type.
``to_torch`` builds the inverse: a torch module with the same names, so that
``to_torch(net).state_dict()`` and ``net.state_dict()`` share their keys.
"""
from __future__ import annotations

import operator
from typing import Dict, Optional, Sequence

import numpy as np

from .network import Network

_SUPPORTED = ("Conv1d, Conv2d, Linear, BatchNorm1d/2d, GroupNorm, LayerNorm (over the features of a flat "
              "input), ReLU, ELU, GELU (both forms), AvgPool1d/2d, MaxPool1d/2d, AdaptiveAvgPool1d/2d(1), "
              "Flatten, Dropout, Identity, +, torch.flatten")


def _torch():
    try:
        import torch  # noqa: F401
        return torch
    except ImportError as e:  # pragma: no cover - torch is a test extra
        raise ImportError("from_torch/to_torch need PyTorch: pip install torch") from e


def _np(t) -> np.ndarray:
    return t.detach().cpu().numpy().astype(np.float32)


def _pair(v):
    return (int(v[0]), int(v[1])) if isinstance(v, (tuple, list)) and len(v) == 2 else (int(v if not isinstance(v, (tuple, list)) else v[0]),) * 2


def from_torch(module, input_shape: Sequence[int], name: Optional[str] = None) -> Network:
    """A biotrain-rt Network equivalent to a torch module.

    ``input_shape`` is one sample's shape: (c, h, w) for 2-D convolutions or
    (c, t) for 1-D ones (mapped to height 1). Weights are copied.
    """
    torch = _torch()
    import torch.fx as fx
    import torch.nn.functional as F

    shape = tuple(int(s) for s in input_shape)
    net = Network(shape, name=name or type(module).__name__.lower())
    one_d = len(shape) == 2
    try:
        gm = fx.symbolic_trace(module)
    except Exception as e:
        raise ValueError(f"from_torch: could not trace {type(module).__name__} with torch.fx ({e}); "
                         f"build it from supported layers: {_SUPPORTED}") from None
    mods = dict(gm.named_modules())
    ids: Dict[str, int] = {}

    def src(n):
        if not isinstance(n, fx.Node) or n.name not in ids:
            raise ValueError(f"from_torch: node '{n}' reads something that is not a traced tensor")
        return ids[n.name]

    def unsupported(what, path):
        raise ValueError(f"from_torch: layer '{path}' ({what}) is not supported; supported: {_SUPPORTED}")

    out_id = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            if ids:
                raise ValueError("from_torch: the module must take exactly one input tensor")
            ids[node.name] = 0
            continue
        if node.op == "output":
            out_id = src(node.args[0])
            continue
        if node.op == "get_attr":
            unsupported(f"parameter read '{node.target}' in forward", node.name)
        if node.op == "call_module":
            path = str(node.target)
            m = mods[path]
            x = src(node.args[0])
            ids[node.name] = _map_module(net, m, x, path, one_d, unsupported)
            continue
        if node.op == "call_function":
            f = node.target
            if f in (operator.add, torch.add) and len(node.args) == 2 and not node.kwargs:
                ids[node.name] = net.add(src(node.args[0]), src(node.args[1]), name=node.name)
            elif f is torch.flatten and (len(node.args) < 2 or node.args[1] == 1):
                ids[node.name] = net.flatten(src(node.args[0]), name=node.name)
            elif f in (F.relu, torch.relu):
                ids[node.name] = net.relu(src(node.args[0]), name=node.name)
            else:
                unsupported(f"function {getattr(f, '__name__', f)}", node.name)
            continue
        if node.op == "call_method":
            if node.target == "flatten" and (len(node.args) < 2 or node.args[1] == 1):
                ids[node.name] = net.flatten(src(node.args[0]), name=node.name)
            elif node.target in ("view", "reshape") and len(node.args) == 3 and node.args[2] == -1:
                ids[node.name] = net.flatten(src(node.args[0]), name=node.name)
            elif node.target == "relu":
                ids[node.name] = net.relu(src(node.args[0]), name=node.name)
            else:
                unsupported(f"method .{node.target}()", node.name)
            continue
        unsupported(node.op, node.name)
    if out_id is None or out_id != len(net.layers) - 1:
        raise ValueError("from_torch: the module's output must be its last layer (the logits)")
    return net.finish()


def _map_module(net: Network, m, x: int, path: str, one_d: bool, unsupported) -> int:
    import torch.nn as nn

    shape = net.layers[x].shape
    if isinstance(m, (nn.Conv1d, nn.Conv2d)):
        if m.padding_mode != "zeros":
            unsupported(f"{type(m).__name__} with padding_mode='{m.padding_mode}'", path)
        k = (1, m.kernel_size[0]) if isinstance(m, nn.Conv1d) else tuple(m.kernel_size)
        st = (1, m.stride[0]) if isinstance(m, nn.Conv1d) else tuple(m.stride)
        dil = (1, m.dilation[0]) if isinstance(m, nn.Conv1d) else tuple(m.dilation)
        if isinstance(m.padding, str):
            if m.padding == "valid":
                pad = (0, 0)
            else:
                eff = [d * (kk - 1) for d, kk in zip(dil, k)]
                if any(e % 2 for e in eff):
                    unsupported(f"{type(m).__name__} padding='same' with an even kernel (asymmetric padding)", path)
                pad = (eff[0] // 2, eff[1] // 2)
        else:
            pad = (0, m.padding[0]) if isinstance(m, nn.Conv1d) else tuple(m.padding)
        i = net.conv2d(x, m.out_channels, k, st, pad, dil, m.groups, m.bias is not None, name=path)
        w = _np(m.weight)
        net.layers[i].params["weight"] = w.reshape(net.layers[i].params["weight"].shape)
        if m.bias is not None:
            net.layers[i].params["bias"] = _np(m.bias)
        return i
    if isinstance(m, nn.Linear):
        if shape[1:] != (1, 1) and not (shape[0] == 1 and shape[1] == 1):
            unsupported(f"Linear applied to an unflattened tensor of per-sample shape {shape}: "
                        "add nn.Flatten() before it", path)
        if int(np.prod(shape)) != m.in_features:
            raise ValueError(f"from_torch: layer '{path}' Linear expects {m.in_features} features but receives "
                             f"{int(np.prod(shape))} (per-sample shape {shape}); check input_shape")
        i = net.linear(x, m.out_features, bias=m.bias is not None, name=path)
        net.layers[i].params["weight"] = _np(m.weight)
        if m.bias is not None:
            net.layers[i].params["bias"] = _np(m.bias)
        return i
    if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
        if not m.affine or not m.track_running_stats or m.momentum is None:
            unsupported(f"{type(m).__name__} without affine, running statistics or a momentum", path)
        i = net.batchnorm(x, momentum=m.momentum, eps=m.eps, name=path)
        p = net.layers[i].params
        p["weight"], p["bias"] = _np(m.weight), _np(m.bias)
        p["running_mean"], p["running_var"] = _np(m.running_mean), _np(m.running_var)
        return i
    if isinstance(m, nn.GroupNorm):
        i = net.groupnorm(x, m.num_groups, affine=m.affine, eps=m.eps, name=path)
        if m.affine:
            net.layers[i].params["weight"], net.layers[i].params["bias"] = _np(m.weight), _np(m.bias)
        return i
    if isinstance(m, nn.LayerNorm):
        ns = tuple(m.normalized_shape)
        flat = shape[1:] == (1, 1)
        if flat and ns == (shape[0],):
            i = net.groupnorm(x, 1, affine=m.elementwise_affine, eps=m.eps, name=path)
            if m.elementwise_affine:
                if m.bias is None:
                    unsupported("LayerNorm without bias", path)
                net.layers[i].params["weight"], net.layers[i].params["bias"] = _np(m.weight), _np(m.bias)
            return i
        unsupported(f"LayerNorm over {ns} on per-sample shape {shape} (only over the features of a flat input; "
                    "use nn.GroupNorm(1, C) for conv feature maps)", path)
    if isinstance(m, nn.ReLU):
        return net.relu(x, name=path)
    if isinstance(m, nn.ELU):
        return net.elu(x, alpha=m.alpha, name=path)
    if isinstance(m, nn.GELU):
        return net.gelu(x, approximate=m.approximate, name=path)
    if isinstance(m, (nn.AvgPool1d, nn.AvgPool2d, nn.MaxPool1d, nn.MaxPool2d)):
        is_max = isinstance(m, (nn.MaxPool1d, nn.MaxPool2d))
        is1 = isinstance(m, (nn.AvgPool1d, nn.MaxPool1d))
        if m.ceil_mode:
            unsupported(f"{type(m).__name__}(ceil_mode=True)", path)
        if is_max and (m.return_indices or (m.dilation not in (1, (1, 1)))):
            unsupported(f"{type(m).__name__} with dilation or return_indices", path)
        if not is_max and (getattr(m, "divisor_override", None) is not None or
                           (not m.count_include_pad and any(_pair(m.padding)))):
            unsupported(f"{type(m).__name__} with divisor_override or count_include_pad=False", path)
        if is1:
            k, s, p = (1, _pair(m.kernel_size)[0]), (1, _pair(m.stride)[0]), (0, _pair(m.padding)[0])
        else:
            k, s, p = _pair(m.kernel_size), _pair(m.stride), _pair(m.padding)
        return (net.maxpool2d if is_max else net.avgpool2d)(x, k, s, p, name=path)
    if isinstance(m, (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)):
        size = m.output_size
        if size not in (1, (1, 1), [1, 1], (1,)):
            unsupported(f"{type(m).__name__}({size}) (only output size 1)", path)
        return net.global_avgpool(x, name=path)
    if isinstance(m, nn.Flatten):
        if m.start_dim != 1 or m.end_dim != -1:
            unsupported(f"Flatten(start_dim={m.start_dim}, end_dim={m.end_dim})", path)
        return net.flatten(x, name=path)
    if isinstance(m, nn.Dropout):
        return net.dropout(x, p=m.p, name=path)
    if isinstance(m, nn.Identity):
        return x
    unsupported(type(m).__name__, path)


def _sequence_modules(nn, torch):
    """torch modules for the token-sequence kinds, on (batch, 1, S, D) tensors."""
    import math

    class PosEmbed(nn.Module):
        def __init__(self, shape):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(shape))

        def forward(self, x):
            return x + self.weight.reshape(x.shape[1:])

    class SeqPool(nn.Module):
        def __init__(self, d):
            super().__init__()
            self.weight = nn.Parameter(torch.zeros(1, d))
            self.bias = nn.Parameter(torch.zeros(1))

        def forward(self, x):                                    # (B, 1, S, D) -> (B, 1, 1, D)
            a = torch.softmax(x @ self.weight.t() + self.bias, dim=2)
            return (a.transpose(2, 3) @ x)

    class DropPath(nn.Module):
        def __init__(self, p):
            super().__init__()
            self.p = p

        def forward(self, x):
            if not self.training or self.p == 0:
                return x
            keep = (torch.rand(x.shape[0], *([1] * (x.dim() - 1)), device=x.device) >= self.p).to(x.dtype)
            return x * keep / (1 - self.p)

    class MHSA(nn.Module):
        def __init__(self, d, heads, qkv_bias, out_bias, rope):
            super().__init__()
            self.heads, self.rope = heads, rope
            self.in_proj_weight = nn.Parameter(torch.zeros(3 * d, d))
            self.in_proj_bias = nn.Parameter(torch.zeros(3 * d)) if qkv_bias else None
            self.out_proj = nn.Linear(d, d, bias=out_bias)

        @staticmethod
        def _rope(t):
            s, hd = t.shape[-2], t.shape[-1]
            inv = 10000.0 ** (-torch.arange(0, hd, 2, dtype=torch.float64) / hd)
            ang = torch.arange(s, dtype=torch.float64)[:, None] * inv[None, :]
            cos, sin = torch.cos(ang).to(t.dtype), torch.sin(ang).to(t.dtype)
            t0, t1 = t[..., 0::2], t[..., 1::2]
            return torch.stack((t0 * cos - t1 * sin, t0 * sin + t1 * cos), dim=-1).flatten(-2)

        def forward(self, x):                                    # (B, 1, S, D)
            b, _, s, d = x.shape
            hd = d // self.heads
            q, k, v = nn.functional.linear(x[:, 0], self.in_proj_weight, self.in_proj_bias).split(d, dim=-1)
            q, k, v = (t.reshape(b, s, self.heads, hd).transpose(1, 2) for t in (q, k, v))
            if self.rope:
                q, k = self._rope(q), self._rope(k)
            p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), dim=-1)
            return self.out_proj((p @ v).transpose(1, 2).reshape(b, s, d))[:, None]

    return PosEmbed, SeqPool, DropPath, MHSA


def to_torch(net: Network, module=None):
    """A torch module computing the same function with the same weights.

    With ``module`` (e.g. the one ``from_torch`` came from) the weights are
    loaded into it; otherwise a new module is built whose submodules carry the
    layer names (dots become underscores)."""
    torch = _torch()
    import torch.nn as nn

    state = {k: torch.from_numpy(np.array(v)) for k, v in net.state_dict().items()}
    if module is not None:
        target = module.state_dict()
        for k, v in state.items():
            # Conv1d weights are kept as (out, in, 1, k): reshape to the module's own layout
            if k in target and tuple(target[k].shape) != tuple(v.shape) and target[k].numel() == v.numel():
                state[k] = v.reshape(target[k].shape)
        module.load_state_dict(state, strict=False)
        return module

    layers = net.layers
    PosEmbed, SeqPool, DropPath, MHSA = _sequence_modules(nn, torch)

    class TorchNetwork(nn.Module):
        def __init__(self):
            super().__init__()
            self._plan = []
            for i, l in enumerate(layers[1:], start=1):
                key = l.name.replace(".", "_")
                o = l.opts
                if l.kind == "conv2d":
                    mod = nn.Conv2d(layers[l.inputs[0]].shape[0], o["out_channels"], o["kernel"], o["stride"],
                                    o["padding"], o["dilation"], o["groups"], o["bias"])
                elif l.kind == "linear":
                    mod = nn.Linear(o["in_features"], o["out_features"], o["bias"])
                elif l.kind == "groupnorm":
                    mod = nn.GroupNorm(o["groups"], l.shape[0], o["eps"], o["affine"])
                elif l.kind == "batchnorm":
                    mod = nn.BatchNorm2d(l.shape[0], o["eps"], o["momentum"])
                elif l.kind == "relu":
                    mod = nn.ReLU()
                elif l.kind == "elu":
                    mod = nn.ELU(o["alpha"])
                elif l.kind == "gelu":
                    mod = nn.GELU(approximate=o.get("approximate", "none"))
                elif l.kind == "layernorm":
                    mod = nn.LayerNorm(l.shape[2], o["eps"], o["affine"])
                elif l.kind == "softmax":
                    mod = nn.Softmax(dim=-1)
                elif l.kind == "token_linear":
                    mod = nn.Linear(o["in_features"], o["out_features"], o["bias"])
                elif l.kind == "pos_embed":
                    mod = PosEmbed(l.params["weight"].shape)
                elif l.kind == "seq_pool":
                    mod = SeqPool(l.shape[2])
                elif l.kind == "drop_path":
                    mod = DropPath(o["p"])
                elif l.kind == "mhsa":
                    mod = MHSA(o["embed_dim"], o["num_heads"], o["qkv_bias"], o["out_bias"], o["rope"])
                elif l.kind in ("tokens", "token_mean"):
                    mod = None
                elif l.kind == "avgpool2d":
                    mod = nn.AvgPool2d(o["kernel"], o["stride"], o["padding"])
                elif l.kind == "maxpool2d":
                    mod = nn.MaxPool2d(o["kernel"], o["stride"], o["padding"])
                elif l.kind == "global_avgpool":
                    mod = nn.AdaptiveAvgPool2d(1)
                elif l.kind == "flatten":
                    mod = nn.Flatten()
                elif l.kind == "dropout":
                    mod = nn.Dropout(o["p"])
                elif l.kind == "add":
                    mod = None
                else:  # pragma: no cover
                    raise ValueError(f"to_torch: unknown layer kind {l.kind}")
                if mod is not None:
                    self.add_module(key, mod)
                self._plan.append((key, l.kind, list(l.inputs)))

        def forward(self, x):
            if x.dim() == 3:
                x = x.unsqueeze(2) if layers[0].shape[1] == 1 else x.unsqueeze(1)
            vals = [x]
            for key, kind, ins in self._plan:
                if kind == "add":
                    vals.append(vals[ins[0]] + vals[ins[1]])
                elif kind == "tokens":                          # (B, C, H, W) -> (B, 1, H*W, C)
                    vals.append(vals[ins[0]].flatten(2).transpose(1, 2)[:, None])
                elif kind == "token_mean":
                    vals.append(vals[ins[0]].mean(dim=2, keepdim=True))
                elif kind == "linear":
                    vals.append(getattr(self, key)(vals[ins[0]].flatten(1)))
                else:
                    vals.append(getattr(self, key)(vals[ins[0]]))
            return vals[-1]

    tm = TorchNetwork()
    renamed = {}
    for l in layers[1:]:
        for pname in l.param_names:
            if pname in l.params:
                renamed[f"{l.name.replace('.', '_')}.{pname}"] = state[f"{l.name}.{pname}"]
    tm.load_state_dict(renamed, strict=True)
    return tm
