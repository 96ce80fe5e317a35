"""How a model is called on a batch's inputs, and which of its outputs is the prediction every
measurement uses.

Inputs (`landscape.data.batches`): a tensor is passed as `model(x)`, a tuple of tensors as
`model(*x)`, a mapping as `model(**x)` (Hugging Face style: `input_ids`, `attention_mask`, ...).

The prediction rule (docs/models.md): the output itself when it is a tensor; else its `logits` (an
attribute, as on transformers' `ModelOutput` dataclasses, or a mapping key); else the first entry of
a tuple or list (torchvision's auxiliary-head and timm's distillation outputs put the main
prediction first). Anything else is refused with a `LandscapeError` that names what the model
returned. `output=` overrides the rule: a name (an attribute, mapping key or tuple index) or a
callable `output(model_output) -> tensor`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from ..data.batches import Inputs
from ..errors import LandscapeError

Output = str | int | Callable[[Any], torch.Tensor] | None


def call(model: nn.Module, inputs: Inputs) -> Any:
    """`model(inputs)`, `model(*inputs)` for a tuple or `model(**inputs)` for a mapping."""
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(*inputs)


def _describe(out: Any) -> str:
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {', '.join(map(str, out)) or 'none'}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} entries"
    return f"a {type(out).__name__}"


def _select(out: Any, name: str | int) -> Any:
    """`out`'s entry `name`: a tuple index, a mapping key or an attribute (None when it has
    none).
    """
    if isinstance(name, int):
        return (
            out[name] if isinstance(out, (tuple, list)) and -len(out) <= name < len(out) else None
        )
    if isinstance(out, Mapping) and name in out:
        return out[name]
    return getattr(out, name, None)


def prediction(out: Any, output: Output = None) -> torch.Tensor:
    """The tensor of a model's output that measurements use (the rule of the module docstring).

    Args:
        out: what the model returned.
        output: None for the rule, a name (attribute, key or tuple index) or a callable taking
        `out`.

    Returns:
        The prediction tensor (logits, or log-probabilities for `criterion="nll"`).

    Raises:
        LandscapeError: the rule or `output` finds no tensor.
    """
    if output is None:
        found = out if isinstance(out, torch.Tensor) else _select(out, "logits")
        if found is None and isinstance(out, (tuple, list)) and out:
            found = out[0]
        how = "pass output=NAME or output=callable to say which tensor is the prediction"
    elif callable(output):
        found, how = output(out), "the output= callable must return a tensor"
    else:
        found, how = _select(out, output), f"output={output!r} names no tensor of it"
    if not isinstance(found, torch.Tensor):
        raise LandscapeError(
            f"the model returned {_describe(out)}, and no prediction tensor was found in it: {how}"
        )
    return found


def predict(model: nn.Module, inputs: Inputs, output: Output = None) -> torch.Tensor:
    """The prediction tensor of `model` on `inputs` (`call`, then `prediction`).

    Raises:
        LandscapeError: the model's output holds no prediction tensor, or the model refuses the
            inputs (a `TypeError` from its forward, e.g. a keyword it does not take), in one line.
    """
    try:
        out = call(model, inputs)
    except TypeError as exc:
        kind = "keyword arguments" if isinstance(inputs, Mapping) else "inputs"
        raise LandscapeError(f"the model does not accept the batch's {kind}: {exc}") from None
    return prediction(out, output)
