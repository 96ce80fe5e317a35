"""Measurements on real library models (torchvision, timm, Hugging Face transformers), built from
configs with random weights, against hand-written Hessian-vector products (autograd's double
backward, math attention kernel) and losses computed by hand; dict batches; the attention-kernel
switch; the BatchNorm-rewrite false alarm of ResNet-18."""

import importlib.util

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch.nn.attention import SDPBackend, sdpa_kernel

from landscape.curvature.affine_norm import batchnorm_as_affine
from landscape.curvature.density import spectral_density
from landscape.curvature.eigen import top_eigenvalues
from landscape.curvature.operator import HessianOperator
from landscape.curvature.trace import hessian_trace
from landscape.errors import LandscapeError
from landscape.geometry.barrier import interpolation_curve
from landscape.loss import NextTokenLoss
from landscape.models.libraries import import_library
from landscape.training.metrics import evaluate


def _library(name):
    if importlib.util.find_spec(name) is None:
        pytest.skip(f"{name} is not installed (`make install` installs setup.cfg's `models` extra)")
    return import_library(name)


def hand_hvp(model, call, labels, loss, vectors):
    """H v for each row of `vectors` (flat, over the trainable parameters) of `loss(prediction,
    labels)`, the mean loss of one batch holding every example, by double backward with the math
    attention kernel."""
    params = [p for p in model.parameters() if p.requires_grad]
    with sdpa_kernel(SDPBackend.MATH):
        value = loss(call(), labels)
    grads = torch.autograd.grad(value, params, create_graph=True)
    rows = []
    for v in vectors:
        pieces = [
            piece.view_as(p) for piece, p in zip(v.split([p.numel() for p in params]), params)
        ]
        hv = torch.autograd.grad(grads, params, grad_outputs=pieces, retain_graph=True)
        rows.append(torch.cat([h.reshape(-1) for h in hv]))
    return torch.stack(rows)


def explicit_hessian(model, call, labels, loss):
    size = sum(p.numel() for p in model.parameters() if p.requires_grad)
    eye = torch.eye(size, dtype=next(model.parameters()).dtype)
    return hand_hvp(model, call, labels, loss, eye)


def tiny_bert(seed):
    transformers = _library("transformers")
    torch.manual_seed(seed)
    config = transformers.BertConfig(
        vocab_size=30,
        hidden_size=8,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=16,
        max_position_embeddings=16,
        num_labels=3,
    )
    return transformers.BertForSequenceClassification(config).double().eval()


def bert_batches():
    g = torch.Generator().manual_seed(1)
    batches = []
    for rows in (3, 2):
        ids = torch.randint(1, 30, (rows, 6), generator=g)
        mask = torch.ones(rows, 6, dtype=torch.long)
        mask[0, 4:] = 0  # a padded sequence: attention_mask reaches the model
        batches.append(
            {
                "input_ids": ids,
                "attention_mask": mask,
                "labels": torch.randint(0, 3, (rows,), generator=g),
            }
        )
    return batches


def joined(batches):
    return {k: torch.cat([b[k] for b in batches]) for k in batches[0]}


def test_bert_dict_batches_loss_eigenvalues_and_trace_equal_hand_computation():
    """Hugging Face style batches (dicts with labels) and outputs (SequenceClassifierOutput); the
    trainable parameters are the first query projection (its gradient goes through
    scaled_dot_product_attention) and the classifier, 99 in all, so the Hessian is written out by
    hand."""
    model = tiny_bert(0)
    for p in model.parameters():
        p.requires_grad_(False)
    for module in (model.bert.encoder.layer[0].attention.self.query, model.classifier):
        module.requires_grad_(True)
    batches = bert_batches()
    whole = joined(batches)
    inputs = {k: v for k, v in whole.items() if k != "labels"}
    with torch.no_grad():
        logits = model(**inputs).logits
    metrics = evaluate(model, batches)
    assert metrics.n == 5
    assert metrics.loss == pytest.approx(float(F.cross_entropy(logits, whole["labels"])), rel=1e-12)
    assert metrics.acc == pytest.approx(
        float((logits.argmax(1) == whole["labels"]).double().mean())
    )

    hessian = explicit_hessian(
        model, lambda: model(**inputs).logits, whole["labels"], F.cross_entropy
    )
    exact = np.linalg.eigvalsh(hessian.numpy())
    result = top_eigenvalues(model, batches, k=2, tol=1e-8, max_hvps=99)
    np.testing.assert_allclose(result.eigenvalues, exact[::-1][:2], rtol=1e-6)
    # the sketch spans the space: exact
    trace = hessian_trace(model, batches, max_hvps=99 * 3 + 2, sketch=99)
    assert trace.trace == pytest.approx(float(hessian.trace()), rel=1e-8)
    # Lanczos over the whole space: the spectrum
    density = spectral_density(model, batches, steps=99, runs=1)
    nodes = np.sort(density.nodes.reshape(-1)[density.weights.reshape(-1) > 1e-8])
    np.testing.assert_allclose([nodes[0], nodes[-1]], [exact[0], exact[-1]], rtol=1e-6, atol=1e-9)
    assert float(density.weights.sum()) == pytest.approx(1.0)


