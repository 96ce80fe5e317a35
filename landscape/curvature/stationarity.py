"""Where a measurement was taken: the loss, accuracy and gradient of the measured loss there.

Curvature describes a minimum only where the gradient (nearly) vanishes; `point_state` measures
how far the model's weights are from such a point (its docstring has the criterion and the
values the quick study measured), and `PointState` records it with a result.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import torch
from torch import nn

from .. import dist
from ..data.batches import Batch, as_batches
from ..data.split import Split
from ..loss import Criterion, correct, loss_sum
from ..training.metrics import check_targets

FAR_FROM_STATIONARY = (
    0.1  # ||∇L|| / ||θ|| above this: the point is flagged as far from a stationary point
)


@dataclass(frozen=True)
class PointState:
    """The measured loss at the model's weights: its value, accuracy, gradient and weight norms.

    Attributes:
        loss: the mean loss.
        acc: the accuracy, as a fraction (NaN for targets that are not class indices).
        grad_norm: ||∇L||, the norm of the mean loss's gradient over the trainable parameters.
        weight_norm: ||θ||, the norm of the trainable parameters.
        rel_grad_norm: ||∇L|| / ||θ|| (inf for zero weights).
        n_examples: the examples (all ranks together).

    Examples:
        >>> state = PointState(0.5, 0.9, 0.002, 10.0, 0.0002, 100)
        >>> state.far, state.attrs()["point_rel_grad_norm"]
        (False, 0.0002)
        >>> state.text()
        "at the measured point: loss 0.5, accuracy 90.00%, gradient norm 0.002 (0.0002 of the ..."
    """

    loss: float
    acc: float
    grad_norm: float
    weight_norm: float
    rel_grad_norm: float
    n_examples: int

    @property
    def far(self) -> bool:
        """Far from a stationary point: `rel_grad_norm` above FAR_FROM_STATIONARY (or NaN)."""
        return not self.rel_grad_norm <= FAR_FROM_STATIONARY

    def attrs(self) -> dict[str, float | int | bool]:
        """As the `point_*` attributes of a stored result.

        Returns:
            The fields by attribute name, with `point_far_from_stationary`.
        """
        return {
            "point_loss": self.loss,
            "point_acc": self.acc,
            "point_grad_norm": self.grad_norm,
            "point_weight_norm": self.weight_norm,
            "point_rel_grad_norm": self.rel_grad_norm,
            "point_far_from_stationary": self.far,
        }

    def text(self) -> str:
        """One line for people.

        Returns:
            The loss, accuracy and gradient norm, and a warning when the point is far.
        """
        line = (
            f"at the measured point: loss {self.loss:.4g}, accuracy {100 * self.acc:.2f}%, "
            f"gradient norm {self.grad_norm:.3g} ({self.rel_grad_norm:.3g} of the weights' norm)"
        )
        return line + (
            f": FAR FROM A STATIONARY POINT (above {FAR_FROM_STATIONARY:g})" if self.far else ""
        )


def point_state(
    model: nn.Module,
    data: Split | Iterable[Batch],
    batch_size: int = 256,
    criterion: Criterion = "ce",
) -> PointState:
    """The mean loss, accuracy and gradient norm of `model` (eval mode, as measured) on `data`.

    At a minimum of the training objective L(θ) + (λ/2)||θ||² with weight decay λ, the data
    gradient is ∇L = -λθ, so its size relative to the weights, ||∇L|| / ||θ||, is the weight decay
    there (5e-4 in the study's settings), and stays within a small factor of it on a subsample of
    the training data. `rel_grad_norm` is that ratio over the trainable parameters; a point with a
    ratio above `FAR_FROM_STATIONARY` is flagged as far from a stationary point. In the quick study
    (1024 training examples) trained and fine-tuned models sit at 0.003 to 0.054, OT fusions before
    fine-tuning at 0.016 to 0.08, and vanilla averages of different-init parents at 0.13 to 0.29
    (docs/results.md, "Stationarity"). Labels out of the model's range and an unknown criterion are
    refused by the checks this calls.

    Args:
        model: the model; its weights and mode are left as they were.
        data: the examples the measurement used (a Split or re-iterable batches; sharded under
            torchrun).
        batch_size: examples per forward pass of a Split.
        criterion: "ce", "nll" or a loss callable, as the measurement's.

    Returns:
        The PointState; the gradient is that of the mean loss over all examples, with respect to the
        trainable parameters.

    Examples:
        Logits x W^T with W = I: the losses are log(1 + e^-1) and log(1 + e^-2), both predictions
        right, and the gradient (1/N) Σ_i (softmax(x_i) - e_{y_i}) x_i^T has norm 0.254:

        >>> import torch
        >>> from landscape.data.split import Split
        >>> model = torch.nn.Linear(2, 2, bias=False)
        >>> _ = torch.nn.init.eye_(model.weight)
        >>> data = Split(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 1]))
        >>> state = point_state(model, data)
        >>> round(state.loss, 4), state.acc, round(state.grad_norm, 4), state.far
        (0.2201, 1.0, 0.2541, True)
    """
    params = [p for p in model.parameters() if p.requires_grad]
    device = params[0].device
    total = loss_sum(criterion)
    was = model.training
    model.eval()
    grads = [torch.zeros_like(p, dtype=torch.float64) for p in params]
    sums = torch.zeros(3, dtype=torch.float64, device=device)  # loss, correct, examples
    for x, y in as_batches(data, batch_size, device):
        out = model(x)
        check_targets(out, y)
        loss = total(out, y)
        for g, d in zip(grads, torch.autograd.grad(loss, params, allow_unused=True)):
            if d is not None:
                g += d.double()
        sums += torch.stack(
            [
                loss.detach().double(),
                correct(out, y).detach().double(),
                torch.tensor(float(len(y)), dtype=torch.float64, device=device),
            ]
        )
    model.train(was)
    flat = dist.all_reduce_sum(torch.cat([g.flatten() for g in grads] + [sums]))
    n = max(float(flat[-1]), 1.0)
    grad_norm = float(flat[:-3].norm()) / n
    weight_norm = math.sqrt(sum(float(p.detach().double().pow(2).sum()) for p in params))
    return PointState(
        float(flat[-3]) / n,
        float(flat[-2]) / n,
        grad_norm,
        weight_norm,
        grad_norm / weight_norm if weight_norm > 0 else math.inf,
        int(flat[-1]),
    )
