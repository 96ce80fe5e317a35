"""Checkpoint I/O in the `landscape-checkpoint/1` format of DESIGN.md, plus wrapping of foreign files."""
from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from . import dist
from .atomic import atomic_path
from .errors import LandscapeError
from .zoo import build_model

FORMAT = "landscape-checkpoint/1"


def model_spec(model: nn.Module) -> dict:
    """The `arch` and `arch_kwargs` a model was built from (set by `build_model`)."""
    spec = getattr(model, "landscape_spec", None)
    if spec is None:
        raise LandscapeError("model has no architecture spec; build it with landscape.build_model")
    return spec


def save_checkpoint(model: nn.Module, path: str | os.PathLike, arch: str | None = None,
                    arch_kwargs: dict | None = None, meta: dict | None = None) -> None:
    """Write `model` (parameters and buffers) atomically; only rank 0 writes."""
    if arch is None:
        spec = model_spec(model)
        arch, arch_kwargs = spec["arch"], spec["arch_kwargs"] if arch_kwargs is None else arch_kwargs
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "arch": arch, "arch_kwargs": dict(arch_kwargs or {}), "state_dict": state,
               "meta": dict(meta or {})}
    if dist.is_main():
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    dist.barrier()


class _UnsafePickle(Exception):
    """A torch file that holds objects weights_only loading refuses."""


def _torch_load(path: Path, weights_only: bool = True) -> Any:
    if not path.is_file():
        raise LandscapeError(f"file not found: {path}")
    with open(path, "rb") as fh:
        magic = fh.read(2)
    if magic not in (b"PK", b"\x80\x02"):  # zip (torch.save) or legacy pickle protocol 2
        raise LandscapeError(f"{path}: not a readable torch file")
    try:
        return torch.load(path, map_location="cpu", weights_only=weights_only)
    except pickle.UnpicklingError as exc:
        if weights_only:
            raise _UnsafePickle(str(exc)) from None
        raise LandscapeError(f"{path}: not a readable torch file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 -- a corrupt file can raise anything
        raise LandscapeError(f"{path}: not a readable torch file ({type(exc).__name__})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, validated (loaded with weights_only semantics)."""
    path = Path(path)
    try:
        payload = _torch_load(path)
    except _UnsafePickle:
        raise LandscapeError(f"{path}: not a landscape checkpoint (it holds objects other than tensors; "
                             "use `landscape wrap` for foreign files)") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LandscapeError(f"{path}: not a landscape checkpoint (use `landscape wrap` to convert it)")
    return payload


def load_state(model: nn.Module, state_dict: dict, source: str) -> nn.Module:
    """Load `state_dict` strictly, turning key or shape mismatches into one readable error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        detail = (f"missing {missing[:3]}" if missing else "") + (" " if missing and unexpected else "") + \
                 (f"unexpected {unexpected[:3]}" if unexpected else "")
        raise LandscapeError(f"{source}: state_dict does not fit the architecture: {detail}")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LandscapeError(f"{source}: state_dict does not fit the architecture: {k} has shape "
                                 f"{tuple(v.shape)}, the model expects {tuple(own[k].shape)}")
    model.load_state_dict(state_dict)
    return model


def load_checkpoint(path: str | os.PathLike, device: torch.device | str = "cpu") -> tuple[nn.Module, dict]:
    """Rebuild the model saved at `path` (in eval mode, on `device`) and return it with its meta."""
    payload = read_checkpoint(path)
    model = build_model(payload["arch"], payload["arch_kwargs"])
    load_state(model, payload["state_dict"], str(path))
    return model.to(device).eval(), dict(payload.get("meta", {}))


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file, recorded with results so that a number can be traced to its checkpoint."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


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
        obj = _torch_load(source)
    except _UnsafePickle:
        # Lightning checkpoints pickle hyper-parameters and callback state: the user vouches for their file.
        obj = _torch_load(source, weights_only=False)
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
