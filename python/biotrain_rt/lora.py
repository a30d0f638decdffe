"""LoRA adapters: parameter-efficient fine-tuning in the C core.

An adapter on a layer's weight W [rows, cols] (a linear layer, a per-token
linear, an ungrouped convolution, attention's in- and out-projections) adds
two parameters, A [r, cols] and B [rows, r], and the layer computes with
``W + (alpha / r) B A``: PEFT's LoRA, with PEFT's initialisation (A
Kaiming-uniform, B zero, so the adapted network starts equal to the base) and
PEFT's parameter names (``<layer>.lora_A.weight``, ``<layer>.lora_B.weight``;
attention's out-projection ``<layer>.out_proj.lora_A.weight``). The C core
trains A and B without a gradient or optimizer state for W (its planner gives
W none: see ``Trainer(strategy="lora")``), and :func:`merge_lora` folds the
adapters into W for inference.
"""
from __future__ import annotations

from typing import Callable, List, Optional, Sequence, Union

import numpy as np

from .layers import SPECS, Layer, LayerSpec, LoraAdapter

Selection = Union[None, str, Sequence[str], Callable[[Layer], bool]]

#: PEFT's LoraConfig defaults
DEFAULT_RANK = 8
DEFAULT_ALPHA = 8.0


def adaptable_kinds() -> List[str]:
    """Layer kinds that take an adapter (those whose spec names LoRA targets)."""
    return [k for k, s in SPECS.items() if type(s).lora_targets is not LayerSpec.lora_targets]


def _targets(layer: Layer):
    return SPECS[layer.kind].lora_targets(layer)


def max_rank(layer: Layer) -> int:
    """The largest rank an adapter on this layer may have (0: it takes none)."""
    ranks = [min(int(b[0]), int(np.prod(a))) for _, a, b in _targets(layer).values()]
    return min(ranks) if ranks else 0


def last_block(net) -> List[str]:
    """The layers of the last encoder block (names ``blocks.<i>.*``, the
    largest i), TrainDeeploy's "last block" setting."""
    import re
    blocks = sorted({int(m.group(1)) for l in net.layers if (m := re.match(r"blocks\.(\d+)\.", l.name))})
    if not blocks:
        raise ValueError(f"last_block: network '{net.name}' has no layers named 'blocks.<i>.*'")
    return [l.name for l in net.layers if l.name.startswith(f"blocks.{blocks[-1]}.")]


def _select(net, layers: Selection) -> List[int]:
    if layers is None or layers == "all":
        ids = [i for i, l in enumerate(net.layers) if i > 0 and _targets(l)]
        if not ids:
            raise ValueError(f"add_lora: network '{net.name}' has no layer that takes an adapter "
                             f"(kinds: {', '.join(adaptable_kinds())}; convolutions ungrouped)")
        return ids
    if layers == "last_block":
        return [i for i in (net.index(n) for n in last_block(net)) if _targets(net.layers[i])]
    if isinstance(layers, str):
        layers = [layers]
    if callable(layers):
        # a predicate picks among the layers that take an adapter; names are checked one by one
        ids = [i for i, l in enumerate(net.layers) if i > 0 and _targets(l) and layers(l)]
        if not ids:
            raise ValueError(f"add_lora: the predicate selects no layer of network '{net.name}' that takes an "
                             f"adapter ({', '.join(adaptable_kinds())})")
        return ids
    else:
        ids = []
        for name in layers:
            try:
                ids.append(net.index(name))
            except KeyError as e:
                raise ValueError(f"add_lora: {e.args[0]}") from None
    for i in ids:
        l = net.layers[i]
        if not _targets(l):
            why = " (a grouped convolution)" if l.kind == "conv2d" else ""
            raise ValueError(f"add_lora: layer '{l.name}' ({l.kind}{why}) takes no LoRA adapter; adapters sit on "
                             f"{', '.join(adaptable_kinds())} layers (convolutions ungrouped): leave it out")
    return sorted(set(ids))


def _check_rank(rank, what: str) -> int:
    if isinstance(rank, bool) or not isinstance(rank, (int, np.integer)) or rank < 1:
        raise ValueError(f"{what}: rank must be a positive integer, got {rank!r}")
    return int(rank)


