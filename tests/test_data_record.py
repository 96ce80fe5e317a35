"""Checkpoints remember their data: `--data` defaults to the recorded source, other data of the same
shape and inputs beyond the training range warn, and (N, D) rows feed an MLP trained on images."""

import json

import numpy as np
import pytest

from landscape.data.readers import digits
from landscape.io.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """digits as (N, 64) rows (the same examples and split as the built-in digits), inverted, and
    scaled to 0..255."""
    tmp = tmp_path_factory.mktemp("data")
    raw = digits()
    rows = {
        "x_train": raw.x_train.reshape(len(raw.x_train), -1),
        "y_train": raw.y_train,
        "x_test": raw.x_test.reshape(len(raw.x_test), -1),
        "y_test": raw.y_test,
    }
    paths = {}
    for name, change in (
        ("rows", lambda x: x),
        ("inverted", lambda x: 1.0 - x),
        ("uint8", lambda x: x * 255),
    ):
        paths[name] = tmp / f"{name}.npz"
        np.savez(paths[name], **{k: change(v) if k.startswith("x") else v for k, v in rows.items()})
    return paths


def test_data_defaults_to_the_recorded_source(files, tmp_path, run_cli):
    ckpt = tmp_path / "rows.pt"
    assert (
        run_cli(
            "train",
            "--data",
            files["rows"],
            "--hidden",
            "16",
            "--epochs",
            "2",
            "--out",
            ckpt,
            "--quiet",
        )[0]
        == 0
    )
    _, meta = load_checkpoint(ckpt)
    assert meta["dataset"] == str(files["rows"]) and meta["data_shape"] == [1, 1, 64]
    assert len(meta["data_fingerprint"]) == 16 and len(meta["data_stats"]) == 1
    code, out, err = run_cli("eval", ckpt, "--json")  # no --data: the recorded .npz, not digits
    assert code == 0 and err == "", err
    assert json.loads(out)["data"] == str(files["rows"])


def test_rows_for_an_mlp_and_other_data_warns(files, tmp_path, run_cli):
    ckpt = tmp_path / "images.pt"
    # (1, 8, 8)
    assert run_cli("train", "--hidden", "16", "--epochs", "2", "--out", ckpt, "--quiet")[0] == 0
    code, same, err = run_cli("eval", ckpt, "--json")
    assert code == 0 and err == ""
    code, rows, err = run_cli("eval", ckpt, "--data", files["rows"], "--json")
    assert code == 0 and err == "", err  # the same examples as rows of 64: no warning
    assert json.loads(rows)["models"][0]["test"] == json.loads(same)["models"][0]["test"]
    code, _, err = run_cli("eval", ckpt, "--data", files["inverted"], "--json")
    assert code == 0 and err.count("warning:") == 1
    assert "inverted.npz' is not the data the model was trained on ('digits')" in err
    code, out, err = run_cli("eval", ckpt, "--data", files["uint8"], "--json")
    assert (
        code == 0
        and "has inputs in [0, 255] (channel 0), beyond the range [0, 1] the model was trained on"
        in err
    )
    assert len(json.loads(out)["warnings"]) == 2
