"""Checks before fusion and after alignment.

One-line errors for models that cannot be fused (non-finite weights, other architectures, other
classes), and the check that an aligned model still computes the original's function (a warning when
it does not).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from landscape.errors import LandscapeError, check_finite, warn
from landscape.spec import spec_of

from .graph import AlignmentGraph


def check_all_finite(models: Sequence[nn.Module]) -> None:
    """Raise a one-line error if a parameter or buffer of any model holds NaN or infinity.

    The error (a `LandscapeError` from `landscape.errors.check_finite`) names the model by its
    position, counted from 1.

    Args:
        models: the models.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> a, b = nn.Linear(2, 1), nn.Linear(2, 1)
        >>> check_all_finite([a, b])
        >>> with torch.no_grad():
        ...     b.bias.fill_(float("nan"))
        Parameter containing:
        tensor([nan], requires_grad=True)
        >>> check_all_finite([a, b])
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: model 2 ...
    """
    for i, model in enumerate(models, 1):
        check_finite(model, f"model {i}")


def check_same_graph(graphs: Sequence[AlignmentGraph]) -> None:
    """Raise a one-line error unless every graph has the first one's layers, wiring and sizes.

    The layers, their wiring, the number of inputs and of classes must agree; widths may differ.

    Args:
        graphs: the models' alignment graphs.

    Raises:
        LandscapeError: naming the first difference: depth, classes, inputs, a layer, the wiring.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> from fusion.graph import build_graph
        >>> graphs = [build_graph(nn.Linear(2, n), torch.zeros(2, 2)) for n in (3, 3, 4)]
        >>> check_same_graph(graphs[:2])
        >>> check_same_graph(graphs)
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: models have different numbers of classes: model 1 has 3...
    """
    ref = graphs[0]
    for i, g in enumerate(graphs[1:], 2):
        if g.signature() == ref.signature():
            continue
        depth_ref, depth = len(ref.layers), len(g.layers)
        if depth != depth_ref:
            raise LandscapeError(
                f"models have different depths: model 1 has {depth_ref} linear/conv layers, "
                f"model {i} has {depth}"
            )
        classes_ref = ref.groups[ref.output_group].size if ref.output_group >= 0 else None
        classes = g.groups[g.output_group].size if g.output_group >= 0 else None
        if classes != classes_ref:
            raise LandscapeError(
                f"models have different numbers of classes: model 1 has {classes_ref}, "
                f"model {i} has {classes}"
            )
        inputs_ref = ref.groups[ref.input_group].size if ref.input_group >= 0 else None
        inputs = g.groups[g.input_group].size if g.input_group >= 0 else None
        if inputs != inputs_ref:
            raise LandscapeError(
                f"models have different inputs: model 1 has {inputs_ref} input channels, "
                f"model {i} has {inputs}"
            )
        for a, b in zip(ref.layers, g.layers):
            if (a.name, a.kind, a.detail) != (b.name, b.kind, b.detail):
                raise LandscapeError(
                    f"incompatible architectures: model 1 has layer '{a.name}' ({a.detail[0]}) "
                    f"where model {i} has '{b.name}' ({b.detail[0]})"
                )
        raise LandscapeError(
            f"incompatible architectures: models 1 and {i} wire their layers differently"
        )


def check_same_shapes(models: Sequence[nn.Module]) -> None:
    """Raise a one-line error unless all models have the same state names and shapes.

    Vanilla averaging needs this: every parameter and buffer is averaged with its namesake.

    Args:
        models: the models.

    Raises:
        LandscapeError: a model has other state names, or a tensor of another shape.

    Examples:
        >>> from torch import nn
        >>> check_same_shapes([nn.Linear(2, 3), nn.Linear(2, 3)])
        >>> check_same_shapes([nn.Linear(2, 3), nn.Linear(2, 4)])
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: vanilla averaging needs models of equal shapes: ...
    """
    ref = models[0].state_dict()
    for i, model in enumerate(models[1:], 2):
        state = model.state_dict()
        if set(state) != set(ref):
            missing = min(set(ref) ^ set(state))
            raise LandscapeError(
                f"incompatible architectures: models 1 and {i} have different layers ({len(ref)} "
                "and "
                f"{len(state)} tensors; {missing} is only in model {1 if missing in ref else i}): "
                "averaging and OT fusion combine models of one depth, layer by layer"
            )
        for key, value in state.items():
            if value.shape != ref[key].shape:
                raise LandscapeError(
                    f"vanilla averaging needs models of equal shapes: {key} is "
                    f"{tuple(ref[key].shape)} in model 1 and {tuple(value.shape)} in model {i} "
                    "(use OT fusion for different widths)"
                )


def fusion_weights(weights: Sequence[float] | None, k: int) -> list[float]:
    """The weights of `k` models, normalised to sum to one (uniform by default).

    Args:
        weights: one non-negative weight per model, with a positive sum; None: uniform.
        k: the number of models.

    Returns:
        The `k` weights divided by their sum.

    Raises:
        LandscapeError: a wrong number of weights, a negative or NaN weight, or a zero sum.

    Examples:
        >>> fusion_weights([1, 3], 2)
        [0.25, 0.75]
        >>> fusion_weights(None, 4)
        [0.25, 0.25, 0.25, 0.25]
    """
    if weights is None:
        return [1.0 / k] * k
    weights = [float(w) for w in weights]
    if len(weights) != k:
        raise LandscapeError(f"`weights`: got {len(weights)} weights for {k} models")
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise LandscapeError(f"`weights` must be non-negative with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def check_specs(models: Sequence[nn.Module]) -> None:
    """Raise a one-line error if the models' specs name different numbers of classes or inputs.

    Models without a `landscape_spec`, or whose spec lacks a field, are not compared on it.

    Args:
        models: the models.

    Raises:
        LandscapeError: two specs record different `num_classes` or `input_shape`.

    Examples:
        >>> from torch import nn
        >>> from landscape.spec import attach_spec
        >>> a, b = nn.Linear(4, 3), nn.Linear(4, 2)
        >>> attach_spec(a, "mlp", {"num_classes": 3})
        >>> attach_spec(b, "mlp", {"num_classes": 2})
        >>> check_specs([a, b])
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: models have different numbers of classes: model 1 has 3...
    """
    specs = [spec_of(m) for m in models]
    for key, what in (
        ("num_classes", "different numbers of classes"),
        ("input_shape", "different inputs"),
    ):
        known = [
            (i, getattr(spec, key))
            for i, spec in enumerate(specs, 1)
            if spec is not None and getattr(spec, key) is not None
        ]
        for i, value in known[1:]:
            if value != known[0][1]:
                raise LandscapeError(
                    f"models have {what}: model {known[0][0]} has {known[0][1]}, "
                    f"model {i} has {value}"
                )


@torch.no_grad()
def compare_outputs(
    a: nn.Module, b: nn.Module, x: torch.Tensor, batch_size: int = 1024, rtol: float = 1e-4
) -> tuple[bool, float]:
    """Whether `a` and `b` compute the same function on `x`, and how often they predict alike.

    The models run in eval mode (their modes are restored). They compute the same function when
    every output is within `rtol` of the largest output magnitude: float rounding of reordered sums
    stays far below.

    Args:
        a: one model.
        b: the other.
        x: the inputs.
        batch_size: inputs per forward pass.
        rtol: the tolerance, relative to the largest output magnitude of `a`.

    Returns:
        Whether the outputs agree, and the fraction of inputs with the same predicted class.

    Examples:
        A permutation of the hidden units keeps the function:

        >>> import torch
        >>> from torch import nn
        >>> _ = torch.manual_seed(0)
        >>> a = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> b = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
        >>> order = torch.tensor([2, 0, 3, 1])
        >>> _ = b.load_state_dict({"0.weight": a[0].weight[order], "0.bias": a[0].bias[order],
        ...                        "2.weight": a[2].weight[:, order], "2.bias": a[2].bias})
        >>> compare_outputs(a, b, torch.randn(8, 3))
        (True, 1.0)
    """
    states = [a.training, b.training]
    a.eval()
    b.eval()
    largest, differ, agree = 0.0, 0.0, 0
    for start in range(0, len(x), batch_size):
        out_a, out_b = a(x[start : start + batch_size]), b(x[start : start + batch_size])
        largest = max(largest, float(out_a.abs().max()))
        differ = max(differ, float((out_a - out_b).abs().max()))
        agree += int((out_a.argmax(-1) == out_b.argmax(-1)).sum())
    a.train(states[0])
    b.train(states[1])
    return differ <= rtol * max(largest, 1e-12), agree / max(len(x), 1)


@torch.no_grad()
def _accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> float:
    """Return the fraction of `x` whose predicted class is `y`."""
    hits = sum(
        int((model(x[i : i + batch_size]).argmax(-1) == y[i : i + batch_size]).sum())
        for i in range(0, len(x), batch_size)
    )
    return hits / max(len(x), 1)


def check_function(
    original: nn.Module,
    aligned: nn.Module,
    x: torch.Tensor | None = None,
    y: torch.Tensor | None = None,
    *,
    batch_size: int = 1024,
    name: str = "the aligned model",
    where: str = "examples",
) -> dict:
    """Whether `aligned` still computes `original`'s function; a `warning:` line when it does not.

    Only a permutation keeps the function exactly (exact EMD, uniform marginals, equal widths): the
    outputs then agree to float rounding (`compare_outputs`).

    Args:
        original: the model before alignment (eval mode).
        aligned: the same model aligned to another.
        x: the inputs to compare on; None: 256 random inputs of the shape the original's spec
            records.
        y: the labels of `x`, if any: the warning then gives both models' accuracy on them.
        batch_size: inputs per forward pass.
        name: how the warning names the aligned model ("a.pt aligned to b.pt").
        where: how the warning names the inputs ("test examples").

    Returns:
        What results record: `function_kept` and `agreement` (the fraction of inputs with the same
        predicted class).

    Raises:
        LandscapeError: `x` is None and the original's spec records no input shape.

    Examples:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Linear(3, 2)
        >>> check_function(model, model, torch.randn(4, 3))
        {'function_kept': True, 'agreement': 1.0}
    """
    if x is None:
        spec = spec_of(original)
        if spec is None or spec.input_shape is None:
            raise LandscapeError(
                "pass x (a batch of inputs): the model has no input_shape in its landscape_spec"
            )
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(256, *spec.input_shape, generator=generator).to(
            next(original.parameters()).device
        )
        where = "random inputs"
    kept, agreement = compare_outputs(original, aligned, x, batch_size)
    if not kept:
        accuracy = ""
        if y is not None:
            accuracy = (
                f": test accuracy {_accuracy(aligned, x, y, batch_size):.4f} against "
                f"{_accuracy(original, x, y, batch_size):.4f}"
            )
        warn(
            f"{name} does not compute the original model's function{accuracy}, the same prediction "
            "on "
            f"{agreement:.0%} of {len(x)} {where} (only exact EMD with uniform marginals and equal "
            "widths keeps it)"
        )
    return {"function_kept": kept, "agreement": agreement}
