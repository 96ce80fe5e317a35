"""In-place updates of a file that a kill at any moment cannot tear.

A page overlay committed through a rollback journal (the scheme of SQLite's rollback journal).
`update(path)` locks the file exclusively, plays back what a killed writer left, and yields a
`PagedFile`: a file-like view of `path` whose writes stay in memory, in 4 KiB pages. When the block
ends without an error the commit
1. writes the current bytes of every page about to change (and the file's length) to the journal
   `.<name>.journal` beside the file: to `.<name>.journal.new` first, synced, then renamed into
   place;
2. writes the new pages into the file itself, sets its length and syncs it;
3. deletes the journal.
A kill before the rename leaves the file untouched; a kill after it leaves a journal that the next
reader or writer plays back (the old bytes and the old length restored) before it uses the file. So
the file always holds the whole old or the whole new content, and a commit writes only the pages
that changed, never the whole file. On an error inside the block nothing is written, and a file the
block created is removed again. `consistent(path)` is the reader's side: a shared lock on a file
with no journal to play back.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
import struct
from collections.abc import Iterator
from pathlib import Path

from ..errors import LandscapeError
from .locking import file_lock

PAGE = 4096
MAGIC = b"landscape-journal/1\n"
_ENTRY = struct.Struct("<QQ")  # offset, length


def journal_path(path: str | os.PathLike) -> Path:
    """Where the journal of the file at `path` lives during a commit (or after a kill).

    Args:
        path: The journaled file.

    Returns:
        The hidden journal file beside it.

    Examples:
        >>> journal_path("results/run.h5").as_posix()
        'results/.run.h5.journal'
    """
    path = Path(path)
    return path.with_name(f".{path.name}.journal")


def _pending(path: Path) -> Path:
    """The journal while it is being written.

    Returns:
        The hidden `.journal.new` file beside `path`.
    """
    return path.with_name(f".{path.name}.journal.new")


class PagedFile(io.RawIOBase):
    """A read-write view of an open file whose writes are kept in memory until `commit`.

    Reads see the file as written so far; the file itself changes only at `commit` (see the module
    docstring). `update` yields one.

    Args:
        fd: A descriptor of the file, open for reading and writing.

    Examples:
        >>> import os, tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "f.bin"
        ...     _ = path.write_bytes(b"hello world")
        ...     fd = os.open(path, os.O_RDWR)
        ...     view = PagedFile(fd)
        ...     _ = view.seek(6)
        ...     _ = view.write(b"there")
        ...     _ = view.seek(0)
        ...     print(view.read(), path.read_bytes())  # the file is unchanged until commit
        ...     view.commit(path)
        ...     os.close(fd)
        ...     print(path.read_bytes())
        b'hello there' b'hello world'
        b'hello there'
    """

    def __init__(self, fd: int):
        super().__init__()
        self.fd = fd
        self.original = self.size = os.fstat(fd).st_size
        # bytes below this are as on disk unless a page says otherwise, above it zeros
        self.floor = self.original
        self.pos = 0
        self.pages: dict[int, bytearray] = {}

    def readable(self) -> bool:
        """Whether the view can be read: always.

        Returns:
            True.
        """
        return True

    def writable(self) -> bool:
        """Whether the view can be written: always.

        Returns:
            True.
        """
        return True

    def seekable(self) -> bool:
        """Whether the view can seek: always.

        Returns:
            True.
        """
        return True

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        """Move the position, as `io.IOBase.seek` does (beyond the end is allowed).

        Args:
            offset: The offset from the place `whence` names.
            whence: `io.SEEK_SET` (the start), `io.SEEK_CUR` (the position) or `io.SEEK_END`.

        Returns:
            The new position.
        """
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self.pos, io.SEEK_END: self.size}[whence]
        self.pos = base + offset
        return self.pos

    def tell(self) -> int:
        """The current position.

        Returns:
            The position in bytes from the start.
        """
        return self.pos

    def _disk(self, offset: int, length: int) -> bytes:
        """`length` bytes at `offset` as this view had them before any write.

        Returns:
            The file's bytes below `floor`, zeros above.
        """
        valid = max(0, min(length, self.floor - offset))
        data = os.pread(self.fd, valid, offset) if valid else b""
        return data + bytes(length - len(data))

    def readinto(self, buffer) -> int:
        """Read into `buffer` from the position: written pages from memory, the rest from the file.

        Args:
            buffer: A writable bytes-like object.

        Returns:
            The number of bytes read (0 at the end).
        """
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self.pos))
        done = 0
        while done < n:
            page, start = divmod(self.pos + done, PAGE)
            take = min(PAGE - start, n - done)
            if page in self.pages:
                view[done : done + take] = self.pages[page][start : start + take]
            else:  # a run of pages that were not written: one read
                while done + take < n and (self.pos + done + take) // PAGE not in self.pages:
                    take = min(n - done, take + PAGE)
                view[done : done + take] = self._disk(self.pos + done, take)
            done += take
        self.pos += n
        return n

    def write(self, data) -> int:
        """Write `data` at the position into the pages in memory (the file is unchanged).

        Args:
            data: A bytes-like object.

        Returns:
            The number of bytes written: all of them.
        """
        view = memoryview(data).cast("B")
        done = 0
        while done < len(view):
            page, start = divmod(self.pos + done, PAGE)
            take = min(PAGE - start, len(view) - done)
            if page not in self.pages:
                self.pages[page] = bytearray(self._disk(page * PAGE, PAGE))
            self.pages[page][start : start + take] = view[done : done + take]
            done += take
        self.pos += len(view)
        self.size = max(self.size, self.pos)
        return len(view)

    def truncate(self, size: int | None = None) -> int:
        """Set the view's length (the file's at `commit`); bytes cut off read as zeros if regrown.

        Args:
            size: The new length; None for the position.

        Returns:
            The new length.
        """
        size = self.pos if size is None else size
        if size < self.size:
            self.floor = min(self.floor, size)
            last, start = divmod(size, PAGE)
            for page in [p for p in self.pages if p > last or (p == last and start == 0)]:
                del self.pages[page]
            if last in self.pages:
                self.pages[last][start:] = bytes(PAGE - start)
        self.size = size
        return size

    def flush(self) -> None:
        """Nothing to do: writes reach the file at `commit`."""

    def changed(self) -> bool:
        """Whether committing would change the file.

        Returns:
            True when a page was written or the length changed.
        """
        return bool(self.pages) or self.size != self.original or self.floor != self.original

    def _saved(self) -> list[tuple[int, bytes]]:
        """The current bytes of every range of the file that the commit overwrites or cuts off.

        Returns:
            (offset, bytes) pairs, in the order of the file.
        """
        ranges = [
            (p * PAGE, min((p + 1) * PAGE, self.original))
            for p in sorted(self.pages)
            if p * PAGE < self.original
        ]
        cut = min(self.floor, self.size)
        if cut < self.original:
            ranges.append((cut, self.original))
        return [(start, os.pread(self.fd, stop - start, start)) for start, stop in ranges]

    def commit(self, path: Path) -> None:
        """Write the changes into the file through the journal (see the module docstring).

        Args:
            path: The file's path (the journal goes beside it).
        """
        if not self.changed():
            return
        _write_journal(path, self.original, self._saved())
        # bytes cut off by a truncation read as zeros from here on
        os.ftruncate(self.fd, self.floor)
        for page in sorted(self.pages):
            os.pwrite(self.fd, self.pages[page][: max(0, self.size - page * PAGE)], page * PAGE)
        os.ftruncate(self.fd, self.size)
        os.fsync(self.fd)
        os.unlink(journal_path(path))


def _sync_folder(folder: Path) -> None:
    """Sync `folder`, so that a rename inside it is on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_journal(path: Path, length: int, saved: list[tuple[int, bytes]]) -> None:
    """Write the journal of `path` (its old length and saved ranges, with a SHA-256) atomically."""
    body = (
        MAGIC + struct.pack("<Q", length) + b"".join(_ENTRY.pack(o, len(d)) + d for o, d in saved)
    )
    new = _pending(path)
    fd = os.open(new, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
    try:
        os.write(fd, body + hashlib.sha256(body).digest())
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(new, journal_path(path))
    _sync_folder(path.parent)


def _play_back(path: Path, fd: int) -> None:
    """Restore what the journal of a killed writer saved, then delete it; remove a half-written one.

    Raises:
        LandscapeError: The journal is damaged (its checksum does not match).
    """
    journal = journal_path(path)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(_pending(path))  # the writer died before its journal was complete
    try:
        raw = journal.read_bytes()
    except FileNotFoundError:
        return
    body, digest = raw[:-32], raw[-32:]
    if not body.startswith(MAGIC) or hashlib.sha256(body).digest() != digest:
        raise LandscapeError(
            f"{journal}: damaged journal of an interrupted write to {path}; move both aside"
        )
    at = len(MAGIC)
    (length,) = struct.unpack_from("<Q", body, at)
    at += 8
    while at < len(body):
        offset, size = _ENTRY.unpack_from(body, at)
        at += _ENTRY.size
        os.pwrite(fd, body[at : at + size], offset)
        at += size
    os.ftruncate(fd, length)
    os.fsync(fd)
    os.unlink(journal)


def _stale(path: Path) -> bool:
    """Whether a killed writer left a journal (whole or half-written) of `path`.

    Returns:
        True when either journal file exists.
    """
    journal = journal_path(path)
    return journal.exists() or _pending(path).exists()


@contextlib.contextmanager
def update(path: str | os.PathLike) -> Iterator[PagedFile]:
    """Change the file at `path` (created when missing) atomically: see the module docstring.

    Args:
        path: The file to change.

    Yields:
        A `PagedFile` of the file; its writes are committed when the block ends without an error.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "f.bin"
        ...     with update(path) as f:
        ...         _ = f.write(b"first")
        ...     try:
        ...         with update(path) as f:
        ...             _ = f.write(b"FIRST, then a failure")
        ...             raise KeyboardInterrupt
        ...     except KeyboardInterrupt:
        ...         pass
        ...     print(path.read_bytes(), journal_path(path).exists())
        b'first' False
    """
    path = Path(path)
    with file_lock(path, exclusive=True, create=True) as fd:
        _play_back(path, fd)
        view = PagedFile(fd)
        try:
            yield view
        except BaseException:
            if view.original == 0:
                # a file this block created (or a killed writer's empty one): leave nothing
                os.unlink(path)
            raise
        if view.original == 0 and view.size == 0:
            os.unlink(path)
            return
        view.commit(path)


@contextlib.contextmanager
def consistent(path: str | os.PathLike) -> Iterator[bool]:
    """Hold a shared lock on the file at `path` once nothing of a killed writer is left.

    A killed writer's journal is played back and an empty file it created removed first.

    Args:
        path: The file to read.

    Yields:
        Whether the file exists.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "f.bin"
        ...     with consistent(path) as exists:
        ...         print(exists)
        ...     with update(path) as f:
        ...         _ = f.write(b"data")
        ...     with consistent(path) as exists:
        ...         print(exists, path.read_bytes())
        False
        True b'data'
    """
    path = Path(path)
    while True:
        with file_lock(path, exclusive=False) as fd:
            if fd is None or (os.fstat(fd).st_size > 0 and not _stale(path)):
                yield fd is not None
                return
        with file_lock(path, exclusive=True) as fd:
            if fd is not None:
                _play_back(path, fd)
                if os.fstat(fd).st_size == 0:
                    os.unlink(path)
