"""Loss and accuracy: the mean loss over the examples, the model in eval mode.

Batches are weighted by their size (docs/conventions.md, "Measurements").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from .. import dist
from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..errors import LandscapeError, check_finite
from ..loss import Criterion, correct, counter, loss_sum
from ..models.outputs import Output, predict


@dataclass(frozen=True)
class Metrics:
    """Mean loss, accuracy and number of examples.

    Attributes:
        loss: the mean loss.
        acc: the accuracy in [0, 1] (NaN for targets that are not classes).
        n: the number of examples (or of the terms the criterion counts).

    Examples:
        >>> Metrics(loss=0.5, acc=0.75, n=4).acc
        0.75
    """

    loss: float
    acc: float
    n: int


def reduce_sums(
    loss_sum: torch.Tensor, correct: torch.Tensor, n: int, device: torch.device
) -> Metrics:
    """All-reduce per-rank sums of loss, correct predictions and examples into global means.

    Args:
        loss_sum: this rank's summed loss.
        correct: this rank's correct predictions.
        n: this rank's examples.
        device: where the collective's tensor lives.

    Returns:
        The means over all ranks (over at least 1 example, so no examples give zeros).

    Examples:
        >>> import torch
        >>> reduce_sums(torch.tensor(2.0), torch.tensor(3.0), 4, torch.device("cpu"))
        Metrics(loss=0.5, acc=0.75, n=4)
    """
    t = torch.stack(
        [
            loss_sum.detach().double().to(device),
            correct.detach().double().to(device),
            torch.tensor(float(n), dtype=torch.float64, device=device),
        ]
    )
    dist.all_reduce_sum(t)
    total = max(float(t[2]), 1.0)
    return Metrics(float(t[0]) / total, float(t[1]) / total, int(t[2]))


def check_targets(out: torch.Tensor, y: torch.Tensor) -> None:
    """Raise when class-index targets name a class the model's outputs do not have.

    Other targets (not class indices of (N, C) outputs) are not checked.

    Args:
        out: the predictions (N, C).
        y: the targets.

    Raises:
        LandscapeError: a label below 0 or at least C.

    Examples:
        >>> import torch
        >>> check_targets(torch.zeros(2, 3), torch.tensor([0, 2]))
        >>> check_targets(torch.zeros(2, 3), torch.tensor([0, 3]))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: labels out of range: data has label 3 but ...
    """
    if out.ndim == 2 and y.ndim == 1 and not y.is_floating_point() and len(y):
        low, high = int(y.min()), int(y.max())
        if low < 0 or high >= out.shape[1]:
            raise LandscapeError(
                f"labels out of range: data has label {high if high >= out.shape[1] else low} but "
                f"the model has {out.shape[1]} classes"
            )


def _device(model: nn.Module) -> torch.device:
    """Where the model's first parameter is.

    Returns:
        Its device.
    """
    return next(model.parameters()).device


@torch.no_grad()
def evaluate(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 1024,
    criterion: Criterion = "ce",
    output: Output = None,
) -> Metrics:
    """Mean loss and accuracy of `model` in eval mode on `data` (sharded across ranks).

    Bad data, labels out of range, non-finite weights and an output without a prediction tensor
    raise `LandscapeError` (the checks this calls). The model's train/eval mode is restored.

    Args:
        model: any module; its prediction is taken from its output by `landscape.models.outputs`
            (`output`).
        data: a `Split` or a re-iterable of batches (`landscape.data.batches`: `(inputs,
            targets)`, inputs a tensor, tuple or mapping, or a mapping with `labels`).
        batch_size: examples per batch of a `Split`.
        criterion: "ce", "nll", "lm" or a callable (`landscape.loss`); the mean is over what it
            counts (examples, or predicted tokens for "lm").
        output: which tensor of the model's output is the prediction (None: the documented rule).

    Returns:
        `Metrics` (accuracy NaN for targets that are not class indices).

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> net = torch.nn.Linear(2, 2)
        >>> _ = torch.nn.init.zeros_(net.weight), torch.nn.init.zeros_(net.bias)
        >>> m = evaluate(net, Split(torch.ones(4, 2), torch.tensor([0, 1, 0, 1])))
        >>> round(m.loss, 4), m.acc, m.n  # equal logits: loss log 2, class 0 predicted
        (0.6931, 0.5, 4)
    """
    check_finite(model)
    was = model.training
    model.eval()
    device = _device(model)
    total, count = loss_sum(criterion), counter(criterion)
    loss = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    try:
        for x, y in as_batches(data, batch_size, device):
            out = predict(model, x, output)
            check_targets(out, y)
            loss += total(out, y).double()
            hits += correct(out, y).double()
            n += count(y)
    finally:
        model.train(was)
    return reduce_sums(loss, hits, n, device)


@torch.no_grad()
def evaluate_ensemble(
    models: Sequence[nn.Module],
    data: Split | Iterable[Batch],
    batch_size: int = 1024,
    weights: Sequence[float] | None = None,
    output: Output = None,
) -> Metrics:
    """Prediction ensemble: loss and accuracy of the (weighted) average of the models' softmax.

    Each model's prediction is taken as `evaluate` takes it (`output`); the loss is the NLL of the
    averaged probabilities, over class-index targets. Non-finite weights and labels out of range
    raise `LandscapeError` (the checks this calls).

    Args:
        models: the members (the first one's device is used).
        data: a `Split` or a re-iterable of batches.
        batch_size: examples per batch of a `Split`.
        weights: each member's weight (default: equal weights).
        output: which tensor of a model's output is the prediction (None: the documented rule).

    Returns:
        `Metrics` of the ensemble.

    Examples:
        >>> import torch
        >>> from landscape.data.split import Split
        >>> def constant(bias):  # a model predicting softmax(bias) for every input
        ...     net = torch.nn.Linear(2, 2)
        ...     torch.nn.init.zeros_(net.weight)
        ...     with torch.no_grad():
        ...         net.bias.copy_(torch.tensor(bias))
        ...     return net
        >>> models = [constant([1.0, 0.0]), constant([0.0, 1.0])]
        >>> split = Split(torch.ones(2, 2), torch.tensor([0, 1]))
        >>> m = evaluate_ensemble(models, split)
        >>> round(m.loss, 4), m.acc  # the average is (1/2, 1/2): log 2
        (0.6931, 0.5)
        >>> round(evaluate_ensemble(models, split, weights=[1.0, 0.0]).loss, 4)  # log(1 + e) - 1/2
        0.8133
    """
    weights = [1.0 / len(models)] * len(models) if weights is None else list(weights)
    for i, m in enumerate(models, 1):
        check_finite(m, f"model {i}")
    states = [m.training for m in models]
    for m in models:
        m.eval()
    device = _device(models[0])
    loss = torch.zeros((), dtype=torch.float64, device=device)
    hits = torch.zeros((), dtype=torch.float64, device=device)
    n = 0
    for x, y in as_batches(data, batch_size, device):
        probs = sum(
            w * F.softmax(predict(m, x, output).double(), dim=1) for w, m in zip(weights, models)
        )
        check_targets(probs, y)
        loss += F.nll_loss(torch.log(probs.clamp_min(1e-300)), y, reduction="sum")
        hits += correct(probs, y)
        n += len(y)
    for m, s in zip(models, states):
        m.train(s)
    return reduce_sums(loss, hits, n, device)
