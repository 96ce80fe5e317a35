"""fusion: align and fuse neural networks with optimal transport (Singh & Jaggi, "Model Fusion via Optimal
Transport", Algorithm 1), for models written as ordinary PyTorch code: the alignment graph is read off the
model's exported ATen graph (linear and convolution layers, norms, residual adds, concatenation, depthwise
convolutions, gates, reshapes; anything it cannot follow is frozen with a warning, or an error with strict)."""
from .align import MARGINALS, MODES, align
from .fuse import METHODS, fuse
from .graph import AlignmentGraph, FrozenUnitsWarning, build_graph
from .transport import SOLVERS

__all__ = ["MARGINALS", "METHODS", "MODES", "SOLVERS", "AlignmentGraph", "FrozenUnitsWarning", "align", "build_graph",
           "fuse"]