def add_lora(net, layers: Selection = None, rank: int = DEFAULT_RANK, alpha: Optional[float] = None,
             seed: int = 0) -> List[str]:
    """Puts a LoRA adapter of ``rank`` and scaling ``alpha / rank`` on every
    weight that takes one in the selected layers (``None`` or ``"all"``: every
    layer that takes one; ``"last_block"``: those of the last ``blocks.<i>``;
    a list of names, each of which must take one; a predicate on the layer,
    asked of the layers that take one). ``alpha`` defaults to PEFT's 8. A is drawn as PEFT draws it
    (Kaiming-uniform, a = sqrt(5): U(-1/sqrt(fan_in), 1/sqrt(fan_in))) from
    ``seed``, B is zero. Returns the names of the adapted layers. A refused
    call changes nothing."""
    if getattr(net, "_live", None) is not None:
        raise ValueError(f"add_lora: network '{net.name}' is held by a live Trainer; call trainer.release() first")
    rank = _check_rank(rank, "add_lora")
    alpha = float(DEFAULT_ALPHA if alpha is None else alpha)
    if not np.isfinite(alpha) or alpha <= 0:
        raise ValueError(f"add_lora: alpha must be positive and finite, got {alpha!r}")
    ids = _select(net, layers)
    todo = []
    for i in ids:
        l = net.layers[i]
        for target, (prefix, a_shape, b_shape) in _targets(l).items():
            if any(a.target == target for a in l.lora):
                raise ValueError(f"add_lora: layer '{l.name}' has an adapter on '{target}' already; "
                                 f"merge_lora() first or leave the layer out")
            rows, cols = int(b_shape[0]), int(np.prod(a_shape))
            if rank > min(rows, cols):
                raise ValueError(f"add_lora: rank {rank} is above min(out, in) = min({rows}, {cols}) of "
                                 f"'{l.name}.{target}'; choose a rank of at most {min(rows, cols)}")
            todo.append((l, target, prefix, a_shape, b_shape, cols))
    rng = np.random.default_rng(seed)
    for l, target, prefix, a_shape, b_shape, fan_in in todo:
        ad = LoraAdapter(target, prefix, rank, alpha)
        bound = 1.0 / np.sqrt(fan_in)
        a_full = (rank,) + tuple(a_shape[1:])
        b_full = (b_shape[0], rank) + tuple(b_shape[2:])
        l.params[ad.names[0]] = rng.uniform(-bound, bound, a_full).astype(np.float32)
        l.params[ad.names[1]] = np.zeros(b_full, np.float32)
        l.lora.append(ad)
    net._finished = False
    return [net.layers[i].name for i in ids]


def delta_weight(layer: Layer, ad: LoraAdapter) -> np.ndarray:
    """(alpha / r) B A in the target's shape, in float32 as the C core forms it."""
    a, b = layer.params[ad.names[0]], layer.params[ad.names[1]]
    w = layer.params[ad.target]
    ba = (b.reshape(b.shape[0], ad.rank).astype(np.float64) @ a.reshape(ad.rank, -1).astype(np.float64))
    return (ba.astype(np.float32) * np.float32(ad.scaling)).reshape(w.shape)


def merge_lora(net) -> List[str]:
    """Folds every adapter into its weight (``W + (alpha / r) B A``) and
    removes it: the network computes the same function with plain layers and
    PyTorch's plain names. Returns the merged layers' names."""
    if net._live is not None:
        net._live._pull_params()
    layers = [l for l in net.layers if l.lora]
    if not layers:
        raise ValueError(f"merge_lora: network '{net.name}' has no LoRA adapters to merge "
                         f"(add them with net.add_lora(...))")
    if net._live is not None:
        raise ValueError(f"merge_lora: network '{net.name}' is held by a live Trainer; call trainer.release() first")
    merged = {id(l): {ad.target: (l.params[ad.target] + delta_weight(l, ad)).astype(np.float32) for ad in l.lora}
              for l in layers}
    for l in layers:
        for ad in l.lora:
            for n in ad.names:
                del l.params[n]
        l.params.update(merged[id(l)])
        l.lora = []
    net._finished = False
    return [l.name for l in layers]
