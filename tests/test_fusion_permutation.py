"""Exact ground truth for alignment: a model whose hidden units are randomly permuted is the same
function.

The permutations are written out by hand per architecture from the zoo's module names (not from the
code under test), so a wrong alignment graph (a missed BatchNorm buffer, bias, residual stream or
flatten block) makes these tests fail.
"""

import copy

import pytest
import torch
from torch import nn

import fusion
from landscape import build_model

SHAPE = [1, 8, 8]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Fusion tests use small tensors: one thread avoids OpenMP spin-waits on a busy 2-core machine
    (a 20x slowdown there). Imported by the other fusion test modules; the previous count is
    restored after each."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _model(arch: str, seed: int = 0, **kw) -> nn.Module:
    """A randomly initialised model with random BatchNorm statistics and affine parameters (eval
    mode)."""
    torch.manual_seed(seed)
    model = build_model(arch, {"input_shape": SHAPE, "num_classes": 10, **kw})
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.weight.data.uniform_(0.5, 1.5)
            m.bias.data.normal_(0, 0.3)
            m.running_mean.normal_(0, 0.3)
            m.running_var.uniform_(0.5, 2.0)
        if getattr(m, "bias", None) is not None and not isinstance(
            m, nn.modules.batchnorm._BatchNorm
        ):
            m.bias.data.normal_(0, 0.1)
    return model.eval()


def _permute(model: nn.Module, units: list[dict], seed: int = 1) -> nn.Module:
    """Apply one random permutation per entry of `units`: {"n": size, "rows": producer names,
    "norms": BatchNorm names, "cols": [(consumer name, block)]}. Rows move weight/bias; norms move
    all four BatchNorm tensors; consumers move their input dimension in blocks of `block`
    consecutive columns."""
    g = torch.Generator().manual_seed(seed)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for unit in units:
        perm = torch.randperm(unit["n"], generator=g)
        for name in unit["rows"]:
            for key in ("weight", "bias"):
                if f"{name}.{key}" in state:
                    state[f"{name}.{key}"] = state[f"{name}.{key}"][perm]
        for name in unit["norms"]:
            for key in ("weight", "bias", "running_mean", "running_var"):
                state[f"{name}.{key}"] = state[f"{name}.{key}"][perm]
        for name, block in unit["cols"]:
            w = state[f"{name}.weight"]
            cols = (perm[:, None] * block + torch.arange(block)[None]).reshape(-1)
            state[f"{name}.weight"] = w[:, cols]
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out.eval()


def mlp_units(hidden: list[int], bn: bool) -> list[dict]:
    step = 3 if bn else 2
    units = []
    for i, h in enumerate(hidden):
        consumer = f"features.{(i + 1) * step}" if i + 1 < len(hidden) else "classifier"
        units.append(
            {
                "n": h,
                "rows": [f"features.{i * step}"],
                "norms": [f"features.{i * step + 1}"] if bn else [],
                "cols": [(consumer, 1)],
            }
        )
    return units


def vgg_units(model: nn.Module) -> list[dict]:
    convs = [(i, m) for i, m in enumerate(model.features) if isinstance(m, nn.Conv2d)]
    units = []
    for j, (i, conv) in enumerate(convs):
        consumer = f"features.{convs[j + 1][0]}" if j + 1 < len(convs) else "classifier"
        block = 1 if j + 1 < len(convs) else model.classifier.in_features // conv.out_channels
        units.append(
            {
                "n": conv.out_channels,
                "rows": [f"features.{i}"],
                "norms": [f"features.{i + 1}"],
                "cols": [(consumer, block)],
            }
        )
    return units


def resnet_units(model: nn.Module) -> list[dict]:
    """Residual streams: stem + every block's conv2 (+ projection) of a stage share one permutation;
    each block's conv1/bn1 has its own."""
    stages = [model.layer1, model.layer2, model.layer3, model.layer4]
    units = []
    stream = {"n": model.conv1.out_channels, "rows": ["conv1"], "norms": ["bn1"], "cols": []}
    for s, stage in enumerate(stages, 1):
        for b, block in enumerate(stage):
            p = f"layer{s}.{b}"
            stream["cols"].append((f"{p}.conv1", 1))  # conv1 reads the incoming stream
            if len(block.shortcut):  # a projection closes the incoming stream and opens a new one
                stream["cols"].append((f"{p}.shortcut.0", 1))
                units.append(stream)
                stream = {
                    "n": block.conv2.out_channels,
                    "rows": [f"{p}.shortcut.0"],
                    "norms": [f"{p}.shortcut.1"],
                    "cols": [],
                }
            stream["rows"].append(f"{p}.conv2")
            stream["norms"].append(f"{p}.bn2")
            units.append(
                {
                    "n": block.conv1.out_channels,
                    "rows": [f"{p}.conv1"],
                    "norms": [f"{p}.bn1"],
                    "cols": [(f"{p}.conv2", 1)],
                }
            )
    stream["cols"].append(("linear", 1))
    units.append(stream)
    return units


