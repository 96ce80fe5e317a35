"""Models: the zoo, the model libraries, and how a model is called and its prediction found.

The zoo holds MLP, VGG11 and ResNet18 in CIFAR forms and users' own `package.module:factory`
architectures; `libraries` builds torchvision, timm and transformers models; `outputs` calls a
model and finds its prediction. The public names load lazily (docs/conventions.md, "Layout").
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
