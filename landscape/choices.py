"""The names each option accepts, shared by the libraries (which validate them) and the command line (which
offers them). Kept free of heavy imports so that `landscape --help` stays instant."""

LOSSES = ("ce", "nll")                                   # loss.loss_sum: cross-entropy, or NLL of log-probabilities
SCHEDULES = ("none", "step", "cosine", "plateau")        # training.train
MONITORS = ("val_acc", "val_loss")                       # training.train: what plateau and early stopping watch
KEEP = ("last", "best")                                  # training.train: the weights a run returns
SPLITS = ("train", "val", "test")                        # data.datasets.Dataset.split
EIG_METHODS = ("lanczos", "power")                       # curvature.eigen
WHICH = ("algebraic", "magnitude")                       # curvature.eigen
TRACE_METHODS = ("hutch++", "hutchinson")                # curvature.trace
BACKENDS = ("landscape", "pyhessian")                    # curvature: our engine, or PyHessian 0.1 itself
PARALLEL = ("data", "points")                            # geometry.points under torchrun
BATCHING = ("auto", "vmap", "loop")                      # geometry.points: how grid points are evaluated
SURFACE_KINDS = ("1d", "2d", "plane", "path")            # geometry.surface
FIGURE_FORMATS = ("png", "pdf", "svg")                   # plots.figure: the files a figure is written as
