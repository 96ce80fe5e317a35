"""Curvature of the loss: exact Hessian-vector products and the solvers built on them.

- `operator`: `HessianOperator` (products over any fixed data, any criterion; a SciPy LinearOperator too);
- `ggn`: the generalised Gauss-Newton and empirical Fisher operators, and `curvature_operator` to choose;
- `blocks`: per-parameter-block top eigenvalues and traces;
- `affine_norm`: eval-mode BatchNorm as its affine map inside the products' graphs;
- `lanczos`: the Lanczos process with full reorthogonalisation;
- `eigen`: top-k eigenvalues (Lanczos, or PyHessian's power iteration);
- `trace`: Hutchinson and Hutch++ trace estimates with standard errors;
- `density`: the spectral density by stochastic Lanczos quadrature;
- `pyhessian_adapter`: PyHessian 0.1's own routines on the same model and data;
- `results`: the result dataclasses, stored as HDF5 groups.
"""
from .._lazy import exporter

_EXPORTS = {"HessianOperator": ".operator", "probes": ".operator", "Krylov": ".lanczos",
            "top_eigenvalues": ".eigen", "lanczos_top": ".eigen", "power_top": ".eigen",
            "hessian_trace": ".trace", "hutchinson": ".trace", "hutch_plus_plus": ".trace",
            "spectral_density": ".density", "slq": ".density", "smooth": ".density",
            "EigenResult": ".results", "TraceResult": ".results", "DensityResult": ".results",
            "GaussNewtonOperator": ".ggn", "curvature_operator": ".ggn", "BlockOperator": ".blocks",
            "block_eigenvalues": ".blocks", "block_traces": ".blocks", "BlockEigenResult": ".results",
            "BlockTraceResult": ".results"}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
