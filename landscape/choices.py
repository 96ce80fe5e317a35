"""The names each option accepts.

Shared by the libraries (which validate them) and the command line (which offers them). Kept free of
heavy imports so that `landscape --help` stays instant.
"""

LOSSES = ("ce", "nll", "lm")  # loss.loss_sum: cross-entropy, NLL of log-probabilities,
#                                                          or a language model's next-token
#                                                          cross-entropy
SCHEDULES = ("none", "step", "cosine", "plateau")  # training.train
MONITORS = ("val_acc", "val_loss")  # training.train: what plateau and early stopping watch
KEEP = ("last", "best")  # training.train: the weights a run returns
SPLITS = ("train", "val", "test")  # data.datasets.Dataset.split
EIG_METHODS = ("lanczos", "power")  # curvature.eigen
WHICH = ("algebraic", "magnitude")  # curvature.eigen
TRACE_METHODS = ("hutch++", "hutchinson")  # curvature.trace
CURVATURES = ("hessian", "ggn", "fisher")  # curvature.ggn: Hessian, Gauss-Newton, empirical Fisher
# in text, figures
CURVATURE_LABELS = {
    "hessian": "Hessian",
    "ggn": "Gauss-Newton",
    "fisher": "empirical Fisher",
}
SHARPNESS_KINDS = ("adaptive", "standard")  # geometry.sharpness: |w|-scaled or plain perturbations
SHARPNESS_NORMS = ("l2", "linf")  # geometry.sharpness: the ball of the worst case
BACKENDS = ("landscape", "pyhessian")  # curvature: our engine, or PyHessian 0.1 itself
PARALLEL = ("data", "points")  # geometry.points under torchrun
BATCHING = ("auto", "vmap", "loop")  # geometry.points: how grid points are evaluated
DIRECTIONS = ("random", "pca")  # geometry.surface: random, or a trajectory's PCA
# geometry.directions: random directions' normalisation
DIRECTION_NORMS = (
    "filter",
    "layer",
    "weight",
    "none",
)
SURFACE_KINDS = ("1d", "2d", "plane", "path")  # geometry.surface
FIGURE_FORMATS = ("png", "pdf", "svg")  # plots.figure: the files a figure is written as
CURVE_KINDS = ("bezier", "polychain")  # geometry.curve: mode-connecting curves
