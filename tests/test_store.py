"""The HDF5 store under concurrency and kills: no lost groups, no torn groups, no files left behind,
no growth."""

from __future__ import annotations

import multiprocessing
import os
import random
import signal
import time

import h5py
import numpy as np
import pytest

from landscape.io.store import (
    group_keys,
    list_results,
    open_store,
    read_result,
    write_result,
    write_results,
)

FORK = multiprocessing.get_context("fork")


def _writer(path: str, tag: str, n: int) -> None:
    for i in range(n):
        write_result(path, f"/g/{tag}{i}", {"x": np.full(20, i)}, {"tag": tag, "i": i})


def test_two_processes_writing_100_groups_each_keep_all_200(tmp_path):
    path = str(tmp_path / "r.h5")
    procs = [FORK.Process(target=_writer, args=(path, tag, 100)) for tag in "ab"]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0]
    assert sorted(list_results(path)) == sorted(f"g/{t}{i}" for t in "ab" for i in range(100))
    arrays, attrs = read_result(path, "/g/b42")
    assert (arrays["x"] == 42).all() and attrs["tag"] == "b" and attrs["i"] == 42
    assert os.listdir(tmp_path) == ["r.h5"]


def _versions(path: str, start: int) -> None:
    """Write versions start+1, start+2, ... of five groups in one call each, forever (until
    killed)."""
    i = start
    while True:
        i += 1
        write_results(
            path,
            {
                f"/g{j}": (
                    {"x": np.full(2000 + 500 * (i % 3), i), "y": np.full(i % 4 + 1, i)},
                    {"v": i, "note": "x" * (i % 5)},
                )
                for j in range(5)
            },
        )


def _check_versions(path: str) -> int:
    """Every group holds one whole version, the same in all five groups (they are written
    together)."""
    with open_store(path) as store:
        seen = set()
        for j in range(5):
            arrays, attrs = store.arrays(f"/g{j}"), store.attrs(f"/g{j}")
            v = int(attrs["v"])
            assert len(arrays["x"]) == 2000 + 500 * (v % 3) and (arrays["x"] == v).all()
            assert (
                len(arrays["y"]) == v % 4 + 1
                and (arrays["y"] == v).all()
                and attrs["note"] == "x" * (v % 5)
            )
            seen.add(v)
    assert len(seen) == 1, seen
    return seen.pop()


def _kill_rounds(tmp_path, rounds: int, seed: int) -> None:
    path = str(tmp_path / "r.h5")
    write_results(
        path,
        {
            f"/g{j}": ({"x": np.zeros(2000), "y": np.zeros(1)}, {"v": 0, "note": ""})
            for j in range(5)
        },
    )
    rng, last = random.Random(seed), 0
    for _ in range(rounds):
        proc = FORK.Process(target=_versions, args=(path, last))
        proc.start()
        time.sleep(rng.uniform(0.005, 0.15))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join(60)
        version = _check_versions(path)  # a reader first repairs what the killed writer left
        assert version >= last
        last = version
        assert os.listdir(tmp_path) == ["r.h5"], os.listdir(tmp_path)
    write_result(path, "/after", {"x": np.arange(3)})  # and writing goes on
    assert (
        _check_versions(path) == last
        and (read_result(path, "/after")[0]["x"] == np.arange(3)).all()
    )


def test_sigkill_mid_write_leaves_old_or_new_groups_and_no_stale_files(tmp_path):
    _kill_rounds(tmp_path, rounds=8, seed=0)


@pytest.mark.slow
def test_sigkill_at_random_moments_many_times(tmp_path):
    _kill_rounds(tmp_path, rounds=300, seed=1)


