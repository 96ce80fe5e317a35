"""The rollback journal under the store: a torn commit is played back, a damaged journal is a clear
error, and the page overlay reads and writes like a file."""

from __future__ import annotations

import multiprocessing
import os
import signal
import time

import h5py
import numpy as np
import pytest

from landscape.errors import LandscapeError
from landscape.io import journal
from landscape.io.journal import PagedFile, journal_path, update
from landscape.io.store import group_keys, list_results, read_result, write_result

FORK = multiprocessing.get_context("fork")


def test_a_killed_writers_journal_is_played_back_by_the_next_reader(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, "/a", {"x": np.arange(3)}, {"v": 1})
    before = path.read_bytes()

    def torn_commit() -> (
        None
    ):  # a writer killed after its journal was in place, halfway through its pages
        with update(path) as view:
            with h5py.File(view, "r+") as f:
                f["/a/x"][...] = np.arange(3) * 7
                f["/b"] = np.ones(100)
            PagedFile.commit = _die_after_journal
        os._exit(0)

    proc = FORK.Process(target=torn_commit)
    proc.start()
    proc.join(60)
    assert journal_path(path).exists() and path.read_bytes() != before
    assert read_result(path, "/a")[1]["v"] == 1 and path.read_bytes() == before
    assert not journal_path(path).exists()


def _die_after_journal(self: PagedFile, path) -> None:
    journal._write_journal(path, self.original, self._saved())
    first = min(self.pages)
    # one page of many, then the kill
    os.pwrite(self.fd, bytes(self.pages[first]), first * journal.PAGE)
    os.ftruncate(self.fd, self.size)
    os.kill(os.getpid(), signal.SIGKILL)


def test_damaged_journal_is_a_clear_error(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, "/a", {"x": np.arange(3)})
    journal_path(path).write_bytes(b"garbage")
    with pytest.raises(LandscapeError, match="damaged journal"):
        read_result(path, "/a")


def _random_edits(view: PagedFile, plain: bytearray, rng: np.random.Generator, steps: int) -> None:
    """The same random writes, truncations and growth on the overlay and on `plain`, checked after
    each."""
    for _ in range(steps):
        at = int(rng.integers(0, 5 * journal.PAGE))
        if rng.random() < 0.15:
            view.truncate(at)  # shrinks or, like a file, grows with zeros
            plain[:] = plain[:at] + bytes(max(0, at - len(plain)))
            continue
        data = rng.integers(
            0, 256, int(rng.integers(1, 2 * journal.PAGE)), dtype=np.uint8
        ).tobytes()
        view.seek(at)
        view.write(data)
        plain[len(plain) : at] = bytes(max(0, at - len(plain)))
        plain[at : at + len(data)] = data
        view.seek(0)
        got = bytearray(view.size)
        view.readinto(got)
        assert got == plain


def test_paged_file_commits_and_its_journal_restores_the_old_bytes(tmp_path):
    """Random edits through the overlay commit to what the same edits give on a plain file; a commit
    torn after its journal (some pages written, the length changed) is played back to the bytes
    before it."""
    rng = np.random.default_rng(0)
    path = tmp_path / "a"
    path.write_bytes(rng.integers(0, 256, 3 * journal.PAGE + 100, dtype=np.uint8).tobytes())
    plain = bytearray(path.read_bytes())
    fd = os.open(path, os.O_RDWR)
    view = PagedFile(fd)
    _random_edits(view, plain, rng, 200)
    view.commit(path)
    assert path.read_bytes() == plain and not journal_path(path).exists()
    for _ in range(20):
        before = path.read_bytes()
        view = PagedFile(fd)
        _random_edits(view, bytearray(before), rng, 30)
        journal._write_journal(path, view.original, view._saved())
        os.ftruncate(fd, view.floor)
        for page in [p for p in view.pages if rng.random() < 0.5]:
            os.pwrite(fd, bytes(view.pages[page]), page * journal.PAGE)
        journal._play_back(path, fd)
        assert path.read_bytes() == before and not journal_path(path).exists()
    os.close(fd)


def test_the_empty_file_of_a_killed_first_write_is_removed_or_filled(tmp_path):
    path = tmp_path / "r.h5"
    # what a writer killed between creating the file and its first commit leaves
    path.write_bytes(b"")
    assert group_keys(path) == {} and not path.exists()  # a reader removes it
    path.write_bytes(b"")
    write_result(path, "/a", {"x": np.arange(2)})  # a writer fills it
    assert list_results(path) == ["a"]


def test_a_writer_blocked_by_a_program_holding_the_file_says_why(tmp_path, monkeypatch):
    from landscape.errors import LandscapeWarning
    from landscape.io import locking

    path = tmp_path / "r.h5"
    write_result(path, "/a", {"x": np.arange(2)})
    monkeypatch.setattr(locking, "PATIENCE", 0.2)
    reader = FORK.Process(target=_hold_open, args=(str(path), 1.0))
    reader.start()
    time.sleep(0.3)  # the other program has the file open with h5py (HDF5 locks it while open)
    with pytest.warns(LandscapeWarning, match="waiting for .*r.h5: another process is using it"):
        write_result(path, "/b", {"x": np.arange(2)})
    reader.join(60)
    assert list_results(path) == ["a", "b"]


def test_file_systems_without_locks_get_one_warning(tmp_path, monkeypatch):
    import errno
    import fcntl

    from landscape.errors import LandscapeWarning
    from landscape.io import locking

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    monkeypatch.setattr(locking, "_warned", set())
    with pytest.warns(LandscapeWarning, match="does not support file locks"):
        write_result(tmp_path / "r.h5", "/a", {"x": np.arange(2)})
    assert read_result(tmp_path / "r.h5", "/a")[0]["x"].tolist() == [0, 1]


def _hold_open(path: str, seconds: float) -> None:
    with h5py.File(path, "r"):
        time.sleep(seconds)
