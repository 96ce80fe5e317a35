"""landscape: measure the geometry of neural-network loss landscapes.

Curvature (Hessian spectra and traces), barriers between models, and loss contours. The curated
public API is importable from here; each name is loaded on first use, so `import landscape` is
cheap. The module layout is described once, in docs/conventions.md ("Layout").
"""

from ._lazy import exporter

__version__ = "0.1.0"

_EXPORTS = {
    # base
    "LandscapeError": ".errors",
    "LandscapeWarning": ".errors",
    "load_checkpoint": ".io.checkpoint",
    "save_checkpoint": ".io.checkpoint",
    "wrap": ".io.foreign",
    "read_result": ".io.store",
    "write_result": ".io.store",
    "open_store": ".io.store",
    "Dataset": ".data.datasets",
    "load_data": ".data.datasets",
    "Split": ".data.split",
    "subsample": ".data.split",
    "Batches": ".data.batches",
    "as_batches": ".data.batches",
    "build_model": ".models.zoo",
    "ModelSpec": ".spec",
    "spec_of": ".spec",
    "import_library": ".models.libraries",
    "prediction": ".models.outputs",
    "NextTokenLoss": ".loss",
    "TrainConfig": ".training.loop",
    "init_model": ".training.loop",
    "train": ".training.loop",
    "Metrics": ".training.metrics",
    "evaluate": ".training.metrics",
    "evaluate_ensemble": ".training.metrics",
    "reset_bn": ".training.bn",
    # curvature
    "HessianOperator": ".curvature.operator",
    "top_eigenvalues": ".curvature.eigen",
    "hessian_trace": ".curvature.trace",
    "spectral_density": ".curvature.density",
    "GaussNewtonOperator": ".curvature.ggn",
    "curvature_operator": ".curvature.ggn",
    "block_eigenvalues": ".curvature.blocks",
    "block_traces": ".curvature.blocks",
    "curvature_suite": ".curvature.suite",
    # geometry
    "interpolation_curve": ".geometry.barrier",
    "evaluate_points": ".geometry.points",
    "random_surface": ".geometry.surface",
    "plane_surface": ".geometry.surface",
    "path_surface": ".geometry.surface",
    "compute_surface": ".geometry.surface",
    "pca_surface": ".geometry.surface",
    "measure_sharpness": ".geometry.sharpness",
    # study and figures
    "load_config": ".study.config",
    "plan_study": ".study.plan",
    "StudyRunner": ".study.execute",
    "write_report": ".study.report",
    "plot_file": ".plots",
}
__getattr__, __dir__ = exporter(__name__, _EXPORTS)
__all__ = sorted(_EXPORTS)