def test_timm_vit_products_equal_hand_written_hvp():
    """Every parameter trainable, so the products differentiate scaled_dot_product_attention twice:
    the default CPU kernel has no second derivative, the product graphs use the math kernel."""
    timm = _library("timm")
    torch.manual_seed(0)
    model = (
        timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=16,
            patch_size=8,
            embed_dim=12,
            depth=1,
            num_heads=2,
            num_classes=3,
        )
        .double()
        .eval()
    )
    g = torch.Generator().manual_seed(2)
    x, y = torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1])
    op = HessianOperator(model, [(x[:2], y[:2]), (x[2:], y[2:])])
    v = torch.randn(2, op.size, generator=g, dtype=torch.float64)
    expected = hand_hvp(model, lambda: model(x), y, F.cross_entropy, v)
    torch.testing.assert_close(op.matmat(v), expected, rtol=1e-9, atol=1e-12)
    result = top_eigenvalues(model, [(x, y)], k=1, tol=1e-6, eigenvectors=True)
    u = torch.as_tensor(result.eigenvectors[0])
    rayleigh = float(u @ hand_hvp(model, lambda: model(x), y, F.cross_entropy, u[None])[0])
    assert result.eigenvalues[0] == pytest.approx(rayleigh, rel=1e-6)


def test_pyhessian_backend_differentiates_attention_twice():
    _library("pyhessian")
    timm = _library("timm")
    torch.manual_seed(0)
    model = (
        timm.create_model(
            "vit_tiny_patch16_224",
            pretrained=False,
            img_size=16,
            patch_size=8,
            embed_dim=12,
            depth=1,
            num_heads=2,
            num_classes=3,
        )
        .double()
        .eval()
    )
    g = torch.Generator().manual_seed(2)
    data = [
        (torch.randn(4, 3, 16, 16, generator=g, dtype=torch.float64), torch.tensor([0, 1, 2, 1]))
    ]
    ours = top_eigenvalues(model, data, which="magnitude", method="power", tol=1e-6, max_hvps=300)
    theirs = top_eigenvalues(
        model, data, backend="pyhessian", which="magnitude", tol=1e-6, max_hvps=300
    )
    assert theirs.eigenvalues[0] == pytest.approx(ours.eigenvalues[0], rel=1e-3)


