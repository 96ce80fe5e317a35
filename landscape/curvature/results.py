"""What the curvature solvers return: dataclasses whose fields are the arrays and attributes of the
stored HDF5 groups `/models/<name>/eigenvalues`, `/trace` and `/esd` (docs/conventions.md);
`curvature` names the matrix measured: "hessian", or "ggn" and "fisher" (`ggn.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class EigenResult:
    """Top-k eigenvalues (descending by `which`), their residual norms ||Hv - lambda v||, error
    bounds |lambda_true - lambda| <= bound (`ritz.py`; the residuals for power iteration and
    PyHessian), and the run's cost. `rule`: what stopped the iteration ("bound": every bound <= tol
    |lambda| (Lanczos default); "residual": every residual (Lanczos, strict); "change": the relative
    change of lambda (power iteration)); `hvp_path`: how the products were computed
    (`HessianOperator.path`).
    """

    eigenvalues: np.ndarray
    residuals: np.ndarray
    eigenvectors: np.ndarray | None
    k: int
    method: str
    backend: str
    which: str
    tol: float
    hvps: int
    seconds: float
    converged: bool | None  # None: the backend does not say (PyHessian)
    n_params: int
    n_examples: int
    batch_size: int
    seed: int
    criterion: str = "ce"
    bounds: np.ndarray | None = None
    rule: str = "residual"
    block: int = 1
    hvp_path: str = ""
    curvature: str = "hessian"


@dataclass
class TraceResult:
    """Trace estimate, its standard error, the per-probe estimates it averages, and the run's
    cost.
    """

    trace: float
    stderr: float
    rel_stderr: float
    estimates: np.ndarray
    method: str
    backend: str
    probes: int
    sketch: int
    hvps: int
    max_hvps: int
    target_rse: float | None
    seconds: float
    n_params: int
    n_examples: int
    batch_size: int
    seed: int
    note: str | None = None
    criterion: str = "ce"
    hvp_path: str = ""
    curvature: str = "hessian"


def summarize(estimates: np.ndarray) -> tuple[float, float, float]:
    """Mean, standard error and relative standard error (inf when undefined) of per-probe
    estimates.
    """
    mean = float(np.mean(estimates))
    stderr = (
        float(np.std(estimates, ddof=1) / math.sqrt(len(estimates)))
        if len(estimates) > 1
        else math.inf
    )
    return mean, stderr, (stderr / abs(mean) if mean != 0 else math.inf)


@dataclass
class DensityResult:
    """Ritz nodes and weights (runs, steps) of every run, the smoothed density on `grid`, and the
    run's cost.
    """

    nodes: np.ndarray
    weights: np.ndarray
    grid: np.ndarray
    density: np.ndarray
    steps: int
    runs: int
    sigma2: float
    hvps: int
    seconds: float
    n_params: int
    n_examples: int
    batch_size: int
    seed: int
    criterion: str = "ce"
    hvp_path: str = ""
    curvature: str = "hessian"


@dataclass
class BlockEigenResult:
    """The top eigenvalue of each parameter block's diagonal block of the curvature matrix
    (`blocks.py`): the block names and sizes in `model.parameters()` order, eigenvalues with
    residuals and error bounds, whether each met the stopping rule, and the run's cost (products
    with the whole matrix).
    """

    blocks: list[str]
    sizes: np.ndarray
    eigenvalues: np.ndarray
    residuals: np.ndarray
    bounds: np.ndarray
    converged: np.ndarray
    which: str
    tol: float
    max_hvps: int
    hvps: int
    seconds: float
    n_params: int
    n_examples: int
    batch_size: int
    seed: int
    criterion: str = "ce"
    curvature: str = "hessian"


@dataclass
class BlockTraceResult:
    """The trace of each parameter block's diagonal block (`blocks.py`) with its standard error (0
    where the block is small enough to be summed exactly, `exact`), in `model.parameters()` order,
    and the run's cost.
    """

    blocks: list[str]
    sizes: np.ndarray
    trace: np.ndarray
    stderr: np.ndarray
    exact: np.ndarray
    max_hvps: int
    hvps: int
    seconds: float
    n_params: int
    n_examples: int
    batch_size: int
    seed: int
    criterion: str = "ce"
    curvature: str = "hessian"


@dataclass
class SuiteResult:
    """The three curvature results of one `curvature_suite` run, stored as the usual groups
    `eigenvalues`, `trace` and `esd`, and the settings and cost they share (`shared`: attributes of
    each group).
    """

    eigenvalues: EigenResult
    trace: TraceResult
    esd: DensityResult
    steps: int
    block: int
    trace_rse: float | None
    hvps: int
    seconds: float

    def parts(self) -> dict[str, EigenResult | TraceResult | DensityResult]:
        """The results by group name."""
        return {"eigenvalues": self.eigenvalues, "trace": self.trace, "esd": self.esd}

    def shared(self) -> dict[str, float | int | str | None]:
        """What every group records about the run that produced all three."""
        return {
            "suite": "curvature",
            "suite_steps": self.steps,
            "suite_block": self.block,
            "suite_trace_rse": self.trace_rse,
            "suite_hvps": self.hvps,
            "suite_seconds": self.seconds,
        }
