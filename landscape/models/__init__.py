"""Models: the zoo (MLP, VGG11, ResNet18 in CIFAR forms), users' own `package.module:factory`
architectures and torchvision/timm/transformers models (`libraries`), and how a model is called and
its prediction found (`outputs`).
"""

from .._lazy import exporter

_EXPORTS = {
    "build_model": ".zoo",
    "resolve_factory": ".zoo",
    "arch_kwargs_for": ".zoo",
    "ARCHS": ".zoo",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
