"""HDF5 results: one group per result, arrays as datasets, scalars and settings as attributes.

Every write copies the file aside, changes the copy and renames it back, so a killed run never leaves
a corrupt store; only rank 0 writes.
"""
from __future__ import annotations

import os
import shutil
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from . import dist
from .atomic import atomic_path


def versions() -> dict[str, str]:
    """Versions of the packages that produced a result."""
    import scipy
    import torch

    import landscape

    return {"torch": torch.__version__, "numpy": np.__version__, "scipy": scipy.__version__,
            "h5py": h5py.__version__, "landscape": landscape.__version__}


def _attr(value: Any) -> Any:
    if value is None:
        return "None"
    if isinstance(value, str):
        return str(value)  # plain str: h5py cannot store str subclasses such as torch.__version__
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        return np.array(value, dtype=h5py.string_dtype())
    if isinstance(value, dict):
        import json

        return json.dumps(value, sort_keys=True)
    return value


def write_result(path: str | os.PathLike, group: str, arrays: Mapping[str, Any],
                 attrs: Mapping[str, Any] | None = None) -> None:
    """Replace `group` in the HDF5 file at `path` with `arrays` and `attrs`, atomically."""
    write_results(path, {group: (arrays, attrs or {})})


def write_results(path: str | os.PathLike,
                  groups: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]]) -> None:
    """Replace several groups `{group: (arrays, attrs)}` in one atomic rewrite of the file; rank 0 only."""
    if not dist.is_main():
        return
    path = Path(path)
    stamp = {"written_at": time.time(), **{f"version_{k}": v for k, v in versions().items()}}
    with atomic_path(path) as tmp:
        if path.exists():
            shutil.copyfile(path, tmp)
        with h5py.File(tmp, "a") as f:
            for group, (arrays, attrs) in groups.items():
                if group in f:
                    del f[group]
                g = f.require_group(group)
                for name, value in arrays.items():
                    g.create_dataset(name, data=np.asarray(value))
                for key, value in {**attrs, **stamp}.items():
                    g.attrs[key] = _attr(value)


def read_result(path: str | os.PathLike, group: str) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Arrays and attributes of `group`."""
    with h5py.File(path, "r") as f:
        g = f[group]
        arrays = {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in g.attrs.items()}
    return arrays, attrs


def list_results(path: str | os.PathLike) -> list[str]:
    """Every group in the file that holds at least one dataset."""
    found: list[str] = []
    with h5py.File(path, "r") as f:
        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and any(isinstance(obj[k], h5py.Dataset) for k in obj):
                found.append(name)
        f.visititems(visit)
    return found
