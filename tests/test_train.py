"""Training: determinism, seeds that matter, accuracy on digits, and the train/eval/finetune
commands."""

import json

import torch

from landscape.io.checkpoint import file_hash, load_checkpoint
from tests.conftest import train_mlp


def _flat(model):
    return torch.cat([p.detach().flatten() for p in model.state_dict().values()])


def test_same_seeds_give_bitwise_identical_weights(digits):
    a, b = train_mlp(digits, 7, 8, epochs=2), train_mlp(digits, 7, 8, epochs=2)
    assert torch.equal(_flat(a), _flat(b))
    assert not torch.equal(_flat(a), _flat(train_mlp(digits, 7, 9, epochs=2)))  # data order matters
    assert not torch.equal(_flat(a), _flat(train_mlp(digits, 6, 8, epochs=2)))  # init matters


def test_trained_mlp_reaches_90_percent(mlp_pair, digits):
    from landscape.training.metrics import evaluate

    for model in mlp_pair:
        assert evaluate(model, digits.test).acc >= 0.90


def test_train_eval_finetune_commands(tmp_path, run_cli):
    a, b, f = tmp_path / "a.pt", tmp_path / "b.pt", tmp_path / "f.pt"
    code, out, _ = run_cli(
        "train",
        "--hidden",
        "32",
        "--epochs",
        "4",
        "--batch-size",
        "64",
        "--lr",
        "0.1",
        "--schedule",
        "step",
        "--step-size",
        "2",
        "--init-seed",
        "1",
        "--data-seed",
        "2",
        "--out",
        a,
        "--json",
    )
    assert code == 0
    summary = json.loads(out)
    _, meta = load_checkpoint(a)
    assert meta["init_seed"] == 1 and meta["data_seed"] == 2 and meta["batch_size"] == 64
    assert meta["schedule"] == "step" and len(meta["history"]["val_acc"]) == 4
    assert meta["test_acc"] == summary["test_acc"]
    assert meta["best_val_acc"] == max(meta["history"]["val_acc"])
    assert (
        run_cli(
            "train", "--hidden", "32", "--epochs", "2", "--init-seed", "3", "--out", b, "--quiet"
        )[0]
        == 0
    )
    code, out, _ = run_cli("eval", a, b, "--json")
    result = json.loads(out)
    rows = result["models"]
    assert (
        code == 0
        and [r["path"] for r in rows] == [str(a), str(b)]
        and result["ensemble"]["test"]["n"] == 359
    )
    assert (
        rows[0]["sha256"] == file_hash(a) and abs(rows[0]["test"]["acc"] - meta["test_acc"]) < 1e-12
    )
    code, out, _ = run_cli(
        "finetune",
        a,
        "--epochs",
        "2",
        "--lr",
        "0.01",
        "--schedule",
        "plateau",
        "--patience",
        "1",
        "--out",
        f,
        "--json",
    )
    assert code == 0
    _, fmeta = load_checkpoint(f)
    assert fmeta["finetuned_from"] == str(a) and fmeta["lr"] == 0.01


def test_early_stopping_stops(tmp_path, run_cli):
    out = tmp_path / "e.pt"
    assert (
        run_cli(
            "train",
            "--hidden",
            "8",
            "--epochs",
            "30",
            "--lr",
            "1e-9",
            "--patience",
            "2",
            "--out",
            out,
            "--quiet",
        )[0]
        == 0
    )
    _, meta = load_checkpoint(out)
    assert meta["epochs_run"] < 30


def test_early_stopping_waits_for_min_epochs(tmp_path, run_cli):
    """The seed study's epoch bounds: with weights that never change, patience 2 would stop after 3
    epochs; --min-epochs 6 keeps it going to 6. --monitor names what early stopping and the plateau
    schedule watch."""
    out = tmp_path / "m.pt"
    assert (
        run_cli(
            "train",
            "--hidden",
            "8",
            "--epochs",
            "30",
            "--lr",
            "1e-9",
            "--patience",
            "2",
            "--min-epochs",
            "6",
            "--monitor",
            "val_loss",
            "--schedule",
            "plateau",
            "--out",
            out,
            "--quiet",
        )[0]
        == 0
    )
    _, meta = load_checkpoint(out)
    assert meta["epochs_run"] == 6 and meta["monitor"] == "val_loss" and meta["min_epochs"] == 6
    code, _, err = run_cli(
        "train", "--epochs", "1", "--monitor", "val_f1", "--out", tmp_path / "x.pt"
    )
    assert code == 2 and "val_f1" in err


