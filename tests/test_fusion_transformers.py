"""Fusion through attention and embeddings (Imfeld et al., "Transformer Fusion with Optimal
Transport", ICLR 2024); the examples of docs/transformers.md are run as written.

Hand-written models (tests/model_corpus.py: bert-style, timm-style-vit, mha-vit, gpt2-style) check
the structure the graph finds (Q and K of a head together, V with the output projection, the
residual stream through the embeddings, a tied LM head moved once) and exact recovery of
hand-permuted copies (also run by tests/test_fusion_corpus.py). Real library models (timm and
torchvision ViTs, Hugging Face BERT and GPT-2, built from configs with random weights) must align
with nothing left in place (`strict=True`) and keep their function; they are skipped, with the
reason, where the library cannot be imported.
"""

import copy
import re
import warnings
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import fusion
from fusion.alignment import aligned_state, prepare, with_state
from fusion.layout import Layout, Seg
from fusion.structural import reshape
from landscape import LandscapeError
from tests import graph_lookup
from tests.library_models import LIBRARY_MODELS, LibraryUnavailable, hf_gpt2, load, logits
from tests.model_corpus import CORPUS, TimmAttention, TimmVit, TinyBert, build, inputs, permute
from tests.test_fusion_permutation import one_thread  # noqa: F401 (autouse fixture)


def _groups(graph, producers):
    return [g for g in graph.groups if g.producers == producers]


def test_heads_are_unit_groups_and_the_stream_runs_through_the_embeddings():
    graph = fusion.build_graph(build("bert-style"), inputs("bert-style")[:2])
    assert [g.reason for g in graph.groups if g.fixed] == ["output"]  # token ids are not channels
    stream = graph.groups[graph_lookup.group(graph, "word")]
    assert stream.size == 8 and stream.producers[:3] == ("word", "position", "segment")
    for i in range(2):
        a = f"layers.{i}.attention"
        # one group per head
        assert [g.size for g in _groups(graph, (f"{a}.query", f"{a}.key"))] == [
            4,
            4,
        ]
        assert [g.size for g in _groups(graph, (f"{a}.value",))] == [4, 4]
        dense = graph_lookup.layer(graph, f"{a}.dense")
        assert [graph.groups[s.group].producers for s in dense.ins] == [(f"{a}.value",)] * 2


@pytest.mark.parametrize("name", ["timm-style-vit", "mha-vit", "gpt2-style"])
def test_fused_qkv_projections_are_split_into_heads(name):
    graph = fusion.build_graph(build(name), inputs(name)[:2])
    qkv = [lay for lay in graph.layers if lay.name.endswith(("qkv", "mha", "c_attn"))]
    assert len(qkv) == 2
    for lay in qkv:
        sizes = [graph.groups[s.group].size for s in lay.out]
        assert sizes == [4] * 6  # (Q, K, V) x 2 heads of 4 units, in the weight's order
        # Q and K of a head share one
        assert [s.group for s in lay.out[:2]] == [s.group for s in lay.out[2:4]]
        assert not {s.group for s in lay.out[4:]} & {s.group for s in lay.out[:4]}
    assert not graph.frozen and [g.reason for g in graph.groups if g.fixed] in (
        ["input", "output"],
        ["output"],
    )


def test_tied_lm_head_moves_once_and_stays_tied():
    """GPT-2's LM head shares the token embedding: both names are bound as the embedding's columns
    ("out"), so a plan that is not a permutation (Sinkhorn) moves them alike."""
    b, x = build("gpt2-style"), inputs("gpt2-style")
    a = build("gpt2-style", seed=1)
    graph, anchor_graph = prepare([a, b], x, mode="wts")
    tied = {
        bd.name: bd.role for bd in graph.bindings if bd.name in ("wte.weight", "lm_head.weight")
    }
    assert tied == {"wte.weight": "out", "lm_head.weight": "out"}
    state = aligned_state(
        a,
        b,
        graph,
        anchor_graph,
        mode="wts",
        moments=None,
        solver="sinkhorn",
        reg=0.05,
        marginals="uniform",
    )
    assert not torch.equal(state["wte.weight"], a.state_dict()["wte.weight"])
    assert torch.equal(state["wte.weight"], state["lm_head.weight"])
    aligned = with_state(b, state)
    assert aligned.lm_head.weight is aligned.wte.weight and torch.equal(
        aligned.wte.weight, state["wte.weight"]
    )


HEAD_WEIGHTS = {
    "timm-style-vit": (("attn.qkv.weight", "attn.qkv.bias"), "attn.proj.weight"),
    "mha-vit": (("attn.mha.in_proj_weight", "attn.mha.in_proj_bias"), "attn.mha.out_proj.weight"),
}


