"""Tiny transformers from the model libraries researchers use (timm, torchvision, Hugging Face
transformers), built from configs with random weights, and example inputs for them; shared by
tests/test_fusion_transformers.py and benchmarks/fusion_coverage.py."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

import torch


class LibraryUnavailable(Exception):
    """A model library that cannot be imported here (the message says why)."""


def load(module: str, name: str):
    """`module.name`, or LibraryUnavailable saying why it cannot be imported."""
    try:
        return getattr(importlib.import_module(module), name)
    # torchvision's CUDA wheel fails with RuntimeError, not ImportError.
    except Exception as exc:  # noqa: BLE001
        cause = exc.__cause__ or exc
        raise LibraryUnavailable(
            f"{module}.{name} cannot be imported ({type(cause).__name__}: "
            f"{str(cause).splitlines()[0][:80]}); `make install` installs the models extra"
        ) from None


def timm_vit(seed):
    create_model = load("timm", "create_model")
    torch.manual_seed(seed)
    return create_model(
        "vit_tiny_patch16_224",
        pretrained=False,
        img_size=32,
        patch_size=8,
        embed_dim=16,
        depth=2,
        num_heads=2,
        num_classes=5,
    ).eval()


def torchvision_vit(seed):
    vit = load("torchvision.models.vision_transformer", "VisionTransformer")
    torch.manual_seed(seed)
    return vit(
        image_size=32,
        patch_size=8,
        num_layers=2,
        num_heads=2,
        hidden_dim=16,
        mlp_dim=32,
        num_classes=5,
    ).eval()


def hf_bert(seed):
    config = load("transformers", "BertConfig")(
        vocab_size=50,
        hidden_size=16,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=16,
        num_labels=3,
    )
    torch.manual_seed(seed)
    return load("transformers", "BertForSequenceClassification")(config).eval()


def hf_gpt2(seed, use_cache=False, layers=2):
    config = load("transformers", "GPT2Config")(
        vocab_size=50,
        n_embd=16,
        n_layer=layers,
        n_head=2,
        n_positions=16,
        use_cache=use_cache,
        bos_token_id=0,
        eos_token_id=0,
    )
    torch.manual_seed(seed)
    return load("transformers", "GPT2LMHeadModel")(config).eval()


def _images():
    return torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(0))


def _tokens():
    ids = torch.randint(1, 50, (8, 7), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


@torch.no_grad()
def logits(model, x):
    """The prediction of a library model: its output, or the output's `logits`."""
    out = model(**x) if isinstance(x, dict) else model(x)
    return out.logits if hasattr(out, "logits") else out


@dataclass(frozen=True)
class LibraryModel:
    build: object  # seed -> model (raises LibraryUnavailable)
    inputs: object  # () -> example batch


LIBRARY_MODELS = {
    "timm-vit": LibraryModel(timm_vit, _images),
    "torchvision-vit": LibraryModel(torchvision_vit, _images),
    "hf-bert": LibraryModel(hf_bert, _tokens),
    "hf-gpt2": LibraryModel(hf_gpt2, _tokens),
}
