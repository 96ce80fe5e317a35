"""The OT-fusion paper's experiments as study kinds: typed settings, the pure plan, each kind end to
end on tiny settings (checked against values that follow exactly from the definitions), the report,
and the published values' transcription."""

import json
from pathlib import Path

import pytest

from landscape.errors import LandscapeError
from landscape.io.store import open_store
from landscape.study import presets
from landscape.study.otfusion.config import load_ot_config
from landscape.study.otfusion.plan import plan
from landscape.study.otfusion.published import published
from landscape.study.settings import from_table

TINY = """
[study]
name = "tiny"
experiments = ["skill-transfer", "widths", "ensemble", "ablation"]
arch = "mlp"
arch_kwargs = { hidden = [16, 8] }
data = "digits"

[train]
epochs = 2
batch_size = 64
lr = 0.1
schedule = "none"

[skill-transfer]
proportions = [0.0, 1.0]
inits = ["diff"]
align_samples = 50
compare = "mnist-mlpnet"

[widths]
layers = ["features.0"]
fractions = [0.0, 0.5]

[ensemble]
models = [2]
finetune_epochs = 1
align_samples = 50

[ablation]
samples = [20]
solvers = ["emd"]
modes = ["acts", "wts"]
epochs = [1, 2]
epoch_samples = 20
compare = "mnist-mlpnet"
"""


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "study.toml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "old, new, message",
    [
        ("epochs = 2", 'epochs = "two"', "[train] epochs must be an integer, got 'two'"),
        (
            "proportions = [0.0, 1.0]",
            'proportions = [0.0, "x"]',
            "[skill-transfer] proportions must be a list of numbers",
        ),
        (
            'inits = ["diff"]',
            'inits = ["other"]',
            "[skill-transfer] inits must be a list of (one of diff, same)",
        ),
        ("models = [2]", "models = 2", "[ensemble] models must be a list of integers, got 2"),
        ('modes = ["acts", "wts"]', 'modes = ["acts", true]', "[ablation] modes must be a list of"),
        (
            'layers = ["features.0"]',
            'layers = ["features.0"]\nweight = true',
            "[widths] weight must be a number, got True",
        ),
        ("samples = [20]", "samples = [20]\nm = 3", "[ablation] unknown setting 'm'"),
        ('name = "tiny"\n', "", "[study] missing setting 'name'"),
        (
            'compare = "mnist-mlpnet"\n\n[widths]',
            'compare = "mnist"\n\n[widths]',
            "compare must be one of mnist-mlpnet",
        ),
        ("share = 0.1", "", None),
        ("epochs = [1, 2]", "epochs = [2, 1]", "[ablation] epochs must be increasing"),
        ("epochs = [1, 2]", "epochs = [0, 2]", "[ablation] epochs must be positive"),
        ("epochs = [1, 2]", 'epochs = [1, 2]\nmethods = ["ot", "git"]', "[ablation] methods"),
        (
            'schedule = "none"',
            'schedule = "none"\npatience = 3',
            "[ablation] epochs need [train] patience 0",
        ),
    ],
)
def test_each_bad_setting_is_one_error_naming_it(tmp_path, old, new, message):
    text = TINY.replace(old, new, 1)
    if message is None:  # the replacement did not apply: defaults fill in
        assert load_ot_config(_write(tmp_path, text)).skill_transfer.share == 0.1
        return
    with pytest.raises(LandscapeError) as info:
        load_ot_config(_write(tmp_path, text))
    assert message in str(info.value) and "\n" not in str(info.value)


def test_typed_settings_convert_and_keep_defaults():
    from landscape.study.otfusion.config import Ensemble

    e = from_table(Ensemble, {"models": [2, 3], "finetune_lr": 1}, "f.toml", "ensemble")
    assert e.models == (2, 3) and e.finetune_lr == 1.0 and isinstance(e.finetune_lr, float)
    assert e.finetune_epochs == 0 and e.mode == "acts"
    with pytest.raises(LandscapeError, match=r"\[ensemble\] finetune_lr must be a number, got 'x'"):
        from_table(Ensemble, {"finetune_lr": "x"}, "f.toml", "ensemble")
    assert from_table(Ensemble, {"finetune_lr": None}, "f.toml", "ensemble").finetune_lr is None


