"""Data selection: labels, excluded labels, seeded fractions, the skill-transfer split, and their
record in checkpoints and results."""

import json

import pytest
import torch

from landscape.data import DataSpec, Selection, Split, load_data, select, skill_transfer
from landscape.errors import LandscapeError
from landscape.io.checkpoint import load_checkpoint


def _split() -> Split:
    """100 examples: label i % 5 and input i, so kept examples can be named."""
    y = torch.arange(100) % 5
    return Split(torch.arange(100, dtype=torch.float32)[:, None], y)


def _ids(split: Split) -> list[int]:
    return [int(v) for v in split.x[:, 0]]


def test_labels_and_exclusions_keep_exactly_those_examples():
    s = _split()
    assert _ids(select(s, Selection(labels=(1, 3)))) == [i for i in range(100) if i % 5 in (1, 3)]
    assert _ids(select(s, Selection(exclude_labels=(0,)))) == [i for i in range(100) if i % 5]
    assert _ids(select(s, Selection(labels=(1, 3), exclude_labels=(3,)))) == list(range(1, 100, 5))
    assert select(s, Selection()) is s


def test_fraction_is_seeded_and_its_rest_is_the_complement():
    s = _split()
    part = _ids(select(s, Selection(fraction=0.3, seed=7)))
    assert len(part) == 30 and part == sorted(part)
    assert part == _ids(select(s, Selection(fraction=0.3, seed=7)))
    assert part != _ids(select(s, Selection(fraction=0.3, seed=8)))
    rest = _ids(select(s, Selection(fraction=0.3, seed=7, rest=True)))
    assert sorted(part + rest) == list(range(100))


def test_skill_transfer_parts_are_disjoint_and_only_a_has_the_special_label():
    s = _split()
    a, b = (select(s, skill_transfer(p, special=2, share=0.25, seed=3)) for p in ("A", "B"))
    assert set(_ids(a)) & set(_ids(b)) == set()
    assert sorted(_ids(a) + _ids(b)) == list(range(100))
    assert (a.y == 2).sum() == 20 and (b.y == 2).sum() == 0
    assert len(a) == 20 + 20 and len(b) == 60  # A: all 20 of label 2 and 25% of the other 80


@pytest.mark.parametrize(
    "kw, message",
    [
        ({"fraction": 0.0}, "fraction"),
        ({"fraction": 1.5}, "fraction"),
        ({"rest": True}, "rest"),
        ({"labels": (-1,)}, "labels"),
        ({"labels": (9,)}, "keeps no example"),
    ],
)
def test_bad_selections_are_one_line_errors(kw, message):
    with pytest.raises(LandscapeError, match=message):
        select(_split(), Selection(**kw))


def test_load_data_selects_train_and_validation_not_test():
    whole, part = load_data("digits"), load_data(DataSpec("digits", Selection(labels=(0, 1))))
    assert set(part.train.y.tolist()) == {0, 1} and set(part.val.y.tolist()) == {0, 1}
    assert torch.equal(part.test.y, whole.test.y)
    assert part.normalize == whole.normalize  # statistics of the whole training split
    assert len(part.train) == int(((whole.train.y == 0) | (whole.train.y == 1)).sum())


def test_train_records_the_selection_and_eval_reports_it(tmp_path, run_cli):
    out = tmp_path / "a.pt"
    code, _, err = run_cli(
        "train",
        "--hidden",
        "16",
        "--epochs",
        "1",
        "--skill-transfer",
        "A:4:0.1",
        "--fraction-seed",
        "5",
        "--out",
        out,
        "--quiet",
    )
    assert code == 0, err
    meta = load_checkpoint(out)[1]
    assert meta["selection"] == {
        "labels": None,
        "exclude_labels": [4],
        "fraction": 0.1,
        "seed": 5,
        "rest": False,
        "plus_labels": [4],
    }
    code, text, _ = run_cli("eval", out, "--labels", "3,4", "--json", "--out", tmp_path / "r.h5")
    assert code == 0
    assert json.loads(text)["selection"]["labels"] == [3, 4]
    from landscape.io.store import open_store

    with open_store(tmp_path / "r.h5") as reader:
        attrs = reader.attrs("/models/a/metrics")
    assert json.loads(attrs["selection"])["labels"] == [3, 4]


@pytest.mark.parametrize(
    "args, message",
    [
        (["--skill-transfer", "C"], "part"),
        (["--skill-transfer", "A:x"], "PART"),
        (["--skill-transfer", "A", "--labels", "1"], "drop --labels"),
        (["--labels", "1,a"], "class indices"),
        (["--fraction", "2"], "fraction"),
    ],
)
def test_selection_options_refuse_bad_input(tmp_path, run_cli, args, message):
    code, _, err = run_cli("train", "--epochs", "1", *args, "--out", tmp_path / "x.pt", "--quiet")
    assert code == 2 and message in err and "Traceback" not in err
    assert not (tmp_path / "x.pt").exists()
