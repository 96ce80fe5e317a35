"""A training run's trajectory: checkpoints every N epochs in a folder beside the final checkpoint,
for the PCA directions of a loss surface (Li et al. 2018, section 7;
`geometry.directions.pca_directions`).

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
    """Where the trajectory of the checkpoint `out` is written: `<stem>_trajectory` beside it."""
    out = Path(out)
    return out.with_name(f"{out.stem}_trajectory")


class TrajectoryWriter:
    """Saves the model as `epochNNNN.pt` in `folder` at epoch 0 (`start`), every `every` epochs and
    at the last epoch (`on_epoch`, the training loop's callback); `files` lists what was written, in
    order.
    """

    def __init__(self, folder: str | os.PathLike, every: int, epochs: int, meta: dict):
        if every < 1:
            raise LandscapeError(f"`save_every` must be at least 1, got {every}")
        self.folder, self.every, self.epochs, self.meta = Path(folder), every, epochs, meta
        self.files: list[str] = []

    def start(self, model: nn.Module) -> None:
        """Save the initial weights (epoch 0)."""
        self._save(0, model)

    def on_epoch(self, epoch: int, model: nn.Module) -> None:
        """After epoch `epoch` (1-based): save every `every`-th and the last."""
        if epoch % self.every == 0 or epoch == self.epochs:
            self._save(epoch, model)

    def _save(self, epoch: int, model: nn.Module) -> None:
        path = self.folder / f"epoch{epoch:04d}.pt"
        save_checkpoint(model, path, meta={**self.meta, "epoch": epoch})
        self.files.append(str(path))

    def discard(self) -> None:
        """Remove what was written (a failed run leaves nothing behind), and the folder when it is
        left empty.
        """
        for f in self.files:
            Path(f).unlink(missing_ok=True)
        self.files.clear()
        if self.folder.is_dir() and not any(self.folder.iterdir()):
            self.folder.rmdir()

    def record(self) -> dict:
        """What the final checkpoint's `meta.trajectory` holds."""
        return {"folder": str(self.folder), "every": self.every, "files": list(self.files)}


def trajectory_files(paths: list[str], meta: dict) -> list[str]:
    """The trajectory's checkpoints: `paths` (files, or folders whose `*.pt` files count, in name
    order) when given, else those the checkpoint's `meta.trajectory` records.

    Raises:
        LandscapeError: when no checkpoint is given or recorded, or one is missing.
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
