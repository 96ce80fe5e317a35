"""A training run's trajectory: checkpoints every N epochs in a folder beside the final checkpoint.

For the PCA directions of a loss surface (Li, Xu, Taylor, Studer & Goldstein, "Visualizing the Loss
Landscape of Neural Nets", NeurIPS 2018, section 7; `geometry.directions.pca_directions`).

`train --save-every N --out net.pt` writes `net_trajectory/epoch0000.pt` (the initial weights) and
`epochNNNN.pt` after every N-th epoch and after epoch `--epochs` (an early stop before it saves no
more), each a checkpoint with `meta.epoch` and the data's `normalize`; the final checkpoint records
the folder, N and the files in `meta.trajectory`.
"""

from __future__ import annotations

import os
from pathlib import Path

from torch import nn

from ..errors import LandscapeError
from ..io.checkpoint import save_checkpoint


def trajectory_folder(out: str | os.PathLike) -> Path:
    """Where the trajectory of the checkpoint `out` is written: `<stem>_trajectory` beside it.

    Args:
        out: the final checkpoint's path.

    Returns:
        The folder's path.

    Examples:
        >>> trajectory_folder("runs/net.pt").as_posix()
        'runs/net_trajectory'
    """
    out = Path(out)
    return out.with_name(f"{out.stem}_trajectory")


class TrajectoryWriter:
    """Saves the model as `epochNNNN.pt` in `folder` at epoch 0, every `every` epochs and the last.

    `start` saves epoch 0, `on_epoch` (the training loop's callback) the others; `files` lists what
    was written, in order.

    Args:
        folder: where the checkpoints go.
        every: save after every `every`-th epoch.
        epochs: the run's last epoch (always saved).
        meta: the checkpoints' meta (each adds its `epoch`).

    Raises:
        LandscapeError: `every` below 1.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> from landscape.models.zoo import build_model
        >>> net = build_model("mlp", {"input_shape": [2], "num_classes": 2, "hidden": [3]})
        >>> with tempfile.TemporaryDirectory() as d:
        ...     writer = TrajectoryWriter(trajectory_folder(f"{d}/net.pt"), 2, 3, {"lr": 0.1})
        ...     writer.start(net)
        ...     for epoch in (1, 2, 3):
        ...         writer.on_epoch(epoch, net)
        ...     print([Path(f).name for f in writer.record()["files"]])
        ...     writer.discard()
        ...     print(writer.folder.exists())
        ['epoch0000.pt', 'epoch0002.pt', 'epoch0003.pt']
        False
    """

    def __init__(self, folder: str | os.PathLike, every: int, epochs: int, meta: dict):
        if every < 1:
            raise LandscapeError(f"`save_every` must be at least 1, got {every}")
        self.folder, self.every, self.epochs, self.meta = Path(folder), every, epochs, meta
        self.files: list[str] = []

    def start(self, model: nn.Module) -> None:
        """Save the initial weights (epoch 0).

        Args:
            model: the model before training.
        """
        self._save(0, model)

    def on_epoch(self, epoch: int, model: nn.Module) -> None:
        """After epoch `epoch` (1-based): save every `every`-th and the last.

        Args:
            epoch: the epoch just finished.
            model: the model after it.
        """
        if epoch % self.every == 0 or epoch == self.epochs:
            self._save(epoch, model)

    def _save(self, epoch: int, model: nn.Module) -> None:
        """Write `epochNNNN.pt` and list it."""
        path = self.folder / f"epoch{epoch:04d}.pt"
        save_checkpoint(model, path, meta={**self.meta, "epoch": epoch})
        self.files.append(str(path))

    def discard(self) -> None:
        """Remove what was written, and the folder if left empty: a failed run leaves nothing."""
        for f in self.files:
            Path(f).unlink(missing_ok=True)
        self.files.clear()
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def record(self) -> dict:
        """What the final checkpoint's `meta.trajectory` holds.

        Returns:
            The folder, `every` and the files written.
        """
        return {"folder": str(self.folder), "every": self.every, "files": list(self.files)}


def trajectory_files(paths: list[str], meta: dict) -> list[str]:
    """The trajectory's checkpoints: `paths` when given, else those `meta.trajectory` records.

    Args:
        paths: files, or folders whose `*.pt` files count (in name order).
        meta: the final checkpoint's meta.

    Returns:
        The checkpoint files, in order.

    Raises:
        LandscapeError: when no checkpoint is given or recorded, or one is missing.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as d:
        ...     for name in ("epoch0002.pt", "epoch0000.pt"):
        ...         Path(d, name).touch()
        ...     print([Path(f).name for f in trajectory_files([d], {})])
        ['epoch0000.pt', 'epoch0002.pt']
        >>> trajectory_files([], {})
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: the pca `directions` need the training trajectory: ...
    """
    if not paths:
        paths = list(meta.get("trajectory", {}).get("files", []))
        if not paths:
            raise LandscapeError(
                "the pca `directions` need the training trajectory: give `trajectory` CKPT... or a "
                "checkpoint whose training saved its trajectory (`save_every`)"
            )
    files = []
    for p in map(Path, paths):
        if p.is_dir():
            files += sorted(str(f) for f in p.glob("*.pt"))
        elif p.is_file():
            files.append(str(p))
        else:
            raise LandscapeError(f"trajectory checkpoint not found: {p}")
    return files
