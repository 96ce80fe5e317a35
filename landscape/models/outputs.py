"""How a model is called on a batch's inputs, and which of its outputs is the prediction.

The prediction is what every measurement uses.

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
    """`model(inputs)`, `model(*inputs)` for a tuple or `model(**inputs)` for a mapping.

    Args:
        model: the model.
        inputs: a batch's inputs: a tensor, a tuple of tensors or a mapping of them.

    Returns:
        What the model returns.

    Examples:
        >>> import torch
        >>> class Add(torch.nn.Module):
        ...     def forward(self, a, b):
        ...         return a + b
        >>> one, two = torch.tensor(1), torch.tensor(2)
        >>> call(Add(), (one, two)), call(Add(), {"a": one, "b": two})
        (tensor(3), tensor(3))
    """
    if isinstance(inputs, torch.Tensor):
        return model(inputs)
    if isinstance(inputs, Mapping):
        return model(**inputs)
    return model(*inputs)


def _describe(out: Any) -> str:
    """What a model returned, in words (its type, and its keys or length).

    Returns:
        The description.
    """
    if isinstance(out, Mapping):
        return f"a {type(out).__name__} with keys {', '.join(map(str, out)) or 'none'}"
    if isinstance(out, (tuple, list)):
        return f"a {type(out).__name__} of {len(out)} entries"
    return f"a {type(out).__name__}"


def _select(out: Any, name: str | int) -> Any:
    """`out`'s entry `name`: a tuple index, a mapping key or an attribute.

    Returns:
        The entry, or None when `out` has none of that name.
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

    Examples:
        >>> import torch
        >>> logits = torch.tensor([[1.0, 2.0]])
        >>> prediction({"loss": torch.tensor(0.5), "logits": logits}) is logits
        True
        >>> prediction((logits, torch.zeros(1, 2))) is logits  # the first entry of a tuple
        True
        >>> prediction({"scores": logits}, output="scores") is logits
        True
        >>> prediction({"scores": logits})
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the model returned a dict with keys scores, and no ...
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

    Args:
        model: the model.
        inputs: a batch's inputs: a tensor, a tuple of tensors or a mapping of them.
        output: which output is the prediction (`prediction`'s rule when None).

    Returns:
        The prediction tensor.

    Raises:
        LandscapeError: the model's output holds no prediction tensor, or the model refuses the
            inputs (a `TypeError` from its forward, e.g. a keyword it does not take), in one line.

    Examples:
        >>> import torch
        >>> model = torch.nn.Linear(2, 3)
        >>> predict(model, torch.zeros(4, 2)).shape
        torch.Size([4, 3])
        >>> predict(model, {"x": torch.zeros(4, 2)})
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the model does not accept the batch's keyword ...
    """
    try:
        out = call(model, inputs)
    except TypeError as exc:
        kind = "keyword arguments" if isinstance(inputs, Mapping) else "inputs"
        raise LandscapeError(f"the model does not accept the batch's {kind}: {exc}") from None
    return prediction(out, output)