CASES = {
    "mlp": (lambda: _model("mlp", hidden=[24, 16, 12]), lambda m: mlp_units([24, 16, 12], False)),
    "mlp-bn": (
        lambda: _model("mlp", hidden=[24, 16], bn=True),
        lambda m: mlp_units([24, 16], True),
    ),
    "vgg11-bn-bias": (lambda: _model("vgg11", width=0.125, bias=True), vgg_units),
    "resnet18-bn-bias": (lambda: _model("resnet18", width=0.25, bias=True), resnet_units),
    "user-cnn": (
        lambda: _model("tests.factories:tiny_cnn", channels=6),
        lambda m: [{"n": 6, "rows": ["0"], "norms": [], "cols": [("3", 64)]}],
    ),
}


@pytest.fixture(scope="module")
def inputs():
    return torch.randn(64, *SHAPE, generator=torch.Generator().manual_seed(5))


@pytest.mark.parametrize("mode", ["acts", "wts"])
@pytest.mark.parametrize("case", sorted(CASES))
def test_align_undoes_a_permutation(case, mode, inputs):
    build, units = CASES[case]
    b = build()
    a = _permute(b, units(b))
    # other weights...
    assert any(not torch.equal(a.state_dict()[k], v) for k, v in b.state_dict().items())
    assert torch.allclose(a(inputs), b(inputs), atol=1e-4)  # ...but not the function
    aligned = fusion.align(a, b, mode=mode, x=inputs)
    for key, value in b.state_dict().items():
        assert torch.allclose(aligned.state_dict()[key].float(), value.float(), atol=1e-5), key
    fused = fusion.fuse([a, b], mode=mode, x=inputs)
    assert torch.allclose(fused(inputs), b(inputs), atol=1e-5)
    assert aligned.landscape_spec == b.landscape_spec == fused.landscape_spec


@pytest.mark.parametrize("case", ["mlp-bn", "resnet18-bn-bias"])
def test_importance_marginals_and_iterations_are_exact_on_permutations(case, inputs):
    build, units = CASES[case]
    b = build()
    a = _permute(b, units(b), seed=3)
    aligned = fusion.align(a, b, mode="wts", x=inputs, marginals="importance")
    for key, value in b.state_dict().items():
        assert torch.allclose(aligned.state_dict()[key].float(), value.float(), atol=1e-5), key
    fused = fusion.fuse([b, a, b], mode="acts", x=inputs, anchor=1, iterations=2)
    assert torch.allclose(fused(inputs), b(inputs), atol=1e-5)


def test_sinkhorn_approaches_the_permutation_as_reg_shrinks(inputs):
    b = CASES["mlp"][0]()
    a = _permute(b, mlp_units([24, 16, 12], False))
    errors = []
    for reg in (0.1, 0.01):
        aligned = fusion.align(a, b, mode="acts", x=inputs, solver="sinkhorn", reg=reg)
        errors.append(
            max((aligned.state_dict()[k] - v).abs().max().item() for k, v in b.state_dict().items())
        )
    assert errors[1] < errors[0] and errors[1] < 1e-3


@pytest.mark.parametrize("case", ["vgg11-bn-bias", "resnet18-bn-bias"])
def test_align_to_itself_is_identity_and_fusing_copies_gives_the_model(case, inputs):
    b = CASES[case][0]()
    for mode in ("acts", "wts"):
        aligned = fusion.align(copy.deepcopy(b), b, mode=mode, x=inputs)
        assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())
    fused = fusion.fuse([copy.deepcopy(b) for _ in range(3)], mode="wts", weights=[0.2, 0.5, 0.3])
    assert torch.allclose(fused(inputs), b(inputs), atol=1e-5)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("case", ["mlp-bn", "resnet18-bn-bias"])
def test_alignment_on_cuda(case, inputs):
    build, units = CASES[case]
    b = build()
    a = _permute(b, units(b))
    a, b, x = a.cuda(), b.cuda(), inputs.cuda()
    for mode in ("acts", "wts"):
        aligned = fusion.align(a, b, mode=mode, x=x)
        assert next(aligned.parameters()).is_cuda
        for key, value in b.state_dict().items():
            assert torch.allclose(aligned.state_dict()[key].float(), value.float(), atol=1e-5), key
    fused = fusion.fuse(
        [a, b], mode="wts", x=x, solver="sinkhorn", marginals="importance", iterations=2
    )
    assert next(fused.parameters()).is_cuda and torch.isfinite(fused(x)).all()
