"""Figures drawn from stored HDF5 results alone: spectral densities, interpolations, surfaces."""

from .._lazy import exporter

_EXPORTS = {
    "plot_file": ".files",
    "plot_esd": ".esd",
    "plot_esd_overlay": ".esd",
    "plot_interpolation": ".path",
    "plot_surface": ".surface",
    "plot_surface_grid": ".surface",
    "save_figure": ".figure",
    "style": ".figure",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
