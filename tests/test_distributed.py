"""torchrun with 2 gloo processes on CPU gives the single-process numbers, printed and written
once."""

import json
import math
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from landscape.io.checkpoint import save_checkpoint
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import init_model

LANDSCAPE = shutil.which("landscape") or str(Path(sys.executable).with_name("landscape"))
TIMING_KEYS = ("seconds", "time", "written_at")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run(args: list[str], procs: int, cwd: Path) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    if procs == 1:
        cmd = [LANDSCAPE, *args]
    else:
        cmd = [
            sys.executable,
            "-m",
            "torch.distributed.run",
            f"--nproc_per_node={procs}",
            "--master_addr=127.0.0.1",
            f"--master_port={_free_port()}",
            LANDSCAPE,
            *args,
        ]
    done = subprocess.run(
        cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    lines = [line for line in done.stdout.splitlines() if line.strip()]
    assert len(lines) == 1, done.stdout  # rank 0 alone prints, one JSON object
    return json.loads(lines[0])


def _assert_close(a, b, path="") -> None:
    if isinstance(a, dict):
        assert set(a) == set(b), path
        for k in a:
            if not any(t in k for t in TIMING_KEYS) and k != "out":
                _assert_close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b)):
            _assert_close(x, y, f"{path}[{i}]")
    elif isinstance(a, float) and isinstance(b, float):
        # a barrier is a difference of losses (about 2.3 here): it carries their rounding, 1e-5 of
        # their scale, however close to 0 it is (a signed barrier of -0.018 differed by 3e-7 between
        # one and two processes)
        assert math.isclose(a, b, rel_tol=1e-5, abs_tol=1e-5 if "barrier" in path else 1e-7), (
            path,
            a,
            b,
        )
    else:
        assert a == b, (path, a, b)


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    for name, seed in (("a", 1), ("b", 2)):
        kwargs = arch_kwargs_for("mlp", (1, 8, 8), 10, hidden=[16])
        save_checkpoint(init_model("mlp", kwargs, seed), d / f"{name}.pt")
    return d


COMMANDS = {
    "eval": ["eval", "a.pt", "b.pt"],
    "eig": ["eig", "a.pt", "-k", "2", "--samples", "300"],
    "trace": ["trace", "a.pt", "--samples", "300", "--seed", "3"],
    "esd": [
        "esd",
        "a.pt",
        "--samples",
        "300",
        "--steps",
        "12",
        "--runs",
        "2",
        "--grid-points",
        "400",
    ],
    "barrier": ["barrier", "a.pt", "b.pt", "--align", "none", "--points", "5", "--samples", "300"],
    "contour": ["contour", "a.pt", "--steps", "5", "--samples", "300", "--batching", "vmap"],
    "barrier-by-points": [
        "barrier",
        "a.pt",
        "b.pt",
        "--align",
        "ot",
        "--points",
        "5",
        "--samples",
        "300",
        "--parallel",
        "points",
    ],
    "contour-by-points": [
        "contour",
        "a.pt",
        "b.pt",
        "a.pt",
        "--kind",
        "path",
        "--steps",
        "4",
        "--samples",
        "300",
        "--parallel",
        "points",
        "--batching",
        "vmap",
    ],
}


@pytest.mark.parametrize("name", list(COMMANDS))
def test_two_processes_match_one(models, tmp_path, name):
    args = COMMANDS[name]
    one = _run([*args, "--json"], 1, models)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    two = _run([*args, "--json", "--out", str(out_dir / "r.h5")], 2, models)
    _assert_close(one, two)
    assert sorted(p.name for p in out_dir.iterdir()) == ["r.h5"]


# about a minute: a whole tiny study, each measurement a curvature-suite run, in two processes
@pytest.mark.slow
def test_study_jobs_spread_over_two_processes(tmp_path):
    """Independent study jobs run round-robin on the ranks; the store holds the single-process
    numbers."""
    from tests.test_study import TINY, _values

    (tmp_path / "tiny.toml").write_text(TINY.format(hvps=20))
    one = _run(["study", "tiny.toml", "--workdir", "w1", "--json", "--quiet"], 1, tmp_path)
    two = _run(["study", "tiny.toml", "--workdir", "w2", "--json", "--quiet"], 2, tmp_path)
    first, second = (_values(tmp_path / r["store"]) for r in (one, two))
    assert len(first) > 50
    _assert_close(first, second)
