"""The names fusion's options accept, shared by the library (which validates them) and the command line (which
offers them); free of heavy imports so that `landscape --help` stays instant."""

METHODS = ("ot", "vanilla")            # fuse: align then average, or plain parameter averaging
MODES = ("acts", "wts")                # ground metric: activations or incoming weights
SOLVERS = ("emd", "sinkhorn")          # exact OT or entropic regularisation
MARGINALS = ("uniform", "importance")  # unit masses
HEADS = ("permute", "fixed")          # attention heads: whole heads may trade places, or stay where they are