def test_kinds_and_sections_must_agree(tmp_path):
    with pytest.raises(LandscapeError, match=r"\[widths\] is missing"):
        widths = '[widths]\nlayers = ["features.0"]\nfractions = [0.0, 0.5]\n'
        load_ot_config(_write(tmp_path, TINY.replace(widths, "")))
    with pytest.raises(LandscapeError, match="batch-size is a study of its own"):
        load_ot_config(
            _write(
                tmp_path,
                TINY.replace('experiments = ["skill', 'experiments = ["batch-size", "skill'),
            )
        )


def test_paper_presets_plan_without_their_data():
    """Planning reads no data: the MNIST/CIFAR presets size themselves with no folder on disk."""
    skill = plan(load_ot_config(presets.path("otfusion-skill-transfer")), "/nonexistent")
    trains = [t for t in skill.tasks if t.action == "train"]
    assert len(trains) == 3 * 5  # A, B (diff init), B (same init: A's init seed) per replicate
    assert sorted({t.params["init_seed"] for t in trains}) == [
        1,
        2,
        1001,
        1002,
        2001,
        2002,
        3001,
        3002,
        4001,
        4002,
    ]
    a = next(t for t in trains if t.params["selection"].plus_labels)
    assert a.cost[0] == ("train", 64, 10 * round(54000 * (9 * 0.1 + 1) / 10))
    widths = plan(load_ot_config(presets.path("otfusion-widths")), "/nonexistent")
    assert [t.group for t in widths.tasks if t.action == "widths"][-1] == "/widths/features.18-r0"
    for name in ("otfusion-ensemble", "otfusion-sinkhorn"):
        assert plan(load_ot_config(presets.path(name)), "/nonexistent").tasks


def test_shared_models_are_trained_once(tmp_path):
    p = plan(load_ot_config(_write(tmp_path, TINY)), tmp_path)
    trains = [t for t in p.tasks if t.action == "train"]
    # model 1 is the ensemble's first, the ablation's A and the widths' dense model; model 2 the
    # ensemble's second and the ablation's B; skill transfer's A and B train on their own examples
    assert len(trains) == 4 and len({t.key for t in trains}) == 4
    assert [t.stage for t in p.tasks] == sorted(
        (t.stage for t in p.tasks), key=["train", "fuse", "fine-tune", "measure"].index
    )


def test_epochs_save_snapshots_of_one_training_run(tmp_path):
    """Table S1's models are the ablation's pair saved along the way, or one longer run each when
    the listed epochs go past [train] epochs."""
    p = plan(load_ot_config(_write(tmp_path, TINY)), tmp_path)
    trains = [t for t in p.tasks if t.action == "train"]
    assert len(trains) == 4 and [[e for e, _ in t.snapshots] for t in trains].count([1, 2]) == 2
    longer = plan(
        load_ot_config(_write(tmp_path, TINY.replace("epochs = [1, 2]", "epochs = [1, 3]"))),
        tmp_path,
    )
    trains = [t for t in longer.tasks if t.action == "train"]
    saved = [t for t in trains if t.snapshots]
    assert len(trains) == 6 and len(saved) == 2
    assert all(t.params["train"]["epochs"] == 3 for t in saved)
    assert all([e for e, _ in t.snapshots] == [1, 3] for t in saved)
    assert {t.params["init_seed"] for t in saved} == {1, 2}


def test_a_training_run_is_done_only_with_all_its_snapshots(tmp_path):
    from landscape.study.otfusion.execute import todo

    p = plan(load_ot_config(_write(tmp_path, TINY)), tmp_path)
    task = next(t for t in p.tasks if t.snapshots)
    task.checkpoint.parent.mkdir(parents=True)
    task.checkpoint.touch()
    assert task in todo(p)[0][2]  # the trained model alone is not enough
    for _, path in task.snapshots:
        path.touch()
    assert task not in todo(p)[0][2]


def test_widths_layers_are_checked_when_planning(tmp_path):
    with pytest.raises(LandscapeError, match=r"no linear or convolution layer 'features\.1'"):
        plan(
            load_ot_config(_write(tmp_path, TINY.replace('"features.0"', '"features.1"'))), tmp_path
        )


