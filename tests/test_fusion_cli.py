"""`landscape fuse` and `landscape align`: checkpoints with their lineage, BatchNorm reset, one-line
errors."""

import json

import numpy as np
import pytest
import torch

import fusion
from landscape.data import load_data, subsample
from landscape.io.checkpoint import file_hash, load_checkpoint, save_checkpoint
from landscape.models.zoo import build_model
from landscape.training.bn import reset_bn
from landscape.training.metrics import evaluate
from tests.conftest import train_mlp
from tests.test_fusion_permutation import one_thread  # noqa: F401 (autouse fixture)
from tests.test_fusion_trained import pair  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def ckpts(tmp_path_factory, pair, digits):  # noqa: F811
    d = tmp_path_factory.mktemp("fusion_cli")
    save_checkpoint(pair[0], d / "a.pt")
    save_checkpoint(pair[1], d / "b.pt")
    for i, seed in enumerate((1, 2)):
        save_checkpoint(
            train_mlp(digits, seed, seed, hidden=(16,), epochs=2, bn=True), d / f"bn{i}.pt"
        )
    save_checkpoint(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [32, 16, 8]}),
        d / "deep.pt",
    )
    save_checkpoint(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 9, "hidden": [32, 16]}),
        d / "c9.pt",
    )
    nan = build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [32, 16]})
    nan.classifier.bias.data[3] = float("nan")
    save_checkpoint(nan, d / "nan.pt")
    return d


def test_fuse_records_parents_method_and_settings(ckpts, run_cli, digits):
    a, b, out = ckpts / "a.pt", ckpts / "b.pt", ckpts / "f.pt"
    code, stdout, _ = run_cli(
        "fuse", a, b, "--out", out, "--samples", "150", "--seed", "3", "--json"
    )
    assert code == 0
    summary = json.loads(stdout)
    fused, meta = load_checkpoint(out)
    assert meta["parents"] == [
        {"path": str(a), "sha256": file_hash(a)},
        {"path": str(b), "sha256": file_hash(b)},
    ]
    assert {
        k: meta[k]
        for k in (
            "method",
            "mode",
            "solver",
            "reg",
            "marginals",
            "align_samples",
            "seed",
            "weights",
            "anchor",
            "iterations",
            "reset_bn_samples",
        )
    } == {
        "method": "ot",
        "mode": "acts",
        "solver": "emd",
        "reg": 0.01,
        "marginals": "uniform",
        "align_samples": 150,
        "seed": 3,
        "weights": [0.5, 0.5],
        "anchor": 1,
        "iterations": 1,
        "reset_bn_samples": 0,
    }
    assert summary["models"] == meta["parents"] and summary["align_samples"] == 150
    assert meta["seconds"] > 0
    assert summary["test"]["result"]["acc"] == meta["test_acc"] == evaluate(fused, digits.test).acc
    # the CLI computes exactly what the Python API does
    m_a, m_b = load_checkpoint(a)[0], load_checkpoint(b)[0]
    expected = fusion.fuse([m_a, m_b], x=subsample(digits.train, 150, 3).x)
    assert all(torch.equal(v, expected.state_dict()[k]) for k, v in fused.state_dict().items())


def test_fuse_vanilla_weights_three_models_and_sinkhorn(ckpts, run_cli):
    a, b = ckpts / "a.pt", ckpts / "b.pt"
    code, stdout, _ = run_cli(
        "fuse",
        a,
        b,
        a,
        "--align",
        "vanilla",
        "--weights",
        "1,1,2",
        "--out",
        ckpts / "v.pt",
        "--no-eval",
    )
    assert code == 0 and "vanilla fusion of 3 models" in stdout
    fused, meta = load_checkpoint(ckpts / "v.pt")
    m_a, m_b = load_checkpoint(a)[0], load_checkpoint(b)[0]
    assert torch.allclose(
        fused.classifier.weight, 0.75 * m_a.classifier.weight + 0.25 * m_b.classifier.weight
    )
    assert meta["weights"] == [0.25, 0.25, 0.5] and "test_acc" not in meta
    code, _, _ = run_cli(
        "fuse",
        a,
        b,
        "--mode",
        "wts",
        "--reg",
        "0.05",
        "--anchor",
        "0",
        "--iterations",
        "2",
        "--out",
        ckpts / "s.pt",
        "--quiet",
    )
    _, meta = load_checkpoint(ckpts / "s.pt")
    assert code == 0 and (meta["solver"], meta["reg"], meta["anchor"], meta["iterations"]) == (
        "sinkhorn",
        0.05,
        0,
        2,
    )
    assert meta["align_samples"] is None  # weight-based alignment uses no data


