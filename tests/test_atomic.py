"""Atomic writes (checkpoints, figures, reports): temporaries name their writer and are cleaned up
once it is dead; final files get the mode the umask allows."""

from __future__ import annotations

import multiprocessing
import os
import signal
import socket
import subprocess
import sys
import time

import torch

from landscape.io.atomic import atomic_path
from landscape.io.checkpoint import save_checkpoint
from landscape.models.zoo import build_model

FORK = multiprocessing.get_context("fork")


def _model():
    return build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [256, 256]})


def _killed_while_writing(path: str) -> None:
    """An atomic write killed (SIGKILL) halfway through writing its file (no torch here: a forked
    child must not touch the parent's thread pools)."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(b"PK half a checkpoint")
        os.kill(os.getpid(), signal.SIGKILL)


def test_a_writer_killed_mid_write_leaves_a_temporary_the_next_write_removes(tmp_path):
    target = tmp_path / "a.pt"
    proc = FORK.Process(target=_killed_while_writing, args=(str(target),))
    proc.start()
    proc.join(60)
    assert proc.exitcode == -signal.SIGKILL
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].startswith(f".a.pt.{socket.gethostname()}.{proc.pid}.")
    save_checkpoint(_model(), target)
    assert [p.name for p in tmp_path.iterdir()] == ["a.pt"]
    torch.load(target, weights_only=True)


def test_only_temporaries_of_dead_writers_are_removed(tmp_path):
    host = socket.gethostname()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        names = {
            "dead": f".r.png.{host}.{dead.pid}.0a1b.tmp",
            "alive": f".r.png.{host}.{alive.pid}.0a1b.tmp",
            "remote": ".r.png.elsewhere.1.0a1b.tmp",
            "old_remote": ".r.png.elsewhere.2.0a1b.tmp",
            "other_file": f".s.png.{host}.{dead.pid}.0a1b.tmp",
        }
        for name in names.values():
            (tmp_path / name).write_bytes(b"partial")
        two_days_ago = time.time() - 2 * 86400
        os.utime(tmp_path / names["old_remote"], (two_days_ago, two_days_ago))
        with atomic_path(tmp_path / "r.png") as tmp:
            assert tmp.name.startswith(f".r.png.{host}.{os.getpid()}.") and tmp.name.endswith(
                ".tmp"
            )
            tmp.write_bytes(b"figure")
        kept = {p.name for p in tmp_path.iterdir()}
        assert kept == {"r.png", names["alive"], names["remote"], names["other_file"]}
    finally:
        alive.kill()
        alive.wait()


def test_files_get_the_mode_the_umask_allows(tmp_path):
    for umask, mode in ((0o022, 0o644), (0o002, 0o664), (0o077, 0o600)):
        old = os.umask(umask)
        try:
            save_checkpoint(_model(), tmp_path / f"{umask}.pt")
        finally:
            os.umask(old)
        assert (tmp_path / f"{umask}.pt").stat().st_mode & 0o777 == mode
