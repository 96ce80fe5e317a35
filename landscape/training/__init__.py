"""Training: SGD with separate init and data seeds, fine-tuning, evaluation, BatchNorm resets.

The public names load lazily (docs/conventions.md, "Layout").
"""

from .._lazy import exporter

_EXPORTS = {
    "TrainConfig": ".loop",
    "TrainResult": ".loop",
    "init_model": ".loop",
    "train": ".loop",
    "train_meta": ".loop",
    "Metrics": ".metrics",
    "evaluate": ".metrics",
    "evaluate_ensemble": ".metrics",
    "reset_bn": ".bn",
    "has_batchnorm": ".bn",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