def test_products_select_the_math_attention_kernel_and_restore_the_selection():
    class Attention(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.proj = torch.nn.Linear(4, 12)
            self.flash_seen = []

        def forward(self, x):
            self.flash_seen.append(torch.backends.cuda.flash_sdp_enabled())
            q, k, v = self.proj(x).chunk(3, -1)
            return F.scaled_dot_product_attention(q, k, v).mean(1)

    model = Attention().eval()
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(3, 5, 4, generator=g), torch.tensor([0, 3, 1])
    before = torch.backends.cuda.flash_sdp_enabled(), torch.backends.cuda.math_sdp_enabled()
    op = HessianOperator(model, [(x, y)], cache=False)
    v = torch.randn(1, op.size, generator=g)
    got = op.matmat(v)
    assert (
        torch.backends.cuda.flash_sdp_enabled(),
        torch.backends.cuda.math_sdp_enabled(),
    ) == before
    # graphs math-only, plain not
    assert before[0] and False in model.flash_seen and True in model.flash_seen
    torch.testing.assert_close(got, hand_hvp(model, lambda: model(x), y, F.cross_entropy, v))


def test_gpt2_language_model_loss_is_the_mean_over_predicted_tokens():
    transformers = _library("transformers")
    torch.manual_seed(0)
    config = transformers.GPT2Config(
        vocab_size=20, n_embd=8, n_layer=1, n_head=2, n_positions=16, bos_token_id=0, eos_token_id=0
    )
    model = transformers.GPT2LMHeadModel(config).double().eval()
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(0, 20, (3, 7), generator=g)
    labels = ids.clone()
    labels[0, 5:] = -100  # padding: neither a loss nor a count
    batches = [
        {"input_ids": ids[:2], "labels": labels[:2]},
        {"input_ids": ids[2:], "labels": labels[2:]},
    ]
    with torch.no_grad():
        logits = model(input_ids=ids).logits
        hf_loss = float(model(input_ids=ids, labels=labels).loss)  # transformers' own token mean
    terms = [
        -float(torch.log_softmax(logits[b, t], -1)[labels[b, t + 1]])
        for b in range(3)
        for t in range(6)
        if labels[b, t + 1] != -100
    ]
    assert len(terms) == 16
    metrics = evaluate(model, batches, criterion="lm")
    assert metrics.n == 16 and np.isnan(metrics.acc)
    assert metrics.loss == pytest.approx(sum(terms) / 16, rel=1e-12)
    # transformers casts the logits to float32 first
    assert metrics.loss == pytest.approx(hf_loss, rel=1e-6)
    assert evaluate(
        model, batches, criterion=NextTokenLoss(ignore_index=-100)
    ).loss == pytest.approx(metrics.loss)
    torch.manual_seed(1)
    other = transformers.GPT2LMHeadModel(config).double().eval()
    # outputs reduced under vmap
    curve = interpolation_curve(model, other, batches, points=2, criterion="lm")
    np.testing.assert_allclose(
        curve.train_loss, [metrics.loss, evaluate(other, batches, criterion="lm").loss], rtol=1e-12
    )
    with pytest.raises(LandscapeError, match="language-model loss needs logits"):
        evaluate(model, [{"input_ids": ids, "labels": labels[:, 0]}], criterion="lm")


def test_bert_interpolation_curve_equals_losses_of_averaged_models():
    a, b = tiny_bert(0), tiny_bert(1)
    batches = bert_batches()
    curve = interpolation_curve(a, b, batches, points=3, batching="loop")
    whole = joined(batches)
    inputs = {k: v for k, v in whole.items() if k != "labels"}
    sa, sb = a.state_dict(), b.state_dict()
    middle = tiny_bert(2)
    middle.load_state_dict(
        {k: (sa[k] + sb[k]) / 2 if sa[k].is_floating_point() else sa[k] for k in sa}
    )
    with torch.no_grad():
        expected = [
            float(F.cross_entropy(m(**inputs).logits, whole["labels"])) for m in (a, middle, b)
        ]
    np.testing.assert_allclose(curve.train_loss, expected, rtol=1e-10)


def test_bert_contour_passes_through_the_model_on_dict_batches():
    from landscape.geometry.surface import compute_surface, random_surface

    model, batches = tiny_bert(0), bert_batches()
    surface = random_surface(model, 1, -0.5, 0.5, 3, seed=0)
    arrays, _ = compute_surface(model, surface, batches, 256, {"seed": 0})
    assert arrays["x"][1] == 0 and arrays["loss"][1] == pytest.approx(
        evaluate(model, batches).loss, rel=1e-12
    )
    assert arrays["loss"][0] != arrays["loss"][1] != arrays["loss"][2]


def resnet18_with_trained_statistics():
    """torchvision's resnet18 with BatchNorm statistics and affine parameters as training leaves
    them."""
    torchvision = _library("torchvision")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.5, generator=g)
                m.running_var.uniform_(0.2, 2.0, generator=g)
                m.weight.uniform_(0.2, 1.5, generator=g)
                m.bias.normal_(0, 0.3, generator=g)
    return model.eval()


