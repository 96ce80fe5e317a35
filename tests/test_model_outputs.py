"""The batch forms every measurement reads and the rule that picks the prediction from a model's
output."""

from dataclasses import dataclass

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from landscape.curvature.operator import HessianOperator
from landscape.data.batches import as_batches
from landscape.errors import LandscapeError
from landscape.models.outputs import prediction
from landscape.training.metrics import evaluate


@dataclass
class Output:
    logits: torch.Tensor
    hidden: torch.Tensor


class Shaped(nn.Module):
    """A linear classifier over `features` and an optional `scale`, returning its logits in the form
    `kind`."""

    def __init__(self, kind: str = "tensor"):
        super().__init__()
        self.kind = kind
        self.linear = nn.Linear(4, 3)

    def forward(self, features, scale=None):
        logits = self.linear(features) * (1 if scale is None else scale)
        return {
            "tensor": logits,
            "dataclass": Output(logits, features),
            "dict": {"logits": logits, "h": features},
            "tuple": (logits, features),
            "scores": {"scores": logits},
        }[self.kind]


def _data():
    g = torch.Generator().manual_seed(0)
    return (
        torch.randn(6, 4, generator=g),
        torch.tensor([0, 1, 2, 2, 1, 0]),
        torch.rand(6, 1, generator=g) + 0.5,
    )


def test_the_rule_takes_the_tensor_the_logits_or_the_first_entry():
    t = torch.randn(2, 3)
    assert prediction(t) is t
    assert prediction(Output(t, t * 2)) is t
    assert prediction({"h": t * 2, "logits": t}) is t
    assert prediction((t, t * 2)) is t
    assert prediction({"scores": t}, output="scores") is t
    assert prediction(Output(t * 2, t), output="hidden") is t
    assert prediction((t * 2, t), output=1) is t
    assert prediction({"a": {"b": t}}, output=lambda out: out["a"]["b"]) is t


@pytest.mark.parametrize(
    "out, output, message",
    [
        (
            {"scores": torch.ones(1)},
            None,
            "a dict with keys scores, and no prediction tensor was found in it: pass output",
        ),
        ("text", None, "a str, and no prediction"),
        ((torch.ones(1),), "logits", "output='logits' names no tensor"),
        ((torch.ones(1),), 3, "output=3 names no tensor"),
        (torch.ones(1), lambda out: out.tolist(), "the output= callable must return a tensor"),
    ],
)
def test_outputs_without_a_prediction_are_one_line_errors(out, output, message):
    with pytest.raises(LandscapeError, match=message.replace("(", r"\(")):
        prediction(out, output)


@pytest.mark.parametrize("kind", ["dataclass", "dict", "tuple"])
def test_measurements_take_the_prediction_of_structured_outputs(kind):
    x, y, _ = _data()
    torch.manual_seed(0)
    plain = Shaped("tensor").double()
    shaped = Shaped(kind).double()
    shaped.load_state_dict(plain.state_dict())
    x = x.double()
    with torch.no_grad():
        expected = float(F.cross_entropy(plain(x), y))
    assert evaluate(shaped, [(x, y)]).loss == pytest.approx(expected, rel=1e-12)
    v = torch.randn(1, 15, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    torch.testing.assert_close(
        HessianOperator(shaped, [(x, y)]).matmat(v), HessianOperator(plain, [(x, y)]).matmat(v)
    )


def test_output_hook_names_the_prediction():
    x, y, _ = _data()
    model = Shaped("scores")
    with torch.no_grad():
        expected = float(F.cross_entropy(model.linear(x), y))
    with pytest.raises(LandscapeError, match="keys scores"):
        evaluate(model, [(x, y)])
    assert evaluate(model, [(x, y)], output="scores").loss == pytest.approx(expected, rel=1e-6)
    assert HessianOperator(model, [(x, y)], output=lambda out: out["scores"]).size == 15


def test_inputs_may_be_a_tensor_a_tuple_or_a_mapping_and_labels_a_key():
    """The four batch forms give the same loss: model(x), model(*x), model(**x), and a mapping with
    labels."""
    x, y, scale = _data()
    model = Shaped()
    with torch.no_grad():
        expected = float(F.cross_entropy(model(x, scale), y))
    forms = [
        [((x, scale), y)],
        [([x, scale], y)],
        [({"features": x, "scale": scale}, y)],
        [
            {"features": x[:4], "scale": scale[:4], "labels": y[:4]},
            {"features": x[4:], "scale": scale[4:], "labels": y[4:]},
        ],
    ]
    for form in forms:
        assert evaluate(model, form).loss == pytest.approx(expected, rel=1e-6)
        assert as_batches(form).examples() == 6


@pytest.mark.parametrize(
    "batch, message",
    [
        ({"features": torch.ones(2, 4)}, "a mapping without 'labels' \\(keys: features\\)"),
        ((torch.ones(2, 4), [0, 1]), "targets of type list"),
        (("text", torch.zeros(2)), "inputs of type str"),
        (torch.ones(2, 4), "batch 0 of the data is a Tensor, not an \\(inputs, targets\\) pair"),
    ],
)
def test_malformed_batches_are_one_line_errors(batch, message):
    with pytest.raises(LandscapeError, match=message):
        evaluate(Shaped(), [batch])


def test_a_model_refusing_the_batch_keywords_is_a_one_line_error():
    x, y, _ = _data()
    with pytest.raises(
        LandscapeError, match=r"does not accept the batch's keyword arguments: .*'pixels'"
    ):
        evaluate(Shaped(), [({"pixels": x}, y)])