def _swap_heads(model, name):
    """A copy of `model` (8 channels, 2 heads of 4) with its two heads traded in every block: the
    rows of each of the fused Q, K and V parts and the input columns of the output projection,
    written out by hand."""
    qkv, proj = HEAD_WEIGHTS[name]
    swap = torch.tensor([4, 5, 6, 7, 0, 1, 2, 3])
    state = {k: v.clone() for k, v in model.state_dict().items()}
    for i in range(2):
        for key in qkv:
            key = f"blocks.{i}.{key}"
            state[key] = state[key].index_select(0, torch.cat([swap, swap + 8, swap + 16]))
        key = f"blocks.{i}.{proj}"
        state[key] = state[key].index_select(1, swap)
    out = copy.deepcopy(model)
    out.load_state_dict(state)
    return out.eval()


@pytest.mark.parametrize("name", sorted(HEAD_WEIGHTS))
def test_whole_heads_trade_places_then_units_within_heads_are_matched(name):
    """Heads traded and units permuted within heads: `heads="permute"` (the default) recovers the
    original exactly in both modes; with heads kept in place ("fixed", the former behaviour) it
    cannot."""
    b, x = build(name), inputs(name)
    assert [len(attention) for attention in fusion.build_graph(b, x[:2]).heads] == [2, 2]
    a = permute(_swap_heads(b, name), CORPUS[name].units(b))
    with torch.no_grad():
        assert torch.allclose(a(x), b(x), atol=1e-5)
    for mode in ("wts", "acts"):
        aligned = fusion.align(a, b, mode=mode, x=x, strict=True)
        assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())
    fixed = fusion.align(a, b, mode="wts", x=x, strict=True, heads="fixed")
    qkv = f"blocks.0.{HEAD_WEIGHTS[name][0][0]}"
    assert not torch.allclose(fixed.state_dict()[qkv], b.state_dict()[qkv])
    fused = fusion.fuse([a, b], x=x, strict=True)
    assert all(torch.allclose(fused.state_dict()[k], v) for k, v in b.state_dict().items())


