"""The HDF5 store's space and cost under the writes that used to hurt: a 41x41 contour rewritten
after every chunk (the file grew to 12x its content), and two processes writing into one file at
once (groups were lost).

Prints: the contour file's size against the bytes of its arrays and the time per rewrite; how many
of the groups two processes wrote (100 each, at the same time) are in the file, and the time per
write; the time to add a small group to a 64 MiB file (a write that copies the file pays for all of
it); and what SIGKILLs at random moments do to a file written in place by h5py alone (the reason for
the store's journal) and by the store.

Usage: python benchmarks/store_reliability.py [--steps S] [--chunk C] [--groups G] [--kills K]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import random
import signal
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from landscape import progress
from landscape.data import load_data, subsample
from landscape.errors import LandscapeError
from landscape.geometry.surface import compute_surface, random_surface
from landscape.io import store
from landscape.io.store import list_results, write_result
from landscape.training.loop import init_model


def _contour(folder: Path, steps: int, chunk: int) -> None:
    data = load_data("digits")
    model = init_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [64, 32]}, 0)
    split = subsample(data.train, 256, 0)
    out, group = folder / "contour.h5", "/surfaces/a/2d"
    arrays, attrs = compute_surface(
        model,
        random_surface(model, 2, -1, 1, steps, 0),
        split,
        256,
        {"seed": 0, "models": ["a.pt"], "sha256": ["0" * 64], "data": "digits"},
        out=out,
        group=group,
        chunk=chunk,
        save_every=0,
    )
    content = sum(np.asarray(v).nbytes for v in arrays.values())
    writes = -(-steps * steps // chunk) + 1
    size = os.path.getsize(out)
    print(
        f"{steps}x{steps} contour written after every chunk of {chunk} points and at the end "
        f"({writes} writes):"
    )
    print(f"  file {size} bytes for {content} bytes of arrays ({size / content:.2f}x)")
    start = time.perf_counter()
    for _ in range(100):
        write_result(out, group, arrays, attrs)
    print(
        f"  one more rewrite of the group: {(time.perf_counter() - start) * 10:.1f} ms (mean of "
        f"100); file then {os.path.getsize(out)} bytes"
    )


def _big_file(folder: Path) -> None:
    path = folder / "big.h5"
    write_result(path, "/big", {"x": np.zeros(8 << 20)})  # 64 MiB
    start = time.perf_counter()
    for i in range(20):
        write_result(path, f"/small/{i}", {"x": np.arange(10)})
    print(
        f"a small group written into a {os.path.getsize(path) >> 20} MiB file: "
        f"{(time.perf_counter() - start) / 20 * 1e3:.1f} ms (mean of 20)"
    )


def _writer(path: str, tag: str, n: int) -> None:
    for i in range(n):
        write_result(path, f"/g/{tag}{i}", {"x": np.full(50, i)}, {"tag": tag, "i": i})


def _concurrent(folder: Path, groups: int) -> None:
    path = str(folder / "shared.h5")
    fork = multiprocessing.get_context("fork")
    procs = [fork.Process(target=_writer, args=(path, tag, groups)) for tag in "ab"]
    start = time.perf_counter()
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    kept = len(list_results(path))
    print(
        f"two processes writing {groups} groups each into one file at once: {kept} of {2 * groups} "
        "kept, "
        f"{seconds:.2f} s ({seconds / (2 * groups) * 1e3:.1f} ms per write, writes serialised by "
        "the lock)"
    )
    print(f"  folder afterwards: {sorted(os.listdir(folder))}")


def _plain_writer(path: str, start: int) -> None:
    """In-place writes with h5py alone: every round replaces five groups (what the store does, minus
    its journal)."""
    i = start
    while True:
        i += 1
        with h5py.File(path, "r+") as f:
            for j in range(5):
                del f[f"g{j}"]
                f.create_dataset(f"g{j}/x", data=np.full(2000 + 500 * (i % 3), i))
                f[f"g{j}"].attrs["v"] = i


def _store_writer(path: str, start: int) -> None:
    i = start
    while True:
        i += 1
        store.write_results(
            path, {f"/g{j}": ({"x": np.full(2000 + 500 * (i % 3), i)}, {"v": i}) for j in range(5)}
        )


def _read_versions(path: str, plain: bool) -> tuple[set[int], int]:
    """The versions the five groups hold, and how many groups hold data of another version than
    their own."""
    versions, wrong = set(), 0
    if plain:
        with h5py.File(path, "r") as f:
            groups = [(int(f[f"g{j}"].attrs["v"]), f[f"g{j}/x"][()]) for j in range(5)]
    else:
        groups = [
            (int(a["v"]), arr["x"])
            for arr, a in (store.read_result(path, f"/g{j}") for j in range(5))
        ]
    for v, x in groups:
        versions.add(v)
        wrong += int(not (x == v).all())
    return versions, wrong


def _kills(folder: Path, rounds: int, plain: bool) -> None:
    """SIGKILL a writer at a random moment, `rounds` times (or until the file cannot be read)."""
    path = str(folder / ("plain.h5" if plain else "store.h5"))
    # HDF5's default file format (a 1.10-format file, as the store makes, is refused after one kill:
    if plain:
        with h5py.File(
            path, "w"
        ) as f:  # "file is already open for write", until h5clear is run on it)
            for j in range(5):
                f.create_dataset(f"g{j}/x", data=np.zeros(2000))
                f[f"g{j}"].attrs["v"] = 0
    else:
        store.write_results(path, {f"/g{j}": ({"x": np.zeros(2000)}, {"v": 0}) for j in range(5)})
    fork, rng, last = multiprocessing.get_context("fork"), random.Random(0), 0
    wrong = mixed = 0
    for done in range(1, rounds + 1):
        proc = fork.Process(target=_plain_writer if plain else _store_writer, args=(path, last))
        proc.start()
        time.sleep(rng.uniform(0.005, 0.1))
        os.kill(proc.pid, signal.SIGKILL)
        proc.join()
        try:
            versions, bad = _read_versions(path, plain)
        except (OSError, KeyError, LandscapeError) as exc:
            print(
                f"  {'h5py alone' if plain else 'the store'}: unreadable after {done} kills "
                f"({str(exc).splitlines()[0][:90]}); before that {wrong} groups with another "
                "version's data"
            )
            return
        wrong, mixed, last = wrong + bad, mixed + (len(versions) > 1), max(versions)
    print(
        f"  {'h5py alone' if plain else 'the store'}: readable after all {rounds} kills; {wrong} "
        "groups with "
        f"another version's data, {mixed} times the five groups of one write from different writes"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=41)
    parser.add_argument("--chunk", type=int, default=16)
    parser.add_argument("--groups", type=int, default=100)
    parser.add_argument("--kills", type=int, default=100)
    args = parser.parse_args()
    torch.set_num_threads(1)
    progress.set_quiet(True)
    with tempfile.TemporaryDirectory() as contour_dir, tempfile.TemporaryDirectory() as shared_dir:
        _contour(Path(contour_dir), args.steps, args.chunk)
        _concurrent(Path(shared_dir), args.groups)
        _big_file(Path(shared_dir))
        print(
            f"a writer of five groups killed with SIGKILL at random moments ({args.kills} times):"
        )
        for plain in (True, False):
            _kills(Path(shared_dir), args.kills, plain)


if __name__ == "__main__":
    main()