def test_keep_last_or_best_weights(digits):
    """Without a schedule, the weights after epoch e do not depend on how many epochs follow: the
    best epoch's weights of a 5-epoch run are those of a run stopped at that epoch, and
    `keep="last"` (the default) returns the weights of epoch 5 whatever the validation accuracy
    did."""
    from landscape.models.zoo import arch_kwargs_for
    from landscape.training.loop import TrainConfig, init_model, train, train_meta

    kwargs = arch_kwargs_for("mlp", digits.input_shape, digits.num_classes, hidden=[16])

    def run(epochs, keep=None):
        cfg = TrainConfig(
            batch_size=256,
            lr=0.5,
            epochs=epochs,
            schedule="none",
            data_seed=3,
            **({"keep": keep} if keep else {}),
        )
        return cfg, train(init_model("mlp", kwargs, 5), digits, cfg)

    cfg, last = run(5)
    _, best = run(5, "best")
    meta = train_meta(cfg, last, digits)
    accs = last.history["val_acc"]
    assert (
        cfg.keep == "last"
        and last.kept_epoch == 5
        and meta["kept_epoch"] == 5
        and meta["keep"] == "last"
    )
    # counted from 1
    assert last.best_epoch == best.best_epoch == best.kept_epoch == accs.index(max(accs)) + 1
    assert meta["kept_val_acc"] == accs[4] and meta["best_val_acc"] == max(accs)
    stopped = run(best.best_epoch)[1]
    assert torch.equal(_flat(best.model), _flat(stopped.model))
    assert torch.equal(_flat(last.model), _flat(run(5, "last")[1].model))
    # validation fell after it
    assert best.best_epoch < 5 and not torch.equal(_flat(last.model), _flat(best.model))


def test_train_prints_the_epochs_meta_records(tmp_path, run_cli):
    """One epoch numbering: the printout names the kept and best epochs as meta records them."""
    out = tmp_path / "k.pt"
    code, text, _ = run_cli(
        "train", "--hidden", "16", "--epochs", "3", "--keep", "best", "--out", out
    )
    _, meta = load_checkpoint(out)
    assert code == 0 and meta["keep"] == "best" and meta["kept_epoch"] == meta["best_epoch"] >= 1
    assert (
        f"kept epoch {meta['kept_epoch']} of 3 (best)" in text
        and f"at epoch {meta['best_epoch']})" in text
    )
    code, _, err = run_cli("train", "--epochs", "1", "--keep", "first", "--out", tmp_path / "x.pt")
    assert code == 2 and "first" in err and not (tmp_path / "x.pt").exists()


def test_threads_are_set_and_recorded(tmp_path, run_cli, monkeypatch):
    """`landscape --threads N` (or LANDSCAPE_THREADS) sets torch's threads, and checkpoints and
    stored results record the count; a count below 1 is refused."""
    from landscape.io.store import read_result

    before = torch.get_num_threads()
    try:
        ckpt = tmp_path / "t.pt"
        assert (
            run_cli(
                "--threads",
                "1",
                "train",
                "--hidden",
                "8",
                "--epochs",
                "1",
                "--out",
                ckpt,
                "--quiet",
            )[0]
            == 0
        )
        assert torch.get_num_threads() == 1 and load_checkpoint(ckpt)[1]["threads"] == 1
        torch.set_num_threads(2)
        monkeypatch.setenv("LANDSCAPE_THREADS", "1")
        code, _, err = run_cli("eval", ckpt, "--out", tmp_path / "r.h5", "--quiet")
        assert code == 0, err
        assert (
            torch.get_num_threads() == 1
            and read_result(tmp_path / "r.h5", "/models/t/metrics")[1]["threads"] == 1
        )
        monkeypatch.setenv("LANDSCAPE_THREADS", "two")
        code, _, err = run_cli("eval", ckpt)
        assert (
            code == 2 and err == "error: LANDSCAPE_THREADS must be a positive integer, got 'two'\n"
        )
        monkeypatch.delenv("LANDSCAPE_THREADS")
        code, _, err = run_cli("--threads", "0", "eval", ckpt)
        assert code == 2 and "at least 1" in err
    finally:
        torch.set_num_threads(before)
