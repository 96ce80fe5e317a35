"""Models: the zoo (MLP, VGG11, ResNet18 in CIFAR forms) and users' own `package.module:factory` architectures."""
from .._lazy import exporter

_EXPORTS = {"build_model": ".zoo", "resolve_factory": ".zoo", "arch_kwargs_for": ".zoo", "ARCHS": ".zoo"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