def test_reset_bn_after_fusion(ckpts, run_cli, digits):
    p0, p1 = ckpts / "bn0.pt", ckpts / "bn1.pt"
    assert run_cli("fuse", p0, p1, "--out", ckpts / "plain.pt", "--quiet")[0] == 0
    assert (
        run_cli(
            "fuse", p0, p1, "--out", ckpts / "reset.pt", "--reset-bn-samples", "300", "--quiet"
        )[0]
        == 0
    )
    plain, _ = load_checkpoint(ckpts / "plain.pt")
    reset, meta = load_checkpoint(ckpts / "reset.pt")
    assert meta["reset_bn_samples"] == 300
    expected = reset_bn(plain, subsample(digits.train, 300, 0), 100)
    assert torch.allclose(reset.features[1].running_var, expected.features[1].running_var)
    plain = load_checkpoint(ckpts / "plain.pt")[0]
    assert not torch.allclose(reset.features[1].running_var, plain.features[1].running_var)


def test_align_command(ckpts, run_cli, digits):
    a, b, out = ckpts / "a.pt", ckpts / "b.pt", ckpts / "al.pt"
    code, stdout, _ = run_cli("align", a, b, "--mode", "wts", "--out", out)
    assert code == 0 and "aligned to" in stdout
    aligned, meta = load_checkpoint(out)
    assert (
        meta["aligned_to"] == str(b)
        and meta["method"] == "align"
        and meta["parents"][0]["sha256"] == file_hash(a)
    )
    assert torch.allclose(aligned(digits.test.x), load_checkpoint(a)[0](digits.test.x), atol=1e-4)


@pytest.mark.parametrize(
    "args,message",
    [
        (["fuse", "a.pt", "c9.pt"], "different numbers of classes"),
        (["fuse", "a.pt", "deep.pt", "--mode", "wts"], "different depths"),
        (["align", "deep.pt", "a.pt"], "different depths"),
        (["fuse", "a.pt", "nan.pt"], "non-finite values"),
        (["fuse", "a.pt", "nan.pt", "--align", "vanilla"], "non-finite values"),
        (["fuse", "a.pt"], "at least two checkpoints"),
        (["fuse", "a.pt", "b.pt", "--weights", "1,2,3"], "3 weights for 2 models"),
        (["fuse", "a.pt", "b.pt", "--anchor", "5"], "out of range"),
        (["fuse", "a.pt", "b.pt", "--mode", "grads"], "Invalid value"),
        (["fuse", "a.pt", "missing.pt"], "file not found"),
    ],
)
def test_errors_are_one_line_with_exit_2(ckpts, run_cli, args, message):
    args = [str(ckpts / a) if a.endswith(".pt") else a for a in args]
    code, out, err = run_cli(*args, "--out", ckpts / "o.pt")
    assert code == 2 and out == ""
    assert err.startswith("error:") and len(err.strip().splitlines()) == 1 and message in err, err
    assert not (ckpts / "o.pt").exists()


