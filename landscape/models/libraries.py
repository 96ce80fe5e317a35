"""Importing the model libraries researchers use (torchvision, timm, Hugging Face transformers) on a CPU torch.

torchvision's registry wheels for Linux are CUDA builds: beside the CPU torch their compiled operators
(`torchvision/_C`) do not load, and `import torchvision` then stops at its fake-tensor registration of
`torchvision::nms`, which takes `import timm` and most of `transformers` down with it. The model definitions
themselves are plain PyTorch and need none of those operators, so when the compiled library cannot load, the
two operator schemas torchvision registers unconditionally are declared first (without kernels: calling
`torchvision.ops.nms` still fails, with torch's "no kernel" message). A working torchvision is left alone.
"""
from __future__ import annotations

import importlib
import importlib.machinery
import importlib.util
import os
import sys
from types import ModuleType

import torch

from ..errors import LandscapeError

# The schemas of the operators torchvision's `_meta_registrations` registers whether or not its compiled ops
# loaded (torchvision 0.28, csrc/ops/nms.cpp and quantized/cpu/qnms_kernel.cpp).
_UNCONDITIONAL_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_declared: list[torch.library.Library] = []  # kept alive: a Library removes its definitions when collected

INSTALL_HINT = "`make install` installs them (setup.cfg's `models` extra, with --no-deps so that torch stays)"


def _compiled_ops_load(package_dir: str) -> bool:
    """Whether torchvision's compiled operator library loads beside this torch."""
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

    Idempotent and cheap. Does nothing when torchvision is not installed, is already imported, or its
    compiled operators load; otherwise declares the operator schemas torchvision's import needs.
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
        LandscapeError: the library is not installed or fails to import (one line, with the install hint).
    """
    prepare_torchvision()
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise LandscapeError(f"cannot import {name} ({exc}); {INSTALL_HINT}") from None
    except (RuntimeError, OSError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise LandscapeError(f"{name} is installed but fails to import: {first}") from None
