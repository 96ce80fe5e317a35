"""landscape: measure the geometry of neural-network loss landscapes (curvature, barriers, contours)."""
__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint, wrap  # noqa: E402
from .data import Dataset, Split, load_data, subsample  # noqa: E402
from .errors import LandscapeError  # noqa: E402
from .evaluate import Metrics, evaluate, evaluate_ensemble  # noqa: E402
from .train import TrainConfig, init_model, train  # noqa: E402
from .zoo import build_model  # noqa: E402

__all__ = ["load_checkpoint", "save_checkpoint", "wrap", "Dataset", "Split", "load_data", "subsample",
           "LandscapeError", "Metrics", "evaluate", "evaluate_ensemble", "TrainConfig", "init_model", "train",
           "build_model"]
