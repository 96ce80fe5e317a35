"""Shared fixtures: small trained models on digits, and a runner for the CLI's `main`."""

from __future__ import annotations

import pytest
import torch

from cli.main import main
from landscape.data import load_data
from landscape.models.libraries import prepare_torchvision
from landscape.models.zoo import arch_kwargs_for
from landscape.training.loop import TrainConfig, init_model, train

prepare_torchvision()  # before any test module imports torchvision, timm or transformers


@pytest.fixture(scope="session")
def digits():
    """The bundled digits dataset on CPU."""
    return load_data("digits")


def train_mlp(data, init_seed: int, data_seed: int, hidden=(32, 16), epochs: int = 8, **kw):
    """A small MLP trained on `data` (a few seconds on CPU)."""
    kwargs = arch_kwargs_for("mlp", data.input_shape, data.num_classes, hidden=list(hidden), **kw)
    model = init_model("mlp", kwargs, init_seed)
    # the best-validation weights, as before `keep` existed, so that the shared fixtures stay the
    # same models
    cfg = TrainConfig(
        batch_size=32, lr=0.05, epochs=epochs, data_seed=data_seed, schedule="cosine", keep="best"
    )
    return train(model, data, cfg).model


@pytest.fixture(scope="session")
def mlp_pair(digits):
    """Two MLPs trained on digits from different init and data seeds."""
    return train_mlp(digits, 1, 2), train_mlp(digits, 3, 4)


@pytest.fixture
def run_cli(capsys):
    """Run `landscape ARGS...` in-process; return (exit code, stdout, stderr)."""

    def run(*args: str) -> tuple[int, str, str]:
        code = 0
        try:
            main([str(a) for a in args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


@pytest.fixture(autouse=True)
def _threads():
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    yield
