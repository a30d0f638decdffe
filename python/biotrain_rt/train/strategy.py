"""Training strategies: which parameters a Trainer updates.

A strategy resolves to a mask per node (bit k: the node's parameter slot k
trains), which the C graph takes as it is (``bt_graph_set_trainable_mask``):
the planner gives gradients and optimizer state to those slots only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Union

ALL = 0xFF   # BT_TRAIN_ALL: every slot of the node


@dataclass(frozen=True)
class FineTune:
    """A strategy spelled out.

    ``layers``: layers trained whole (every parameter, their adapters too): a
    list of names or a predicate on the :class:`~biotrain_rt.layers.Layer`
    (e.g. ``lambda l: l.kind == "layernorm"`` for every norm's affine
    parameters). ``lora``: train the network's LoRA adapters (A and B; the
    adapted weights stay frozen). ``bias``: with ``lora``, train the biases
    of the adapted layers too (PEFT's ``bias="lora_only"``); the default,
    ``False``, is PEFT's ``bias="none"``."""
    layers: Union[None, Sequence[str], Callable] = None
    lora: bool = False
    bias: bool = False


Strategy = Union[str, Sequence[str], Callable, FineTune]

_NAMED = {
    "lora": "the adapters only",
    "lora+last": "the adapters and the last linear layer",
    "lora+head": "the adapters and every layer with parameters after the last adapted one (the pool and the head)",
}


def _last_linear(net) -> int:
    linears = [i for i in net.param_layers() if net.layers[i].kind == "linear"]
    if not linears:
        raise ValueError(f"strategy 'last': network '{net.name}' has no linear layer to train")
    return linears[-1]


def _named_layers(net, layers) -> List[int]:
    with_params = net.param_layers()
    if callable(layers):
        ids = [i for i in with_params if layers(net.layers[i])]
        if not ids:
            raise ValueError(f"strategy: the predicate selects no layer with parameters of network '{net.name}'")
        return ids
    if isinstance(layers, str):
        layers = [layers]
    ids = []
    for name in layers:
        try:
            i = net.index(name)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        if i not in with_params:
            raise ValueError(f"layer '{name}' ({net.layers[i].kind}) has no parameters to train")
        ids.append(i)
    return sorted(set(ids))


def _adapter_masks(net, bias: bool, strategy) -> Dict[int, int]:
    masks = {}
    for i, l in enumerate(net.layers):
        if not l.lora:
            continue
        mask = 0
        for k, name in enumerate(l.param_names):
            if name in l.adapter_names or (bias and name.endswith("bias")):
                mask |= 1 << k
        masks[i] = mask
    if not masks:
        raise ValueError(f"strategy {strategy!r}: network '{net.name}' has no LoRA adapters; add them first "
                         f"(net.add_lora(rank=4), or brt.lora.add_lora(net, 'last_block', rank=4))")
    return masks


def resolve_masks(net, strategy: Strategy) -> Dict[int, int]:
    """node -> slot mask of what trains under a strategy: ``"full"`` every
    layer with parameters, ``"last"`` only the final linear layer, ``"none"``
    nothing, ``"lora"`` the LoRA adapters, ``"lora+last"`` the adapters and
    the last linear layer, ``"lora+head"`` the adapters and the layers with
    parameters after the last adapted one, a list of layer names or a
    predicate on a layer (trained whole), or a :class:`FineTune`."""
    if isinstance(strategy, str):
        if strategy == "full":
            return {i: ALL for i in net.param_layers()}
        if strategy == "last":
            return {_last_linear(net): ALL}
        if strategy == "none":
            return {}
        if strategy in _NAMED:
            masks = _adapter_masks(net, False, strategy)
            if strategy == "lora+last":
                masks[_last_linear(net)] = ALL
            elif strategy == "lora+head":
                after = max(masks)
                for i in net.param_layers():
                    if i > after:
                        masks[i] = ALL
            return masks
        raise ValueError(f"unknown strategy '{strategy}': use 'full', 'last', 'none', 'lora', 'lora+last', "
                         f"'lora+head', a list of layer names from "
                         f"{[net.layers[i].name for i in net.param_layers()]}, a predicate on a layer or "
                         f"brt.FineTune(...)")
    if isinstance(strategy, FineTune):
        masks = _adapter_masks(net, strategy.bias, strategy) if strategy.lora else {}
        if strategy.layers is not None:
            for i in _named_layers(net, strategy.layers):
                masks[i] = ALL
        if not strategy.lora and strategy.bias:
            raise ValueError("FineTune(bias=True) trains the biases of adapted layers: it needs lora=True")
        return masks
    if callable(strategy) or isinstance(strategy, (list, tuple)):
        return {i: ALL for i in _named_layers(net, strategy)}
    raise TypeError(f"strategy must be a name, a list of layer names, a predicate or brt.FineTune, "
                    f"got {type(strategy).__name__}")


def resolve_strategy(net, strategy: Strategy) -> List[int]:
    """Node ids with something to train under a strategy (see :func:`resolve_masks`)."""
    return sorted(i for i, m in resolve_masks(net, strategy).items() if m)
