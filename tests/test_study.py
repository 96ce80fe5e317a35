"""The study pipeline: end to end on a tiny config (per-pair fine-tuning, same- and different-init
mixed pairs), resume after a kill, caching, replicates aggregated in the report, the seed study's
values beside ours, the dry run, and progress lines in logs."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import FrozenInstanceError, replace
from pathlib import Path

import h5py
import pytest

import fusion
from landscape.data.datasets import data_shape
from landscape.errors import LandscapeError
from landscape.io.store import content_key
from landscape.study import execute, presets
from landscape.study.config import load_config
from landscape.study.execute import StudyRunner, todo
from landscape.study.plan import plan_study
from landscape.study.published import find, seed_tables
from landscape.study.report import write_report

ROOT = Path(__file__).resolve().parent.parent
TINY = """
[study]
name = "tiny"
arch = "mlp"
arch_kwargs = {{ hidden = [16] }}
data = "digits"

[train]
batch_sizes = [32, 128]
lrs = [0.05, 0.1]
epochs = 3

[pairs]
same_init = [[1, 1], [1, 2]]
diff_init = [[1, 1], [2, 1]]
mixed = [{{ a = [32, 2, 1], b = [128, 1, 1] }}, {{ a = [32, 1, 1], b = [128, 1, 1] }}]

[fusion]
align_samples = 100

[finetune]
epochs = 1
runs = [
  {{ batches = [32, 32], models = ["vanilla", "ot"], batch_size = 32, lr = 0.01, momentum = 0.95 }},
  {{ batches = [32, 128], models = ["ot"], batch_size = 128, lr = 0.05 }},
  {{ batches = [32, 128], models = ["ot"], batch_size = 64 }},
]

