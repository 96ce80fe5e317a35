"""Geometry of the loss in parameter space.

- `points`: loss and accuracy at many linear combinations of a few states (the engine of everything here);
- `directions`: (filter-)normalised random directions, a trajectory's PCA directions, the plane through three
  models, paths;
- `barrier`: linear mode connectivity curves and barriers;
- `surface`: 1-D/2-D contours, PCA planes, planes and paths, resumable in the HDF5 store;
- `sharpness`: worst-case and average-case sharpness, standard or adaptive.
"""
from .._lazy import exporter

_EXPORTS = {"evaluate_points": ".points", "combine": ".points", "same_layout": ".points",
            "filter_normalised_direction": ".directions", "plane_axes": ".directions",
            "grid_coefficients": ".directions", "serpentine": ".directions", "path_coefficients": ".directions",
            "Curve": ".barrier",
            "interpolation_curve": ".barrier", "Surface": ".surface",
            "random_surface": ".surface", "plane_surface": ".surface", "path_surface": ".surface",
            "compute_surface": ".surface", "pca_directions": ".directions", "pca_surface": ".surface",
            "measure_sharpness": ".sharpness", "SharpnessResult": ".sharpness"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
