"""The HDF5 result store, the only module that opens HDF5 files.

See docs/conventions.md, "HDF5 results". One file holds many results; each result is a group named
after what it measured, its arrays datasets, its scalars and settings attributes. Results are
dataclasses or dicts, split into arrays and attributes by `result_arrays`; a result's `key`
attribute (`content_key`) identifies what it was computed from, so reruns can skip or resume it.
Only rank 0 writes.

Safe under concurrency and kills (`journal.py`): a write locks the file exclusively (readers take a
shared lock) and changes it in place through a rollback journal, so a kill at any moment leaves
every group of the write old or every one new, and the next reader or writer repairs what the killed
writer left. A group is rewritten in place: datasets of the same shape and type are overwritten
where they are, and strings are stored at fixed length (a variable-length string takes a new 4 KiB
heap block on every rewrite that HDF5 never gives back), so a contour that rewrites its group every
few seconds does not grow its file. New files keep HDF5's free-space records (`fs_persist`), so the
space a deleted dataset leaves is reused by later writes.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, is_dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from .. import dist
from ..errors import LandscapeError
from ..threads import threads
from .atomic import make_parent
from .journal import consistent, update

Arrays = dict[str, np.ndarray]
Attrs = dict[str, Any]
# HDF5 1.10 or later reads it
NEW_FILE = {
    "libver": ("v110", "v110"),
    "fs_strategy": "fsm",
    "fs_persist": True,
}
LONG_TEXT = (
    32768  # longer strings are stored variable-length: a fixed-length attribute that big needs the
)
# 1.10 format, which files written by earlier versions of this package lack


def content_key(*parts: Any) -> str:
    """A short stable hash of JSON-serialisable parts: the `key` of a stored result or checkpoint.

    The parts are written as JSON with sorted keys (anything else as its `str`), so equal settings
    give equal keys whatever the order of a dict.

    Args:
        *parts: What the result was computed from.

    Returns:
        The first 16 hex digits of the SHA-256 of the JSON.

    Examples:
        >>> content_key({"a": 1, "b": 2}) == content_key({"b": 2, "a": 1})
        True
        >>> len(content_key("eigen", 3)), content_key("eigen", 3) == content_key("eigen", 4)
        (16, False)
    """
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of the packages that produced a result.

    Returns:
        The versions of torch, numpy, scipy, h5py and landscape, by name.

    Examples:
        >>> import torch
        >>> sorted(versions()), versions()["torch"] == torch.__version__
        (['h5py', 'landscape', 'numpy', 'scipy', 'torch'], True)
    """
    import scipy
    import torch

    import landscape

    return {
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "h5py": h5py.__version__,
        "landscape": landscape.__version__,
    }


def result_arrays(result: Any) -> tuple[Arrays, Attrs]:
    """Split a result (dataclass or dict) into arrays (datasets) and other fields (attributes).

    Tensors, arrays and lists or tuples of numbers become arrays; strings, lists of strings and
    other values become attributes; None and callables are dropped.

    Args:
        result: A dataclass instance or a mapping.

    Returns:
        The arrays and the attributes, by field name.

    Examples:
        >>> import torch
        >>> arrays, attrs = result_arrays(
        ...     {"values": torch.tensor([2.0, 1.0]), "k": 2, "names": ["a", "b"], "x": None}
        ... )
        >>> arrays, attrs
        ({'values': array([2., 1.], dtype=float32)}, {'k': 2, 'names': ['a', 'b']})
    """
    import torch

    items = asdict(result) if is_dataclass(result) else dict(result)
    arrays, attrs = {}, {}
    for k, v in items.items():
        if isinstance(v, torch.Tensor):
            v = v.detach().cpu().numpy()
        if (
            isinstance(v, (np.ndarray, list, tuple)) and np.asarray(v).dtype.kind not in "OU"
        ):  # strings: attributes
            arrays[k] = np.asarray(v)
        elif v is not None and not callable(v):
            attrs[k] = v
    return arrays, attrs


def _text(value: str) -> Any:
    """A string as a fixed-length UTF-8 attribute value.

    Returns:
        A fixed-length string array, or the string itself beyond `LONG_TEXT` bytes.
    """
    data = value.encode()
    return (
        np.array(data, dtype=h5py.string_dtype("utf-8", max(1, len(data))))
        if len(data) <= LONG_TEXT
        else value
    )


def _attr(value: Any) -> Any:
    """`value` as HDF5 stores it in an attribute.

    Returns:
        None as "None", strings fixed-length, dicts as JSON, other values as they are.
    """
    if value is None:
        return _text("None")
    if isinstance(value, str):
        # plain str: h5py cannot store str subclasses such as torch.__version__
        return _text(str(value))
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, str) for v in value):
        data = [v.encode() for v in value]
        return np.array(data, dtype=h5py.string_dtype("utf-8", max(1, *map(len, data))))
    if isinstance(value, dict):
        return _text(json.dumps(value, sort_keys=True))
    return value


