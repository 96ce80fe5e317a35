"""Every bad input a new user tried (issue 12), one row each: exit code 2 with one `error:` line, no
traceback and nothing left behind; or, where going on is right, one `warning:` line that the result
records. docs/errors.md lists the same rows."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from landscape.io.checkpoint import save_checkpoint
from landscape.io.store import write_result
from landscape.training.loop import init_model

KWARGS = {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [8]}


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    for name, seed in (("ok", 0), ("ok2", 1)):
        save_checkpoint(init_model("mlp", KWARGS, seed), d / f"{name}.pt")
    for name, value in (("nan", float("nan")), ("inf", float("inf"))):
        model = init_model("mlp", KWARGS, 0)
        with torch.no_grad():
            model.features[0].weight[0, 0] = value
        save_checkpoint(model, d / f"{name}.pt")
    torch.save(
        {"format": "landscape-checkpoint/1", "arch": "mlp", "arch_kwargs": KWARGS, "meta": {}},
        d / "nosd.pt",
    )
    rng = np.random.default_rng(0)
    x, y = rng.random((100, 1, 8, 8)).astype(np.float32), rng.integers(0, 10, 100)
    nan_x = x.copy()
    nan_x[3, 0, 0, 0] = np.nan
    for name, arrays in {
        "strings": {"x_train": np.array(["a"] * 100), "y_train": y},
        "empty": {"x_train": x[:0], "y_train": y[:0]},
        "float_labels": {"x_train": x, "y_train": y + 0.5},
        "short_labels": {"x_train": x, "y_train": y[:90]},
        "nan_inputs": {"x_train": nan_x, "y_train": y},
        "one": {"x_train": x[:1], "y_train": y[:1]},
        "wide_labels": {"x_train": x, "y_train": y + 5},
        "onehot": {"x_train": x, "y_train": np.eye(10)[y]},
        "test_half": {"x_train": x, "y_train": y, "x_test": x},
    }.items():
        np.savez(d / f"{name}.npz", **arrays)
    (d / "bad.toml").write_text(
        '[study]\narch = "mlp"\n[train]\nbatch_sizes = [32]\nlrs = [0.1]\nepochs = "thirty"\n'
        "[pairs]\ndiff_init = [[1, 1], [2, 2]]\n"
    )
    torch.save({"w": torch.zeros(1)}, d / "sd.pt")
    (d / "afile").write_text("a file where a folder should be")
    write_result(d / "metrics.h5", "/models/ok/metrics", {}, {"test_acc": 0.5})
    return d


ERRORS = [  # (bad input, command line, words of the message)
    ("eig of NaN weights", ["eig", "nan.pt"], "has non-finite values (NaN or inf)"),
    ("esd of NaN weights", ["esd", "nan.pt", "--steps", "3"], "has non-finite values (NaN or inf)"),
    ("trace of NaN weights", ["trace", "nan.pt"], "has non-finite values (NaN or inf)"),
    ("trace of an inf weight", ["trace", "inf.pt"], "has non-finite values (NaN or inf)"),
    ("eval of NaN weights", ["eval", "nan.pt"], "has non-finite values (NaN or inf)"),
    (
        "finetune of NaN weights",
        ["finetune", "nan.pt", "--epochs", "1", "--out", "o.pt"],
        "has non-finite values",
    ),
    (
        "barrier with a NaN model",
        ["barrier", "nan.pt", "ok.pt"],
        "has non-finite values (NaN or inf)",
    ),
    (
        "contour of NaN weights",
        ["contour", "nan.pt", "--steps", "3"],
        "has non-finite values (NaN or inf)",
    ),
    (
        "align a NaN model",
        ["align", "nan.pt", "ok.pt", "--out", "o.pt"],
        "has non-finite values (NaN or inf)",
    ),
    (
        "checkpoint without state_dict",
        ["eval", "nosd.pt"],
        "damaged checkpoint: it has no 'state_dict'",
    ),
    ("strings in an .npz", ["eval", "ok.pt", "--data", "strings.npz"], "x_train must hold numbers"),
    (
        "an .npz with 0 examples",
        ["eval", "ok.pt", "--data", "empty.npz"],
        "x_train holds no examples",
    ),
    (
        "float labels",
        ["eval", "ok.pt", "--data", "float_labels.npz"],
        "y_train must hold integer class labels",
    ),
    (
        "one-hot labels",
        ["eval", "ok.pt", "--data", "onehot.npz"],
        "y_train must hold one class index per example",
    ),
    (
        "x_train and y_train of different lengths",
        ["eval", "ok.pt", "--data", "short_labels.npz"],
        "100 inputs but 90 labels in y_train",
    ),
    (
        "x_test without y_test",
        ["eval", "ok.pt", "--data", "test_half.npz"],
        "has x_test without its pair",
    ),
    (
        "NaN inputs",
        ["eval", "ok.pt", "--data", "nan_inputs.npz"],
        "x_train holds 1 NaN or infinite values",
    ),
    ("1-example data", ["eval", "ok.pt", "--data", "one.npz"], "too few examples (1)"),
    (
        "labels >= the model's classes, no test arrays",
        ["eval", "ok.pt", "--data", "wide_labels.npz"],
        "labels out of range",
    ),
    (
        "study with neither a config nor a preset",
        ["study", "--workdir", "w"],
        "give a CONFIG file or --preset NAME",
    ),
    (
        'study TOML with epochs = "thirty"',
        ["study", "bad.toml", "--workdir", "w"],
        "[train] epochs must be an integer, got 'thirty'",
    ),
    (
        "--out under a file",
        ["eval", "ok.pt", "--out", "afile/r.h5"],
        "afile is a file, not a folder",
    ),
    (
        "checkpoint --out under a file",
        ["train", "--epochs", "1", "--out", "afile/o.pt"],
        "afile is a file, not a folder",
    ),
    (
        "--out-dir under a file",
        ["plot", "metrics.h5", "--out-dir", "afile/figs"],
        "afile is a file, not a folder",
    ),
    (
        "plot of a file with nothing to draw",
        ["plot", "metrics.h5"],
        "spectral density, barrier curve or surface",
    ),
    (
        "-k above the number of parameters",
        ["eig", "ok.pt", "-k", "100000"],
        "-k 100000 is more than the 610 trainable parameters",
    ),
    (
        "--loss nll on a model that outputs logits",
        ["barrier", "ok.pt", "ok2.pt", "--loss", "nll", "--points", "3"],
        "--loss nll needs log-probabilities",
    ),
    (
        "wrap with the user's factory and no --data",
        ["wrap", "sd.pt", "--arch", "tests.factories:tiny_cnn", "--out", "o.pt"],
        "missing 2 required positional arguments: 'input_shape' and 'num_classes' (pass --data",
    ),
    (
        "--acts-at post where no activations are read",
        ["fuse", "ok.pt", "ok2.pt", "--align", "vanilla", "--acts-at", "post", "--out", "o.pt"],
        "--acts-at 'post' has no effect: vanilla averaging reads no activations",
    ),
    (
        "eig --loss nll on logits",
        ["eig", "ok.pt", "--loss", "nll"],
        "--loss nll needs log-probabilities",
    ),
]

WARNINGS = [  # (input, command line, words of the warning, what the JSON result records)
    (
        "--samples above the data size",
        ["eig", "ok.pt", "--samples", "100000", "--max-hvps", "5"],
        "--samples 100000 is more than the 1294 examples of the train split: using all 1294",
        {},
    ),
    (
        "align with a soft (Sinkhorn) plan",
        ["align", "ok.pt", "ok2.pt", "--reg", "0.05", "--out", "o.pt"],
        "does not compute the original model's function",
        {"function_kept": False},
    ),
    (
        "barrier --align ot with a soft plan",
        [
            "barrier",
            "ok.pt",
            "ok2.pt",
            "--align",
            "ot",
            "--reg",
            "0.05",
            "--points",
            "3",
            "--samples",
            "100",
        ],
        "does not compute the original model's function",
        {"ot": {"function_kept": False}},
    ),
    (
        "fuse --reset-bn-samples without BatchNorm",
        ["fuse", "ok.pt", "ok2.pt", "--reset-bn-samples", "2000", "--out", "o.pt"],
        "the fused model has no BatchNorm layer, nothing to reset",
        {"reset_bn_samples": 0},
    ),
]


def _args(files: Path, args: list[str]) -> list[str]:
    """File names in `args` as paths in the fixture folder."""
    return [
        str(files / a) if re.fullmatch(r"[\w.]+\.(pt|npz|toml|h5)|w|afile.*|o\.pt", a) else a
        for a in args
    ]


def _listing(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


@pytest.mark.parametrize("what,args,message", ERRORS, ids=[e[0] for e in ERRORS])
def test_bad_input_is_one_error_line_and_leaves_nothing(files, run_cli, what, args, message):
    before = _listing(files)
    code, out, err = run_cli(*_args(files, args))
    assert code == 2, err
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and message in err, err
    assert "Traceback" not in err and out == ""
    # no output, temporary, journal or empty _plots folder left behind
    assert _listing(files) == before


@pytest.mark.parametrize("what,args,message,recorded", WARNINGS, ids=[w[0] for w in WARNINGS])
def test_clamped_or_doubtful_input_is_one_warning_line_recorded_with_the_result(
    files, run_cli, what, args, message, recorded
):
    code, out, err = run_cli(*_args(files, args), "--json")
    assert code == 0, err
    # the fixture's untrained models are also far from a stationary point, which curvature commands
    # say too
    lines = [line for line in err.strip().splitlines() if "far from a stationary point" not in line]
    assert len(lines) == 1 and lines[0].startswith("warning:") and message in lines[0], err
    result = json.loads(out)  # the JSON result alone on stdout, with the warning in it
    assert any(message in w for w in result["warnings"])
    for key, value in recorded.items():
        assert (
            result[key] if not isinstance(value, dict) else {k: result[key][k] for k in value}
        ) == value
    (files / "o.pt").unlink(missing_ok=True)


def test_the_docs_list_every_row():
    errors = (Path(__file__).parents[1] / "docs" / "errors.md").read_text()
    missing = [m for _, _, m, *_ in ERRORS + WARNINGS if m.replace("|", "\\|") not in errors]
    assert not missing, missing
