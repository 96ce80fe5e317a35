"""The command line of issue 25: --curvature and --per-layer on eig/trace/esd, `landscape
sharpness`, and `plot --format vtk` (the .vts re-read with an XML parser gives the stored grid) with
the 3-D surface figure."""

import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from landscape.io.checkpoint import save_checkpoint
from landscape.io.store import read_result, write_result
from tests.conftest import train_mlp


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory, digits):
    path = tmp_path_factory.mktemp("sharp") / "net.pt"
    save_checkpoint(train_mlp(digits, 0, 0, hidden=(8,), epochs=2), path)
    return path


def test_curvature_and_per_layer_are_stored_and_plotted(ckpt, tmp_path, run_cli):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "eig", ckpt, "--curvature", "ggn", "-k", "2", "--samples", "200", "--json", "--out", out
    )
    assert code == 0, err
    result = json.loads(stdout)
    assert result["curvature"] == "ggn" and min(result["eigenvalues"]) > 0
    assert read_result(out, "/models/net/ggn/eigenvalues")[1]["curvature"] == "ggn"
    code, stdout, err = run_cli(
        "trace",
        ckpt,
        "--per-layer",
        "--curvature",
        "fisher",
        "--samples",
        "200",
        "--max-hvps",
        "20",
        "--out",
        out,
    )
    assert code == 0, err
    assert "empirical Fisher trace of each parameter block" in stdout
    arrays, attrs = read_result(out, "/models/net/fisher/block_trace")
    assert attrs["blocks"] == [
        "features.0.weight",
        "features.0.bias",
        "classifier.weight",
        "classifier.bias",
    ]
    assert list(arrays["exact"]) == [False, True, False, True] and (arrays["trace"] > 0).all()
    code, stdout, err = run_cli(
        "eig", ckpt, "--per-layer", "--samples", "200", "--out", out, "--quiet"
    )
    assert code == 0, err
    assert "classifier.bias" in stdout
    assert read_result(out, "/models/net/block_eigenvalues")[0]["eigenvalues"].shape == (4,)
    code, stdout, err = run_cli(
        "esd",
        ckpt,
        "--curvature",
        "ggn",
        "--steps",
        "10",
        "--samples",
        "100",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    code, stdout, err = run_cli("plot", out, "--out-dir", tmp_path / "figs")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "r_curvature.png",
        "r_esd_ggn.png",
        "r_models_net_block_eigenvalues.png",
        "r_models_net_fisher_block_trace.png",
    ]
    for args, message in [
        (("eig", ckpt, "--per-layer", "-k", "2"), "--per-layer"),
        (("eig", ckpt, "--curvature", "ggn", "--backend", "pyhessian"), "Hessian only"),
        (("trace", ckpt, "--per-layer", "--method", "hutchinson"), "--per-layer"),
    ]:
        code, _, err = run_cli(*args)
        assert code == 2 and message in err and "Traceback" not in err


def test_sharpness_command(ckpt, tmp_path, run_cli):
    out = tmp_path / "r.h5"
    code, stdout, err = run_cli(
        "sharpness",
        ckpt,
        "--kind",
        "standard",
        "--norm",
        "linf",
        "--rho",
        "0.01",
        "--steps",
        "3",
        "--restarts",
        "2",
        "--random-draws",
        "3",
        "--samples",
        "150",
        "--seed",
        "4",
        "--json",
        "--out",
        out,
    )
    assert code == 0, err
    r = json.loads(stdout)
    assert r["worst"] == max(r["restart_worst"]) > 0 and len(r["random_increase"]) == 3
    assert (r["seed"], r["steps"], r["restarts"], r["kind"], r["norm"]) == (
        4,
        3,
        2,
        "standard",
        "linf",
    )
    arrays, attrs = read_result(out, "/models/net/sharpness/standard-linf-0.01")
    assert (
        attrs["worst"] == r["worst"]
        and attrs["seed"] == 4
        and arrays["restart_worst"].shape == (2,)
    )
    code, _, err = run_cli("sharpness", ckpt, "--steps", "0")
    assert code == 2 and err.startswith("error: ")


def read_vts(path):
    """The extent, points (n, 3) and named point arrays of an ASCII .vts file, by a plain XML
    parse."""
    root = ET.parse(path).getroot()
    assert root.get("type") == "StructuredGrid"
    piece = root.find("StructuredGrid/Piece")
    points = np.array(piece.find("Points/DataArray").text.split(), dtype=float).reshape(-1, 3)
    fields = {
        a.get("Name"): np.array(a.text.split(), dtype=float)
        for a in piece.findall("PointData/DataArray")
    }
    return [int(v) for v in piece.get("Extent").split()], points, fields


def test_plot_vtk_writes_the_grid_and_a_3d_figure(tmp_path, run_cli):
    x, y = np.linspace(-1, 1, 4), np.linspace(-2, 2, 3)
    loss = 1 + x[:, None] ** 2 + 0.5 * y[None, :] ** 2  # loss[i, j] at (x[i], y[j])
    acc = np.arange(12, dtype=float).reshape(4, 3) / 12
    arrays = {
        "x": x,
        "y": y,
        "loss": loss,
        "acc": acc,
        "done": np.ones((4, 3), dtype=bool),
        "model_x": np.array([0.0]),
        "model_y": np.array([0.0]),
    }
    out = tmp_path / "s.h5"
    write_result(out, "/surfaces/m/2d", arrays, {"kind": "2d"})
    write_result(
        out,
        "/models/m/esd",
        {"grid": np.linspace(-1, 5, 50), "density": np.ones(50) / 6},
        {"sigma2": 0.1},
    )
    code, _, err = run_cli("plot", out, "--out-dir", tmp_path / "figs", "--format", "vtk,png")
    assert code == 0, err
    assert sorted(p.name for p in (tmp_path / "figs").iterdir()) == [
        "s_esd_hessian.png",
        "s_surfaces_m_2d.png",
        "s_surfaces_m_2d.vts",
        "s_surfaces_m_2d_3d.png",
    ]
    extent, points, fields = read_vts(tmp_path / "figs" / "s_surfaces_m_2d.vts")
    assert extent == [0, 3, 0, 2, 0, 0]
    # VTK order: the first index fastest, so point k is (i, j) = (k % 4, k // 4)
    i, j = np.arange(12) % 4, np.arange(12) // 4
    np.testing.assert_array_equal(points, np.stack([x[i], y[j], loss[i, j]], axis=1))
    np.testing.assert_array_equal(fields["loss"], loss[i, j])
    np.testing.assert_array_equal(fields["acc"], acc[i, j])
    # a surface still being computed is not exported, with a warning
    write_result(
        out, "/surfaces/m/2d", {**arrays, "done": np.eye(4, 3, dtype=bool)}, {"kind": "2d"}
    )
    code, _, err = run_cli("plot", out, "--out-dir", tmp_path / "partial", "--format", "vtk")
    assert code == 0 and "warning:" in err and "9 of 12 points not computed" in err
    code, _, err = run_cli("plot", out, "--format", "gif")
    assert code == 2 and "vtk" in err