def _put(f: h5py.File, group: str, arrays: Mapping[str, Any], attrs: Mapping[str, Any]) -> None:
    """Make `group` hold exactly `arrays` and `attrs`, rewriting unchanged datasets in place."""
    g = f.require_group(group)
    for name in [n for n in g if n not in arrays]:
        del g[name]
    for name, value in arrays.items():
        value = np.asarray(value)
        old = g.get(name)
        if isinstance(old, h5py.Dataset) and old.shape == value.shape and old.dtype == value.dtype:
            old[()] = value
            continue
        if old is not None:
            del g[name]
        g.create_dataset(name, data=value)
    for name in [n for n in g.attrs if n not in attrs]:
        del g.attrs[name]
    for name, value in attrs.items():
        g.attrs[name] = _attr(value)


def write_result(
    path: str | os.PathLike,
    group: str,
    arrays: Mapping[str, Any],
    attrs: Mapping[str, Any] | None = None,
) -> None:
    """Replace `group` in the HDF5 file at `path` with `arrays` and `attrs`, atomically.

    One group of `write_results`: the attributes get the same stamp (time, threads, versions).

    Args:
        path: The result file (created when missing).
        group: The group's name; its parents are created.
        arrays: The datasets.
        attrs: The attributes.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_result(Path(tmp) / "r.h5", "eigen/top", {"values": [3.0, 1.0]}, {"k": 2})
        ...     arrays, attrs = read_result(Path(tmp) / "r.h5", "eigen/top")
        >>> arrays["values"].tolist(), int(attrs["k"]), "written_at" in attrs
        ([3.0, 1.0], 2, True)
    """
    write_results(path, {group: (arrays, attrs or {})})


def write_results(
    path: str | os.PathLike,
    groups: Mapping[str, tuple[Mapping[str, Any], Mapping[str, Any]]],
    clear: str | None = None,
) -> None:
    """Replace several groups in one atomic update of the file; rank 0 only.

    Each group is made to hold exactly its arrays and attributes (see the module docstring), the
    attributes stamped with `written_at`, `threads` and `version_<package>`.

    Args:
        path: The result file (created when missing).
        groups: `{group: (arrays, attrs)}`.
        clear: A group removed with everything under it first (a description rewritten whole).

    Raises:
        LandscapeError: The file exists but is not an HDF5 file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "r.h5"
        ...     write_results(path, {"a/x": ({"v": [1]}, {}), "a/y": ({"v": [2]}, {})})
        ...     write_results(path, {"a/z": ({"v": [3]}, {})}, clear="a")
        ...     print(list_results(path))
        ['a/z']
    """
    if not dist.is_main():
        return
    path = Path(path)
    make_parent(path)
    stamp = {
        "written_at": time.time(),
        "threads": threads(),
        **{f"version_{k}": v for k, v in versions().items()},
    }
    with update(path) as view:
        try:
            f = h5py.File(view, "r+") if view.original else h5py.File(view, "w", **NEW_FILE)
        except OSError:
            raise LandscapeError(f"{path}: not an HDF5 result file") from None
        with f:
            if clear is not None and clear in f:
                del f[clear]
            for group, (arrays, attrs) in groups.items():
                _put(f, group, arrays, {**attrs, **stamp})


def _decoded(value: Any) -> Any:
    """An attribute value as read from HDF5, with its bytes decoded.

    Returns:
        Strings as `str`, arrays of strings as lists of `str`, other values as they are.
    """
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.ndarray) and value.dtype.kind in "OS":
        return [v.decode() if isinstance(v, bytes) else str(v) for v in value.tolist()]
    return value


