"""Curvature of the loss: exact Hessian-vector products and the solvers built on them.

- `operator`: `HessianOperator` (products over any fixed data, any criterion; a SciPy LinearOperator too);
- `affine_norm`: eval-mode BatchNorm as its affine map inside the products' graphs;
- `lanczos`: the Lanczos process with full reorthogonalisation;
- `eigen`: top-k eigenvalues (Lanczos, or PyHessian's power iteration);
- `trace`: Hutchinson and Hutch++ trace estimates with standard errors;
- `density`: the spectral density by stochastic Lanczos quadrature;
- `krylov_trace`: the trace from a Krylov basis: its projected part exactly, the rest by Hutchinson;
- `suite`: top-k eigenvalues, trace and spectral density from one block Lanczos run;
- `pyhessian_adapter`: PyHessian 0.1's own routines on the same model and data;
- `results`: the result dataclasses, stored as HDF5 groups.
"""
from .._lazy import exporter

_EXPORTS = {"HessianOperator": ".operator", "probes": ".operator", "Krylov": ".lanczos",
            "top_eigenvalues": ".eigen", "lanczos_top": ".eigen", "power_top": ".eigen",
            "hessian_trace": ".trace", "hutchinson": ".trace", "hutch_plus_plus": ".trace",
            "spectral_density": ".density", "slq": ".density", "smooth": ".density",
            "curvature_suite": ".suite", "krylov_aware_trace": ".krylov_trace",
            "EigenResult": ".results", "TraceResult": ".results", "DensityResult": ".results",
            "SuiteResult": ".results"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