[measure]
samples = 128
trace_hvps = {hvps}
esd_steps = 8
barrier_points = 5
barrier_samples = 200
contours = true
contour_steps = 4
"""


def _config(tmp_path: Path, hvps: int = 20, extra: str = ""):
    path = tmp_path / f"tiny{hvps}.toml"
    path.write_text(TINY.format(hvps=hvps) + extra)
    return load_config(path)


def _plan(cfg, workdir: Path):
    return plan_study(cfg, workdir, data_shape(cfg.data))


def _values(store: Path) -> dict:
    out = {}
    with h5py.File(store, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tolist()
            for k, v in obj.attrs.items():
                volatile = (
                    k in ("written_at", "sha256", "checkpoint")
                    or k.startswith("version_")
                    or "seconds" in k
                )
                if not volatile:
                    out[f"{name}@{k}"] = v.tolist() if hasattr(v, "tolist") else v

        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    planned = _plan(_config(tmp), tmp / "work")
    StudyRunner(planned, fusion).run()
    return planned


@pytest.fixture(scope="module")
def report(finished, tmp_path_factory):
    out = tmp_path_factory.mktemp("report")
    return write_report(finished.store, out)


def test_tiny_study_end_to_end(finished, report):
    text = report.read_text()
    for needle in (
        "Table 1. LMC barrier",
        "OTFusion",
        "A aligned to B",
        "Pred. avg",
        "OTFusion FT",
        "Vanilla avg FT",
        "mixed batch sizes",
        "Same initialisation for A and B, trained with different batch sizes",
        "## What the numbers say",
        "## Settings",
        "Source: `/barriers/",
    ):
        assert needle in text, needle
    for figure in (
        "barrier_vs_batch_size",
        "sharpness_vs_batch_size",
        "interpolation_bs32",
        "interpolation_bs128",
        "interpolation_bs32-bs128",
        "esd_vanilla",
        "esd_ot",
        "esd_ot_mixed",
        "contours",
    ):
        for fmt in ("png", "pdf"):
            assert (report.parent / f"{figure}.{fmt}").stat().st_size > 0
        assert f"({figure}.png)" in text and f"({figure}.pdf)" in text
    assert text.count("*Figure ") == 9
    with h5py.File(finished.store, "r") as f:
        models = set(f["models"])
        # Table 6-style fine-tuning: per pair and model, two batch sizes for one mixed pair, none
        # for diff-bs128
        assert {
            "diff-bs32.vanilla-ft32",
            "diff-bs32.ot-ft32",
            "diff-bs32-bs128.ot-ft128",
            "diff-bs32-bs128.ot-ft64",
        } <= models
        assert not any(m.startswith("diff-bs128.") and "-ft" in m for m in models)
        assert not any(m.startswith("same-") and "-ft" in m for m in models)
        # mixed pairs with the same and with different initialisation, each with barriers pre and
        # post
        assert f["study/pairs/same-bs32-bs128"].attrs["init"].decode() == "same"
        assert f["study/pairs/diff-bs32-bs128"].attrs["init"].decode() == "diff"
        assert {"none", "ot"} <= set(f["barriers/bs32-i1-d1~bs128-i1-d1"])
        assert "models/same-bs32.ot/eigenvalues" in f and "models/diff-bs128.vanilla/esd" in f
        assert f["surfaces/diff-bs32/plane/loss"].shape == (4, 4) and "surfaces/same-bs32" not in f
        tuned = json.loads(f["study/pairs/diff-bs32-bs128"].attrs["finetuned"])
        assert [(t["settings"]["batch_size"], t["settings"]["lr"]) for t in tuned] == [
            (128, 0.05),
            (64, 0.1),
        ]


def test_killed_study_resumes_with_same_numbers(finished, tmp_path, monkeypatch):
    original = StudyRunner.execute
    calls = {"n": 0}

    def dying(self, task):
        calls["n"] += 1
        if calls["n"] > 12:
            raise KeyboardInterrupt("killed")
        return original(self, task)

    cfg = _config(tmp_path)
    monkeypatch.setattr(StudyRunner, "execute", dying)
    with pytest.raises(KeyboardInterrupt):
        StudyRunner(_plan(cfg, tmp_path / "work"), fusion).run()
    monkeypatch.setattr(StudyRunner, "execute", original)
    resumed = _plan(cfg, tmp_path / "work")
    StudyRunner(resumed, fusion).run()
    assert _values(resumed.store) == _values(finished.store)


def test_finished_study_reruns_nothing(finished, tmp_path, monkeypatch):
    """Over a finished workdir every task is done: the run only rewrites the description."""

    def refuse(self, task):
        raise AssertionError(f"{task.name} ran again")

    shutil.copytree(finished.workdir, tmp_path / "work")
    monkeypatch.setattr(StudyRunner, "execute", refuse)
    planned = _plan(_config(tmp_path), tmp_path / "work")
    assert all(not left for _, _, left in todo(planned))
    StudyRunner(planned, fusion).run()
    assert _values(planned.store) == _values(finished.store)


def test_quick_plan_keeps_the_cache_keys():
    """The keys (hashes of every setting a job depends on) of the quick preset's jobs are those of
    the planner before the settings were typed: a workdir filled by it is reused, nothing reruns.
    The listed keys were computed by that planner."""
    cfg = load_config(presets.path("quick"))
    planned = _plan(cfg, Path("runs/quick"))
    tasks = [t for _, stage in planned.stages for t in stage]
    keys = {t.name: t.key for t in tasks}
    assert {
        "train bs32-i42-d42": "669a4abb43086e9d",
        "ot diff-bs512": "a434f1076f06b677",
        "fine-tune diff-bs32-bs512-r3.ot-ft128": "f22cbca119bbcecf",
        "esd diff-bs32.vanilla": "e063e111a8209e08",
        "eigenvalues diff-bs128.ot-ft128": "b232c083ef28fbf7",
        "contour diff-bs32": "c4532a80f7fd3a9a",
        "ensemble diff-bs512-r1": "fbc86ed54cd4b3ba",
        "barrier ot same-bs32-bs512-r2": "20d712cac8a27032",
    }.items() <= keys.items()
    every = sorted((t.checkpoint.name if t.checkpoint else t.group, t.key) for t in tasks)
    assert len(every) == 959 and content_key(every) == "d8fffdfb5382e932"
    assert content_key(cfg.record()) == "64c360482c3b280e"  # the stored config's key


def test_config_is_typed_and_frozen(tmp_path):
    cfg = _config(tmp_path)
    assert cfg.measure.trace_hvps == 20 and cfg.fusion.align_samples == 100
    assert cfg.train.batch_sizes == (32, 128) and cfg.train.epochs == 3
    assert [r.settings.batch_size for r in cfg.finetune_runs] == [32, 128, 64]
    with pytest.raises(FrozenInstanceError):
        cfg.replicates = 2
    pair = next(p for p in cfg.pairs if p.name == "diff-bs32-bs128")
    # [train] epochs, then [finetune] epochs; batch 64 with B's training lr (lr_factor 1)
    tuned = cfg.finetunes(pair, "ot", replicate=2)
    assert [(t.batch_size, t.lr, t.epochs, t.data_seed) for t in tuned] == [
        (128, 0.05, 1, 2000),
        (64, 0.1, 1, 2000),
    ]


def _no_training(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was trained or fused again")

    monkeypatch.setattr(execute, "train", refuse)
    monkeypatch.setattr(fusion, "fuse", refuse)


def test_changed_measurement_setting_does_not_retrain(finished, tmp_path, monkeypatch):
    _no_training(monkeypatch)
    shutil.copytree(finished.workdir, tmp_path / "work")
    before = _values(finished.store)
    planned = _plan(_config(tmp_path, hvps=24), tmp_path / "work")
    StudyRunner(planned, fusion).run()
    after = _values(planned.store)
    assert after["models/bs32-i1-d1/trace@trace_hvps"] == 24
    assert (
        after["models/bs32-i1-d1/eigenvalues/eigenvalues"]
        == before["models/bs32-i1-d1/eigenvalues/eigenvalues"]
    )


def test_report_reads_the_store(finished, tmp_path):
    store = tmp_path / "copy.h5"
    store.write_bytes(finished.store.read_bytes())
    with h5py.File(store, "a") as f:
        f["models/same-bs32.ot/metrics"].attrs["test_acc"] = 0.123456
        f["barriers/bs32-i1-d1~bs32-i1-d2/none"].attrs["barrier_train"] = 9.8765
    text = write_report(store, tmp_path / "r", formats=()).read_text()
    assert "12.35" in text and "9.8765" in text


def test_replicates_are_aggregated(finished, tmp_path):
    """A second replicate shifts every seed by 1000 and reuses replicate 0; the report shows mean ±
    sd over the replicates, so values edited in the store show up in both."""
    shutil.copytree(finished.workdir, tmp_path / "work")
    planned = _plan(replace(_config(tmp_path), replicates=2), tmp_path / "work")
    left = {stage: len(tasks) for stage, _, tasks in todo(planned)}
    assert left["train parents"] == 6 and left["fuse"] == 18  # replicate 1 only
    StudyRunner(planned, fusion).run()
    with h5py.File(planned.store, "a") as f:
        assert f["study/pairs/diff-bs32-r1"].attrs["seeds_b"].tolist() == [1002, 1001]
        assert f["study/pairs/diff-bs32-r1"].attrs["a"].decode() == "bs32-i1001-d1001"
        f["models/diff-bs32.ot/metrics"].attrs["test_acc"] = 0.5
        f["models/diff-bs32-r1.ot/metrics"].attrs["test_acc"] = 0.7
        f["barriers/bs128-i1-d1~bs128-i2-d1/ot"].attrs["barrier_train"] = 1.0
        f["barriers/bs128-i1001-d1001~bs128-i1002-d1001/ot"].attrs["barrier_train"] = 3.0
    text = write_report(planned.store, tmp_path / "r", formats=()).read_text()
    assert "| OTFusion | 60.00 ± 14.14 |" in text  # mean and sample standard deviation of 50 and 70
    assert "| 128 | different | 2 | " in text and "| 2.0000 ± 1.4142 |" in text
    assert "standard deviation over the 2 replicates" in text


def test_seed_column_shows_the_published_values(finished, tmp_path):
    """With `compare`, tables are numbered and captioned as in the seed study, with its values
    beside ours (typed here from the paper: Tables 1, 2 and 3 of Cabodi et al.)."""
    store = tmp_path / "copy.h5"
    store.write_bytes(finished.store.read_bytes())
    with h5py.File(store, "a") as f:
        f["study/config"].attrs["compare"] = "resnet18/cifar10"
    text = write_report(store, tmp_path / "r", formats=()).read_text()
    assert "### Table 1. LMC barrier pre / post alignment (ResNet-18, CIFAR-10)." in text
    assert (
        "### Table 3. Different initialization for A and B, trained with corresponding batch size"
        in text
    )
    assert "### Table 10. Same initialization for A and B, trained with mixed batch sizes" in text
    lines = text.splitlines()
    row = next(line for line in lines if line.startswith("| 32 | same |"))
    assert "| 1.3797 |" in row and "| 0.4601 |" in row  # Table 1, batch 32, same init
    row = next(line for line in lines if line.startswith("| 128 | different |"))
    assert "| 2.2544 |" in row and "| 0.6213 |" in row  # Table 1, batch 128, different init
    assert any("| Model B |" in line and "| 91.24 |" in line for line in lines)  # Table 2
    assert any(
        "| Vanilla avg FT |" in line and "| 92.00 |" in line and "| 54.09 |" in line
        for line in lines
    )
    assert any(
        "| OTFusion FT |" in line and "| 92.30 |" in line and "| 3.03 |" in line for line in lines
    )


def test_published_values():
    tables = seed_tables("resnet18/cifar10")
    assert [t.number for t in tables] == [1, 2, 3, 4, 7, 10]
    t4 = find(tables, "model", "mixed", "diff")
    assert t4.number == 4
    assert t4.model(32, 512, "OTFusion FT", "test_acc", 256) == "92.23"
    assert t4.model(32, 512, "OTFusion FT", "trace", 512) == "43.94"
    assert find(tables, "barrier", "mixed").barrier(512, 32, "same", "post") == "0.7337"
    assert [t.number for t in seed_tables("vgg11/cifar10")] == [9, 13, 14]
    assert (
        find(seed_tables("resnet18/mnist"), "model", "corresponding", "diff").model(
            32, 32, "Model A", "top_eig"
        )
        == "0.13"
    )


@pytest.mark.parametrize(
    "old, new, words",
    [
        (
            'data = "digits"',
            'data = "digits"\ncompare = "resnet50/imagenet"',
            "compare must be one of",
        ),
        ("batch_size = 64", "batch_size = 128", "same batch size"),
        ("mixed = [", "mixed = [{ a = [32, 1], b = [128, 1, 1] }, ", "a parent is"),
        ("same_init = [[1, 1], [1, 2]]", "same_init = [[1, 1], [2, 2]]", "equal init seeds"),
        (
            'models = ["ot"], batch_size = 64',
            'models = ["ot"], lr = 1, lr_factor = 2',
            "both lr and lr_factor",
        ),
        (
            'models = ["ot"], batch_size = 64',
            'models = ["ot"], batch_size = "64"',
            r"\[finetune.runs 3\] batch_size must be an integer",
        ),
        ("mixed = [", "mixed = [[32, 128], ", r"\[pairs\] mixed must be a list of tables"),
        (
            'data = "digits"',
            'data = "digits"\nreplicates = 2.5',
            r"\[study\] replicates must be an integer",
        ),
        (
            "runs = [",
            'init = ["same"]\nruns = [',
            "contour_kind = plane needs a fine-tuned OT fusion",
        ),
    ],
)
def test_config_errors(tmp_path, old, new, words):
    text = TINY.format(hvps=20)
    assert old in text
    path = tmp_path / "bad.toml"
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(LandscapeError, match=words):
        load_config(path)


def _cli(args: list[str], tmp_path: Path, stderr_file: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    with stderr_file.open("w") as err:
        return subprocess.run(
            [sys.executable, "-m", "cli.main", *args],
            cwd=tmp_path,
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            timeout=240,
            check=False,
        )


def test_progress_lines_in_a_log_and_quiet(finished, tmp_path):
    """stderr redirected to a file: one line per stage (and every few seconds); --quiet writes
    none."""
    (tmp_path / "tiny.toml").write_text(TINY.format(hvps=24))
    shutil.copytree(finished.workdir, tmp_path / "loud")
    shutil.copytree(finished.workdir, tmp_path / "quiet")
    loud = _cli(
        ["study", "tiny.toml", "--workdir", "loud", "--format", "png"],
        tmp_path,
        tmp_path / "loud.log",
    )
    assert loud.returncode == 0, (tmp_path / "loud.log").read_text()
    log = (tmp_path / "loud.log").read_text().splitlines()
    assert "progress: study 1/4 train parents: 0/0 done in 0:00" in log
    measure = [line for line in log if line.startswith("progress: study 4/4 measure: ")]
    # every curvature group of every model: a new trace budget changes the one suite run that gives
    # all three
    assert measure[-1].startswith("progress: study 4/4 measure: 68/68 done in ")
    quiet = _cli(
        ["study", "tiny.toml", "--workdir", "quiet", "--format", "png", "--quiet"],
        tmp_path,
        tmp_path / "quiet.log",
    )
    assert quiet.returncode == 0
    assert (tmp_path / "quiet.log").read_text() == ""


def test_dry_run_lists_jobs_and_writes_nothing(finished, tmp_path):
    (tmp_path / "tiny.toml").write_text(TINY.format(hvps=20))
    fresh = _cli(
        ["study", "tiny.toml", "--workdir", "w", "--dry-run", "--json", "--calibrate"],
        tmp_path,
        tmp_path / "err.log",
    )
    assert fresh.returncode == 0, (tmp_path / "err.log").read_text()
    plan = json.loads(fresh.stdout)
    stages = {s["stage"]: s for s in plan["stages"]}
    assert stages["train parents"]["todo"] == 6 and stages["fine-tune"]["jobs"] == 4
    trained = {
        w["batch_size"]: w["examples"]
        for w in stages["train parents"]["work"]
        if w["unit"] == "train"
    }
    # 3 parents per batch size, 3 epochs of 1294 examples
    assert trained == {
        32: 3 * 3 * 1294,
        128: 3 * 3 * 1294,
    }
    assert all(s["seconds"] > 0 for s in plan["stages"])
    assert not (tmp_path / "w").exists()
    shutil.copytree(finished.workdir, tmp_path / "done")
    cached = _cli(
        ["study", "tiny.toml", "--workdir", "done", "--dry-run"], tmp_path, tmp_path / "err.log"
    )
    assert "train parents: 6 jobs, 0 to do: nothing" in cached.stdout
    assert "[done] train bs32-i1-d1" in cached.stdout


def test_curvature_records_where_it_was_measured(finished, tmp_path):
    """Every curvature result carries the loss, accuracy and gradient norm at the measured point;
    the report shows ||∇L||/||θ|| per model and marks curvature taken far from a stationary point;
    parents record which weights training kept."""
    store = tmp_path / "copy.h5"
    store.write_bytes(finished.store.read_bytes())
    with h5py.File(store, "a") as f:
        for what in ("eigenvalues", "trace"):
            attrs = f[f"models/diff-bs32.vanilla/{what}"].attrs
            assert {"point_loss", "point_acc", "point_grad_norm", "point_weight_norm"} <= set(attrs)
            assert (
                attrs["point_rel_grad_norm"]
                == attrs["point_grad_norm"] / attrs["point_weight_norm"]
            )
        assert f["study/models/bs32-i1-d1"].attrs["keep"].decode() == "last"
        f["models/diff-bs32.vanilla/trace"].attrs["point_rel_grad_norm"] = 0.25
        f["models/diff-bs32.ot/trace"].attrs["point_rel_grad_norm"] = 0.0125
    text = write_report(store, tmp_path / "r", formats=()).read_text()
    table = text[
        text.index("Different initialisation for A and B, trained with the same batch size") :
    ]
    vanilla = next(line for line in table.splitlines() if line.startswith("|  |  | Vanilla avg |"))
    ot = next(line for line in table.splitlines() if line.startswith("|  |  | OTFusion |"))
    # top λ, trace and the ratio
    assert vanilla.endswith("| 0.250 †1/1 |") and vanilla.count("†") == 3
    assert ot.endswith("| 0.013 |") and "†" not in ot
    assert "‖∇L‖/‖θ‖" in table and "kept weights: the last epoch's" in text