def test_the_reference_mlpnet_as_written_wraps_fuses_and_is_measured(tmp_path, run_cli):
    """The OT-fusion reference code's MLPNet (extra forward argument with an `if`,
    `x.view(x.shape[0], -1)`, `F.log_softmax(x)`) and its `{"model_state_dict": ...}` files go
    through every command without an edit."""
    from landscape.training.loop import TrainConfig, train
    from tests.model_corpus import MlpNet, mlpnet_units, permute

    torch.manual_seed(3)
    digits = load_data("digits")
    b = train(
        MlpNet(), digits, TrainConfig(batch_size=32, lr=0.05, epochs=4)
    ).model  # log-probabilities: CE = NLL
    a = permute(b, mlpnet_units(b), seed=7)  # the same function, hidden units in another order
    x = digits.test.x[:16]
    assert torch.allclose(a(x), b(x), atol=1e-5)
    kwargs = json.dumps({"input_dim": 64, "width": [20, 16, 12], "num_classes": 10})
    for name, model in (("a", a), ("b", b)):
        torch.save(
            {"args": {"dataset": "digits"}, "model_state_dict": model.state_dict()},
            tmp_path / f"{name}.ckpt",
        )
        code, _, err = run_cli(
            "wrap",
            tmp_path / f"{name}.ckpt",
            "--arch",
            "tests.model_corpus:MlpNet",
            "--arch-kwargs",
            kwargs,
            "--out",
            tmp_path / f"{name}.pt",
        )
        assert code == 0, err
    for mode in ("acts", "wts"):
        code, out, err = run_cli(
            "fuse",
            tmp_path / "a.pt",
            tmp_path / "b.pt",
            "--mode",
            mode,
            "--strict",
            "--out",
            tmp_path / f"f_{mode}.pt",
            "--json",
        )
        assert code == 0, err
        fused = load_checkpoint(tmp_path / f"f_{mode}.pt")[0]
        # OT undoes the permutation: the fusion is B itself
        assert torch.allclose(fused(x), b(x), atol=1e-5)
    code, out, err = run_cli(
        "barrier",
        tmp_path / "a.pt",
        tmp_path / "b.pt",
        "--align",
        "both",
        "--points",
        "5",
        "--loss",
        "nll",
        "--samples",
        "200",
        "--json",
    )
    assert code == 0, err
    result = json.loads(out)
    assert (
        result["ot"]["barrier_train"] == pytest.approx(0, abs=1e-5)
        and result["none"]["barrier_train"] > 0.1
    )
    eig = {}
    for name in ("a", "b"):
        code, out, err = run_cli(
            "eig", tmp_path / f"{name}.pt", "--loss", "nll", "--samples", "300", "--json"
        )
        assert code == 0, err
        eig[name] = json.loads(out)["eigenvalues"][0]
    # permuted units: the same Hessian spectrum
    assert eig["a"] == pytest.approx(eig["b"], rel=1e-4)
    code, out, err = run_cli(
        "trace", tmp_path / "b.pt", "--loss", "nll", "--samples", "300", "--max-hvps", "12"
    )
    assert code == 0, err
    # ... and its files wrap into the zoo's mlp directly, computing the same function
    code, out, err = run_cli(
        "wrap",
        tmp_path / "b.ckpt",
        "--arch",
        "mlp",
        "--data",
        "digits",
        "--arch-kwargs",
        '{"hidden": [20, 16, 12], "bias": false}',
        "--out",
        tmp_path / "zoo.pt",
    )
    assert code == 0 and "matched by order" in out, err
    zoo = load_checkpoint(tmp_path / "zoo.pt")[0]
    assert torch.allclose(torch.log_softmax(zoo(x), 1), b(x), atol=1e-5)


def test_frozen_units_warn_in_one_line_and_strict_stops(tmp_path, run_cli):
    from tests.model_corpus import ChannelFlip, randomize

    g = np.random.default_rng(0)
    np.savez(
        tmp_path / "rgb.npz",
        x_train=g.random((60, 3, 8, 8), dtype=np.float32),
        y_train=np.arange(60) % 10,
    )
    for name, seed in (("a", 0), ("b", 1)):
        torch.save(randomize(ChannelFlip(), seed).state_dict(), tmp_path / f"{name}.sd")
        assert (
            run_cli(
                "wrap",
                tmp_path / f"{name}.sd",
                "--arch",
                "tests.model_corpus:ChannelFlip",
                "--out",
                tmp_path / f"{name}.pt",
            )[0]
            == 0
        )
    data = ["--data", tmp_path / "rgb.npz", "--samples", "20"]
    code, _, err = run_cli(
        "fuse", tmp_path / "a.pt", tmp_path / "b.pt", *data, "--out", tmp_path / "f.pt"
    )
    lines = err.strip().splitlines()
    assert code == 0 and lines and all(line.startswith("warning: ") for line in lines), err
    assert "flip" in err and len(lines) == 1
    assert load_checkpoint(tmp_path / "f.pt")[1]["warnings"] == [lines[0][len("warning: ") :]]
    code, _out, err = run_cli(
        "fuse", tmp_path / "a.pt", tmp_path / "b.pt", *data, "--out", tmp_path / "g.pt", "--strict"
    )
    assert (
        code == 2 and err.startswith("error: strict fusion") and len(err.strip().splitlines()) == 1
    ), err
    assert not (tmp_path / "g.pt").exists()
