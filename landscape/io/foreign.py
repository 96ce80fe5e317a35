"""Wrapping checkpoints written elsewhere (a plain state_dict, `{"model_state_dict": ...}`, Lightning `.ckpt`)
into `landscape-checkpoint/1` files, given the architecture they belong to."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..errors import LandscapeError
from ..models.zoo import build_model
from .checkpoint import UnsafePickle, load_state, save_checkpoint, torch_load


def _candidate_states(obj: Any) -> list[dict]:
    if not isinstance(obj, dict):
        return []
    found = []
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(obj.get(key), dict):
            found.append(obj[key])
    if obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        found.append(obj)
    return found


def _strip_to_fit(state: dict, keys: set[str]) -> dict | None:
    """Drop a common key prefix (e.g. Lightning's `model.`) so that the keys match the model's."""
    if set(state) == keys:
        return state
    for key in state:
        for own in keys:
            if key.endswith(own) and key != own:
                prefix = key[: len(key) - len(own)]
                stripped = {k[len(prefix):]: v for k, v in state.items() if k.startswith(prefix)}
                if set(stripped) == keys:
                    return stripped
        break
    return None


def wrap(source: str | os.PathLike, out: str | os.PathLike, arch: str, arch_kwargs: dict,
         meta: dict | None = None) -> nn.Module:
    """Turn a plain state_dict, `{"model_state_dict": ...}` or a Lightning `.ckpt` into a checkpoint."""
    source = Path(source)
    try:
        obj = torch_load(source)
    except UnsafePickle:
        # Lightning checkpoints pickle hyper-parameters and callback state: the user vouches for their file.
        obj = torch_load(source, weights_only=False)
    model = build_model(arch, arch_kwargs)
    keys = set(model.state_dict())
    for state in _candidate_states(obj):
        fitted = _strip_to_fit(state, keys)
        if fitted is not None:
            load_state(model, fitted, str(source))
            save_checkpoint(model, out, meta={"wrapped_from": str(source), **(meta or {})})
            return model
    states = _candidate_states(obj)
    if states:
        load_state(model, states[0], str(source))  # raises the precise mismatch
    raise LandscapeError(f"{source}: no state_dict found (expected tensors, 'state_dict' or 'model_state_dict')")
