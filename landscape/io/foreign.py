"""Checkpoints written elsewhere, wrapped into `landscape-checkpoint/1` files for an architecture.

Accepted: a plain state_dict, `{"state_dict" | "model_state_dict" | "model": ...}` (the OT-fusion
reference code, many training scripts) and Lightning `.ckpt` files. The source's tensor names are
fitted to the architecture's in this order:
1. `strip_prefix`, then `key_map` (exact names, or prefixes when a key ends with "."), as the user
   gave them;
2. the names as they are, or after dropping a common prefix (Lightning's `model.`);
3. by order: when both have the same number of tensors and the shapes agree one to one in order (the
   usual case of the same network written with other attribute names, e.g. `fc1..fc4` for the zoo's
   `features.0 .. classifier`), each tensor goes to the name at its position. The mapping is
   returned and stored in the checkpoint's meta (`key_map`), so it is never silent.
BatchNorm's `num_batches_tracked` counters take no part in the matching (old files lack them).
Otherwise a one-line error names the first tensors whose shapes differ.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, NoReturn

import torch
from torch import nn

from ..errors import LandscapeError
from ..models.zoo import build_model
from .checkpoint import UnsafePickle, load_state, save_checkpoint, torch_load

COUNTER = "num_batches_tracked"


def _all_tensors(d: dict) -> bool:
    """Whether `d` is a non-empty dict of tensors.

    Returns:
        True when every value is a tensor and there is at least one.
    """
    return bool(d) and all(isinstance(v, torch.Tensor) for v in d.values())


def _candidate_states(obj: Any) -> list[dict[str, torch.Tensor]]:
    """The state_dicts a loaded file may hold, the conventional keys first.

    Returns:
        The candidates, each reduced to its tensors.
    """
    if not isinstance(obj, dict):
        return []
    named = ("state_dict", "model_state_dict", "model")
    found = [obj[key] for key in named if isinstance(obj.get(key), dict)]
    # {"net": ...}
    found += [
        v for k, v in obj.items() if k not in named and isinstance(v, dict) and _all_tensors(v)
    ]
    if _all_tensors(obj):
        found.append(obj)
    return [{k: v for k, v in s.items() if isinstance(v, torch.Tensor)} for s in found]


def _renamed(
    state: dict[str, torch.Tensor], strip_prefix: str | None, key_map: dict[str, str] | None
) -> dict[str, torch.Tensor]:
    """The user's own renaming: a prefix removed, then exact names or prefixes (ending in ".").

    Returns:
        `state` under the new names.
    """
    out = {}
    for key, value in state.items():
        if strip_prefix and key.startswith(strip_prefix):
            key = key[len(strip_prefix) :]
        for old, new in (key_map or {}).items():
            if key == old or (old.endswith(".") and key.startswith(old)):
                key = new + key[len(old) :]
                break
        out[key] = value
    return out


def _strip_to_fit(state: dict[str, torch.Tensor], keys: set[str]) -> dict[str, torch.Tensor] | None:
    """`state` itself, or without the common key prefix (e.g. Lightning's `model.`).

    Returns:
        The state whose names are exactly `keys`, or None when neither is.
    """
    if set(state) == keys:
        return state
    first = next(iter(state), "")
    for own in keys:
        if first.endswith(own) and first != own:
            prefix = first[: len(first) - len(own)]
            stripped = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
            if set(stripped) == keys:
                return stripped
    return None


def _by_order(
    state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> dict[str, str] | None:
    """`{source name: own name}` pairing the tensors by position.

    Returns:
        The pairing, or None unless the shapes agree one to one.
    """
    theirs = [k for k in state if not k.endswith(COUNTER)]
    mine = [k for k in own if not k.endswith(COUNTER)]
    if len(theirs) != len(mine) or any(
        state[a].shape != own[b].shape for a, b in zip(theirs, mine)
    ):
        return None
    return dict(zip(theirs, mine))


def _refuse_mismatch(
    source: Path, state: dict[str, torch.Tensor], own: dict[str, torch.Tensor]
) -> NoReturn:
    """Refuse a state that does not fit, naming the counts and the first different shapes.

    Raises:
        LandscapeError: Always.
    """
    theirs = [k for k in state if not k.endswith(COUNTER)]
    mine = [k for k in own if not k.endswith(COUNTER)]
    pairs = [(a, b) for a, b in zip(theirs, mine) if state[a].shape != own[b].shape][:3]
    shown = "; ".join(f"{a} {tuple(state[a].shape)} vs {b} {tuple(own[b].shape)}" for a, b in pairs)
    count = f"{len(theirs)} tensors vs {len(mine)}" if len(theirs) != len(mine) else ""
    detail = ", ".join(
        part for part in (count, f"first different shapes: {shown}" if shown else "") if part
    )
    raise LandscapeError(
        f"{source}: state_dict does not fit the architecture ({detail}); "
        "give `key_map` or `strip_prefix`, or check `arch` and `arch_kwargs`"
    )


def _fit_state(
    state: dict[str, torch.Tensor], model: nn.Module, source: Path
) -> tuple[dict, dict[str, str]]:
    """`state` renamed to `model`'s names (the module docstring's steps 2 and 3).

    A state that fits in no way is refused with a `LandscapeError` (`_refuse_mismatch`).

    Returns:
        The fitted state and the renaming by order (empty when the names already fit).
    """
    own = model.state_dict()
    fitted = _strip_to_fit(state, set(own))
    if fitted is None:  # the counters are optional on either side
        core = {k: v for k, v in state.items() if not k.endswith(COUNTER)}
        fitted = _strip_to_fit(core, {k for k in own if not k.endswith(COUNTER)})
    if fitted is not None:
        return {**{k: v for k, v in own.items() if k.endswith(COUNTER)}, **fitted}, {}
    mapping = _by_order(state, own)
    if mapping is None:
        _refuse_mismatch(source, state, own)
    renamed = {mine: state[theirs] for theirs, mine in mapping.items()}
    counters = {k: v for k, v in own.items() if k.endswith(COUNTER)}
    return {**counters, **renamed}, {a: b for a, b in mapping.items() if a != b}


def wrap(
    source: str | os.PathLike,
    out: str | os.PathLike,
    arch: str,
    arch_kwargs: dict,
    meta: dict | None = None,
    key_map: dict[str, str] | None = None,
    strip_prefix: str | None = None,
) -> tuple[nn.Module, dict[str, str]]:
    """Write `source`'s weights as a checkpoint of `arch` (see the module docstring).

    A file that weights_only loading refuses (Lightning's pickled hyper-parameters) is loaded in
    full: wrapping a file means trusting it. The checkpoint's meta records the source
    (`wrapped_from`) and any renaming by order (`key_map`), then `meta`.

    Args:
        source: The foreign torch file.
        out: The checkpoint to write.
        arch: The architecture the weights belong to (a zoo name or `package.module:factory`).
        arch_kwargs: Its keyword arguments.
        meta: Extra metadata for the checkpoint.
        key_map: Names to replace, `{old: new}`: exact names, or prefixes when `old` ends in ".".
        strip_prefix: A prefix removed from every name first.

    Returns:
        The model with the weights loaded, and the names mapped by order (`{source: own}`).

    Raises:
        LandscapeError: The file holds no state_dict, or none fits the architecture.

    Examples:
        >>> import tempfile
        >>> from pathlib import Path
        >>> kwargs = {"input_shape": [1, 2, 2], "num_classes": 3, "hidden": [5]}
        >>> theirs = {"fc1.weight": torch.ones(5, 4), "fc1.bias": torch.zeros(5),
        ...           "fc2.weight": torch.ones(3, 5), "fc2.bias": torch.zeros(3)}
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     torch.save({"model_state_dict": theirs}, Path(tmp) / "theirs.pt")
        ...     model, mapping = wrap(Path(tmp) / "theirs.pt", Path(tmp) / "m.pt", "mlp", kwargs)
        >>> mapping["fc2.weight"], model(torch.ones(1, 1, 2, 2)).tolist()
        ('classifier.weight', [[20.0, 20.0, 20.0]])
    """
    source = Path(source)
    try:
        obj = torch_load(source)
    except UnsafePickle:
        # Lightning and training scripts pickle hyper-parameters (argparse namespaces, callbacks):
        # wrapping a file means trusting it, as loading it in its own project would.
        obj = torch_load(source, weights_only=False)
    states = _candidate_states(obj)
    if not states:
        keys = (
            f"its keys: {', '.join(map(repr, list(obj)[:8]))}"
            if isinstance(obj, dict) and obj
            else f"it holds a {type(obj).__name__}"
        )
        raise LandscapeError(
            f"{source}: no state_dict found (expected a dict of tensors, under 'state_dict', "
            f"'model_state_dict', 'model' or any key; {keys})"
        )
    model = build_model(arch, arch_kwargs)
    error: LandscapeError | None = None
    for state in states:
        try:
            fitted, mapping = _fit_state(_renamed(state, strip_prefix, key_map), model, source)
        except LandscapeError as exc:
            error = error or exc
            continue
        load_state(model, fitted, str(source))
        record = {
            "wrapped_from": str(source),
            **({"key_map": mapping} if mapping else {}),
            **(meta or {}),
        }
        save_checkpoint(model, out, meta=record)
        return model, mapping
    raise error