@pytest.fixture(scope="module")
def tiny_study(tmp_path_factory):
    from cli.main import main

    tmp = tmp_path_factory.mktemp("otstudy")
    config = _write(tmp, TINY)
    try:
        main(["study", str(config), "--workdir", str(tmp / "run"), "--format", "png", "--quiet"])
    except SystemExit as exc:
        assert not exc.code
    return tmp


def _group(tmp: Path, group: str) -> tuple[dict, dict]:
    with open_store(tmp / "run" / "study.h5") as reader:
        return reader.arrays(group), reader.attrs(group)


def test_skill_transfer_ends_are_the_parents(tiny_study):
    """w_B = 0 is A and w_B = 1 is B, for vanilla and OT averaging and the prediction ensemble
    alike."""
    arrays, attrs = _group(tiny_study, "/skill-transfer/diff-r0")
    for method in ("vanilla", "ot", "ensemble"):
        assert arrays[f"{method}_acc"][0] == pytest.approx(attrs["a_acc"])
        assert arrays[f"{method}_acc"][1] == pytest.approx(attrs["b_acc"])
    assert attrs["b_special"] == 0  # B never saw label 4


def test_widths_prune_nothing_at_zero_and_count_the_parameters_removed(tiny_study):
    arrays, attrs = _group(tiny_study, "/widths/features.0-r0")
    assert arrays["pruned_acc"][0] == attrs["dense_acc"]
    total = 16 * 64 + 16 + 8 * 16 + 8 + 10 * 8 + 10
    assert arrays["sparsity"][1] == pytest.approx((8 * 64 + 8 + 8 * 8) / total)


def test_ensemble_and_ablation_results(tiny_study):
    arrays, attrs = _group(tiny_study, "/ensemble/k2-r0")
    assert len(arrays["individual_acc"]) == 2 and {
        "ot_acc",
        "vanilla_acc",
        "ot_ft_acc",
        "vanilla_ft_acc",
    } <= set(attrs)
    _, ablation = _group(tiny_study, "/ablation/r0")
    rows = json.loads(ablation["rows"])
    assert [(r["mode"], r["samples"]) for r in rows] == [("acts", 20), ("wts", None)]
    # exact OT between equal widths is a permutation: A aligned to B computes what A computes
    assert all(r["aligned_acc"] == pytest.approx(ablation["a_acc"]) for r in rows)
    assert ablation["a_acc"] == pytest.approx(arrays["individual_acc"][0])  # the same model 1


def test_report_sections_and_rerun_is_cached(tiny_study, run_cli):
    report = (tiny_study / "run" / "report" / "report.md").read_text()
    for heading in (
        "## Skill transfer (Sec. 5.1)",
        "## Different widths",
        "### K = 2",
        "## Ablations",
    ):
        assert heading in report
    assert "best OT average 93.11" in report and "| acts | emd | - | 20 |" in report
    assert (tiny_study / "run" / "report" / "skill_transfer.png").is_file()
    code, out, _ = run_cli(
        "study", tiny_study / "study.toml", "--workdir", tiny_study / "run", "--dry-run"
    )
    assert code == 0 and "total to do: nothing" in out
    code, out, _ = run_cli(
        "report",
        tiny_study / "run" / "study.h5",
        "--out-dir",
        tiny_study / "again",
        "--format",
        "png",
    )
    again = (tiny_study / "again" / "report.md").read_text()
    assert code == 0 and again == report.replace("../study.h5", "../run/study.h5")


