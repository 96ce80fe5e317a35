"""The names fusion's options accept.

Shared by the library (which validates them) and the command line (which offers them); free of heavy
imports so that `landscape --help` stays instant.
"""

# fuse: align (OT or Git Re-Basin) then average, or plain averaging
METHODS = (
    "ot",
    "rebasin",
    "vanilla",
)
ALIGNERS = ("ot", "rebasin")  # align: optimal transport or Git Re-Basin permutations
MODES = ("acts", "wts")  # ground metric: activations or incoming weights
ACTS_AT = ("pre", "post")  # activations read before or after the elementwise nonlinearity
SOLVERS = ("emd", "sinkhorn")  # exact OT or entropic regularisation
MARGINALS = ("uniform", "importance")  # unit masses
GROUND_METRICS = ("euclidean", "sqeuclidean", "cosine")  # distance between two units' supports
COST_NORMS = ("none", "max", "median", "log")  # rescaling of a layer's cost before the OT solve
# attention heads: whole heads may trade places, or stay where they are
HEADS = (
    "permute",
    "fixed",
)
