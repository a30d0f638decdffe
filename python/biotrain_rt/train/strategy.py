"""Training strategies: which layers' parameters a Trainer updates."""
from __future__ import annotations

from typing import List, Sequence, Union

Strategy = Union[str, Sequence[str]]


def resolve_strategy(net, strategy: Strategy) -> List[int]:
    """Node ids whose parameters are trained under a strategy:
    ``"full"`` every layer with parameters, ``"last"`` only the final linear
    layer, ``"none"`` nothing, or a list of layer names."""
    with_params = net.param_layers()
    if isinstance(strategy, str):
        if strategy == "full":
            return with_params
        if strategy == "last":
            linears = [i for i in with_params if net.layers[i].kind == "linear"]
            if not linears:
                raise ValueError(f"strategy 'last': network '{net.name}' has no linear layer to train")
            return [linears[-1]]
        if strategy == "none":
            return []
        raise ValueError(f"unknown strategy '{strategy}': use 'full', 'last', 'none' or a list of layer names "
                         f"from {[net.layers[i].name for i in with_params]}")
    ids = []
    for name in strategy:
        try:
            i = net.index(name)
        except KeyError as e:
            raise ValueError(str(e.args[0])) from None
        if i not in with_params:
            raise ValueError(f"layer '{name}' ({net.layers[i].kind}) has no parameters to train")
        ids.append(i)
    return sorted(set(ids))
