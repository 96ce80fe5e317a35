"""A model's spec: the architecture and keyword arguments it was built from.

The spec is read through one typed accessor.

`landscape.build_model` attaches the spec to the module as the attribute `landscape_spec`, a plain
dict `{"arch", "arch_kwargs"}` (so it survives `copy.deepcopy` and pickling and compares with `==`);
checkpoints store the same two keys (docs/conventions.md, "Checkpoints"). Nothing here imports
torch, so `fusion` can share it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import LandscapeError

ATTRIBUTE = "landscape_spec"


@dataclass(frozen=True)
class ModelSpec:
    """What a model was built from.

    Attributes:
        arch: a zoo name (`mlp`, `vgg11`, `resnet18`) or a user's `package.module:factory`.
        arch_kwargs: the factory's keyword arguments (`input_shape`, `num_classes`, widths, ...).

    >>> spec = ModelSpec("mlp", {"input_shape": [1, 8, 8], "num_classes": 10})
    >>> spec.input_shape, spec.num_classes
    ((1, 8, 8), 10)
    >>> ModelSpec("pkg.mod:net").input_shape is None
    True
    """

    arch: str
    arch_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def input_shape(self) -> tuple[int, ...] | None:
        """The shape of one input example (without the batch axis), or None if the spec lacks it."""
        shape = self.arch_kwargs.get("input_shape")
        return None if shape is None else tuple(int(n) for n in shape)

    @property
    def num_classes(self) -> int | None:
        """The number of outputs (classes), or None when the spec does not say."""
        classes = self.arch_kwargs.get("num_classes")
        return None if classes is None else int(classes)


def spec_of(model: Any) -> ModelSpec | None:
    """The spec attached to `model` by `build_model`, or None for a model built some other way.

    Args:
        model: any object, usually an `nn.Module`.

    Returns:
        Its `ModelSpec`, or None.

    >>> class Net:
    ...     pass
    >>> net = Net()
    >>> spec_of(net) is None
    True
    >>> attach_spec(net, "mlp", {"num_classes": 10})
    >>> spec_of(net).num_classes
    10
    """
    spec = getattr(model, ATTRIBUTE, None)
    return None if spec is None else ModelSpec(spec["arch"], dict(spec.get("arch_kwargs", {})))


def require_spec(model: Any) -> ModelSpec:
    """The spec attached to `model`, for what cannot go on without one (writing a checkpoint).

    Args:
        model: an `nn.Module` built by `build_model` (or loaded from a checkpoint).

    Returns:
        Its `ModelSpec`.

    Raises:
        LandscapeError: the model carries no spec.

    Examples:
        >>> from torch import nn
        >>> require_spec(nn.Linear(2, 1))
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: model has no architecture spec; build it with ...
    """
    spec = spec_of(model)
    if spec is None:
        raise LandscapeError("model has no architecture spec; build it with landscape.build_model")
    return spec


def attach_spec(model: Any, arch: str, arch_kwargs: dict[str, Any]) -> None:
    """Remember on `model` what it was built from (the attribute `landscape_spec`).

    Args:
        model: the module just built.
        arch: its architecture name.
        arch_kwargs: the keyword arguments it was built with (copied).

    Examples:
        >>> from torch import nn
        >>> model = nn.Linear(2, 1)
        >>> attach_spec(model, "linear", {"in_features": 2})
        >>> spec_of(model).arch, spec_of(model).arch_kwargs
        ('linear', {'in_features': 2})
    """
    setattr(model, ATTRIBUTE, {"arch": arch, "arch_kwargs": dict(arch_kwargs)})
