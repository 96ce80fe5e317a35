"""Datasets held as in-memory tensors: bundled digits, `.npz` files, and MNIST/CIFAR files already on disk.

Splits are deterministic (fixed permutation seed), inputs are standardised per channel with training
statistics, and every loop over examples goes through `batches`, which shards across torch.distributed ranks.
"""
from __future__ import annotations

import gzip
import os
import pickle
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import torch

from . import dist
from .errors import LandscapeError

SPLIT_SEED = 0  # fixed: every model of a study sees the same train/validation/test split


@dataclass(frozen=True)
class Split:
    """Inputs `x` (N, C, H, W) and integer labels `y` (N,)."""

    x: torch.Tensor
    y: torch.Tensor

    def __len__(self) -> int:
        return int(self.y.shape[0])

    def to(self, device: torch.device | str) -> Split:
        """The same split on `device`."""
        return Split(self.x.to(device), self.y.to(device))


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits plus what a model needs to know about them."""

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    augment: bool = False

    def split(self, which: str) -> Split:
        """The split called `which` (train, val or test)."""
        if which not in ("train", "val", "test"):
            raise LandscapeError(f"unknown split {which!r}; choose train, val or test")
        return getattr(self, which)

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset on `device`."""
        return replace(self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device))


def _permutation(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).permutation(n)


def _holdout(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[tuple, tuple]:
    perm = _permutation(len(y), SPLIT_SEED)
    k = round(len(y) * fraction)
    return (x[perm[k:]], y[perm[k:]]), (x[perm[:k]], y[perm[:k]])


def _as_nchw(x: np.ndarray, source: str) -> np.ndarray:
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            return x.transpose(0, 3, 1, 2)
        return x
    raise LandscapeError(f"{source}: inputs must have 2 to 4 dimensions, got shape {x.shape}")


def _digits():
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    (xtr, ytr), (xte, yte) = _holdout(x, d.target, 0.2)
    return xtr, ytr, xte, yte, False


def _npz(path: str):
    if not os.path.isfile(path):
        raise LandscapeError(f"data file not found: {path}")
    try:
        f = np.load(path, allow_pickle=False)
    except Exception as exc:  # noqa: BLE001 -- numpy raises several types for corrupt files
        raise LandscapeError(f"cannot read {path} as .npz: {exc}") from None
    missing = {"x_train", "y_train"} - set(f.files)
    if missing:
        raise LandscapeError(f"{path}: missing arrays {', '.join(sorted(missing))} (need x_train, y_train)")
    xtr, ytr = f["x_train"], f["y_train"]
    if "x_test" in f.files and "y_test" in f.files:
        xte, yte = f["x_test"], f["y_test"]
    else:
        (xtr, ytr), (xte, yte) = _holdout(xtr, ytr, 0.2)
    return xtr, ytr, xte, yte, False


def _find(directory: Path, names: list[str]) -> Path:
    for sub in ("", "raw", "MNIST/raw", "mnist", "cifar-10-batches-py", "cifar-100-python"):
        for name in names:
            for candidate in (directory / sub / name, directory / sub / (name + ".gz")):
                if candidate.is_file():
                    return candidate
    raise LandscapeError(f"{directory}: cannot find {names[0]} (files are read from disk, never downloaded)")


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise LandscapeError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _mnist(directory: str):
    d = Path(directory)
    xtr = _read_idx(_find(d, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]))
    ytr = _read_idx(_find(d, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]))
    xte = _read_idx(_find(d, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    yte = _read_idx(_find(d, ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]))
    return xtr.astype(np.float32) / 255.0, ytr, xte.astype(np.float32) / 255.0, yte, False


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 -- a corrupt file can raise anything
        raise LandscapeError(f"{path}: not a CIFAR python batch file: {exc}") from None


def _cifar_images(batch: dict) -> np.ndarray:
    return np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0


def _cifar10(directory: str):
    d = Path(directory)
    parts = [_unpickle(_find(d, [f"data_batch_{i}"])) for i in range(1, 6)]
    test = _unpickle(_find(d, ["test_batch"]))
    xtr = np.concatenate([_cifar_images(p) for p in parts])
    ytr = np.concatenate([np.asarray(p[b"labels"]) for p in parts])
    return xtr, ytr, _cifar_images(test), np.asarray(test[b"labels"]), True


def _cifar100(directory: str):
    d = Path(directory)
    train, test = _unpickle(_find(d, ["train"])), _unpickle(_find(d, ["test"]))
    return (_cifar_images(train), np.asarray(train[b"fine_labels"]), _cifar_images(test),
            np.asarray(test[b"fine_labels"]), True)


_READERS = {"mnist": _mnist, "cifar10": _cifar10, "cifar100": _cifar100}
_CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100, "digits": 10}


