"""`landscape eig`, `trace`, `esd`: output, HDF5 groups, the ESD figure, the PyHessian backend and
bad input."""

import json
import sys

import h5py
import numpy as np
import pytest
import torch

from landscape.curvature.eigen import top_eigenvalues
from landscape.curvature.trace import hessian_trace
from landscape.data import subsample
from landscape.errors import LandscapeError
from landscape.io.checkpoint import file_hash, load_checkpoint, save_checkpoint
from landscape.io.store import read_result
from landscape.plots.esd import plot_esd
from tests.conftest import train_mlp


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, digits):
    """A small trained MLP checkpoint."""
    path = tmp_path_factory.mktemp("curv") / "net.pt"
    save_checkpoint(train_mlp(digits, 0, 0, hidden=(16,), epochs=3), path)
    return path


def test_eig_json_and_store(ckpt, tmp_path, run_cli):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "eig",
        ckpt,
        "-k",
        "3",
        "--samples",
        "400",
        "--seed",
        "2",
        "--json",
        "--out",
        out,
        "--eigenvectors",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert len(result["eigenvalues"]) == 3 and result["eigenvalues"] == sorted(
        result["eigenvalues"], reverse=True
    )
    assert result["converged"] and result["method"] == "lanczos" and "eigenvectors" not in result
    assert (
        result["rule"] == "bound" and result["hvp_path"] == "kept graphs" and result["block"] == 1
    )
    assert all(b <= 1e-3 * abs(v) for b, v in zip(result["bounds"], result["eigenvalues"]))
    arrays, attrs = read_result(out, "/models/net/eigenvalues")
    assert arrays["eigenvectors"].shape == (3, result["n_params"])
    np.testing.assert_allclose(arrays["eigenvalues"], result["eigenvalues"])
    np.testing.assert_allclose(arrays["bounds"], result["bounds"])
    for key in (
        "k",
        "method",
        "backend",
        "hvps",
        "seconds",
        "tol",
        "samples",
        "batch_size",
        "seed",
        "data",
        "rule",
        "block",
        "hvp_path",
    ):
        assert key in attrs
    assert attrs["sha256"] == [file_hash(ckpt)] and attrs["models"] == [str(ckpt)]
    assert attrs["samples"] == 400 and attrs["seed"] == 2 and attrs["criterion"] == "ce"
    assert result["models"] == [{"path": str(ckpt), "sha256": file_hash(ckpt)}]
    model, _ = load_checkpoint(ckpt)
    same = top_eigenvalues(
        model, subsample(__import__("landscape").load_data("digits").train, 400, 2), k=3, seed=2
    )
    np.testing.assert_allclose(same.eigenvalues, result["eigenvalues"], rtol=1e-6)


def test_eig_text_power_strict_and_block(ckpt, run_cli):
    code, stdout, _ = run_cli("eig", ckpt, "--method", "power", "--samples", "300")
    assert code == 0 and "largest magnitude" in stdout and "Hessian-vector products" in stdout
    code, stdout, _ = run_cli(
        "eig", ckpt, "--samples", "300", "-k", "2", "--block", "2", "--strict", "--json"
    )
    result = json.loads(stdout)
    assert (
        code == 0
        and result["rule"] == "residual"
        and result["block"] == 2
        and result["hvps"] % 2 == 0
    )
    assert result["bounds"] == [max(r, b) for r, b in zip(result["residuals"], result["bounds"])]
    code, stdout, _ = run_cli("eig", ckpt, "--samples", "300")
    assert code == 0 and "+-" in stdout and "stop on error bounds <= tol 0.001: converged" in stdout


