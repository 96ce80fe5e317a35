"""Datasets held as in-memory tensors: train / validation / test splits of what `readers` read.

Splits are deterministic (fixed permutation seed). Inputs are standardised per channel, `(x - mean)
/ std`: with the training split's own statistics (`normalize="auto"`), not at all (`"none"`, inputs
as read, e.g. pixels in [0, 1]), or with given statistics (`"MEAN,STD"` for every channel,
`"M1,S1;M2,S2;..."` per channel, or a list of (mean, std) pairs), as a model trained elsewhere
expects. `Dataset.normalize` records what was applied.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import numpy as np
import torch

from ..choices import SPLITS
from ..errors import LandscapeError, check_choice
from .checks import check_split_sizes, class_labels, float_inputs
from .readers import CLASSES, READERS, TEST_FRACTION, Raw, digits, holdout, npz
from .selection import DataSpec, Selection, select
from .split import Split


@dataclass(frozen=True)
class Dataset:
    """Train / validation / test splits plus what a model needs to know about them.

    Attributes:
        name: the data set as `load_data` was given it.
        train: the training split.
        val: the validation split.
        test: the test split.
        num_classes: the number of classes.
        input_shape: one example's shape (C, H, W).
        augment: whether training augments the inputs (CIFAR).
        normalize: the (mean, std) per channel applied to the inputs; () for none.
        selection: the training and validation examples kept.

    Examples:
        >>> import torch
        >>> split = Split(torch.zeros(4, 1, 2, 2), torch.tensor([0, 1, 0, 1]))
        >>> data = Dataset("toy", split, split, split, num_classes=2, input_shape=(1, 2, 2))
        >>> len(data.split("val")), data.reshaped((4,)).train.x.shape
        (4, torch.Size([4, 4]))
    """

    name: str
    train: Split
    val: Split
    test: Split
    num_classes: int
    input_shape: tuple[int, ...]
    augment: bool = False
    normalize: tuple[
        tuple[float, float], ...
    ] = ()  # (mean, std) per channel as applied; () for none
    # the training and validation examples kept
    selection: Selection = field(default_factory=Selection)

    def split(self, which: str) -> Split:
        """The split called `which`.

        Args:
            which: train, val or test (`check_choice` raises `LandscapeError` for others).

        Returns:
            That split.
        """
        return getattr(self, check_choice(which, SPLITS, "split"))

    def reshaped(self, shape: Sequence[int]) -> Dataset:
        """The same examples with inputs of `shape` (as many values per example).

        E.g. (N, 784) rows for a model that flattens (1, 28, 28) images.

        Args:
            shape: one example's new shape.

        Returns:
            A new `Dataset` with every split reshaped and `input_shape` set to `shape`.
        """
        shape = tuple(int(d) for d in shape)
        splits = {
            k: Split(getattr(self, k).x.reshape(len(getattr(self, k)), *shape), getattr(self, k).y)
            for k in SPLITS
        }
        return replace(self, input_shape=shape, **splits)

    def to(self, device: torch.device | str) -> Dataset:
        """The same dataset on `device`.

        Args:
            device: where every split's tensors go.

        Returns:
            A new `Dataset`.
        """
        return replace(
            self, train=self.train.to(device), val=self.val.to(device), test=self.test.to(device)
        )


def _as_nchw(x: np.ndarray, source: str) -> np.ndarray:
    """Inputs as (N, C, H, W): rows as (N, 1, 1, D), images (N, H, W) with one channel, NHWC moved.

    Returns:
        The inputs as (N, C, H, W) (a view).

    Raises:
        LandscapeError: inputs of fewer than 2 or more than 4 dimensions.
    """
    if x.ndim == 2:
        return x[:, None, None, :]
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4:
        if x.shape[-1] in (1, 3) and x.shape[1] not in (1, 3):
            return x.transpose(0, 3, 1, 2)
        return x
    raise LandscapeError(f"{source}: inputs must have 2 to 4 dimensions, got shape {x.shape}")


Normalize = str | Sequence[Sequence[float]]


def parse_normalize(value: Normalize, channels: int) -> str | list[tuple[float, float]]:
    """The normalisation `value` asks for: "auto", "none", or one (mean, std) pair per channel.

    Args:
        value: "auto", "none", "MEAN,STD" (every channel), "M1,S1;M2,S2;..." (per channel), or a
            sequence of (mean, std) pairs.
        channels: the inputs' number of channels.

    Returns:
        "auto", "none", or `channels` (mean, std) pairs.

    Raises:
        LandscapeError: text of another form, a count of pairs that is neither 1 nor `channels`,
            or a std that is not positive.

    Examples:
        >>> parse_normalize("0.5,0.25", 3)
        [(0.5, 0.25), (0.5, 0.25), (0.5, 0.25)]
        >>> parse_normalize([(0, 1), (1, 2)], 2)
        [(0.0, 1.0), (1.0, 2.0)]
        >>> parse_normalize("1,0", 1)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: `normalize`: every std must be positive, got '1,0'
    """
    if isinstance(value, str):
        if value in ("auto", "none"):
            return value
        try:
            pairs = [
                tuple(float(v) for v in part.split(","))
                for part in value.split(";")
                if part.strip()
            ]
        except ValueError:
            pairs = []
    else:
        pairs = [tuple(float(v) for v in pair) for pair in value]
    if not pairs or any(len(p) != 2 for p in pairs):
        raise LandscapeError(
            f"`normalize`: expected auto, none, MEAN,STD or MEAN,STD;MEAN,STD;... got {value!r}"
        )
    if len(pairs) == 1:
        pairs = pairs * channels
    if len(pairs) != channels:
        raise LandscapeError(
            f"`normalize` gives {len(pairs)} (mean, std) pairs for inputs with {channels} channels"
        )
    if any(not std > 0 for _, std in pairs):
        raise LandscapeError(f"`normalize`: every std must be positive, got {value!r}")
    return pairs


def normalize_label(pairs: Sequence[Sequence[float]]) -> str:
    """How results record the normalisation: "none", or "MEAN,STD;..." per channel.

    Args:
        pairs: the (mean, std) per channel as applied; empty for none.

    Returns:
        The label, each number with 6 significant digits.

    Examples:
        >>> normalize_label([(0.5, 0.25), (0.1307, 0.3081)])
        '0.5,0.25;0.1307,0.3081'
        >>> normalize_label(())
        'none'
    """
    return ";".join(f"{m:.6g},{s:.6g}" for m, s in pairs) if pairs else "none"


def _examples(
    source: str, raw_x: np.ndarray, raw_y: np.ndarray, split: str
) -> tuple[np.ndarray, np.ndarray]:
    """Checked inputs (float32, NCHW) and class labels (int64) of one split as read.

    Returns:
        The inputs and the labels.
    """
    x = float_inputs(source, f"x_{split}", np.asarray(raw_x))
    return _as_nchw(x, source), class_labels(source, f"y_{split}", np.asarray(raw_y), len(x))


def _splits(
    source: str, raw: Raw, classes: int | None, val_fraction: float
) -> tuple[tuple, tuple, tuple, int]:
    """(train, test, validation) arrays and the number of classes, checked.

    The test split is held out when the source has none; every split is non-empty and every label
    below the number of classes.

    Returns:
        `((x, y) train, (x, y) test, (x, y) validation, classes)`.

    Raises:
        LandscapeError: train and test inputs of different shapes, or labels out of range.
    """
    xtr, ytr = _examples(source, raw.x_train, raw.y_train, "train")
    if raw.x_test is None:
        total = len(ytr)
        (xtr, ytr), (xte, yte) = holdout(xtr, ytr, TEST_FRACTION)
    else:
        xte, yte = _examples(source, raw.x_test, raw.y_test, "test")
        total = len(ytr) + len(yte)
    if xtr.shape[1:] != xte.shape[1:]:
        raise LandscapeError(f"{source}: train and test inputs have different shapes")
    classes = classes or int(max(ytr.max(initial=0), yte.max(initial=0))) + 1
    highest = int(max(ytr.max(initial=0), yte.max(initial=0)))
    if highest >= classes:
        raise LandscapeError(
            f"{source}: labels out of range: found label {highest} for {classes} classes"
        )
    (xtr, ytr), (xva, yva) = holdout(xtr, ytr, val_fraction)
    check_split_sizes(
        source, {"training": len(ytr), "validation": len(yva), "test": len(yte)}, total
    )
    return (xtr, ytr), (xte, yte), (xva, yva), classes


def load_data(
    spec: str | DataSpec = "digits",
    val_fraction: float = 0.1,
    device: torch.device | str = "cpu",
    normalize: Normalize = "auto",
    selection: Selection | None = None,
) -> Dataset:
    """Load a data set as checked, normalised train / validation / test splits.

    Nothing is downloaded. The test split is the source's own, or 20% held out of its training
    data; the validation split is `val_fraction` of what remains, both with a fixed permutation.

    Args:
        spec: `digits`, a `.npz` path, `mnist:DIR`, `cifar10:DIR` or `cifar100:DIR`, or a
            `DataSpec` (a source with its own selection).
        val_fraction: the share of the training data held out for validation.
        device: where the splits' tensors go.
        normalize: "auto", "none" or (mean, std) statistics (see the module docstring and
            `parse_normalize`).
        selection: which training and validation examples to keep, chosen after the statistics
            of `normalize="auto"` are taken from the whole training split; the test split stays
            whole (`landscape/data/selection.py`).

    Returns:
        The `Dataset`.

    Raises:
        LandscapeError: a selection given twice, a missing data directory, or an unknown `spec`
            (bad files and arrays are refused by the readers and the checks).

    Examples:
        >>> import tempfile
        >>> import numpy as np
        >>> with tempfile.TemporaryDirectory() as d:
        ...     x = np.arange(40.0).reshape(20, 2)
        ...     np.savez(f"{d}/toy.npz", x_train=x, y_train=np.arange(20) % 2)
        ...     data = load_data(f"{d}/toy.npz", normalize="0,2")
        >>> len(data.train), len(data.val), len(data.test), data.input_shape, data.normalize
        (14, 2, 4, (1, 1, 2), ((0.0, 2.0),))
        >>> float(sum(data.split(s).x.sum() for s in ("train", "val", "test")))  # (0 + .. + 39) / 2
        390.0
        >>> load_data("imagenet")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: unknown dataset 'imagenet'; use digits, a .npz file, ...
    """
    if isinstance(spec, DataSpec):
        if selection is not None:
            raise LandscapeError("give the selection in the DataSpec or as selection, not both")
        spec, selection = spec.source, spec.selection
    kind, _, where = spec.partition(":")
    where = os.path.expanduser(where)
    if spec == "digits":
        raw = digits()
    elif kind in READERS and where:
        if not os.path.isdir(where):
            raise LandscapeError(f"data directory not found: {where}")
        raw = READERS[kind](where)
    elif spec.endswith(".npz"):
        kind = "npz"
        raw = npz(os.path.expanduser(spec))
    else:
        raise LandscapeError(
            f"unknown dataset {spec!r}; use digits, a .npz file, or mnist:DIR, cifar10:DIR, "
            "cifar100:DIR"
        )
    (xtr, ytr), (xte, yte), (xva, yva), num_classes = _splits(
        spec, raw, CLASSES.get(kind), val_fraction
    )
    how = parse_normalize(normalize, xtr.shape[1])
    if how == "auto":
        mean = xtr.mean(axis=(0, 2, 3), keepdims=True)
        std = xtr.std(axis=(0, 2, 3), keepdims=True) + 1e-8
    elif how == "none":
        mean, std = (
            np.zeros((1, xtr.shape[1], 1, 1), np.float32),
            np.ones((1, xtr.shape[1], 1, 1), np.float32),
        )
    else:
        mean = np.array([m for m, _ in how], np.float32).reshape(1, -1, 1, 1)
        std = np.array([s for _, s in how], np.float32).reshape(1, -1, 1, 1)

    def norm(a: np.ndarray) -> torch.Tensor:
        """`a` standardised, as a float32 tensor.

        Returns:
            The tensor.
        """
        return torch.from_numpy(np.ascontiguousarray((a - mean) / std, dtype=np.float32))

    # as given, not their float32 copy
    applied = (
        ()
        if how == "none"
        else tuple(tuple(pair) for pair in how)
        if how != "auto"
        else tuple(zip(mean.ravel().tolist(), std.ravel().tolist()))
    )
    selection = selection or Selection()
    train = select(Split(norm(xtr), torch.from_numpy(ytr)), selection)
    val = select(Split(norm(xva), torch.from_numpy(yva)), selection)
    ds = Dataset(
        spec,
        train,
        val,
        Split(norm(xte), torch.from_numpy(yte)),
        num_classes,
        tuple(xtr.shape[1:]),
        raw.augment,
        applied,
        selection,
    )
    return ds.to(device)


@dataclass(frozen=True)
class DataShape:
    """What planning needs of a data set: input shape, classes, and examples per split.

    Attributes:
        input_shape: one example's shape (C, H, W).
        num_classes: the number of classes.
        sizes: the examples of each split (train, val, test).

    Examples:
        >>> shape = data_shape("mnist:/data/mnist")  # a known data set: nothing is read
        >>> shape.input_shape, shape.num_classes, shape.sizes["val"]
        ((1, 28, 28), 10, 6000)
    """

    input_shape: tuple[int, ...]
    num_classes: int
    sizes: dict[str, int]


# the data sets of fixed size, after the 10% validation split (digits: 20% held out as test first)
KNOWN_SHAPES = {
    "digits": DataShape((1, 8, 8), 10, {"train": 1294, "val": 144, "test": 359}),
    "mnist": DataShape((1, 28, 28), 10, {"train": 54000, "val": 6000, "test": 10000}),
    "cifar10": DataShape((3, 32, 32), 10, {"train": 45000, "val": 5000, "test": 10000}),
    "cifar100": DataShape((3, 32, 32), 100, {"train": 45000, "val": 5000, "test": 10000}),
}


def data_shape(spec: str) -> DataShape:
    """The shape of data set `spec`, without reading digits, mnist, cifar10 or cifar100.

    A `.npz` file is read (`load_data`, which raises `LandscapeError` for a bad file).

    Args:
        spec: the data set as `load_data` names it.

    Returns:
        Its input shape, classes and split sizes.

    Examples:
        >>> data_shape("digits").sizes
        {'train': 1294, 'val': 144, 'test': 359}
        >>> data_shape("cifar100:/data/cifar").num_classes
        100
    """
    kind = spec.partition(":")[0]
    if kind in KNOWN_SHAPES:
        return KNOWN_SHAPES[kind]
    data = load_data(spec)
    return DataShape(data.input_shape, data.num_classes, {s: len(data.split(s)) for s in SPLITS})
