"""Bad input: one `error:` line on stderr, exit code 2, no traceback, no file left behind."""

import numpy as np
import pytest
import torch

from landscape.io.checkpoint import save_checkpoint
from landscape.models.zoo import build_model


@pytest.fixture
def files(tmp_path):
    model = build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [8]})
    save_checkpoint(model, tmp_path / "ok.pt")
    save_checkpoint(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 3, "hidden": [8]}),
        tmp_path / "c3.pt",
    )
    torch.save({"a": torch.zeros(2)}, tmp_path / "plain.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    torch.save(model.state_dict(), tmp_path / "sd.pt")
    np.savez(
        tmp_path / "wide.npz",
        x_train=np.zeros((20, 1, 8, 8), np.float32),
        y_train=np.arange(20) % 12,
    )
    return tmp_path


CASES = [
    (["eval", "{d}/missing.pt"], "file not found"),
    (["eval", "{d}/plain.pt"], "not a landscape checkpoint"),
    (["eval", "{d}/junk.pt"], "not a readable torch file"),
    (["train", "--arch", "alexnet", "--epochs", "1", "--out", "{d}/o.pt"], "unknown arch"),
    (
        [
            "wrap",
            "{d}/sd.pt",
            "--arch",
            "mlp",
            "--data",
            "digits",
            "--arch-kwargs",
            '{{"hidden": [9]}}',
            "--out",
            "{d}/o.pt",
        ],
        "does not fit",
    ),
    (["eval", "{d}/ok.pt", "--data", "imagenet"], "unknown dataset"),
    (["eval", "{d}/c3.pt"], "labels out of range"),
    (
        [
            "train",
            "--data",
            "{d}/wide.npz",
            "--epochs",
            "1",
            "--out",
            "{d}/o.pt",
            "--arch-kwargs",
            '{{"num_classes": 5}}',
        ],
        "labels out of range",
    ),
    (["train", "--epochs", "1", "--out", "{d}/o.pt", "--batch-size", "0"], "must be positive"),
    (["train", "--no-such-option"], "no such option"),
]


@pytest.mark.parametrize("args,message", CASES)
def test_one_line_error_exit_2(files, run_cli, args, message):
    code, out, err = run_cli(*[a.format(d=files) for a in args])
    assert code == 2
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1, err
    assert message in err.lower()
    assert "Traceback" not in err and out == ""
    assert not (files / "o.pt").exists() and not list(files.glob("*.tmp"))


def test_durations_in_words():
    from landscape.study.cost import clock

    assert clock(13 * 3600 + 57 * 60 + 43) == "13 h 58 min"
    assert clock(2 * 86400 + 5 * 3600 + 600) == "2 d 5 h" and clock(252) == "4 min 12 s"
    assert (
        clock(3599.6) == "1 h 0 min" and clock(32.54) == "32.5 s" and clock(0.01234) == "0.0123 s"
    )


def test_bare_command_prints_help(run_cli):
    code, out, err = run_cli()
    assert code == 0 and out.startswith("Usage: landscape") and "train" in out and err == ""


def test_out_suffix_and_missing_folder(tmp_path, run_cli):
    """The suffix names the format (a checkpoint .pt, a result .h5) or is refused; --out into a
    folder that does not exist is an error, and nothing is created."""
    code, _, err = run_cli("train", "--epochs", "1", "--out", tmp_path / "fused.h5")
    assert code == 2
    assert (
        err == f"error: --out {tmp_path / 'fused.h5'}: a checkpoint is written as .pt or .pth, not "
        ".h5\n"
    )
    code, _, err = run_cli("train", "--epochs", "1", "--out", tmp_path / "missing" / "x.pt")
    assert (
        code == 2
        and "missing does not exist (create it first)" in err
        and not (tmp_path / "missing").exists()
    )
    code, _, err = run_cli("eval", tmp_path / "x.pt", "--out", tmp_path / "r.pt")
    assert code == 2 and "a result is written as .h5 or .hdf5, not .pt" in err
    assert list(tmp_path.iterdir()) == []


def test_every_command_takes_quiet():
    from cli.main import cli

    assert [
        name
        for name, cmd in sorted(cli.commands.items())
        if not any(p.name == "quiet" for p in cmd.params)
    ] == []


def test_vanilla_fusion_of_different_depths_names_the_layers(files, run_cli):
    save_checkpoint(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [8, 8]}),
        files / "deep.pt",
    )
    code, _, err = run_cli(
        "fuse", files / "ok.pt", files / "deep.pt", "--align", "vanilla", "--out", files / "v.pt"
    )
    assert (
        code == 2
        and "have different layers (4 and 6 tensors;" in err
        and "one depth, layer by layer" in err
    )
    assert not (files / "v.pt").exists()


def test_shape_mismatch_is_named_before_the_normalisation(files, run_cli):
    """A 3-channel model (recording three channels' statistics) on 1-channel digits: the shapes are
    the error, not the number of (mean, std) pairs."""
    model = build_model("mlp", {"input_shape": [3, 8, 8], "num_classes": 10, "hidden": [8]})
    save_checkpoint(model, files / "rgb.pt", meta={"normalize": [[0.5, 0.25]] * 3})
    code, _, err = run_cli("eval", files / "rgb.pt", "--data", "digits")
    assert (
        code == 2
        and err
        == "error: data 'digits' has inputs of shape (1, 8, 8), the model expects (3, 8, 8)\n"
    )
