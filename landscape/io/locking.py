"""Advisory file locks shared by every process that reads or writes a result file.

A lock is `flock` on a descriptor of the file itself: shared for readers, exclusive for writers.
HDF5 (1.10 and later) takes the same kind of lock on the files it opens, so a writer here also waits
for other programs reading the file with h5py, and they are refused while it writes. After the lock
is granted the path is checked to still name the locked file (an empty file left by a killed writer
is removed under the lock), else the lock is taken again on what the path names now. A wait longer
than `PATIENCE` seconds is reported in one warning (a program holding the file open, e.g. an
`h5py.File` in a notebook, makes writers wait). File systems without `flock` (some cluster mounts)
get one warning and no locking. Within one process, an exclusive lock on a file that this process
already holds would wait for itself forever; that is refused instead.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import time
from collections.abc import Iterator
from pathlib import Path

from ..errors import warn

_UNSUPPORTED = (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL)
PATIENCE = 10.0  # seconds of waiting for a lock before saying so
_held: dict[
    tuple[int, int], list[bool]
] = {}  # (device, inode) -> the kinds of lock this process holds on it
_warned: set[str] = set()


def _same_file(fd: int, path: Path) -> bool:
    """Whether `path` still names the file open as `fd`.

    Returns:
        True when both have the same device and inode.
    """
    try:
        now = os.stat(path)
    except FileNotFoundError:
        return False
    mine = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino)


def _wait(fd: int, kind: int, path: Path) -> None:
    """`flock`, polling; after PATIENCE seconds say why this process waits, then block."""
    deadline, pause = time.monotonic() + PATIENCE, 0.001
    while time.monotonic() < deadline:
        try:
            fcntl.flock(fd, kind | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            time.sleep(pause)
            pause = min(2 * pause, 0.05)
    warn(f"waiting for {path}: another process is using it (an h5py.File left open elsewhere?)")
    fcntl.flock(fd, kind)


def _flock(fd: int, exclusive: bool, path: Path) -> None:
    """Lock `fd`, refusing a lock that would wait for this process; warn once where unsupported.

    Raises:
        RuntimeError: This process already holds a lock on the file that this one would wait for.
        OSError: `flock` failed for a reason other than missing support.
    """
    key = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    if key in _held and (exclusive or any(_held[key])):
        raise RuntimeError(f"{path} is already open in this process: close it before writing to it")
    try:
        _wait(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, path)
    except OSError as exc:
        if exc.errno not in _UNSUPPORTED:
            raise
        if str(path.parent) not in _warned:
            _warned.add(str(path.parent))
            warn(
                f"the file system of {path.parent} does not support file locks: concurrent writers "
                "of the same result file may overwrite each other"
            )


@contextlib.contextmanager
def file_lock(
    path: str | os.PathLike, exclusive: bool, create: bool = False
) -> Iterator[int | None]:
    """Hold a shared or exclusive lock on the file at `path` (see the module docstring).

    Args:
        path: The file to lock.
        exclusive: An exclusive lock (for a writer) rather than a shared one (for readers).
        create: Create a missing file empty (mode 0666 less the umask) instead of yielding None.

    Yields:
        A descriptor of the locked file (read-write when `exclusive`), or None for a missing file
        without `create`.

    Raises:
        FileNotFoundError: With `create`, the file's folder is missing.

    Examples:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     with file_lock(Path(tmp) / "r.h5", exclusive=False) as fd:
        ...         print(fd)
        ...     with file_lock(Path(tmp) / "r.h5", exclusive=True, create=True) as fd:
        ...         print(os.write(fd, b"abc"))
        ...     print((Path(tmp) / "r.h5").read_bytes())
        None
        3
        b'abc'
    """
    path = Path(path)
    flags = (os.O_RDWR | (os.O_CREAT if create else 0)) if exclusive else os.O_RDONLY
    while True:
        try:
            fd = os.open(path, flags, 0o666)
        except FileNotFoundError:
            if create:
                raise
            yield None
            return
        try:
            _flock(fd, exclusive, path)
        except BaseException:
            os.close(fd)
            raise
        if _same_file(fd, path):
            break
        os.close(fd)
    key = (os.fstat(fd).st_dev, os.fstat(fd).st_ino)
    _held.setdefault(key, []).append(exclusive)
    try:
        yield fd
    finally:
        _held[key].pop()
        if not _held[key]:
            del _held[key]
        os.close(fd)
