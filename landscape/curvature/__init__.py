"""Curvature of the loss: exact Hessian-vector products and the solvers built on them.

Its modules, one line each: docs/conventions.md ("Layout").
"""

from .._lazy import exporter

_EXPORTS = {
    "HessianOperator": ".operator",
    "probes": ".operator",
    "Krylov": ".lanczos",
    "top_eigenvalues": ".eigen",
    "lanczos_top": ".eigen",
    "power_top": ".eigen",
    "hessian_trace": ".trace",
    "hutchinson": ".trace",
    "hutch_plus_plus": ".trace",
    "spectral_density": ".density",
    "slq": ".density",
    "smooth": ".density",
    "EigenResult": ".results",
    "TraceResult": ".results",
    "DensityResult": ".results",
    "GaussNewtonOperator": ".ggn",
    "curvature_operator": ".ggn",
    "BlockOperator": ".blocks",
    "block_eigenvalues": ".blocks",
    "block_traces": ".blocks",
    "BlockEigenResult": ".results",
    "BlockTraceResult": ".results",
    "curvature_suite": ".suite",
    "krylov_aware_trace": ".krylov_trace",
    "SuiteResult": ".results",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
