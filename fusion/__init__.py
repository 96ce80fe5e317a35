"""fusion: align and fuse neural networks with optimal transport (Singh & Jaggi, "Model Fusion via Optimal
Transport", Algorithm 1), for any model built from Linear, Conv, BatchNorm, pooling, flatten and residual adds."""
from .align import MARGINALS, MODES, align
from .fuse import METHODS, fuse
from .graph import AlignmentGraph, build_graph
from .transport import SOLVERS

__all__ = ["MARGINALS", "METHODS", "MODES", "SOLVERS", "AlignmentGraph", "align", "build_graph", "fuse"]
