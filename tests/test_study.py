"""The study pipeline: end to end on a tiny config, resume after a kill, caching, and a report from the store."""
import shutil
from pathlib import Path

import h5py
import pytest

import fusion
from landscape.study import run as study_mod
from landscape.study.config import load_config
from landscape.study.report import write_report
from landscape.study.run import StudyRun

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
mixed = [[32, 128]]

[fusion]
align_samples = 100

[finetune]
epochs = 1

[measure]
samples = 128
trace_hvps = {hvps}
esd_steps = 8
barrier_points = 5
barrier_samples = 200
contours = true
contour_steps = 4
"""


def _config(tmp_path: Path, hvps: int = 20):
    path = tmp_path / f"tiny{hvps}.toml"
    path.write_text(TINY.format(hvps=hvps))
    return load_config(path)


def _values(store: Path) -> dict:
    out = {}
    with h5py.File(store, "r") as f:
        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                out[name] = obj[()].tolist()
            for k, v in obj.attrs.items():
                volatile = k in ("written_at", "sha256", "checkpoint") or k.startswith("version_") or "seconds" in k
                if not volatile:
                    out[f"{name}@{k}"] = v.tolist() if hasattr(v, "tolist") else v
        f.visititems(visit)
    return out


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("study")
    run = StudyRun(_config(tmp), tmp / "work", fusion)
    run.run()
    return run


def test_tiny_study_end_to_end(finished, tmp_path):
    report = write_report(finished.store, tmp_path / "report")
    text = report.read_text()
    for needle in ("Table 1", "OTFusion", "A aligned to B", "Pred. avg", "OTFusion FT", "mixed batch sizes"):
        assert needle in text
    for figure in ("barrier_vs_batch_size", "sharpness_vs_batch_size", "interpolation_diff-bs32", "esd_vanilla",
                   "esd_ot", "esd_ot_mixed", "contour_diff-bs128"):
        assert (tmp_path / "report" / f"{figure}.png").stat().st_size > 0
        assert f"({figure}.png)" in text
    with h5py.File(finished.store, "r") as f:
        assert "models/same-bs32.ot/eigenvalues" in f and "models/diff-bs128.vanilla/esd" in f
        assert f["surfaces/diff-bs32/plane/loss"].shape == (4, 4) and "surfaces/same-bs32" not in f
        assert "barriers/bs32-i1-d1~bs32-i2-d1/ot" in f


def test_killed_study_resumes_with_same_numbers(finished, tmp_path, monkeypatch):
    original = StudyRun.stages
    calls = {"n": 0}

    def dying(self):
        stages = original(self)
        for _, jobs in stages:
            for job in jobs:
                inner = job.run

                def run(inner=inner):
                    calls["n"] += 1
                    if calls["n"] > 12:
                        raise KeyboardInterrupt("killed")
                    return inner()
                job.run = run
        return stages

    cfg = _config(tmp_path)
    monkeypatch.setattr(StudyRun, "stages", dying)
    with pytest.raises(KeyboardInterrupt):
        StudyRun(cfg, tmp_path / "work", fusion).run()
    monkeypatch.setattr(StudyRun, "stages", original)
    resumed = StudyRun(cfg, tmp_path / "work", fusion)
    resumed.run()
    assert _values(resumed.store) == _values(finished.store)


def test_changed_measurement_setting_does_not_retrain(finished, tmp_path, monkeypatch):
    def no_training(*a, **k):
        raise AssertionError("parents were retrained")
    monkeypatch.setattr(study_mod, "train", no_training)
    monkeypatch.setattr(fusion, "fuse", no_training)
    shutil.copytree(finished.workdir, tmp_path / "work")
    before = _values(finished.store)
    run = StudyRun(_config(tmp_path, hvps=24), tmp_path / "work", fusion)
    run.run()
    after = _values(run.store)
    assert after["models/bs32-i1-d1/trace@hvps"] == 24
    assert after["models/bs32-i1-d1/eigenvalues/eigenvalues"] == before["models/bs32-i1-d1/eigenvalues/eigenvalues"]


def test_report_reads_the_store(finished, tmp_path):
    store = tmp_path / "copy.h5"
    store.write_bytes(finished.store.read_bytes())
    with h5py.File(store, "a") as f:
        f["models/same-bs32.ot/metrics"].attrs["test_acc"] = 0.123456
        f["barriers/bs32-i1-d1~bs32-i1-d2/none"].attrs["barrier_train"] = 9.8765
    text = write_report(store, tmp_path / "r").read_text()
    assert "12.35" in text and "9.8765" in text
