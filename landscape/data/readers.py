"""Readers for the data formats `--data` names: scikit-learn's bundled digits, `.npz` files, and
MNIST / CIFAR files already on disk (never downloaded). Each returns raw arrays;
`datasets.load_data` validates and splits.
"""

from __future__ import annotations

import gzip
import os
import pickle
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import LandscapeError

SPLIT_SEED = 0  # fixed: every model of a study sees the same train/validation/test split
TEST_FRACTION = 0.2  # of the training data, held out as test when a source has no test split


@dataclass(frozen=True)
class Raw:
    """Training and test arrays as read (no test arrays: `load_data` holds out part of the training
    data), and whether the data set is augmented in training (CIFAR).
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    augment: bool = False


def holdout(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[tuple, tuple]:
    """A deterministic split of (x, y) into (kept, held out) with `fraction` held out."""
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    k = round(len(y) * fraction)
    return (x[perm[k:]], y[perm[k:]]), (x[perm[:k]], y[perm[:k]])


def digits() -> Raw:
    """scikit-learn's 8x8 digits, scaled to [0, 1]; 20% held out as test."""
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    (xtr, ytr), (xte, yte) = holdout(x, d.target, TEST_FRACTION)
    return Raw(xtr, ytr, xte, yte)


def npz(path: str) -> Raw:
    """A `.npz` with x_train, y_train and optionally x_test, y_test."""
    if not os.path.isfile(path):
        raise LandscapeError(f"data file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {
                name: f[name]
                for name in ("x_train", "y_train", "x_test", "y_test")
                if name in f.files
            }
    except Exception as exc:  # noqa: BLE001 -- numpy raises several types for corrupt files
        raise LandscapeError(
            f"cannot read {path} as .npz: {str(exc).splitlines()[0] if str(exc) else exc!r}"
        ) from None
    missing = {"x_train", "y_train"} - set(arrays)
    if missing:
        raise LandscapeError(
            f"{path}: missing arrays {', '.join(sorted(missing))} (need x_train, y_train)"
        )
    if ("x_test" in arrays) != ("y_test" in arrays):
        raise LandscapeError(
            f"{path}: has {'x_test' if 'x_test' in arrays else 'y_test'} without its pair"
        )
    return Raw(arrays["x_train"], arrays["y_train"], arrays.get("x_test"), arrays.get("y_test"))


def _find(directory: Path, names: list[str]) -> Path:
    for sub in ("", "raw", "MNIST/raw", "mnist", "cifar-10-batches-py", "cifar-100-python"):
        for name in names:
            for candidate in (directory / sub / name, directory / sub / (name + ".gz")):
                if candidate.is_file():
                    return candidate
    raise LandscapeError(
        f"{directory}: cannot find {names[0]} (files are read from disk, never downloaded)"
    )


def _read_idx(path: Path) -> np.ndarray:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise LandscapeError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(directory: str) -> Raw:
    """The four MNIST IDX files (gzipped or not), scaled to [0, 1]."""
    d = Path(directory)
    xtr = _read_idx(_find(d, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]))
    ytr = _read_idx(_find(d, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]))
    xte = _read_idx(_find(d, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    yte = _read_idx(_find(d, ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]))
    return Raw(xtr.astype(np.float32) / 255.0, ytr, xte.astype(np.float32) / 255.0, yte)


def _unpickle(path: Path) -> dict:
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 -- a corrupt file can raise anything
        raise LandscapeError(f"{path}: not a CIFAR python batch file: {exc}") from None


def _cifar_images(batch: dict) -> np.ndarray:
    return (
        np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    )


def cifar10(directory: str) -> Raw:
    """The CIFAR-10 python batches, scaled to [0, 1]; augmented in training."""
    d = Path(directory)
    parts = [_unpickle(_find(d, [f"data_batch_{i}"])) for i in range(1, 6)]
    test = _unpickle(_find(d, ["test_batch"]))
    xtr = np.concatenate([_cifar_images(p) for p in parts])
    ytr = np.concatenate([np.asarray(p[b"labels"]) for p in parts])
    return Raw(xtr, ytr, _cifar_images(test), np.asarray(test[b"labels"]), True)


def cifar100(directory: str) -> Raw:
    """The CIFAR-100 python files (fine labels), scaled to [0, 1]; augmented in training."""
    d = Path(directory)
    train, test = _unpickle(_find(d, ["train"])), _unpickle(_find(d, ["test"]))
    return Raw(
        _cifar_images(train),
        np.asarray(train[b"fine_labels"]),
        _cifar_images(test),
        np.asarray(test[b"fine_labels"]),
        True,
    )


READERS = {"mnist": mnist, "cifar10": cifar10, "cifar100": cifar100}
CLASSES = {"mnist": 10, "cifar10": 10, "cifar100": 100, "digits": 10}