def load_data(spec: str = "digits", val_fraction: float = 0.1, device: torch.device | str = "cpu") -> Dataset:
    """Load `digits`, a `.npz` path, or `mnist:DIR` / `cifar10:DIR` / `cifar100:DIR`; nothing is downloaded."""
    kind, _, where = spec.partition(":")
    where = os.path.expanduser(where)
    if spec == "digits":
        xtr, ytr, xte, yte, augment = _digits()
    elif kind in _READERS and where:
        if not os.path.isdir(where):
            raise LandscapeError(f"data directory not found: {where}")
        xtr, ytr, xte, yte, augment = _READERS[kind](where)
    elif spec.endswith(".npz"):
        kind = "npz"
        xtr, ytr, xte, yte, augment = _npz(os.path.expanduser(spec))
    else:
        raise LandscapeError(f"unknown dataset {spec!r}; use digits, a .npz file, or mnist:DIR, cifar10:DIR, "
                             "cifar100:DIR")
    xtr, xte = _as_nchw(np.asarray(xtr, np.float32), spec), _as_nchw(np.asarray(xte, np.float32), spec)
    ytr, yte = np.asarray(ytr).astype(np.int64).ravel(), np.asarray(yte).astype(np.int64).ravel()
    if len(ytr) != len(xtr) or len(yte) != len(xte):
        raise LandscapeError(f"{spec}: inputs and labels have different lengths")
    if xtr.shape[1:] != xte.shape[1:]:
        raise LandscapeError(f"{spec}: train and test inputs have different shapes")
    lowest = min(ytr.min(initial=0), yte.min(initial=0))
    if lowest < 0:
        raise LandscapeError(f"{spec}: labels out of range: found label {lowest}")
    num_classes = _CLASSES.get(kind, int(max(ytr.max(initial=0), yte.max(initial=0))) + 1)
    highest = int(max(ytr.max(initial=0), yte.max(initial=0)))
    if highest >= num_classes:
        raise LandscapeError(f"{spec}: labels out of range: found label {highest} for {num_classes} classes")
    (xtr, ytr), (xva, yva) = _holdout(xtr, ytr, val_fraction)
    mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
    std = xtr.std(axis=(0, 2, 3), keepdims=True) + 1e-8

    def norm(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))

    ds = Dataset(spec, Split(norm(xtr), torch.from_numpy(ytr)), Split(norm(xva), torch.from_numpy(yva)),
                 Split(norm(xte), torch.from_numpy(yte)), num_classes, tuple(xtr.shape[1:]), augment)
    return ds.to(device)


def check_labels(split: Split, num_classes: int, what: str = "model") -> None:
    """Raise if a label cannot be predicted by a `num_classes`-way classifier."""
    if len(split) and int(split.y.max()) >= num_classes:
        raise LandscapeError(f"labels out of range: data has label {int(split.y.max())} but the {what} "
                             f"has {num_classes} classes")


def subsample(split: Split, n: int | None, seed: int = 0) -> Split:
    """`n` examples drawn without replacement with `seed` (all of them when `n` is None or too large)."""
    if n is None or n >= len(split):
        return split
    if n <= 0:
        raise LandscapeError(f"--samples must be positive, got {n}")
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(split), generator=g)[:n].to(split.y.device)
    return Split(split.x[idx], split.y[idx])


def batches(split: Split, batch_size: int, sharded: bool = True) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Consecutive batches of this rank's contiguous shard (the whole split in a single process)."""
    if batch_size <= 0:
        raise LandscapeError(f"--batch-size must be positive, got {batch_size}")
    rows = dist.shard(len(split)) if sharded else range(len(split))
    for start in range(rows.start, rows.stop, batch_size):
        stop = min(start + batch_size, rows.stop)
        yield split.x[start:stop], split.y[start:stop]


def augment(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """Random crop after zero padding and random horizontal flip, per example (standard CIFAR augmentation)."""
    n, c, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator).to(x.device)
    flip = (torch.rand(n, generator=generator) < 0.5).to(x.device)
    rows = dy[:, None] + torch.arange(h, device=x.device)[None]
    cols = torch.arange(w, device=x.device)[None].expand(n, w)
    cols = torch.where(flip[:, None], cols.flip(1), cols) + dx[:, None]
    idx_n = torch.arange(n, device=x.device)[:, None, None, None]
    idx_c = torch.arange(c, device=x.device)[None, :, None, None]
    return padded[idx_n, idx_c, rows[:, None, :, None], cols[:, None, None, :]]
