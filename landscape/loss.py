"""The loss every measurement averages: cross-entropy by default, or the user's criterion.

A measurement is the mean over examples, batches weighted by their size (docs/conventions.md), so
the criterion is used as a per-batch SUM: `"ce"` is cross-entropy on logits, `"nll"` the negative
log-likelihood of models that end in `log_softmax`, `"lm"` a causal language model's next-token
cross-entropy (`NextTokenLoss`); an `nn.Module` loss with a `reduction` attribute is used with
`reduction="sum"`; an object with a `count(targets)` method returns the sum over the terms it counts
(the mean divides by those counts, as `NextTokenLoss` does with predicted tokens); any other
callable `f(outputs, targets)` is taken to return a batch mean and is multiplied by the batch size.
The outputs are the model's prediction tensor (`landscape.models.outputs`). Accuracy is defined for
class-index targets only.
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .choices import LOSSES
from .errors import LandscapeError, check_choice

Criterion = str | Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
LossSum = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]
# the label that marks a token without a loss (PyTorch's and Hugging Face's convention)
IGNORE_INDEX = -100


LOG_PROB_TOL = 1e-3  # |log-sum-exp| of a row of float32 log-probabilities is about 1e-7
# classes below which torch's CPU log_softmax over the last dimension falls off its vector path
SHORT_ROWS = 16


def _ce(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed cross-entropy of logits `out` (N, C) against class indices `y`.

    Without gradients, on the CPU and with fewer than `SHORT_ROWS` classes, the log-softmax runs
    over the transposed logits: torch's kernel over a last dimension shorter than one vector
    register (16 floats with AVX-512) is scalar, 4-7x slower for 10 classes than over the first
    dimension (measured on 359 x 10 logits), a visible share of a small network's evaluation. Same
    value up to float rounding.

    Returns:
        The summed cross-entropy, a scalar tensor.
    """
    if (
        out.ndim == 2
        and out.shape[1] < SHORT_ROWS
        and out.device.type == "cpu"
        and not torch.is_grad_enabled()
        and y.ndim == 1
        and not y.is_floating_point()
    ):
        return -out.T.contiguous().log_softmax(0).gather(0, y[None]).sum()
    return F.cross_entropy(out, y, reduction="sum")


