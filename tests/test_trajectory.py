"""PCA directions of a training trajectory (Li et al. 2018, sec. 7), the other normalisations of
random directions, and `train --save-every` feeding `contour --directions pca`."""

import json

import numpy as np
import pytest
import torch
from torch import nn

from landscape.errors import LandscapeError
from landscape.geometry.directions import filter_normalised_direction, pca_directions
from landscape.geometry.surface import pca_surface
from landscape.io.checkpoint import load_checkpoint


def flat(state, names):
    return torch.cat([state[n].flatten() for n in names]).numpy()


def trajectory(noise: float, seed: int = 0):
    """A final state (w: 4x5, b: 4) and 6 states around it: w moves along a_i u + b_i v (+ noise), b
    moves too."""
    g = torch.Generator().manual_seed(seed)
    final = {
        "w": torch.randn(4, 5, generator=g, dtype=torch.float64),
        "b": torch.randn(4, generator=g, dtype=torch.float64),
        "steps": torch.tensor(3),
    }
    uv = torch.linalg.qr(
        torch.randn(20, 2, generator=g, dtype=torch.float64)
    ).Q.T  # orthonormal rows u, v
    coef = torch.tensor(
        [[5.0, 2.0], [4.0, -1.0], [3.0, 1.5], [2.0, -0.5], [1.0, 0.4], [0.5, -0.2]],
        dtype=torch.float64,
    )
    states = []
    for a, b in coef:
        move = a * uv[0] + b * uv[1] + noise * torch.randn(20, generator=g, dtype=torch.float64)
        states.append(
            {
                "w": final["w"] + move.view(4, 5),
                "b": final["b"] + torch.randn(4, generator=g).double(),
                "steps": torch.tensor(3),
            }
        )
    return final, states, uv.numpy()


def test_pca_directions_are_orthonormal_and_span_the_trajectory():
    final, states, uv = trajectory(noise=0.0)
    dirs, coords, explained = pca_directions(final, states, ["w"])
    d = np.stack([flat(s, ["w"]) for s in dirs])
    np.testing.assert_allclose(d @ d.T, np.eye(2), atol=1e-12)  # orthonormal
    np.testing.assert_allclose(d.T @ d, uv.T @ uv, atol=1e-10)  # the same plane as u, v
    assert all(torch.count_nonzero(s["b"]) == 0 and s["steps"] == 3 for s in dirs)  # only w moves
    rows = np.stack([flat(s, ["w"]) - flat(final, ["w"]) for s in states])
    np.testing.assert_allclose(coords, rows @ d.T, atol=1e-12)  # projections, final at 0
    np.testing.assert_allclose(coords @ d, rows, atol=1e-10)  # nothing left off the plane
    assert explained.sum() == pytest.approx(1.0)


def test_pca_directions_are_the_first_principal_components():
    """With noise off the plane, the directions are the top-2 principal axes of the centred rows
    (NumPy's SVD), up to sign, and `explained` their variance shares."""
    final, states, _ = trajectory(noise=0.05, seed=2)
    dirs, _, explained = pca_directions(final, states, ["w", "b"])
    rows = np.stack([flat(s, ["w", "b"]) - flat(final, ["w", "b"]) for s in states])
    centred = rows - rows.mean(0)
    _, sing, vt = np.linalg.svd(centred)
    for d, v in zip(dirs, vt[:2]):
        assert abs(float(flat(d, ["w", "b"]) @ v)) == pytest.approx(1.0, abs=1e-10)
    np.testing.assert_allclose(explained, sing[:2] ** 2 / (sing**2).sum(), rtol=1e-10)
    assert explained[0] > explained[1] > 0


def test_pca_needs_a_plane():
    final, states, _ = trajectory(noise=0.0)
    with pytest.raises(LandscapeError, match="at least 3"):
        pca_directions(final, states[:2], ["w"])
    line = [{**final, "w": final["w"] * (1 + t)} for t in (0.1, 0.2, 0.3)]
    with pytest.raises(LandscapeError, match="two dimensions"):
        pca_directions(final, line, ["w"])


