"""The study's optional measurements of issue 25: Gauss-Newton/Fisher eig and trace and sharpness
per model, set in `[measure]`, run as jobs of the measure stage and stored beside the Hessian's
groups."""

import pytest

import fusion
from landscape.data.datasets import data_shape
from landscape.errors import LandscapeError
from landscape.io.checkpoint import save_checkpoint
from landscape.study.config import load_config
from landscape.study.execute import StudyRunner
from landscape.study.plan import plan_study
from landscape.training.loop import init_model
from tests.test_study import TINY, _config

EXTRA = """curvatures = ["ggn", "fisher"]
sharpness = true
sharpness_kind = "standard"
sharpness_rho = 0.02
sharpness_steps = 2
sharpness_restarts = 1
sharpness_draws = 2
"""


def test_study_measures_curvatures_and_sharpness(tmp_path):
    cfg = _config(tmp_path, extra=EXTRA)
    planned = plan_study(cfg, tmp_path / "work", data_shape(cfg.data))
    runner = StudyRunner(planned, fusion)
    stages = dict(planned.stages)
    parent = stages["train parents"][0]
    groups = {
        j.group: j for j in stages["measure"] if j.name.endswith(" " + parent.name.split()[1])
    }
    name = parent.name.split()[1]
    assert {
        f"/models/{name}/ggn/eigenvalues",
        f"/models/{name}/fisher/trace",
        f"/models/{name}/sharpness/standard-l2-0.02",
    } <= set(groups)
    model = init_model(cfg.arch, planned.arch_kwargs, 0)  # an untrained parent is enough to measure
    save_checkpoint(model, parent.checkpoint)
    arrays, attrs = runner.execute(groups[f"/models/{name}/ggn/eigenvalues"])
    assert attrs["curvature"] == "ggn" and arrays["eigenvalues"][0] > 0
    arrays, attrs = runner.execute(groups[f"/models/{name}/sharpness/standard-l2-0.02"])
    assert attrs["worst"] == max(arrays["restart_worst"]) and attrs["steps"] == 2
    assert len(arrays["random_increase"]) == 2


@pytest.mark.parametrize(
    "line, words",
    [
        ('curvatures = ["hessian"]', "curvatures are among"),
        ('sharpness_norm = "l1"', "sharpness_norm is one of"),
        ("sharpness = 1", "sharpness must be"),
    ],
)
def test_study_measure_settings_are_checked(tmp_path, line, words):
    path = tmp_path / "bad.toml"
    path.write_text(TINY.format(hvps=20) + line + "\n")
    with pytest.raises(LandscapeError, match=words):
        load_config(path)
