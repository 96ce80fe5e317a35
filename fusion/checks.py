"""One-line errors for models that cannot be fused (non-finite weights, other architectures, other
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
    """Raise if a parameter or buffer of any model holds NaN or infinity, naming the model by its
    position.
    """
    for i, model in enumerate(models, 1):
        check_finite(model, f"model {i}")


def check_same_graph(graphs: Sequence[AlignmentGraph]) -> None:
    """Raise unless every graph has the first one's layers, wiring, inputs and classes (widths may
    differ).
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
    """Raise unless all models have the same parameter and buffer names and shapes (vanilla
    averaging).
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
    """The weights of k models, normalised to sum to one (uniform by default)."""
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
    """Raise if the models' specs (where they have one) name different numbers of classes or input
    shapes.
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
    """Whether `a` and `b` (eval mode) compute the same function on the inputs `x`: every output
    within `rtol` of the largest output magnitude (float rounding of reordered sums stays far
    below); and the fraction of inputs on which they predict the same class.
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
    """The fraction of `x` whose predicted class is `y` (the model in eval mode)."""
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
    """Whether `aligned` still computes `original`'s function, with a `warning:` line when it does
    not.

    Only a permutation keeps the function exactly (exact EMD, uniform marginals, equal widths): the
    outputs then agree to float rounding (`compare_outputs`).

    Args:
        original: the model before alignment (eval mode).
        aligned: the same model aligned to another.
        x: the inputs to compare on; None: 256 random inputs of the shape the original's spec
        records. y: the labels of `x`, if any: the warning then gives both models' accuracy on them.
        batch_size: inputs per forward pass. name: how the warning names the aligned model ("a.pt
        aligned to b.pt"). where: how the warning names the inputs ("test examples").

    Returns:
        What results record: `function_kept` and `agreement` (the fraction of inputs with the same
        predicted class).

    Raises:
        LandscapeError: `x` is None and the original's spec records no input shape.
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
            "widths "
            "keeps it)"
        )
    return {"function_kept": kept, "agreement": agreement}
