"""What a checkpoint remembers of the data it was trained on, and the check of other data.

The record (in `meta`, docs/results.md, "Data"): `dataset` (the `--data` source), `data_shape` (one
example's shape), `data_fingerprint` (a hash of the labels of the first FINGERPRINT_EXAMPLES
training examples after the fixed split) and `data_stats` (per channel: mean, standard deviation,
minimum and maximum of the raw training inputs, before normalisation). Inputs are compared raw, so
that data scaled differently (uint8 against [0, 1]) or transformed (inverted images) is noticed even
when the labels and shapes agree.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

import torch

from .datasets import Dataset

FINGERPRINT_EXAMPLES = 256
STAT_TOL = (
    0.05  # a channel's mean or std this far from the recorded one (in recorded stds): other data
)
RANGE_TOL = (
    0.1  # inputs beyond the recorded range by this fraction of it: out of the training range
)


def _raw(data: Dataset) -> torch.Tensor:
    """The training inputs before normalisation, channels first: (channels, values).

    Returns:
        The raw inputs in float64, one row per channel.
    """
    x = data.train.x.detach().double().cpu()
    channels = x.shape[1] if x.ndim > 1 else 1
    x = x.transpose(0, 1).reshape(channels, -1) if x.ndim > 1 else x.reshape(1, -1)
    if data.normalize:
        mean = torch.tensor([m for m, _ in data.normalize], dtype=torch.float64)[:, None]
        std = torch.tensor([s for _, s in data.normalize], dtype=torch.float64)[:, None]
        x = x * std + mean
    return x


def _fingerprint(data: Dataset) -> str:
    """A hash of the labels of the first `FINGERPRINT_EXAMPLES` training examples.

    Returns:
        The first 16 hex digits of their SHA-256.
    """
    labels = data.train.y[:FINGERPRINT_EXAMPLES].detach().cpu().to(torch.int64).numpy().tobytes()
    return hashlib.sha256(labels).hexdigest()[:16]


def data_record(data: Dataset) -> dict[str, Any]:
    """The record of `data` that a checkpoint keeps (see the module docstring).

    The statistics are rounded to 6 digits relative to the channel's largest magnitude (digits
    beyond those are float32 rounding).

    Args:
        data: the data set a model is trained on.

    Returns:
        `dataset`, `data_shape`, `data_fingerprint` and `data_stats` (per channel: mean, std,
        minimum, maximum of the raw training inputs).

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(4, 1, 1, 1)
        >>> split = Split(x, torch.tensor([0, 1, 0, 1]))
        >>> data = Dataset("toy.npz", split, split, split, num_classes=2, input_shape=(1, 1, 1))
        >>> record = data_record(data)
        >>> record["dataset"], record["data_shape"], len(record["data_fingerprint"])
        ('toy.npz', [1, 1, 1], 16)
        >>> record["data_stats"]  # mean 1.5, std sqrt(5/3), min 0, max 3
        [[1.5, 1.290993, 0.0, 3.0]]
    """
    raw = _raw(data)
    stats = torch.stack([raw.mean(1), raw.std(1), raw.min(1).values, raw.max(1).values], 1)
    scale = stats[:, 2:].abs().amax(1, keepdim=True).clamp_min(1e-30)
    # float32 inputs: digits beyond these are rounding
    stats = torch.round(stats / scale, decimals=6) * scale
    return {
        "dataset": data.name,
        "data_shape": list(data.input_shape),
        "data_fingerprint": _fingerprint(data),
        "data_stats": stats.tolist(),
    }


def recorded_source(meta: dict) -> str | None:
    """The `--data` source a checkpoint records (a trained model's `dataset`, a fused one's `data`).

    Args:
        meta: the checkpoint's meta.

    Returns:
        The source, or None when it records none.

    Examples:
        >>> recorded_source({"dataset": "digits"}), recorded_source({"data": "mnist:/data"})
        ('digits', 'mnist:/data')
        >>> recorded_source({}) is None
        True
    """
    source = meta.get("dataset") or meta.get("data")
    return str(source) if source else None


def data_mismatch(meta: dict, data: Dataset) -> list[str]:
    """Why `data` is not the data a checkpoint with `meta` was trained on, one sentence each.

    Other examples: another label fingerprint, or a channel's mean or std more than `STAT_TOL`
    recorded stds away. Inputs beyond the training range: by more than `RANGE_TOL` of it.

    Args:
        meta: the checkpoint's meta.
        data: the data about to be measured.

    Returns:
        The differences: other examples (labels or input statistics), or inputs beyond the training
        range; none when the data agree or the checkpoint records nothing to compare with.

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> x = torch.tensor([0.0, 1.0, 2.0, 3.0]).reshape(4, 1, 1, 1)
        >>> def data(name, scale):
        ...     split = Split(scale * x, torch.tensor([0, 1, 0, 1]))
        ...     return Dataset(name, split, split, split, num_classes=2, input_shape=(1, 1, 1))
        >>> meta = data_record(data("toy.npz", 1.0))
        >>> data_mismatch(meta, data("toy.npz", 1.0))
        []
        >>> for line in data_mismatch(meta, data("toy255.npz", 255.0)):
        ...     print(line)
        data 'toy255.npz' is not the data the model was trained on ('toy.npz'): other labels ...
        data 'toy255.npz' has inputs in [0, 765] (channel 0), beyond the range [0, 3] ...
    """
    stats = meta.get("data_stats")
    if not stats:
        return []
    out = []
    trained = f"{meta.get('dataset', 'its training data')!r}"
    ours = data_record(data)
    if len(ours["data_stats"]) != len(stats):
        return [
            f"data {data.name!r} has {len(ours['data_stats'])} input channels, the model was "
            f"trained on {len(stats)} ({trained})"
        ]
    same_examples = ours["data_fingerprint"] == meta.get("data_fingerprint")
    for c, ((m0, s0, lo0, hi0), (m1, s1, lo1, hi1)) in enumerate(zip(stats, ours["data_stats"])):
        scale = s0 if s0 > 0 else 1.0
        if same_examples and (abs(m1 - m0) > STAT_TOL * scale or abs(s1 - s0) > STAT_TOL * scale):
            same_examples = False
        span = (hi0 - lo0) or 1.0
        if lo1 < lo0 - RANGE_TOL * span or hi1 > hi0 + RANGE_TOL * span:
            out.append(
                f"data {data.name!r} has inputs in [{_g(lo1)}, {_g(hi1)}] (channel {c}), beyond "
                f"the range [{_g(lo0)}, {_g(hi0)}] the model was trained on ({trained}): check the "
                "scaling"
            )
            break
    if not same_examples:
        out.insert(
            0,
            f"data {data.name!r} is not the data the model was trained on ({trained}): other "
            "labels or input statistics in the first training examples",
        )
    return out


def _g(value: float) -> str:
    """`value` with 4 significant digits.

    Returns:
        The text.
    """
    return f"{value:.4g}" if math.isfinite(value) else str(value)