def test_pca_surface_puts_the_model_at_the_origin_and_covers_the_trajectory():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 10)).double().eval()
    states = [
        {k: v + 0.1 * (i + 1) * torch.randn_like(v) for k, v in model.state_dict().items()}
        for i in range(4)
    ]
    s = pca_surface(model, states, 5, 0.1)
    assert s.kind == "pca" and (s.model_x, s.model_y) == ([0.0], [0.0]) and len(s.path_x) == 4
    assert s.x[0] < min(s.path_x.min(), 0) and s.x[-1] > max(s.path_x.max(), 0)
    assert s.y[0] < min(s.path_y.min(), 0) and s.y[-1] > max(s.path_y.max(), 0)
    assert torch.count_nonzero(s.anchors[1]["1.bias"]) == 0  # biases stay put unless include_1d


def test_direction_normalisations():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 3)).double()
    raw = filter_normalised_direction(model, torch.Generator().manual_seed(1), norm="none")
    layer = filter_normalised_direction(model, torch.Generator().manual_seed(1), norm="layer")
    weight = filter_normalised_direction(model, torch.Generator().manual_seed(1), norm="weight")
    filt = filter_normalised_direction(model, torch.Generator().manual_seed(1))
    for key, w in model.state_dict().items():
        if w.dim() == 1:
            assert all(torch.count_nonzero(d[key]) == 0 for d in (raw, layer, weight, filt))
            continue
        # same draw, rescaled
        torch.testing.assert_close(layer[key], raw[key] * w.norm() / raw[key].norm())
        torch.testing.assert_close(weight[key], raw[key] * w)
        torch.testing.assert_close(filt[key].norm(dim=1), w.norm(dim=1))
        assert not torch.allclose(raw[key].norm(), w.norm())
    with pytest.raises(LandscapeError, match="unknown direction normalisation"):
        filter_normalised_direction(model, torch.Generator(), norm="unit")


def test_train_save_every_then_contour_pca(tmp_path, run_cli):
    out = tmp_path / "net.pt"
    code, stdout, err = run_cli(
        "train", "--hidden", "8", "--epochs", "3", "--save-every", "2", "--out", out, "--quiet"
    )
    assert code == 0, err
    folder = tmp_path / "net_trajectory"
    assert sorted(p.name for p in folder.iterdir()) == [
        "epoch0000.pt",
        "epoch0002.pt",
        "epoch0003.pt",
    ]
    meta = load_checkpoint(out)[1]
    assert meta["trajectory"]["every"] == 2 and len(meta["trajectory"]["files"]) == 3
    assert load_checkpoint(folder / "epoch0002.pt")[1]["epoch"] == 2
    h5 = tmp_path / "s.h5"
    code, stdout, err = run_cli(
        "contour",
        out,
        "--directions",
        "pca",
        "--steps",
        "4",
        "--samples",
        "60",
        "--json",
        "--out",
        h5,
    )
    assert code == 0, err
    r = json.loads(stdout)
    assert r["group"] == "/surfaces/net/pca" and len(r["path_x"]) == 3 and len(r["trajectory"]) == 3
    assert np.asarray(r["loss"]).shape == (4, 4) and sum(r["explained"]) <= 1 + 1e-9
    # the same through --trajectory FOLDER, and the errors
    code, stdout, err = run_cli(
        "contour",
        out,
        "--directions",
        "pca",
        "--trajectory",
        folder,
        "--steps",
        "3",
        "--samples",
        "30",
        "--json",
    )
    assert code == 0 and json.loads(stdout)["trajectory"] == r["trajectory"]
    for args, message in [
        (("--directions", "pca", "--trajectory", folder / "epoch0000.pt"), "at least 3"),
        (("--trajectory", folder), "--directions pca"),
        (("--directions", "pca", "--kind", "1d"), "2-D surface"),
    ]:
        code, _, err = run_cli("contour", out, "--steps", "3", "--samples", "30", *args)
        assert code == 2 and message in err, err
    # a run that fails leaves no trajectory behind
    code, _, err = run_cli(
        "train",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--lr",
        "1e8",
        "--save-every",
        "1",
        "--out",
        tmp_path / "bad.pt",
        "--quiet",
    )
    assert code == 2 and "diverged" in err and not (tmp_path / "bad_trajectory").exists()
