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
    """Write `model` (parameters and buffers) atomically; only rank 0 writes.

    The file holds the format tag, the architecture and its keyword arguments, the state_dict (on
    the CPU) and `meta` with the number of threads added; all ranks wait until it is written.

    Args:
        model: The model to save.
        path: The checkpoint file.
        arch: The architecture name; None for the one the model's spec records.
        arch_kwargs: Its keyword arguments; None for those of the spec (or none with `arch`).
        meta: Extra metadata (JSON-like) stored with the weights.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> _ = torch.manual_seed(0)
        >>> model = build_model("mlp", {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [5]})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_checkpoint(model, Path(tmp) / "m.pt", meta={"seed": 0})
        ...     loaded, meta = load_checkpoint(Path(tmp) / "m.pt")
        >>> meta["seed"], torch.equal(loaded(torch.ones(1, 1, 2, 2)), model(torch.ones(1, 1, 2, 2)))
        (0, True)
    """
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
    """A torch file that holds objects weights_only loading refuses.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"a path": Path("p")}, Path(tmp) / "x.pt")
        ...     try:
        ...         torch_load(Path(tmp) / "x.pt")
        ...     except UnsafePickle:
        ...         print("refused")
        refused
    """


def torch_load(path: Path, weights_only: bool = True) -> Any:
    """Load a torch file on the CPU; anything unreadable is one `LandscapeError`.

    Args:
        path: The file.
        weights_only: Refuse objects other than tensors and plain containers (torch's
            `weights_only` loading); False unpickles anything, so only for trusted files.

    Returns:
        What the file holds.

    Raises:
        LandscapeError: The file is missing, not a torch file, or cannot be read.
        UnsafePickle: With `weights_only`, the file holds objects that loading refuses.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"w": torch.ones(2)}, Path(tmp) / "w.pt")
        ...     print(torch_load(Path(tmp) / "w.pt"))
        {'w': tensor([1., 1.])}
    """
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
    """The raw checkpoint dict, validated (loaded with weights_only semantics).

    Args:
        path: A `landscape-checkpoint/1` file.

    Returns:
        The dict with `format`, `arch`, `arch_kwargs`, `state_dict` and (optionally) `meta`.

    Raises:
        LandscapeError: The file is not a landscape checkpoint, or its fields are missing or of the
            wrong type.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> model = build_model("mlp", {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [5]})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_checkpoint(model, Path(tmp) / "m.pt")
        ...     payload = read_checkpoint(Path(tmp) / "m.pt")
        >>> payload["format"], payload["arch"], sorted(payload["state_dict"])[:2]
        ('landscape-checkpoint/1', 'mlp', ['classifier.bias', 'classifier.weight'])
    """
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
    """Load `state_dict` strictly, turning key or shape mismatches into one readable error.

    Args:
        model: The model to load into.
        state_dict: Its weights and buffers, keyed as `model.state_dict()`.
        source: Where the weights came from, named in the error.

    Returns:
        `model`, loaded.

    Raises:
        LandscapeError: Keys are missing or unexpected, or a shape differs.

    Examples:
        >>> model = torch.nn.Linear(2, 1)
        >>> state = {"weight": torch.ones(1, 2), "bias": torch.zeros(1)}
        >>> load_state(model, state, "ones").weight.tolist()
        [[1.0, 1.0]]
        >>> try:
        ...     load_state(model, {"weight": torch.ones(1, 3), "bias": torch.zeros(1)}, "w.pt")
        ... except LandscapeError as e:
        ...     print(e)
        w.pt: state_dict does not fit the architecture: weight has shape (1, 3), the model ...
    """
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
    """Rebuild the model saved at `path` (in eval mode, on `device`).

    Args:
        path: A `landscape-checkpoint/1` file.
        device: Where the model goes.

    Returns:
        The model and its metadata.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> model = build_model("mlp", {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [5]})
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     save_checkpoint(model, Path(tmp) / "m.pt")
        ...     loaded, meta = load_checkpoint(Path(tmp) / "m.pt")
        >>> loaded.training, sorted(meta)
        (False, ['threads'])
    """
    payload = read_checkpoint(path)
    model = build_model(payload["arch"], payload["arch_kwargs"])
    load_state(model, payload["state_dict"], str(path))
    return model.to(device).eval(), dict(payload.get("meta", {}))


def file_hash(path: str | os.PathLike) -> str:
    """SHA-256 of a file, recorded with results so that a number can be traced to its checkpoint.

    Args:
        path: The file.

    Returns:
        The hex digest.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     _ = (Path(tmp) / "f").write_bytes(b"abc")
        ...     print(file_hash(Path(tmp) / "f")[:16])
        ba7816bf8f01cfea
    """
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
