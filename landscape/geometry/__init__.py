"""Geometry of the loss in parameter space.

Its modules, one line each: docs/conventions.md ("Layout").
"""

from .._lazy import exporter

_EXPORTS = {
    "evaluate_points": ".points",
    "combine": ".points",
    "same_layout": ".points",
    "filter_normalised_direction": ".directions",
    "plane_axes": ".directions",
    "grid_coefficients": ".directions",
    "serpentine": ".directions",
    "path_coefficients": ".directions",
    "Curve": ".barrier",
    "interpolation_curve": ".barrier",
    "Surface": ".surface",
    "random_surface": ".surface",
    "plane_surface": ".surface",
    "path_surface": ".surface",
    "compute_surface": ".surface",
    "pca_directions": ".directions",
    "pca_surface": ".surface",
    "measure_sharpness": ".sharpness",
    "SharpnessResult": ".sharpness",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
