"""fusion: align and fuse neural networks with optimal transport.

Singh & Jaggi, "Model Fusion via Optimal Transport" (NeurIPS 2020), Algorithm 1, for models written
as ordinary PyTorch code: the alignment graph is read off the model's exported ATen graph (linear
and convolution layers, embeddings, norms, residual adds, concatenation, depthwise convolutions,
gates, reshapes, attention heads; anything it cannot follow is frozen with a warning, or an error
with strict). The same graph carries Git Re-Basin (Ainsworth, Hayase & Srinivasa, "Git Re-Basin:
Merging Models modulo Permutation Symmetries", ICLR 2023): `align(..., method="rebasin")`.

Names are loaded on first use (PEP 562), so `import fusion` costs nothing until a function is
called.
"""

import importlib

_EXPORTS = {
    "align": ".alignment",
    "fuse": ".fusing",
    "build_graph": ".graph",
    "AlignmentGraph": ".graph",
    "FrozenUnitsWarning": ".graph",
    "METHODS": ".choices",
    "ALIGNERS": ".choices",
    "MODES": ".choices",
    "SOLVERS": ".choices",
    "MARGINALS": ".choices",
    "prune_units": ".pruning",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> object:
    """Return the public name `name`, importing its module on first use.

    Raises:
        AttributeError: `name` is not one of the package's public names.
    """
    if name not in _EXPORTS:
        raise AttributeError(f"module 'fusion' has no attribute {name!r}")
    value = globals()[name] = getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    return value