def _nll() -> LossSum:
    """Summed negative log-likelihood of log-probabilities `out` (N, C), checked on a first batch.

    The first batch it sees is checked to be log-probabilities (each row's log-sum-exp 0), since NLL
    of logits is a number without meaning.

    Returns:
        The summed NLL as a function `(outputs, targets) -> loss`; it raises `LandscapeError` when
        its first batch is not log-probabilities.
    """
    checked = False

    def nll(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        nonlocal checked
        if not checked and out.ndim == 2 and not torch._C._functorch.is_batchedtensor(out):
            with torch.no_grad():
                off = float(out.detach().float().logsumexp(1).abs().max())
            if off > LOG_PROB_TOL:
                raise LandscapeError(
                    f"`criterion` nll needs log-probabilities (a model ending in log_softmax), "
                    f"but the outputs' log-sum-exp is {off:.3g} away from 0: use `criterion` ce "
                    "for logits"
                )
            checked = True
        return F.nll_loss(out, y, reduction="sum")

    return nll


class NextTokenLoss:
    """Next-token cross-entropy of a causal language model, summed over the predicted tokens.

    The negative log-likelihood of each token given the ones before it (Bengio et al., "A Neural
    Probabilistic Language Model", JMLR 2003): the logits `(B, T, V)` at position t are scored
    against `labels[:, t + 1]`, so the labels are the input ids themselves, shifted here (as Hugging
    Face's causal LM heads do). Tokens labelled `ignore_index` (padding, prompts) count neither in
    the sum nor in `count`, so a measurement's mean is the mean over predicted tokens.

    Args:
        ignore_index: the label of tokens that are not predicted.

    Examples:
        >>> import torch
        >>> loss = NextTokenLoss()
        >>> labels = torch.tensor([[0, 1, -100]])  # one predicted token: the 1 after the 0
        >>> round(float(loss(torch.zeros(1, 3, 2), labels)), 4)  # uniform over 2 tokens: log 2
        0.6931
        >>> loss.count(labels)
        1
    """

    def __init__(self, ignore_index: int = IGNORE_INDEX):
        self.ignore_index = ignore_index

    def __call__(self, out: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Summed loss of logits `out` (B, T, V) against token ids `labels` (B, T).

        Args:
            out: the logits, one row of the vocabulary per position.
            labels: the token ids, usually the model's input ids.

        Returns:
            The summed cross-entropy of every position's logits against the next token's id.

        Raises:
            LandscapeError: the shapes are not those of a language model's logits and labels.
        """
        if out.ndim != 3 or labels.shape != out.shape[:2]:
            raise LandscapeError(
                f"the language-model loss needs logits (batch, tokens, vocabulary) and labels "
                f"(batch, tokens); got outputs {tuple(out.shape)} and labels {tuple(labels.shape)}"
            )
        return F.cross_entropy(
            out[:, :-1].reshape(-1, out.shape[-1]),
            labels[:, 1:].reshape(-1),
            ignore_index=self.ignore_index,
            reduction="sum",
        )

    def count(self, labels: torch.Tensor) -> int:
        """The predicted tokens of a batch: every label after its row's first, less the ignored.

        Args:
            labels: the token ids (B, T).

        Returns:
            How many terms the batch adds to the sum.
        """
        return int((labels[:, 1:] != self.ignore_index).sum())


def counter(criterion: Criterion = "ce") -> Callable[[torch.Tensor], int]:
    """How many terms a batch's targets add to the mean: its examples, or the criterion's `count`.

    Args:
        criterion: `"ce"`, `"nll"`, `"lm"` or a callable (one with a `count` method is asked).

    Returns:
        A function of a batch's targets giving its number of terms (`len` unless the criterion
        counts them itself).

    Examples:
        >>> import torch
        >>> counter("ce")(torch.tensor([0, 1, 1]))
        3
        >>> counter("lm")(torch.tensor([[5, 6, -100]]))
        1
    """
    if criterion == "lm":
        return NextTokenLoss().count
    count = getattr(criterion, "count", None)
    return count if callable(count) and not isinstance(criterion, str) else len


def loss_sum(criterion: Criterion = "ce") -> LossSum:
    """The criterion as a function returning the SUM of the loss over a batch.

    Args:
        criterion: `"ce"` (cross-entropy of logits), `"nll"` (of log-probabilities, checked on
            the first batch), `"lm"` (`NextTokenLoss`), an `nn.Module` loss with a `reduction`
            (used with `reduction="sum"`), a callable with a `count` method (returns sums
            already), or any callable returning a batch mean (multiplied by the batch size).

    Returns:
        A function `(outputs, targets) -> summed loss`.

    Raises:
        LandscapeError: an unknown name, or a criterion that is not callable.

    Examples:
        >>> import torch
        >>> out, y = torch.zeros(2, 2), torch.tensor([0, 1])
        >>> round(float(loss_sum("ce")(out, y)), 4)  # 2 log 2
        1.3863
        >>> round(float(loss_sum(torch.nn.CrossEntropyLoss())(out, y)), 4)
        1.3863
        >>> loss_sum("mse")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: unknown loss 'mse'; choose one of ce, nll, lm, ...
    """
    if criterion == "ce":
        return _ce
    if criterion == "nll":
        return _nll()
    if criterion == "lm":
        return NextTokenLoss()
    if isinstance(criterion, str):
        check_choice(criterion, LOSSES, "loss", hint="or pass a callable")
    if isinstance(criterion, nn.Module) and getattr(criterion, "reduction", None) in (
        "mean",
        "sum",
    ):
        summed = copy.copy(criterion)
        summed.reduction = "sum"
        return summed
    if not callable(criterion):
        raise LandscapeError(
            f"the criterion must be one of {', '.join(LOSSES)} or a callable, got "
            f"{type(criterion).__name__}"
        )
    if callable(getattr(criterion, "count", None)):
        return criterion

    def from_mean(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return criterion(out, y) * len(y)

    return from_mean


def loss_name(criterion: Criterion) -> str:
    """How results record the criterion.

    Args:
        criterion: a name or a callable.

    Returns:
        The name, or the callable's class name.

    Examples:
        >>> import torch
        >>> loss_name("ce"), loss_name(torch.nn.MSELoss())
        ('ce', 'MSELoss')
    """
    return criterion if isinstance(criterion, str) else type(criterion).__name__


def correct(out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Number of correct class predictions (NaN when the targets are not class indices).

    The prediction is `argmax` (the first of equal maxima, NaN above all), taken from `max(1)`,
    which gives the same indices and is a quarter faster over many rows of few classes on the CPU.

    Args:
        out: the predictions (N, C).
        y: the targets: class indices (N,) for an accuracy.

    Returns:
        A scalar tensor of `out`'s dtype: the count, or NaN.

    Examples:
        >>> import torch
        >>> out = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
        >>> correct(out, torch.tensor([0, 0]))
        tensor(1.)
        >>> correct(out, torch.tensor([0.5, 0.5]))
        tensor(nan)
    """
    if out.ndim == 2 and y.ndim == 1 and not y.is_floating_point():
        return (out.max(1).indices == y).sum().to(out.dtype)
    return torch.full((), float("nan"), dtype=out.dtype, device=out.device)
