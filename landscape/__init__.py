"""landscape: measure the geometry of neural-network loss landscapes (curvature, barriers, contours)."""
__version__ = "0.1.0"

from .checkpoint import load_checkpoint, save_checkpoint, wrap
from .data import Dataset, Split, load_data, subsample
from .errors import LandscapeError
from .evaluate import Metrics, evaluate, evaluate_ensemble
from .train import TrainConfig, init_model, train
from .zoo import build_model

__all__ = [
           "Dataset",
           "LandscapeError",
           "Metrics",
           "Split",
           "TrainConfig",
           "build_model",
           "evaluate",
           "evaluate_ensemble",
           "init_model",
           "load_checkpoint",
           "load_data",
           "save_checkpoint",
           "subsample",
           "train",
           "wrap",
]
