"""Readers for the data formats `--data` names, as raw arrays.

Scikit-learn's bundled digits, `.npz` files, and MNIST / CIFAR files already on disk (never
downloaded). Each returns raw arrays; `datasets.load_data` validates and splits.
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
    """Training and test arrays as read, and whether the data set is augmented in training (CIFAR).

    Without test arrays, `load_data` holds out part of the training data as test.

    Attributes:
        x_train: the training inputs.
        y_train: the training labels.
        x_test: the test inputs, or None.
        y_test: the test labels, or None.
        augment: whether training augments the inputs.

    Examples:
        >>> import numpy as np
        >>> raw = Raw(np.zeros((2, 3)), np.array([0, 1]), None, None)
        >>> raw.x_test is None, raw.augment
        (True, False)
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray | None
    y_test: np.ndarray | None
    augment: bool = False


def holdout(x: np.ndarray, y: np.ndarray, fraction: float) -> tuple[tuple, tuple]:
    """A deterministic split of (x, y) into (kept, held out) with `fraction` held out.

    The permutation is seeded with `SPLIT_SEED`, so every call on the same examples agrees.

    Args:
        x: the inputs.
        y: the labels, one per input.
        fraction: the share held out, rounded to whole examples.

    Returns:
        `((x, y) kept, (x, y) held out)`, each in the permutation's order.

    Examples:
        >>> import numpy as np
        >>> (x_kept, y_kept), (x_out, y_out) = holdout(np.arange(10), np.arange(10), 0.2)
        >>> len(y_kept), len(y_out), sorted([*y_kept, *y_out]) == list(range(10))
        (8, 2, True)
    """
    perm = np.random.default_rng(SPLIT_SEED).permutation(len(y))
    k = round(len(y) * fraction)
    return (x[perm[k:]], y[perm[k:]]), (x[perm[:k]], y[perm[:k]])


def digits() -> Raw:
    """Scikit-learn's 8x8 digits (1797 images, bundled with it), scaled to [0, 1].

    20% is held out as test (`holdout`).

    Returns:
        The `Raw` arrays: images (N, 1, 8, 8) and labels 0-9.

    Examples:
        >>> raw = digits()
        >>> raw.x_train.shape, raw.x_test.shape, float(raw.x_train.max())
        ((1438, 1, 8, 8), (359, 1, 8, 8), 1.0)
    """
    from sklearn.datasets import load_digits

    d = load_digits()
    x = d.images.astype(np.float32)[:, None] / 16.0
    (xtr, ytr), (xte, yte) = holdout(x, d.target, TEST_FRACTION)
    return Raw(xtr, ytr, xte, yte)


def npz(path: str) -> Raw:
    """A `.npz` with x_train, y_train and optionally x_test, y_test.

    Args:
        path: the file.

    Returns:
        The `Raw` arrays as stored (not augmented).

    Raises:
        LandscapeError: no such file, not a readable `.npz`, no x_train or y_train, or one test
            array without the other.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     np.savez(f"{d}/toy.npz", x_train=np.zeros((4, 2)), y_train=np.array([0, 1, 0, 1]))
        ...     raw = npz(f"{d}/toy.npz")
        >>> raw.x_train.shape, raw.x_test is None
        ((4, 2), True)
        >>> npz("missing.npz")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: data file not found: missing.npz
    """
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
    """The first of `names` (or its `.gz`) in `directory` or a usual subfolder.

    Returns:
        The file's path.

    Raises:
        LandscapeError: none of them is there.
    """
    for sub in ("", "raw", "MNIST/raw", "mnist", "cifar-10-batches-py", "cifar-100-python"):
        for name in names:
            for candidate in (directory / sub / name, directory / sub / (name + ".gz")):
                if candidate.is_file():
                    return candidate
    raise LandscapeError(
        f"{directory}: cannot find {names[0]} (files are read from disk, never downloaded)"
    )


