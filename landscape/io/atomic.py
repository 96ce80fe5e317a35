"""Atomic file writes (checkpoints, figures, reports): write beside the target, then rename, so no
partial file is ever left behind.

The temporary file is `.<name>.<host>.<pid>.<random>.tmp`, so it names its writer: a writer killed
before the rename (`kill -9`) leaves it behind, and the next write to the same target removes it
once that process is gone (a writer on another host is presumed gone after a day). Files get the
mode the umask allows (0666 & ~umask), as any file a program creates, so results on a shared file
system are readable as usual.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import LandscapeError

FOREIGN_AGE = 86400.0  # seconds after which another host's temporary file is taken to be stale


def make_parent(path: str | os.PathLike) -> None:
    """Create the folders above `path`; a file in the way or a folder without write access is a
    one-line error.
    """
    folder = Path(path).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        blocker = next(p for p in [folder, *folder.parents] if p.exists())
        raise LandscapeError(f"cannot write {path}: {blocker} is a file, not a folder") from None
    if not os.access(folder, os.W_OK | os.X_OK):
        raise LandscapeError(f"cannot write {path}: no write permission in {folder}")


def check_writable(path: str | os.PathLike, folder: bool = False) -> None:
    """Raise now, before any work, if `path` (a file, or a folder with `folder`) could not be
    written later: a file where a folder is needed, a folder where the file would go, or no
    permission; creates nothing.
    """
    path = Path(path).expanduser()
    if not folder and path.is_dir():
        raise LandscapeError(f"cannot write {path}: it is a folder")
    if folder and path.exists() and not path.is_dir():
        raise LandscapeError(f"cannot write into {path}: it is a file, not a folder")
    start = path if folder else path.parent
    existing = next(p for p in [start, *start.parents] if p.exists() or p == p.parent)
    if not existing.is_dir():
        raise LandscapeError(f"cannot write {path}: {existing} is a file, not a folder")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise LandscapeError(f"cannot write {path}: no write permission in {existing}")
    if not folder and path.exists() and not os.access(path, os.W_OK):
        raise LandscapeError(f"cannot write {path}: the file is read-only")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: Path) -> list[Path]:
    """Remove the temporary files of writers of `target` that died before renaming them; return
    them.
    """
    host, prefix, removed = socket.gethostname(), f".{target.name}.", []
    for tmp in target.parent.iterdir():
        if not (tmp.name.startswith(prefix) and tmp.name.endswith(".tmp")):
            continue
        writer, pid, _ = [*tmp.name[len(prefix) : -len(".tmp")].rsplit(".", 2), "", ""][:3]
        try:
            age = time.time() - tmp.stat().st_mtime
        except FileNotFoundError:
            continue
        if (writer == host and pid.isdigit() and not _alive(int(pid))) or (
            writer != host and age > FOREIGN_AGE
        ):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
            removed.append(tmp)
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it onto `path`, else delete
    it.
    """
    target = Path(path)
    make_parent(target)
    remove_stale(target)
    tmp = target.with_name(
        f".{target.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    )
    os.close(
        os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    )  # the umask decides its mode
    try:
        yield tmp
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