def test_resnet18_rounding_of_the_batchnorm_rewrite_is_no_false_alarm():
    """The issue's case: a logit near 0 that the affine BatchNorm moves by float rounding of the
    terms summed into it, more than 1e-6 of the largest output (the old rule refused the model as
    random). The Hessian of the classifier then equals the hand-computed one: for one example,
    (diag(p) - p p^T) kron [f; 1][f; 1]^T."""
    model = resnet18_with_trained_statistics()
    x = torch.randn(1, 3, 32, 32, generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        plain = model(x)[0]
        with batchnorm_as_affine(model):
            rewritten = model(x)[0]
        c = int((rewritten - plain).abs().argmax())
        model.fc.weight[c] *= (
            10  # larger terms, larger rounding; the bias brings the logit near 0 again
        )
        model.fc.bias[c] -= model(x)[0, c] - 1e-4
        plain = model(x)[0]
        with batchnorm_as_affine(model):
            rewritten = model(x)[0]
    moved, largest = float((rewritten - plain)[c].abs()), float(plain.abs().max())
    assert abs(float(plain[c])) < 1e-3 and moved > 1e-6 * max(largest, 1) + 1e-4 * abs(
        float(plain[c])
    )
    model.requires_grad_(False)
    model.fc.requires_grad_(True)
    y = torch.tensor([3])
    result = top_eigenvalues(model, [(x, y)], k=1, tol=1e-6)
    features = {}
    model.fc.register_forward_hook(lambda m, args, out: features.update(f=args[0][0].detach()))
    with torch.no_grad():
        p = model(x)[0].double().softmax(0)
    f = torch.cat([features["f"].double(), torch.ones(1, dtype=torch.float64)])
    expected = float(torch.linalg.eigvalsh(torch.diag(p) - torch.outer(p, p))[-1]) * float(f @ f)
    assert result.eigenvalues[0] == pytest.approx(expected, rel=1e-4)


def test_a_batchnorm_rewrite_that_changes_the_function_is_refused(monkeypatch):
    import landscape.curvature.affine_norm as affine_norm

    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.BatchNorm1d(3)).eval()
    exact = affine_norm.affine_batchnorm
    monkeypatch.setattr(affine_norm, "affine_batchnorm", lambda norm, x: exact(norm, x) * 1.01)
    with pytest.raises(
        LandscapeError, match="outputs change when its eval-mode BatchNorm layers are written"
    ):
        HessianOperator(model, [(torch.randn(8, 4), torch.zeros(8, dtype=torch.long))])


def test_randomness_in_eval_mode_is_still_refused():
    model = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.Dropout(0.5)).eval()
    model[1].train()  # dropout left on inside an eval-mode model
    x, y = torch.randn(8, 4), torch.zeros(8, dtype=torch.long)
    with pytest.raises(LandscapeError, match="different outputs for the same inputs"):
        HessianOperator(model, [(x, y)])


@pytest.mark.parametrize(
    "arch, kwargs",
    [
        ("torchvision:mobilenet_v3_small", {"num_classes": 3}),
        (
            "timm:vit_tiny_patch16_224",
            {
                "img_size": 16,
                "patch_size": 8,
                "embed_dim": 12,
                "depth": 1,
                "num_heads": 2,
                "num_classes": 3,
            },
        ),
        ("hf:{dir}", {"num_labels": 3}),
    ],
)
def test_wrap_builds_library_models_and_the_checkpoint_rebuilds_them(
    tmp_path, run_cli, arch, kwargs
):
    import json

    from landscape.io.checkpoint import load_checkpoint
    from landscape.models.zoo import build_model

    _library(
        {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}[arch.partition(":")[0]]
    )
    config = {
        "model_type": "bert",
        "architectures": ["BertForSequenceClassification"],
        "vocab_size": 30,
        "hidden_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
        "intermediate_size": 16,
        "max_position_embeddings": 16,
    }
    (tmp_path / "config.json").write_text(json.dumps(config))
    arch = arch.format(dir=tmp_path)
    model = build_model(arch, kwargs).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    images = not arch.startswith("hf:")
    # channels: those given
    normalize = ["--normalize", "0.5,0.2;0.4,0.2;0.3,0.2"] if images else []
    code, _, err = run_cli(
        "wrap",
        tmp_path / "weights.pt",
        "--arch",
        arch,
        "--arch-kwargs",
        json.dumps(kwargs),
        *normalize,
        "--out",
        tmp_path / "model.pt",
    )
    assert code == 0, err
    (
        tmp_path / "config.json"
    ).unlink()  # a checkpoint of a transformers model holds its whole config
    rebuilt, meta = load_checkpoint(tmp_path / "model.pt")
    assert len(meta.get("normalize") or []) == (3 if images else 0)
    assert type(rebuilt) is type(model)
    x = (
        {"input_ids": torch.randint(0, 30, (2, 5))}
        if arch.startswith("hf:")
        else torch.randn(2, 3, 16, 16)
    )
    with torch.no_grad():
        call = (lambda m: m(**x).logits) if isinstance(x, dict) else (lambda m: m(x))
        torch.testing.assert_close(call(rebuilt.eval()), call(model), rtol=0, atol=0)


