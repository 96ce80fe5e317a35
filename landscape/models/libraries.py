"""The model libraries researchers use (torchvision, timm, Hugging Face transformers).

Importing them on a CPU torch, and building their models from configs with random weights
(`landscape wrap --arch torchvision:NAME`).

torchvision's registry wheels for Linux are CUDA builds: beside the CPU torch their compiled
operators (`torchvision/_C`) do not load, and `import torchvision` then stops at its fake-tensor
registration of `torchvision::nms`, which takes `import timm` and most of `transformers` down with
it. The model definitions themselves are plain PyTorch and need none of those operators, so when the
compiled library cannot load, the two operator schemas torchvision registers unconditionally are
declared first (without kernels: calling `torchvision.ops.nms` still fails, with torch's "no kernel"
message). A working torchvision is left alone.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import json
import os
import sys
from types import ModuleType

import torch

from ..errors import LandscapeError

# The schemas of the operators torchvision's `_meta_registrations` registers whether or not its
# compiled ops loaded (torchvision 0.28, csrc/ops/nms.cpp and quantized/cpu/qnms_kernel.cpp).
_UNCONDITIONAL_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list[
    torch.library.Library
] = []  # kept alive: a Library removes its definitions when collected

INSTALL_HINT = (
    "`make install` installs them (setup.cfg's `models` extra, installed without dependencies so "
    "that torch stays)"
)


def _compiled_ops_load(package_dir: str) -> bool:
    """Whether torchvision's compiled operator library loads beside this torch.

    Returns:
        True when `package_dir` holds a `_C` extension that loads.
    """
    for suffix in importlib.machinery.EXTENSION_SUFFIXES:
        path = os.path.join(package_dir, "_C" + suffix)
        if os.path.exists(path):
            try:
                torch.ops.load_library(path)
                return True
            except OSError:
                return False
    return False


def prepare_torchvision() -> None:
    """Make `import torchvision` (and so `import timm`, `import transformers`) work on a CPU torch.

    Idempotent and cheap. Does nothing when torchvision is not installed, is already imported, or
    its compiled operators load; otherwise declares the operator schemas torchvision's import needs.
    Nothing is imported.

    Examples:
        >>> import sys
        >>> imported = "torchvision" in sys.modules
        >>> prepare_torchvision()
        >>> prepare_torchvision()  # a second call does nothing
        >>> ("torchvision" in sys.modules) == imported
        True
    """
    if _declared or "torchvision" in sys.modules:
        return
    spec = importlib.util.find_spec("torchvision")
    if spec is None or not spec.submodule_search_locations:
        return
    if _compiled_ops_load(next(iter(spec.submodule_search_locations))):
        return
    library = torch.library.Library("torchvision", "FRAGMENT")
    for schema in _UNCONDITIONAL_SCHEMAS:
        library.define(schema)
    _declared.append(library)


def import_library(name: str) -> ModuleType:
    """Import `torchvision`, `timm` or `transformers` (after `prepare_torchvision`).

    Args:
        name: the top-level module name.

    Returns:
        The imported module.

    Raises:
        LandscapeError: the library is not installed or fails to import (one line, with the
            install hint).

    Examples:
        >>> import_library("json").__name__  # any module; the libraries are imported the same way
        'json'
        >>> import_library("no_such_library")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: cannot import no_such_library (No module named ...
    """
    prepare_torchvision()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LandscapeError(f"cannot import {name} ({exc}); {INSTALL_HINT}") from None
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandscapeError(f"{name} is installed but fails to import: {first}") from None


LIBRARY_PREFIXES = ("torchvision:", "timm:", "hf:")


def is_library_arch(arch: str) -> bool:
    """Whether `arch` names a model of torchvision, timm or transformers.

    Args:
        arch: an architecture name, as checkpoints record it.

    Returns:
        True for `torchvision:NAME`, `timm:NAME`, `hf:DIR` and `hf:CLASS`.

    Examples:
        >>> is_library_arch("timm:resnet18"), is_library_arch("resnet18")
        (True, False)
    """
    return arch.startswith(LIBRARY_PREFIXES)


def _hf_config(transformers: ModuleType, where: str, kwargs: dict):
    """The transformers config of `hf:WHERE`.

    `where` is a directory holding config.json or the file itself (overridden by `kwargs`), or, in a
    checkpoint, the class name with the whole config in `kwargs["config"]`.

    Returns:
        The config object.

    Raises:
        LandscapeError: no config.json there, or one transformers cannot read.
    """
    if "config" in kwargs:
        config = dict(kwargs["config"])
        config_class = transformers.AutoConfig.for_model(config.pop("model_type"))
        return config_class.from_dict(
            {**config, **{k: v for k, v in kwargs.items() if k != "config"}}
        )
    path = os.path.dirname(where) if os.path.basename(where) == "config.json" else where
    if not os.path.isfile(os.path.join(path, "config.json")):
        raise LandscapeError(
            f"hf:{where} is not a directory with a config.json (models are built from a config "
            "with random weights; nothing is downloaded)"
        )
    try:
        return transformers.AutoConfig.from_pretrained(path, local_files_only=True, **kwargs)
    except (ValueError, OSError, KeyError) as exc:
        raise LandscapeError(f"cannot read the transformers config in {path}: {exc}") from None


def build_library_model(arch: str, arch_kwargs: dict) -> tuple[torch.nn.Module, dict]:
    """A model of torchvision, timm or transformers built from its configuration, random weights.

    Nothing is downloaded: torchvision's `weights=None`, timm's `pretrained=False`, and
    transformers' models built from a config.

    Args:
        arch: `torchvision:NAME` (`torchvision.models.get_model`), `timm:NAME`
            (`timm.create_model`), `hf:DIR` (a directory with a transformers config.json; the model
            class is the config's first `architectures` entry, else `AutoModel`'s) or `hf:CLASS`
            with the config in `arch_kwargs["config"]`.
        arch_kwargs: the factory's keyword arguments (for `hf:`, config fields that override the
            file's).

    Returns:
        The model and the spec that rebuilds it (`{"arch", "arch_kwargs"}`; for `hf:` the class name
        and the whole config, so that a checkpoint does not depend on the directory).

    Raises:
        LandscapeError: the library is missing, the name unknown or the arguments refused.

    Examples:
        The library's own factory is called; here a stand-in for timm shows how (the examples
        import no model library):

        >>> import sys
        >>> import types
        >>> from unittest import mock
        >>> import torch
        >>> timm = types.ModuleType("timm")
        >>> def create_model(name, pretrained, num_classes):
        ...     assert name == "tiny" and not pretrained
        ...     return torch.nn.Linear(4, num_classes)
        >>> timm.create_model = create_model
        >>> with mock.patch.dict(sys.modules, {"timm": timm}):
        ...     model, spec = build_library_model("timm:tiny", {"num_classes": 3})
        ...     build_library_model("timm:tiny", {"depth": 3})
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: cannot build timm:tiny with arguments {"depth": 3}: ...
        >>> model.out_features, spec
        (3, {'arch': 'timm:tiny', 'arch_kwargs': {'num_classes': 3}})
    """
    library, _, name = arch.partition(":")
    try:
        if library == "torchvision":
            model = import_library("torchvision").models.get_model(
                name, weights=None, **arch_kwargs
            )
        elif library == "timm":
            model = import_library("timm").create_model(name, pretrained=False, **arch_kwargs)
        else:
            transformers = import_library("transformers")
            config = _hf_config(transformers, name, arch_kwargs)
            names = getattr(config, "architectures", None) or []
            cls_name = name if "config" in arch_kwargs else (names[0] if names else None)
            cls = getattr(transformers, cls_name, None) if cls_name else None
            model = cls(config) if cls is not None else transformers.AutoModel.from_config(config)
            return model, {
                "arch": f"hf:{type(model).__name__}",
                "arch_kwargs": {"config": json.loads(config.to_json_string(use_diff=False))},
            }
    except (TypeError, ValueError, RuntimeError, KeyError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandscapeError(
            f"cannot build {arch} with arguments {json.dumps(arch_kwargs)}: {first}"
        ) from None
    return model, {"arch": arch, "arch_kwargs": dict(arch_kwargs)}