def _read_idx(path: Path) -> np.ndarray:
    """An IDX file of unsigned bytes (MNIST's format), gzipped or not.

    Returns:
        Its array, shaped as its header says.

    Raises:
        LandscapeError: the file is not IDX of unsigned bytes.
    """
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as fh:
        raw = fh.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] != 8:
        raise LandscapeError(f"{path}: not an IDX file of unsigned bytes")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    return np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def mnist(directory: str) -> Raw:
    """The four MNIST IDX files (gzipped or not), scaled to [0, 1].

    Args:
        directory: where the files are (or in its `raw`, `MNIST/raw` or `mnist` folder).

    Returns:
        The `Raw` arrays: images (N, 28, 28) and labels.

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> from pathlib import Path
        >>> def idx(path, a):  # IDX: 0, 0, type 8 (unsigned bytes), ndim, then each size
        ...     sizes = b"".join(n.to_bytes(4, "big") for n in a.shape)
        ...     Path(path).write_bytes(bytes([0, 0, 8, a.ndim]) + sizes + a.tobytes())
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for part, n in (("train", 3), ("t10k", 2)):
        ...         idx(f"{d}/{part}-images-idx3-ubyte", np.full((n, 2, 2), 255, np.uint8))
        ...         idx(f"{d}/{part}-labels-idx1-ubyte", np.arange(n, dtype=np.uint8))
        ...     raw = mnist(d)
        >>> raw.x_train.shape, float(raw.x_train.max()), raw.y_test.tolist()
        ((3, 2, 2), 1.0, [0, 1])
    """
    d = Path(directory)
    xtr = _read_idx(_find(d, ["train-images-idx3-ubyte", "train-images.idx3-ubyte"]))
    ytr = _read_idx(_find(d, ["train-labels-idx1-ubyte", "train-labels.idx1-ubyte"]))
    xte = _read_idx(_find(d, ["t10k-images-idx3-ubyte", "t10k-images.idx3-ubyte"]))
    yte = _read_idx(_find(d, ["t10k-labels-idx1-ubyte", "t10k-labels.idx1-ubyte"]))
    return Raw(xtr.astype(np.float32) / 255.0, ytr, xte.astype(np.float32) / 255.0, yte)


def _unpickle(path: Path) -> dict:
    """A CIFAR python batch file.

    Returns:
        Its dict (bytes keys).

    Raises:
        LandscapeError: the file cannot be unpickled.
    """
    try:
        with open(path, "rb") as fh:
            return pickle.load(fh, encoding="bytes")
    except Exception as exc:  # noqa: BLE001 -- a corrupt file can raise anything
        raise LandscapeError(f"{path}: not a CIFAR python batch file: {exc}") from None


def _cifar_images(batch: dict) -> np.ndarray:
    """A CIFAR batch's images.

    Returns:
        The images (N, 3, 32, 32), scaled to [0, 1].
    """
    return (
        np.asarray(batch[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    )


def cifar10(directory: str) -> Raw:
    """The CIFAR-10 python batches, scaled to [0, 1]; augmented in training.

    Args:
        directory: where `data_batch_1` ... `data_batch_5` and `test_batch` are (or in its
            `cifar-10-batches-py` folder).

    Returns:
        The `Raw` arrays: images (N, 3, 32, 32) and labels.

    Examples:
        >>> import pickle
        >>> import tempfile
        >>> import numpy as np
        >>> def batch(path, n):
        ...     with open(path, "wb") as fh:
        ...         pickle.dump({b"data": np.zeros((n, 3072), np.uint8), b"labels": [7] * n}, fh)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for i in range(1, 6):
        ...         batch(f"{d}/data_batch_{i}", 2)
        ...     batch(f"{d}/test_batch", 1)
        ...     raw = cifar10(d)
        >>> raw.x_train.shape, raw.y_test.tolist(), raw.augment
        ((10, 3, 32, 32), [7], True)
    """
    d = Path(directory)
    parts = [_unpickle(_find(d, [f"data_batch_{i}"])) for i in range(1, 6)]
    test = _unpickle(_find(d, ["test_batch"]))
    xtr = np.concatenate([_cifar_images(p) for p in parts])
    ytr = np.concatenate([np.asarray(p[b"labels"]) for p in parts])
    return Raw(xtr, ytr, _cifar_images(test), np.asarray(test[b"labels"]), True)


def cifar100(directory: str) -> Raw:
    """The CIFAR-100 python files (fine labels), scaled to [0, 1]; augmented in training.

    Args:
        directory: where `train` and `test` are (or in its `cifar-100-python` folder).

    Returns:
        The `Raw` arrays: images (N, 3, 32, 32) and the 100 fine labels.

    Examples:
        >>> import pickle
        >>> import tempfile
        >>> import numpy as np
        >>> def batch(path, n):
        ...     data = {b"data": np.zeros((n, 3072), np.uint8), b"fine_labels": [99] * n}
        ...     with open(path, "wb") as fh:
        ...         pickle.dump(data, fh)
        >>> with tempfile.TemporaryDirectory() as d:
        ...     batch(f"{d}/train", 3)
        ...     batch(f"{d}/test", 2)
        ...     raw = cifar100(d)
        >>> raw.x_train.shape, raw.y_train.tolist()
        ((3, 3, 32, 32), [99, 99, 99])
    """
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