class ScaledHeadAttention(TimmAttention):
    """A learned temperature per head, applied to the queries: heads cannot trade places (the graph
    lists them, the check on the example drops them)."""

    def __init__(self, d, heads):
        super().__init__(d, heads)
        self.temperature = nn.Parameter(torch.tensor([[[0.5]], [[2.0]]]))

    def forward(self, x):
        b, n, c = x.shape
        q, k, v = (
            self.qkv(x).reshape(b, n, 3, self.heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        )
        x = F.scaled_dot_product_attention(q * self.temperature, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


def test_heads_treated_differently_stay_in_place():
    torch.manual_seed(0)
    b = TimmVit().eval()
    b.blocks[0].attn = ScaledHeadAttention(8, 2)
    x = inputs("timm-style-vit")
    assert len(fusion.build_graph(b, x[:2]).heads) == 2
    assert [len(graph.heads) for graph in prepare([b, b], x, mode="wts")] == [1, 1]  # block 1 only
    a = permute(b, CORPUS["timm-style-vit"].units(b))
    aligned = fusion.align(a, b, mode="wts", x=x, strict=True)
    assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())


def test_unknown_head_handling_is_one_line():
    with pytest.raises(
        LandscapeError, match="unknown head handling 'swap'; choose one of permute, fixed"
    ):
        fusion.align(build("mha-vit"), build("mha-vit"), x=inputs("mha-vit"), heads="swap")


class MaskedBert(TinyBert):
    """Called as Hugging Face models are: input_ids and an attention_mask as keyword arguments."""

    def forward(self, input_ids, attention_mask=None):
        t = input_ids.shape[1]
        mask = (1.0 - attention_mask.float())[:, None, None, :] * -10000.0
        x = (
            self.word(input_ids)
            + self.position(self.position_ids[:, :t])
            + self.segment(torch.zeros_like(input_ids))
        )
        x = self.ln(x)
        for layer in self.layers:
            x = layer(x, mask)
        return self.classifier(torch.tanh(self.pooler(x[:, 0])))


@pytest.mark.parametrize("kind", ["dict", "tuple"])
def test_examples_as_keyword_or_positional_arguments(kind):
    torch.manual_seed(0)
    b = MaskedBert().eval()
    a = permute(b, CORPUS["bert-style"].units(b))
    ids = inputs("bert-style", n=33)
    mask = (torch.arange(6) < torch.randint(3, 7, (33, 1))).long()
    x = {"input_ids": ids, "attention_mask": mask} if kind == "dict" else (ids, mask)
    # chunks of 16 and 17 examples
    aligned = fusion.align(a, b, mode="acts", x=x, batch_size=16, strict=True)
    assert all(torch.equal(aligned.state_dict()[k], v) for k, v in b.state_dict().items())


def test_weight_mode_needs_an_example_only_to_read_the_graph():
    a, b = build("bert-style"), build("bert-style", seed=1)
    with pytest.raises(
        LandscapeError,
        match=r"^mode='wts' needs an example input x, only to read the model's graph "
        r"\(one forward pass\): pass x, a batch of inputs \(a tensor, a tuple of positional "
        r"arguments "
        r"or a dict of keyword arguments\)$",
    ):
        fusion.align(a, b, mode="wts")


# ------------------------------------------------------------------------------------------ library
# models
def _library_model(name: str, seed: int):
    try:
        return LIBRARY_MODELS[name].build(seed)
    except LibraryUnavailable as exc:
        pytest.skip(str(exc))


@pytest.mark.parametrize("name", sorted(LIBRARY_MODELS))
def test_library_transformers_align_with_nothing_left_in_place(name):
    """Two random initialisations: the first aligned to the second keeps its function, and nothing
    is frozen."""
    a, b, x = _library_model(name, 0), _library_model(name, 1), LIBRARY_MODELS[name].inputs()
    with warnings.catch_warnings():
        warnings.simplefilter("error", fusion.FrozenUnitsWarning)
        aligned = fusion.align(a, b, mode="acts", x=x, strict=True)
    assert any(not torch.equal(aligned.state_dict()[k], v) for k, v in a.state_dict().items())
    assert torch.allclose(logits(aligned, x), logits(a, x), atol=1e-5)


def test_library_cache_output_is_one_line_naming_use_cache():
    try:
        model = hf_gpt2(0, use_cache=True, layers=1)
    except LibraryUnavailable as exc:
        pytest.skip(str(exc))
    x = {"input_ids": torch.randint(0, 50, (4, 7))}
    with pytest.raises(
        LandscapeError,
        match=r"^cannot trace the model with torch.export: it returns a key/value "
        r"cache \(\w+\); build it with use_cache=False, or pass use_cache=False in x",
    ):
        fusion.build_graph(model, x)
    assert not fusion.build_graph(model, {**x, "use_cache": False}, strict=True).frozen


def _doc_examples() -> list[str]:
    text = (Path(__file__).resolve().parent.parent / "docs" / "transformers.md").read_text()
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


@pytest.mark.parametrize("code", _doc_examples(), ids=["timm", "hugging-face"])
def test_documented_examples_run(code):
    for module, name in (
        ("timm", "create_model"),
        ("transformers", "BertForSequenceClassification"),
    ):
        if f"import {module}" in code or f"from {module} import" in code:
            try:
                load(module, name)
            except LibraryUnavailable as exc:
                pytest.skip(str(exc))
    with warnings.catch_warnings():
        warnings.simplefilter("error", fusion.FrozenUnitsWarning)
        # the documentation's own example, as written
        exec(compile(code, "docs/transformers.md", "exec"), {})


def test_head_reshapes_by_hand():
    """Layouts through the reshapes attention code uses, written out by hand."""
    d = Layout(2, (Seg(0, 0, 8),))
    heads = reshape(d, (2, 5, 8), (2, 5, 2, 4))  # (B, T, C) -> (B, T, H, C / H)
    assert heads == Layout(3, (Seg(0, 0, 4), Seg(0, 4, 4)), (2,))
    # merged back: one run of the group's 8 units
    assert reshape(heads, (2, 5, 2, 4), (2, 5, 8)) == d
    # (T, B, C) -> (T, B * H, C / H)
    merged = reshape(Layout(2, (Seg(0, 0, 8),)), (5, 2, 8), (5, 4, 4))
    assert merged == Layout(2, (Seg(0, 0, 4), Seg(0, 4, 4)) * 2, (1,))
    # fused Q, K, V of one head each
    qkv = reshape(Layout(2, (Seg(1, 0, 6),)), (2, 5, 6), (2, 5, 3, 2))
    assert qkv == Layout(3, (Seg(1, 0, 2), Seg(1, 2, 2), Seg(1, 4, 2)), (2,))
    flipped = Layout(1, heads.segs, (3,))  # heads after the units: not a row-major order
    assert reshape(flipped, (2, 4, 5, 2), (2, 8, 5)) is None