@pytest.mark.parametrize(
    "arch, message",
    [
        ("timm:no_such_model", "cannot build timm:no_such_model"),
        ("torchvision:no_such_model", "cannot build torchvision:no_such_model"),
        ("hf:/no/such/dir", "is not a directory with a config.json"),
    ],
)
def test_wrap_refuses_unknown_library_models_in_one_line(tmp_path, run_cli, arch, message):
    _library(
        {"torchvision": "torchvision", "timm": "timm", "hf": "transformers"}[arch.partition(":")[0]]
    )
    torch.save({"weight": torch.zeros(1)}, tmp_path / "weights.pt")
    code, _, err = run_cli(
        "wrap", tmp_path / "weights.pt", "--arch", arch, "--out", tmp_path / "model.pt"
    )
    assert (
        code == 2
        and err.startswith("error: ")
        and message in err
        and len(err.strip().splitlines()) == 1
    )
    assert not (tmp_path / "model.pt").exists()


def _doc_examples():
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "models.md").read_text()
    return [block.split("```", 1)[0] for block in text.split("```python\n")[1:]]


@pytest.mark.parametrize("index", range(3))
def test_the_examples_of_docs_models_run(index, capsys):
    example = _doc_examples()[index]
    _library("timm" if "timm" in example else "transformers")
    exec(compile(example, f"docs/models.md example {index + 1}", "exec"), {})
    printed = capsys.readouterr().out
    assert printed.strip() and "nan" not in printed.lower()


def test_cli_measures_a_wrapped_timm_vit(tmp_path, run_cli):
    """`landscape eig` on the checkpoint of a timm ViT (attention differentiated twice) gives the
    Python API's eigenvalue on the same examples."""
    import json

    from landscape.data import load_data
    from landscape.models.zoo import build_model

    _library("timm")
    kwargs = {
        "img_size": 16,
        "patch_size": 8,
        "embed_dim": 12,
        "depth": 1,
        "num_heads": 2,
        "num_classes": 3,
    }
    torch.manual_seed(0)
    model = build_model("timm:vit_tiny_patch16_224", kwargs).eval()
    torch.save(model.state_dict(), tmp_path / "weights.pt")
    g = np.random.default_rng(0)
    np.savez(
        tmp_path / "images.npz",
        x_train=g.normal(size=(40, 3, 16, 16)).astype("float32"),
        y_train=g.integers(0, 3, 40),
    )
    assert (
        run_cli(
            "wrap",
            tmp_path / "weights.pt",
            "--arch",
            "timm:vit_tiny_patch16_224",
            "--arch-kwargs",
            json.dumps(kwargs),
            "--out",
            tmp_path / "vit.pt",
        )[0]
        == 0
    )
    code, out, err = run_cli(
        "eig",
        tmp_path / "vit.pt",
        "--data",
        tmp_path / "images.npz",
        "--normalize",
        "none",
        "--json",
    )
    assert code == 0, err
    expected = top_eigenvalues(
        model, load_data(str(tmp_path / "images.npz"), normalize="none").train
    )
    assert json.loads(out)["eigenvalues"][0] == pytest.approx(
        float(expected.eigenvalues[0]), rel=1e-5
    )