def test_rewriting_a_contour_group_does_not_grow_the_file(tmp_path):
    """A 41x41 contour rewritten after every chunk: the file stays near its content (it was 12x)."""
    path = tmp_path / "s.h5"
    loss, done = np.full((41, 41), np.nan), np.zeros((41, 41), bool)
    attrs = {
        "kind": "2d",
        "axes": "x,y",
        "models": ["a.pt"],
        "sha256": ["0" * 64],
        "data": "digits",
        "key": "k",
    }
    for step in range(60):
        rows = slice(step * 29 % 1681, step * 29 % 1681 + 29)
        loss.reshape(-1)[rows], done.reshape(-1)[rows] = step, True
        write_result(
            path,
            "/surfaces/a/2d",
            {
                "x": np.linspace(-1, 1, 41),
                "y": np.linspace(-1, 1, 41),
                "loss": loss,
                "acc": loss,
                "done": done,
            },
            {**attrs, "complete": False},
        )
    content = 41 * 8 * 2 + 41 * 41 * (8 + 8 + 1)
    assert os.path.getsize(path) < 2 * content, os.path.getsize(path)
    arrays, stored = read_result(path, "/surfaces/a/2d")
    assert np.array_equal(arrays["loss"], loss, equal_nan=True) and stored["models"] == ["a.pt"]


def test_groups_replace_exactly_and_strings_round_trip(tmp_path):
    path = tmp_path / "r.h5"
    write_result(
        path,
        "/a",
        {"x": np.arange(4), "old": np.zeros(2)},
        {"gone": 1, "s": "é", "l": ["", "ab"], "d": {"k": 1}, "n": None},
    )
    # new shape, long text
    write_result(path, "/a", {"x": np.arange(6.0)}, {"s": "x" * 40000, "l": ["c"]})
    arrays, attrs = read_result(path, "/a")
    assert list(arrays) == ["x"] and arrays["x"].dtype == np.float64 and len(arrays["x"]) == 6
    assert attrs["s"] == "x" * 40000 and attrs["l"] == ["c"] and "gone" not in attrs
    write_result(
        path, "/b", {}, {"s": "é", "l": ["", "ab"], "d": {"k": 1}, "n": None, "key": "abc"}
    )
    attrs = read_result(path, "/b")[1]
    assert (attrs["s"], attrs["l"], attrs["d"], attrs["n"]) == ("é", ["", "ab"], '{"k": 1}', "None")
    assert group_keys(path) == {"/b": "abc"}


def test_files_of_earlier_versions_are_read_and_updated(tmp_path):
    """Files written with variable-length strings and HDF5's default format (before this store)
    still work."""
    path = tmp_path / "old.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("/models/a/trace/estimates", data=np.arange(3.0))
        f["/models/a/trace"].attrs["key"] = "k1"
        f["/models/a/trace"].attrs["models"] = np.array(["a.pt"], dtype=h5py.string_dtype())
    assert group_keys(path) == {"/models/a/trace": "k1"}
    write_result(
        path, "/models/b/trace", {"estimates": np.ones(2)}, {"key": "k2", "note": "y" * 40000}
    )
    assert group_keys(path) == {"/models/a/trace": "k1", "/models/b/trace": "k2"}
    assert read_result(path, "/models/a/trace")[1]["models"] == ["a.pt"]


def test_an_error_inside_a_write_changes_nothing(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, "/a", {"x": np.arange(3)})
    before = path.read_bytes()
    with pytest.raises(TypeError):
        write_results(
            path, {"/b": ({"x": np.ones(2)}, {}), "/c": ({"x": np.array([object()])}, {})}
        )
    assert path.read_bytes() == before
    with pytest.raises(TypeError):
        write_result(tmp_path / "new.h5", "/c", {"x": np.array([object()])})
    assert os.listdir(tmp_path) == ["r.h5"]  # a file the failed write created is gone again


def test_writing_a_file_this_process_reads_is_refused_not_a_deadlock(tmp_path):
    path = tmp_path / "r.h5"
    write_result(path, "/a", {"x": np.arange(3)})
    with (
        open_store(path) as store,
        pytest.raises(RuntimeError, match="already open in this process"),
    ):
        assert store.has("/a")
        write_result(path, "/b", {"x": np.arange(3)})


def test_result_files_get_the_mode_the_umask_allows(tmp_path):
    old = os.umask(0o022)
    try:
        write_result(tmp_path / "r.h5", "/a", {"x": np.arange(3)})
    finally:
        os.umask(old)
    assert (tmp_path / "r.h5").stat().st_mode & 0o777 == 0o644