def test_published_values_spot_checks():
    vgg = {r["k"]: r for r in published("ensemble", "cifar10-vgg11")["rows"]}
    assert vgg[4]["individual"] == ["90.31", "90.50", "90.43", "90.51"]
    assert (
        vgg[4]["ensemble"],
        vgg[4]["vanilla"],
        vgg[4]["ot"],
        vgg[4]["vanilla_ft"],
        vgg[4]["ot_ft"],
    ) == ("91.77", "10.00", "73.31", "12.40", "90.91")
    assert (vgg[2]["vanilla"], vgg[2]["ot"], vgg[2]["ot_ft"]) == ("17.02", "85.98", "90.73")
    resnet = published("ensemble", "cifar10-resnet18")["rows"][0]
    assert (resnet["individual"], resnet["ensemble"], resnet["ot"], resnet["ot_ft"]) == (
        ["93.11", "93.20"],
        "93.89",
        "77.00",
        "93.78",
    )
    c100 = {r["k"]: r for r in published("ensemble", "cifar100-vgg11")["rows"]}
    assert (c100[4]["ot_ft"], c100[6]["ot_ft"], c100[8]["ot_ft"], c100[4]["vanilla_ft"]) == (
        "64.29 ± 0.26",
        "64.55 ± 0.30",
        "65.05 ± 0.53",
        "4.02",
    )
    skill = published("skill-transfer", "mnist-mlpnet")
    assert (skill["a_acc"], skill["b_acc"], skill["ot_best"]) == ("89.78", "87.35", "93.11")
    rows = published("ablation", "mnist-mlpnet")["rows"]
    s3 = next(r for r in rows if r["reg"] == 0.1 and r.get("samples") == 10)
    assert (s3["ot_acc"], s3["aligned_acc"]) == ("72.86 ± 11.93", "74.35 ± 14.40")
    exact = [r for r in rows if r["solver"] == "emd"]
    assert [(r["mode"], r["ot_acc"]) for r in exact] == [("acts", "96.21"), ("wts", "96.63")]
    conv7 = published("widths", "cifar10-vgg11")["rows"][1]
    assert (conv7["layer"], conv7["pruned_acc"], conv7["fused_acc"]) == ("CONV_7", "87.6", "90.1")
    with pytest.raises(LandscapeError, match="no published ensemble values"):
        published("ensemble", "imagenet")


def test_selection_reaches_the_trained_checkpoints(tiny_study):
    from landscape.io.checkpoint import load_checkpoint

    metas = [load_checkpoint(path)[1] for path in (tiny_study / "run" / "checkpoints").glob("*.pt")]
    selections = [m["selection"] for m in metas if "selection" in m]
    assert sorted(s["rest"] for s in selections) == [False, True]
    assert all(s["exclude_labels"] == [4] for s in selections)


def test_batch_size_planning_reads_no_data(tmp_path):
    """The batch-size study plans (and sizes) its jobs without its data on disk, as the OT-fusion
    kinds do."""
    import fusion
    from landscape.data.datasets import data_shape
    from landscape.study.config import load_config
    from landscape.study.execute import StudyRunner
    from landscape.study.plan import plan_study

    cfg = load_config(presets.path("mnist-resnet18"))
    planned = plan_study(cfg, tmp_path, data_shape(cfg.data))
    parent = dict(planned.stages)["train parents"][0]
    assert parent.cost[0][2] == 100 * 54000  # epochs x MNIST's training split
    with pytest.raises(LandscapeError, match="data directory not found"):
        StudyRunner(planned, fusion).run()  # the first job reads the data


def _pair(tmp: Path):
    """The planned study of the tiny fixture and its ablation's models 1 and 2 (keys)."""
    p = plan(load_ot_config(tmp / "study.toml"), tmp / "run")
    keys = [t.key for t in p.tasks if t.action == "train" and t.snapshots]
    return p, keys


def test_epoch_snapshots_are_a_fresh_training_stopped_there(tiny_study):
    """The checkpoint after epoch 1 of the 2-epoch run is a 1-epoch training from the same seeds
    (constant learning rate), the one after epoch 2 is the trained model; one table row per
    epoch."""
    import torch

    from landscape.data.datasets import load_data
    from landscape.io.checkpoint import load_checkpoint
    from landscape.study.otfusion.plan import snapshot_key
    from landscape.training.loop import TrainConfig, init_model, train

    p, keys = _pair(tiny_study)
    for key in keys:
        task = next(t for t in p.tasks if t.key == key)
        fresh = init_model("mlp", p.arch_kwargs, task.params["init_seed"])
        cfg = TrainConfig(**{**task.params["train"], "epochs": 1})
        fresh = train(fresh, load_data("digits"), cfg).model.state_dict()
        first = load_checkpoint(p.models[snapshot_key(key, 1)]["checkpoint"])[0].state_dict()
        last = load_checkpoint(p.models[snapshot_key(key, 2)]["checkpoint"])[0].state_dict()
        final = load_checkpoint(task.checkpoint)[0].state_dict()
        assert all(torch.equal(fresh[k], first[k]) for k in fresh)
        assert all(torch.equal(final[k], last[k]) for k in final)
        assert not torch.equal(first["features.0.weight"], last["features.0.weight"])
    arrays, _ = _group(tiny_study, "/ablation/epochs-r0")
    _, ablation = _group(tiny_study, "/ablation/r0")
    assert list(arrays["epochs"]) == [1, 2]
    assert arrays["a_acc"][1] == ablation["a_acc"] and arrays["b_acc"][1] == ablation["b_acc"]
    assert arrays["vanilla_acc"][1] == pytest.approx(ablation["vanilla_acc"])
    report = (tiny_study / "run" / "report" / "report.md").read_text()
    assert "### Fusion after different training epochs (Table S1, n = 1)" in report
    section = report.split("### Fusion after different training epochs")[1].split("###")[0]
    rows = [line for line in section.splitlines() if line.startswith(("| 1 |", "| 2 |"))]
    assert len(rows) == 2 and "92.03" in rows[0] and "87.10" in rows[0] and "94.39" in rows[1]
    assert (tiny_study / "run" / "report" / "epochs.png").is_file()


