"""Checkpoint I/O in the `landscape-checkpoint/1` format (docs/conventions.md, "Checkpoints")."""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import dist
from ..errors import LandscapeError
from ..models.zoo import build_model
from ..spec import require_spec
from ..threads import threads
from .atomic import atomic_path

FORMAT = "landscape-checkpoint/1"


def save_checkpoint(
    model: nn.Module,
    path: str | os.PathLike,
    arch: str | None = None,
    arch_kwargs: dict | None = None,
    meta: dict | None = None,
) -> None:
    """Write `model` (parameters and buffers) atomically; only rank 0 writes."""
    if arch is None:
        spec = require_spec(model)
        arch, arch_kwargs = spec.arch, spec.arch_kwargs if arch_kwargs is None else arch_kwargs
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs or {}),
        "state_dict": state,
        "meta": {"threads": threads(), **(meta or {})},
    }
    if dist.is_main():
        with atomic_path(path) as tmp:
            torch.save(payload, tmp)
    dist.barrier()


class UnsafePickle(Exception):
    """A torch file that holds objects weights_only loading refuses."""


def torch_load(path: Path, weights_only: bool = True) -> Any:
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
            raise UnsafePickle(str(exc)) from None
        raise LandscapeError(f"{path}: not a readable torch file ({exc})") from None
    except Exception as exc:  # noqa: BLE001 -- a corrupt file can raise anything
        raise LandscapeError(f"{path}: not a readable torch file ({type(exc).__name__})") from None


def read_checkpoint(path: str | os.PathLike) -> dict:
    """The raw checkpoint dict, validated (loaded with weights_only semantics)."""
    path = Path(path)
    try:
        payload = torch_load(path)
    except UnsafePickle:
        raise LandscapeError(
            f"{path}: not a landscape checkpoint (it holds objects other than tensors; "
            "use `landscape wrap` for foreign files)"
        ) from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise LandscapeError(
            f"{path}: not a landscape checkpoint (use `landscape wrap` to convert it)"
        )
    for key, kind, what in (
        ("arch", str, "a string"),
        ("arch_kwargs", dict, "a dict"),
        ("state_dict", dict, "a dict"),
        ("meta", dict, "a dict"),
    ):
        if key not in payload and key != "meta":
            raise LandscapeError(f"{path}: damaged checkpoint: it has no {key!r}")
        if key in payload and not isinstance(payload[key], kind):
            raise LandscapeError(
                f"{path}: damaged checkpoint: {key!r} must be {what}, "
                f"not {type(payload[key]).__name__}"
            )
    if not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in payload["state_dict"].items()
    ):
        raise LandscapeError(
            f"{path}: damaged checkpoint: its state_dict holds something other than named tensors"
        )
    return payload


def load_state(model: nn.Module, state_dict: dict, source: str) -> nn.Module:
    """Load `state_dict` strictly, turning key or shape mismatches into one readable error."""
    own = model.state_dict()
    missing = sorted(set(own) - set(state_dict))
    unexpected = sorted(set(state_dict) - set(own))
    if missing or unexpected:
        detail = (
            (f"missing {missing[:3]}" if missing else "")
            + (" " if missing and unexpected else "")
            + (f"unexpected {unexpected[:3]}" if unexpected else "")
        )
        raise LandscapeError(f"{source}: state_dict does not fit the architecture: {detail}")
    for k, v in state_dict.items():
        if tuple(v.shape) != tuple(own[k].shape):
            raise LandscapeError(
                f"{source}: state_dict does not fit the architecture: {k} has shape "
                f"{tuple(v.shape)}, the model expects {tuple(own[k].shape)}"
            )
    model.load_state_dict(state_dict)
    return model


def load_checkpoint(
    path: str | os.PathLike, device: torch.device | str = "cpu"
) -> tuple[nn.Module, dict]:
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
