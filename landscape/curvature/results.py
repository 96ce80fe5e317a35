"""What the curvature solvers return: dataclasses that are the stored HDF5 groups.

Their fields are the arrays and attributes of the groups `/models/<name>/eigenvalues`, `/trace`
and `/esd` (docs/conventions.md); `curvature` names the matrix measured: "hessian", or "ggn" and
"fisher" (`ggn.py`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np


@dataclass
class EigenResult:
    """Top-k eigenvalues with their residuals and error bounds, and the run's cost.

    Attributes:
        eigenvalues: (k,) descending by `which`.
        residuals: (k,) residual norms ||H v - lambda v|| of the unit eigenvectors.
        eigenvectors: (k, n_params) unit eigenvectors, or None when not asked for.
        k: how many eigenvalues were sought.
        method: "lanczos" or "power".
        backend: "landscape" or "pyhessian".
        which: "algebraic" (largest) or "magnitude" (largest in absolute value).
        tol: the stopping rule's tolerance.
        hvps: products computed.
        seconds: wall time of the run.
        converged: whether every eigenvalue met the stopping rule (None: the backend does not say,
            as PyHessian does not).
        n_params: trainable parameters.
        n_examples: the terms the mean loss divides by.
        batch_size: examples per batch.
        seed: the seed of the start vectors.
        criterion: the loss's name.
        bounds: (k,) error bounds |lambda_true - lambda| <= bound (`ritz.py`; the residuals for
            power iteration and PyHessian).
        rule: what stopped the iteration: "bound" (every bound <= tol |lambda|, Lanczos' default),
            "residual" (every residual, Lanczos strict) or "change" (the relative change of lambda,
            power iteration).
        block: vectors per Lanczos step.
        hvp_path: how the products were computed (`HessianOperator.path`).
        curvature: the matrix measured.

    Examples:
        >>> import torch
        >>> from landscape.curvature import top_eigenvalues
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = top_eigenvalues(model, data, k=2, criterion=torch.nn.MSELoss())  # H = diag(1, 4)
        >>> r.eigenvalues.round(4).tolist(), r.method, r.rule, r.converged
        ([4.0, 1.0], 'lanczos', 'bound', True)
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
    """Trace estimate, its standard error, the per-probe estimates it averages, and the run's cost.

    Attributes:
        trace: the mean of the per-probe estimates.
        stderr: its standard error (inf with one probe).
        rel_stderr: stderr / |trace| (inf when the trace is 0).
        estimates: the per-probe estimates.
        method: "hutch++", "hutchinson" or, from `curvature_suite`, "krylov-aware".
        backend: "landscape" or "pyhessian".
        probes: how many estimates.
        sketch: Hutch++'s sketch size (0 for Hutchinson).
        hvps: products computed.
        max_hvps: the budget.
        target_rse: the relative standard error that could stop the run early (None: none).
        seconds: wall time of the run.
        n_params: trainable parameters.
        n_examples: the terms the mean loss divides by.
        batch_size: examples per batch.
        seed: the seed of the probes.
        note: what a reader should know about how the run stopped (PyHessian's rule), or None.
        criterion: the loss's name.
        hvp_path: how the products were computed (`HessianOperator.path`).
        curvature: the matrix measured.

    Examples:
        >>> import torch
        >>> from landscape.curvature import hessian_trace
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> mse = torch.nn.MSELoss()
        >>> r = hessian_trace(model, data, method="hutchinson", max_hvps=4, criterion=mse)
        >>> r.trace, r.stderr, r.estimates.tolist()  # H = diag(1, 4): every probe gives 5
        (5.0, 0.0, [5.0, 5.0, 5.0, 5.0])
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
    """Mean, standard error and relative standard error of per-probe estimates.

    The standard error is the sample standard deviation over sqrt(probes); it is inf for a single
    estimate, and the relative one is inf when the mean is 0.

    Args:
        estimates: the per-probe estimates.

    Returns:
        (mean, standard error, relative standard error).

    Examples:
        >>> import numpy as np
        >>> summarize(np.array([1.0, 3.0]))  # sd sqrt(2), over sqrt(2)
        (2.0, 1.0, 0.5)
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
    """Ritz nodes and weights of every run, the smoothed density on `grid`, and the run's cost.

    Attributes:
        nodes: (runs, steps) quadrature nodes (Ritz values).
        weights: (runs, steps) their weights; each row sums to 1.
        grid: the points the density is evaluated at.
        density: the smoothed density on `grid` (`density.smooth`).
        steps: Lanczos steps per run.
        runs: start vectors.
        sigma2: the Gaussian kernel's variance.
        hvps: products computed.
        seconds: wall time of the run.
        n_params: trainable parameters.
        n_examples: the terms the mean loss divides by.
        batch_size: examples per batch.
        seed: the seed of the start vectors.
        criterion: the loss's name.
        hvp_path: how the products were computed (`HessianOperator.path`).
        curvature: the matrix measured.

    Examples:
        >>> import torch
        >>> from landscape.curvature import spectral_density
        >>> model = torch.nn.Linear(2, 1, bias=False)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = spectral_density(model, data, steps=2, runs=2, criterion=torch.nn.MSELoss())
        >>> r.nodes.round(4).tolist(), r.steps, r.runs  # H = diag(1, 4)
        ([[1.0, 4.0], [1.0, 4.0]], 2, 2)
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
    """The top eigenvalue of each parameter block's diagonal block of the curvature (`blocks.py`).

    Attributes:
        blocks: the parameter names, in `model.parameters()` order.
        sizes: their numbers of entries.
        eigenvalues: the top eigenvalue of each block.
        residuals: their residual norms.
        bounds: their error bounds (`ritz.py`).
        converged: whether each met the stopping rule.
        which: "algebraic" or "magnitude".
        tol: the stopping rule's tolerance.
        max_hvps: the most products per block.
        hvps: products with the whole matrix.
        seconds: wall time of the run.
        n_params: trainable parameters.
        n_examples: the terms the mean loss divides by.
        batch_size: examples per batch.
        seed: the seed of the start vectors.
        criterion: the loss's name.
        curvature: the matrix measured.

    Examples:
        >>> import torch
        >>> from landscape.curvature import block_eigenvalues
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = block_eigenvalues(model, data, criterion=torch.nn.MSELoss())
        >>> r.blocks, r.sizes.tolist(), r.eigenvalues.round(4).tolist()
        (['weight', 'bias'], [2, 1], [4.0, 2.0])
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
    """The trace of each parameter block's diagonal block of the curvature (`blocks.py`).

    Attributes:
        blocks: the parameter names, in `model.parameters()` order.
        sizes: their numbers of entries.
        trace: the trace of each block.
        stderr: its standard error (0 where the block was summed exactly).
        exact: whether each block was summed exactly.
        max_hvps: the most products per block.
        hvps: products with the whole matrix.
        seconds: wall time of the run.
        n_params: trainable parameters.
        n_examples: the terms the mean loss divides by.
        batch_size: examples per batch.
        seed: the seed of the probes.
        criterion: the loss's name.
        curvature: the matrix measured.

    Examples:
        >>> import torch
        >>> from landscape.curvature import block_traces
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = block_traces(model, data, max_hvps=4, criterion=torch.nn.MSELoss())
        >>> r.trace.tolist(), r.stderr.tolist(), r.exact.tolist()
        ([5.0, 2.0], [0.0, 0.0], [True, True])
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
    """The three results of one `curvature_suite` run, and the settings and cost they share.

    They are stored as the usual groups `eigenvalues`, `trace` and `esd`, each with the attributes
    `shared` gives.

    Attributes:
        eigenvalues: the top-k eigenvalues.
        trace: the trace.
        esd: the spectral density.
        steps: block Lanczos steps of the run.
        block: start vectors per block.
        trace_rse: the trace's relative standard error target.
        hvps: products of the whole run.
        seconds: wall time of the whole run.

    Examples:
        >>> import torch
        >>> from landscape.curvature import curvature_suite
        >>> model = torch.nn.Linear(2, 1)
        >>> data = [(torch.tensor([[1.0, 0.0], [0.0, 2.0]]), torch.zeros(2, 1))]
        >>> r = curvature_suite(model, data, steps=3, block=1, criterion=torch.nn.MSELoss())
        >>> round(r.trace.trace, 4)  # H = [[1, 0, 1], [0, 4, 2], [1, 2, 2]]
        7.0
        >>> (r.esd.nodes.round(4) + 0.0).tolist()  # its eigenvalues 0 and (7 -+ sqrt(13)) / 2
        [[0.0, 1.6972, 5.3028]]
        >>> sorted(r.parts()), r.shared()["suite_steps"]
        (['eigenvalues', 'esd', 'trace'], 3)
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
        """The results by group name.

        Returns:
            {"eigenvalues": ..., "trace": ..., "esd": ...}.
        """
        return {"eigenvalues": self.eigenvalues, "trace": self.trace, "esd": self.esd}

    def shared(self) -> dict[str, float | int | str | None]:
        """What every group records about the run that produced all three.

        Returns:
            The `suite_*` attributes: the run's steps, block, trace target, products and seconds.
        """
        return {
            "suite": "curvature",
            "suite_steps": self.steps,
            "suite_block": self.block,
            "suite_trace_rse": self.trace_rse,
            "suite_hvps": self.hvps,
            "suite_seconds": self.seconds,
        }