def test_rebasin_rows_are_fusion_rebasin_on_the_same_inputs(tiny_study):
    """The method table's Re-Basin rows hold what `fusion.fuse(..., method="rebasin")` gives on
    the same models, samples and seed; aligning by a permutation keeps A's accuracy, and the
    barrier is the excess of the fused model, the midpoint of A aligned and B, over its ends."""
    import torch

    import fusion
    from landscape.data.datasets import load_data
    from landscape.data.split import subsample
    from landscape.io.checkpoint import load_checkpoint
    from landscape.training.metrics import evaluate

    p, keys = _pair(tiny_study)
    a, b = (load_checkpoint(p.models[k]["checkpoint"])[0] for k in keys)
    data = load_data("digits")
    x = subsample(data.train, 20, 0).x
    _, attrs = _group(tiny_study, "/ablation/methods-r0")
    rows = json.loads(attrs["rows"])
    assert [(r["method"], r["mode"]) for r in rows] == [
        ("vanilla", None),
        ("ot", "acts"),
        ("ot", "wts"),
        ("rebasin", "acts"),
        ("rebasin", "wts"),
    ]
    _, ablation = _group(tiny_study, "/ablation/r0")
    assert rows[0]["fused_acc"] == pytest.approx(ablation["vanilla_acc"])
    b_eval = evaluate(b, data.test)
    for row in rows[3:]:
        options = {"mode": row["mode"], "x": x if row["mode"] == "acts" else None, "seed": 0}
        fused_model = fusion.fuse([a, b], method="rebasin", **options)
        aligned_model = fusion.align(a, b, method="rebasin", **options)
        middle = {k: (v + b.state_dict()[k]) / 2 for k, v in aligned_model.state_dict().items()}
        assert all(torch.allclose(v, middle[k]) for k, v in fused_model.state_dict().items())
        fused, aligned = evaluate(fused_model, data.test), evaluate(aligned_model, data.test)
        assert row["fused_acc"] == fused.acc and row["aligned_acc"] == aligned.acc
        assert aligned.acc == pytest.approx(attrs["a_acc"])
        excess = fused.loss - (aligned.loss + b_eval.loss) / 2
        assert row["loss_barrier"] == pytest.approx(excess, abs=1e-9)
        assert row["error_barrier"] == pytest.approx(
            aligned.acc / 2 + b_eval.acc / 2 - fused.acc, abs=1e-9
        )
    report = (tiny_study / "run" / "report" / "report.md").read_text()
    assert "### OT fusion against Git Re-Basin (n = 1)" in report
    assert "| Git Re-Basin | wts |" in report and "| vanilla averaging | - |" in report


def test_published_table_s1_spot_values():
    table = published("ablation", "mnist-mlpnet")
    rows = {r["epoch"]: r for r in table["epoch_rows"]}
    assert sorted(rows) == [1, 2, 5, 7, 10, 15, 20]
    first = rows[1]
    assert (
        first["a_acc"],
        first["b_acc"],
        first["ensemble_acc"],
        first["vanilla_acc"],
        first["ot_acc"],
    ) == ("92.03", "92.40", "92.50", "47.39", "87.10")
    assert (rows[7]["vanilla_acc"], rows[15]["ot_acc"], rows[20]["ot_acc"]) == (
        "68.76",
        "95.60",
        "95.31",
    )
    assert (rows[10]["a_acc"], rows[10]["vanilla_acc"]) == (table["a_acc"], table["vanilla_acc"])
