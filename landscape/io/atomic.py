"""Atomic file writes (checkpoints, figures, reports): write beside the target, then rename.

So no partial file is ever left behind. The temporary file is `.<name>.<host>.<pid>.<random>.tmp`,
so it names its writer: a writer killed before the rename (`kill -9`) leaves it behind, and the next
write to the same target removes it once that process is gone (a writer on another host is presumed
gone after a day). Files get the mode the umask allows (0666 & ~umask), as any file a program
creates, so results on a shared file system are readable as usual.
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
    """Create the folders above `path`.

    Args:
        path: The file about to be written.

    Raises:
        LandscapeError: A file stands where a folder is needed, or the folder is not writable.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     make_parent(Path(tmp) / "a" / "b" / "file.txt")
        ...     print((Path(tmp) / "a" / "b").is_dir())
        True
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
    """Raise now, before any work, if `path` could not be written later; create nothing.

    What refuses a write: a file where a folder is needed, a folder where the file would go, no
    permission in the nearest existing folder, or a read-only file.

    Args:
        path: The file (or, with `folder`, the folder) to be written later.
        folder: Whether `path` is a folder to write into rather than a file.

    Raises:
        LandscapeError: The path could not be written, with the reason.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     check_writable(Path(tmp) / "new" / "file.txt")  # fine: nothing is created
        ...     print((Path(tmp) / "new").exists())
        ...     try:
        ...         check_writable(tmp)
        ...     except LandscapeError as e:
        ...         print(str(e).endswith("it is a folder"))
        False
        True
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
    """Whether a process with id `pid` exists on this host.

    Returns:
        False when no such process exists, else True.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale(target: Path) -> list[Path]:
    """Remove the temporary files of writers of `target` that died before renaming them.

    A temporary file of this host is stale once its writer's process is gone; one of another host
    once it is older than `FOREIGN_AGE` seconds.

    Args:
        target: The file whose writers' temporary files are looked for (in its folder).

    Returns:
        The temporary files removed.

    Examples:
        >>> import socket, tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     target = Path(tmp) / "r.h5"
        ...     left = Path(tmp) / f".r.h5.{socket.gethostname()}.999999999.abcd1234.tmp"
        ...     left.touch()  # a writer with no such process id left it
        ...     print([p.name == left.name for p in remove_stale(target)], left.exists())
        [True] False
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
    """Yield a temporary path in the target's folder; on success rename it onto `path`.

    The temporary file is created empty (its mode is what the umask allows), synced and renamed
    onto `path` when the block ends; an exception inside the block deletes it and leaves `path` as
    it was.

    Args:
        path: The file to write.

    Yields:
        The temporary path to write to.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with atomic_path(Path(tmp) / "out.txt") as t:
        ...         _ = t.write_text("done")
        ...     print(sorted(p.name for p in Path(tmp).iterdir()))
        ...     print((Path(tmp) / "out.txt").read_text())
        ['out.txt']
        done
    """
    target = Path(path)
    make_parent(target)
    remove_stale(target)
    tmp = target.with_name(
        f".{target.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp"
    )
    # the umask decides its mode
    os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
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
