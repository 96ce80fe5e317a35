"""The library/CLI boundary: library messages name Python parameters, the command line shows its
flags; one choice check and one finiteness check; a model's spec through one accessor."""

import ast
import re
from pathlib import Path

import pytest
import torch

from cli.main import cli
from cli.messages import for_command_line
from landscape import ModelSpec, build_model, save_checkpoint, spec_of
from landscape.errors import LandscapeError, check_choice, check_finite

ROOT = Path(__file__).resolve().parent.parent
FLAG = re.compile(r"(^|[\s(`'\"])--?[a-z][a-z-]*")


def _message_strings(path: Path) -> list[tuple[int, str]]:
    """String constants of `path` that are not docstrings."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef))
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        (node.lineno, node.value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


def test_library_messages_name_no_flags():
    """Flags belong to the command line: the libraries name their own parameters (in backquotes)."""
    found = [
        f"{path.relative_to(ROOT)}:{line}: {text!r}"
        for package in ("landscape", "fusion")
        for path in sorted((ROOT / package).rglob("*.py"))
        for line, text in _message_strings(path)
        if FLAG.search(text) and not re.fullmatch(r"-\w+", text)
    ]
    assert found == []


@pytest.mark.parametrize(
    "command,message,shown",
    [
        (
            "eig",
            "`max_hvps` 3 is fewer than the 5 eigenvalues",
            "--max-hvps 3 is fewer than the 5 eigenvalues",
        ),
        (
            "eig",
            "`k` 9 is more than the 8 trainable parameters",
            "-k 9 is more than the 8 trainable parameters",
        ),
        (
            "barrier",
            "`criterion` nll needs log-probabilities: use `criterion` ce",
            "--loss nll needs log-probabilities: use --loss ce",
        ),
        (
            "wrap",
            "(pass `data`, or put them in `arch_kwargs`)",
            "(pass --data, or put them in --arch-kwargs)",
        ),
        (
            "study",
            "`samples` 9 is more than",
            "samples 9 is more than",
        ),  # no such flag: the TOML key, bare
        (None, "`reg` must be positive", "reg must be positive"),
    ],
)
def test_the_command_line_shows_its_flags(command, message, shown):
    assert for_command_line(message, cli.commands.get(command) if command else None) == shown


def test_the_command_line_error_names_the_flag(run_cli, tmp_path):
    save_checkpoint(
        build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [4]}),
        tmp_path / "m.pt",
    )
    code, _, err = run_cli(
        "eig", tmp_path / "m.pt", "-k", "2", "--max-hvps", "1", "--samples", "20"
    )
    assert (code, err) == (
        2,
        "error: --max-hvps 1 is fewer than the 2 eigenvalues (or the block of 1) asked for: give "
        "at least 2\n",
    )


def test_one_choice_check():
    assert check_choice("ce", ("ce", "nll"), "loss") == "ce"
    with pytest.raises(
        LandscapeError, match=r"^unknown loss 'mse'; choose one of ce, nll, or pass a callable$"
    ):
        check_choice("mse", ("ce", "nll"), "loss", hint="or pass a callable")
    with pytest.raises(ValueError):  # a LandscapeError is a ValueError
        check_choice(3, (1, 2), "block")


def test_one_finiteness_check_for_modules_and_state_dicts():
    model = torch.nn.Linear(3, 2)
    check_finite(model)
    with torch.no_grad():
        model.bias[1] = float("inf")
    for target in (model, model.state_dict()):
        with pytest.raises(
            LandscapeError, match=r"^net has non-finite values \(NaN or inf\) in bias \(1 of 2\)"
        ):
            check_finite(target, "net")


def test_a_models_spec_is_typed():
    model = build_model("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [4]})
    spec = spec_of(model)
    assert spec == ModelSpec("mlp", {"input_shape": [1, 8, 8], "num_classes": 10, "hidden": [4]})
    assert (spec.input_shape, spec.num_classes) == ((1, 8, 8), 10)
    assert spec_of(torch.nn.Linear(2, 2)) is None