class StoreReader:
    """Read-only view of a result file: groups, their attributes and arrays.

    `open_store` yields one, with the file locked for reading.

    Args:
        f: The open HDF5 file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_result(Path(tmp) / "r.h5", "run/loss", {"v": [0.5]}, {"key": "abc"})
        ...     with open_store(Path(tmp) / "r.h5") as store:
        ...         print(store.has("run"), store.children("run"), store.results(), store.keys())
        True ['loss'] ['run/loss'] {'/run/loss': 'abc'}
    """

    def __init__(self, f: h5py.File):
        self.f = f

    def has(self, group: str) -> bool:
        """Whether `group` exists.

        Args:
            group: A group's name.

        Returns:
            True when the file has it.
        """
        return group in self.f

    def children(self, group: str) -> list[str]:
        """Names of the members of `group`.

        Args:
            group: A group's name.

        Returns:
            The names of its groups and datasets; empty when it does not exist.
        """
        return list(self.f[group]) if group in self.f else []

    def attrs(self, group: str) -> Attrs:
        """Attributes of `group`, strings decoded.

        Args:
            group: A group's name.

        Returns:
            The attributes by name (arrays of strings as lists of str).
        """
        return {k: _decoded(v) for k, v in self.f[group].attrs.items()}

    def arrays(self, group: str) -> Arrays:
        """Every dataset of `group`, read into memory.

        Args:
            group: A group's name.

        Returns:
            The arrays by name.
        """
        g = self.f[group]
        return {k: g[k][()] for k in g if isinstance(g[k], h5py.Dataset)}

    def results(self) -> list[str]:
        """Every group that holds at least one dataset.

        Returns:
            Their names (without a leading "/").
        """
        found: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and any(isinstance(obj[k], h5py.Dataset) for k in obj):
                found.append(name)

        self.f.visititems(visit)
        return found

    def keys(self) -> dict[str, str]:
        """The `key` attribute of every group that has one.

        Returns:
            The keys by absolute group name.
        """
        keys: dict[str, str] = {}

        def visit(name: str, obj: Any) -> None:
            if isinstance(obj, h5py.Group) and "key" in obj.attrs:
                keys["/" + name] = str(_decoded(obj.attrs["key"]))

        self.f.visititems(visit)
        return keys


@contextmanager
def open_store(path: str | os.PathLike) -> Iterator[StoreReader]:
    """Open a result file for reading, under a shared lock (no writer changes it meanwhile).

    Args:
        path: The result file.

    Yields:
        A `StoreReader` of the file.

    Raises:
        LandscapeError: The file is missing or not an HDF5 file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_result(Path(tmp) / "r.h5", "g", {"v": [1.0, 2.0]})
        ...     with open_store(Path(tmp) / "r.h5") as store:
        ...         print(store.arrays("g")["v"].sum())
        ...     try:
        ...         with open_store(Path(tmp) / "none.h5"):
        ...             pass
        ...     except LandscapeError as e:
        ...         print(str(e).startswith("result file not found"))
        3.0
        True
    """
    path = Path(path)
    if not path.is_file():
        raise LandscapeError(f"result file not found: {path}")
    with consistent(path) as present:
        if not present:
            raise LandscapeError(f"result file not found: {path}")
        try:
            f = h5py.File(path, "r")
        except OSError:
            raise LandscapeError(f"{path}: not an HDF5 result file") from None
        try:
            yield StoreReader(f)
        finally:
            f.close()


def read_result(path: str | os.PathLike, group: str) -> tuple[Arrays, Attrs]:
    """Arrays and attributes of `group`.

    Args:
        path: The result file.
        group: The group's name.

    Returns:
        Its datasets and its attributes (strings decoded).

    Raises:
        KeyError: The group does not exist.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_result(Path(tmp) / "r.h5", "g", {"v": [1, 2]}, {"note": "two"})
        ...     arrays, attrs = read_result(Path(tmp) / "r.h5", "g")
        >>> arrays["v"].tolist(), attrs["note"]
        ([1, 2], 'two')
    """
    with open_store(path) as store:
        if not store.has(group):
            raise KeyError(group)
        return store.arrays(group), store.attrs(group)


def list_results(path: str | os.PathLike) -> list[str]:
    """Every group in the file that holds at least one dataset.

    Args:
        path: The result file.

    Returns:
        Their names (without a leading "/").

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     write_results(Path(tmp) / "r.h5", {"a": ({}, {"k": 1}), "b/c": ({"v": [1]}, {})})
        ...     print(list_results(Path(tmp) / "r.h5"))
        ['b/c']
    """
    with open_store(path) as store:
        return store.results()


def group_keys(path: str | os.PathLike) -> dict[str, str]:
    """The `key` attribute of every group in the file.

    Args:
        path: The result file.

    Returns:
        The keys by absolute group name; empty when the file does not exist yet (or is only the
        empty file of a killed first write).

    Raises:
        LandscapeError: The file exists but cannot be read as a result file.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     print(group_keys(Path(tmp) / "r.h5"))
        ...     write_result(Path(tmp) / "r.h5", "g", {"v": [1]}, {"key": content_key("g")})
        ...     print(group_keys(Path(tmp) / "r.h5") == {"/g": content_key("g")})
        {}
        True
    """
    try:
        with open_store(path) as store:
            return store.keys()
    except LandscapeError:
        if Path(path).exists():
            raise
        return {}  # none yet, or only the empty file of a first write that was killed
