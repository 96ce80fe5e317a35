"""One-line errors for models that cannot be fused: non-finite weights, other architectures, other classes."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from torch import nn

from landscape.errors import LandscapeError

from .graph import AlignmentGraph


def check_finite(models: Sequence[nn.Module]) -> None:
    """Raise if a parameter or buffer of any model holds NaN or infinity."""
    for i, model in enumerate(models, 1):
        for key, value in model.state_dict().items():
            if value.is_floating_point() and not torch.isfinite(value).all():
                raise LandscapeError(f"model {i} has non-finite values (NaN or inf) in {key}")


def check_same_graph(graphs: Sequence[AlignmentGraph]) -> None:
    """Raise unless every graph has the first one's layers, wiring, inputs and classes (widths may differ)."""
    ref = graphs[0]
    for i, g in enumerate(graphs[1:], 2):
        if g.signature() == ref.signature():
            continue
        depth_ref, depth = len(ref.layers), len(g.layers)
        if depth != depth_ref:
            raise LandscapeError(f"models have different depths: model 1 has {depth_ref} linear/conv layers, "
                                 f"model {i} has {depth}")
        classes_ref = ref.groups[ref.output_group].size if ref.output_group >= 0 else None
        classes = g.groups[g.output_group].size if g.output_group >= 0 else None
        if classes != classes_ref:
            raise LandscapeError(f"models have different numbers of classes: model 1 has {classes_ref}, "
                                 f"model {i} has {classes}")
        inputs_ref = ref.groups[ref.input_group].size if ref.input_group >= 0 else None
        inputs = g.groups[g.input_group].size if g.input_group >= 0 else None
        if inputs != inputs_ref:
            raise LandscapeError(f"models have different inputs: model 1 has {inputs_ref} input channels, "
                                 f"model {i} has {inputs}")
        for a, b in zip(ref.layers, g.layers):
            if (a.name, a.kind, a.detail) != (b.name, b.kind, b.detail):
                raise LandscapeError(f"incompatible architectures: model 1 has layer '{a.name}' ({a.detail[0]}) "
                                     f"where model {i} has '{b.name}' ({b.detail[0]})")
        raise LandscapeError(f"incompatible architectures: models 1 and {i} wire their layers differently")


def check_same_shapes(models: Sequence[nn.Module]) -> None:
    """Raise unless all models have the same parameter and buffer names and shapes (vanilla averaging)."""
    ref = models[0].state_dict()
    for i, model in enumerate(models[1:], 2):
        state = model.state_dict()
        if set(state) != set(ref):
            missing = min(set(ref) ^ set(state))
            raise LandscapeError(f"incompatible architectures: models 1 and {i} have different layers ({len(ref)} and "
                                 f"{len(state)} tensors; {missing} is only in model {1 if missing in ref else i}): "
                                 "averaging and OT fusion combine models of one depth, layer by layer")
        for key, value in state.items():
            if value.shape != ref[key].shape:
                raise LandscapeError(f"vanilla averaging needs models of equal shapes: {key} is "
                                     f"{tuple(ref[key].shape)} in model 1 and {tuple(value.shape)} in model {i} "
                                     "(use OT fusion for different widths)")


def fusion_weights(weights: Sequence[float] | None, k: int) -> list[float]:
    """The weights of k models, normalised to sum to one (uniform by default)."""
    if weights is None:
        return [1.0 / k] * k
    weights = [float(w) for w in weights]
    if len(weights) != k:
        raise LandscapeError(f"--weights: got {len(weights)} weights for {k} models")
    if any(not w >= 0 for w in weights) or sum(weights) <= 0:
        raise LandscapeError(f"--weights must be non-negative with a positive sum, got {weights}")
    total = sum(weights)
    return [w / total for w in weights]


def check_specs(models: Sequence[nn.Module]) -> None:
    """Raise if the models' specs (where they have one) name different numbers of classes or input shapes."""
    specs = [getattr(m, "landscape_spec", {}).get("arch_kwargs", {}) for m in models]
    for key, what in (("num_classes", "different numbers of classes"), ("input_shape", "different inputs")):
        known = [(i, spec[key]) for i, spec in enumerate(specs, 1) if spec.get(key) is not None]
        for i, value in known[1:]:
            if list(np.atleast_1d(value)) != list(np.atleast_1d(known[0][1])):
                raise LandscapeError(f"models have {what}: model {known[0][0]} has {known[0][1]}, "
                                     f"model {i} has {value}")
