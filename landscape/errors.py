"""Bad input and its checks: the error, the warning, and the two checks every package shares.

The command line turns `LandscapeError` into a one-line `error:` message and exit code 2, and shows
a `LandscapeWarning` as one `warning:` line (recorded with the result) when a run goes on with
something the user should know. The shared checks: a value among its choices, a model's values
finite.

Bad input raises `LandscapeError`; a broken internal invariant (a bug, not the user's input) raises
`RuntimeError`. Messages name the Python parameters, spelled in backquotes (`` `max_hvps` ``); the
command line shows the flag instead (`--max-hvps`). Nothing here imports torch, so `fusion` can
share it.
"""

from __future__ import annotations

import warnings
from collections.abc import Collection, Mapping
from typing import Any, TypeVar

T = TypeVar("T")


class LandscapeError(ValueError):
    """A problem with the user's input (file, data, option), reported without a traceback.

    A `ValueError`, so code that already handles bad values handles it too.

    >>> issubclass(LandscapeError, ValueError)
    True
    """


class LandscapeWarning(UserWarning):
    """Input that was used, but not quite as given (e.g. `samples` above the data size, clamped).

    >>> issubclass(LandscapeWarning, UserWarning)
    True
    """


def warn(message: str) -> None:
    """Issue a `LandscapeWarning` with a one-line `message`.

    The warning is attributed to the caller of the function that warns.

    Args:
        message: one line saying what was used instead of what was given.

    Examples:
        >>> import warnings
        >>> with warnings.catch_warnings(record=True) as caught:
        ...     warnings.simplefilter("always")
        ...     warn("`samples` 5000 is more than the 1797 examples: all of them used")
        >>> caught[0].category.__name__, str(caught[0].message)
        ('LandscapeWarning', '`samples` 5000 is more than the 1797 examples: all of them used')
    """
    warnings.warn(message, LandscapeWarning, stacklevel=3)


def check_choice(value: T, choices: Collection[T], what: str, hint: str = "") -> T:
    """Return `value` if it is one of `choices`, else raise the one-line error every option shares.

    Args:
        value: what the caller was given.
        choices: the accepted values, in the order the message lists them.
        what: what the value names, as the message should say it ("OT solver", "`which`").
        hint: text appended to the message (e.g. "or pass a callable").

    Returns:
        `value`, unchanged.

    Raises:
        LandscapeError: `value` is not one of `choices`.

    >>> check_choice("emd", ("emd", "sinkhorn"), "OT solver")
    'emd'
    >>> check_choice("lbfgs", ("emd", "sinkhorn"), "OT solver")
    Traceback (most recent call last):
    ...
    landscape.errors.LandscapeError: unknown OT solver 'lbfgs'; choose one of emd, sinkhorn
    """
    if value not in choices:
        listed = ", ".join(str(c) for c in choices)
        raise LandscapeError(
            f"unknown {what} {value!r}; choose one of {listed}{', ' + hint if hint else ''}"
        )
    return value


def check_finite(model: Any, what: str = "the model") -> None:
    """Raise a one-line error naming the first parameter or buffer that holds NaN or infinity.

    Args:
        model: an `nn.Module` or a state dict (name -> tensor).
        what: how the message names the model ("model 2", a checkpoint's path).

    Raises:
        LandscapeError: a floating-point parameter or buffer holds NaN or infinity.

    >>> import torch
    >>> check_finite({"w": torch.ones(3)})
    >>> check_finite({"w": torch.tensor([1.0, float("nan")])}, "model 2")
    Traceback (most recent call last):
    ...
    landscape.errors.LandscapeError: model 2 has non-finite values (NaN or inf) in w (1 of 2): ...
    """
    import torch  # here, not at the top: importing this module must stay free of torch

    state: Mapping[str, Any] = model if isinstance(model, Mapping) else model.state_dict()
    floats = [(k, v) for k, v in state.items() if v.is_floating_point() and v.numel()]
    if not floats or bool(
        torch.stack([torch.isfinite(v).all() for _, v in floats]).all()
    ):  # one device sync
        return
    key, value = next((k, v) for k, v in floats if not bool(torch.isfinite(v).all()))
    bad = int((~torch.isfinite(value)).sum())
    raise LandscapeError(
        f"{what} has non-finite values (NaN or inf) in {key} ({bad} of {value.numel()}): "
        "measurements of it would be NaN or meaningless"
    )