def test_trace_and_esd_store_and_plot(ckpt, tmp_path, run_cli):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "trace",
        ckpt,
        "--samples",
        "300",
        "--max-hvps",
        "30",
        "--json",
        "--out",
        out,
        "--name",
        "mine",
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["hvps"] == 30 and result["method"] == "hutch++" and len(result["estimates"]) == 10
    arrays, attrs = read_result(out, "/models/mine/trace")
    assert attrs["trace"] == pytest.approx(np.mean(arrays["estimates"]))
    assert {"stderr", "rel_stderr", "method", "hvps", "seconds"} <= set(attrs)
    code, stdout, err = run_cli(
        "esd",
        ckpt,
        "--samples",
        "300",
        "--steps",
        "12",
        "--runs",
        "2",
        "--out",
        out,
        "--name",
        "mine",
    )
    assert code == 0, err
    assert "12 Lanczos steps" in stdout
    with h5py.File(out) as f:
        assert set(f["/models/mine"]) == {"trace", "esd"}
    arrays, attrs = read_result(out, "/models/mine/esd")
    assert arrays["nodes"].shape == arrays["weights"].shape == (2, 12)
    assert arrays["grid"].shape == arrays["density"].shape
    assert (
        attrs["steps"] == 12 and attrs["runs"] == 2 and attrs["hvps"] == 24 and attrs["sigma2"] > 0
    )
    png = tmp_path / "esd.png"
    plot_esd(arrays, attrs, png, "net")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_pyhessian_backend_runs_the_old_way(ckpt, run_cli, digits):
    model, _ = load_checkpoint(ckpt)
    split = subsample(digits.train, 300, 0)
    exact = top_eigenvalues(model, split, k=1, tol=1e-8, max_hvps=300).eigenvalues[0]
    old = top_eigenvalues(model, split, k=1, backend="pyhessian", method="power")
    assert (
        old.backend == "pyhessian"
        and old.hvps >= 2
        and old.converged is None
        and old.rule == "change"
    )
    np.testing.assert_array_equal(old.bounds, old.residuals)
    assert old.eigenvalues[0] == pytest.approx(exact, rel=2e-2)
    assert all(p.grad is None for p in model.parameters()) and not model.training
    tr = hessian_trace(model, split, backend="pyhessian", max_hvps=20)
    ours = hessian_trace(model, split, max_hvps=60)
    assert tr.backend == "pyhessian" and tr.hvps == tr.probes == len(tr.estimates) <= 20
    assert abs(tr.trace - ours.trace) <= 4 * np.hypot(tr.stderr, ours.stderr)
    code, stdout, err = run_cli(
        "trace", ckpt, "--backend", "pyhessian", "--samples", "200", "--max-hvps", "5", "--json"
    )
    assert code == 0, err
    assert json.loads(stdout)["backend"] == "pyhessian"


def test_missing_pyhessian_is_a_clear_error(ckpt, digits, monkeypatch):
    monkeypatch.setitem(sys.modules, "pyhessian", None)
    model, _ = load_checkpoint(ckpt)
    with pytest.raises(LandscapeError, match="pip install pyhessian"):
        top_eigenvalues(model, subsample(digits.train, 50), backend="pyhessian", method="power")


@pytest.mark.parametrize(
    "args,message",
    [
        (["eig", "{c}", "--eigenvectors"], "give --out"),
        (["eig", "{c}", "--block", "0"], "at least 1"),
        (
            ["eig", "{c}", "--backend", "pyhessian", "--method", "lanczos"],
            "has only --method power",
        ),
        (["eig", "{c}", "--method", "power", "--which", "algebraic"], "largest magnitude"),
        (["trace", "{c}", "--max-hvps", "3"], "too small"),
        (["trace", "{c}", "--target-rse", "0"], "must be positive"),
        (["esd", "{c}", "--steps", "0"], "at least 1"),
        (["esd", "{c}", "--sigma2", "-1", "--steps", "3"], "must be positive"),
        (["eig", "{c}", "--samples", "0"], "must be positive"),
        (["eig", "{d}/missing.pt"], "file not found"),
    ],
)
def test_bad_input_is_one_error_line(ckpt, run_cli, args, message):
    code, out, err = run_cli(*[a.format(c=ckpt, d=ckpt.parent) for a in args])
    assert code == 2 and err.startswith("error:") and message in err and out == "", err
    assert len(err.strip().splitlines()) == 1


def test_products_need_no_tracked_randomness(ckpt, digits):
    """Probes come from a CPU generator seeded by --seed: the global RNG is neither used nor
    advanced."""
    model, _ = load_checkpoint(ckpt)
    split = subsample(digits.train, 200)
    torch.manual_seed(123)
    state = torch.get_rng_state()
    a = hessian_trace(model, split, max_hvps=12, seed=4)
    assert torch.equal(state, torch.get_rng_state())
    b = hessian_trace(model, split, max_hvps=12, seed=4)
    np.testing.assert_array_equal(a.estimates, b.estimates)
