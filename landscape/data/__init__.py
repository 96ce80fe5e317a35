"""Data: readers for the formats `--data` names, in-memory splits, the batches measurements sum.

The public names load lazily (docs/conventions.md, "Layout").
"""

from .._lazy import exporter

_EXPORTS = {
    "Dataset": ".datasets",
    "load_data": ".datasets",
    "Split": ".split",
    "subsample": ".split",
    "check_labels": ".split",
    "Batches": ".batches",
    "as_batches": ".batches",
    "augment": ".augmentation",
    "Selection": ".selection",
    "select": ".selection",
    "skill_transfer": ".selection",
    "DataSpec": ".selection",
    "parse_skill_transfer": ".selection",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
