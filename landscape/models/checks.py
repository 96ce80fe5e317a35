"""Checks of a model before it is measured or trained: parameters and buffers must be finite numbers."""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

from ..errors import LandscapeError


def check_finite(model: nn.Module | Mapping[str, torch.Tensor], what: str = "the model") -> None:
    """Raise a one-line error naming the first parameter or buffer of `model` (a module or a state dict) that
    holds NaN or infinity."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    floats = [(k, v) for k, v in state.items() if v.is_floating_point() and v.numel()]
    if not floats or bool(torch.stack([torch.isfinite(v).all() for _, v in floats]).all()):
        return
    key, value = next((k, v) for k, v in floats if not bool(torch.isfinite(v).all()))
    bad = int((~torch.isfinite(value)).sum())
    raise LandscapeError(f"{what} has non-finite values (NaN or inf) in {key} ({bad} of {value.numel()}): "
                         "measurements of it would be NaN or meaningless")
