"""Study settings as frozen dataclasses, read from a TOML table and checked against their hints.

Every field's value must be of its annotated type (`int`, `float`, `str`, `bool`, `dict`,
`tuple[T, ...]` or a fixed-length tuple, a `Literal` of choices, `X | None`, or any of these
`Annotated` with the words messages use for it), and a bad value is a one-line error naming its
file, section and field (`<file>: [section] name must be an integer, got 'x'`). Lists become tuples,
integers given for numbers become floats; unknown and missing settings are errors too.

The seed shift of replicates is defined here once: replicate r of a study shifts every seed by
`SEED_SHIFT * r`.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Annotated, Any, Literal, TypeVar, get_args, get_origin, get_type_hints

from ..errors import LandscapeError

SEED_SHIFT = 1000  # replicate r adds SEED_SHIFT * r to every seed of the study

T = TypeVar("T")


def shifted(seed: int, replicate: int) -> int:
    """`seed` as replicate `replicate` uses it: shifted by `SEED_SHIFT * replicate`.

    Args:
        seed: a seed of the study's settings.
        replicate: the replicate (0 for the unshifted study).

    Returns:
        The shifted seed.

    Examples:
        >>> shifted(42, 0), shifted(42, 3)
        (42, 3042)
    """
    return seed + SEED_SHIFT * replicate


def described(hint: Any, words: str) -> Any:
    """`hint` with the words its messages use for it (e.g. "a list of [a, b] integer pairs").

    Args:
        hint: a type hint.
        words: what a value of that type is, in words.

    Returns:
        The hint, annotated with the words.

    Examples:
        >>> describe(described(tuple[int, int], "an [a, b] pair"))
        'an [a, b] pair'
    """
    return Annotated[hint, words]


def describe(hint: Any) -> str:
    """What a value of type `hint` is, in words, for messages.

    Args:
        hint: a type hint of the kinds the module docstring lists.

    Returns:
        The words ("an integer", "a list of numbers", "one of acts, wts").

    Examples:
        >>> describe(tuple[float, ...]), describe(Literal["acts", "wts"]), describe(int | None)
        ('a list of numbers', 'one of acts, wts', 'an integer')
    """
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return hint.__metadata__[0]
    if _optional(hint) is not None:
        return describe(_optional(hint))
    if origin is Literal:
        return "one of " + ", ".join(str(a) for a in args)
    if origin is tuple:
        inner = describe(args[0])
        plural = {
            "an integer": "integers",
            "a number": "numbers",
            "a string": "strings",
            "true or false": "flags",
            "a table": "tables",
        }
        return "a list of " + plural.get(inner, f"({inner})")
    return {
        int: "an integer",
        float: "a number",
        str: "a string",
        bool: "true or false",
        dict: "a table",
    }[hint]


def _optional(hint: Any) -> Any:
    """The type X of `X | None`.

    Returns:
        X, or None when `hint` is not of that form.
    """
    if get_origin(hint) in (typing.Union, types.UnionType):
        args = [a for a in get_args(hint) if a is not type(None)]
        if len(args) == 1 and len(get_args(hint)) == 2:
            return args[0]
    return None


def convert(value: Any, hint: Any) -> tuple[bool, Any]:
    """Check `value` against type `hint` and convert it to what the field holds.

    Lists become tuples and integers given for numbers become floats.

    Args:
        value: a value as TOML gives it.
        hint: the field's type hint.

    Returns:
        (whether `value` is of type `hint`, the value as the field holds it).

    Examples:
        >>> convert([1, 2], tuple[float, ...]), convert(True, int)
        ((True, (1.0, 2.0)), (False, True))
    """
    inner = _optional(hint)
    if inner is not None:
        return (True, None) if value is None else convert(value, inner)
    origin, args = get_origin(hint), get_args(hint)
    if origin is Annotated:
        return convert(value, args[0])
    if origin is Literal:
        return value in args and not isinstance(value, bool), value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        each = args[:1] * len(value) if args[-1] is Ellipsis else args
        if len(each) != len(value):
            return False, value
        items = [convert(v, t) for v, t in zip(value, each)]
        return all(ok for ok, _ in items), tuple(v for _, v in items)
    if isinstance(value, bool) or hint is bool:
        return isinstance(value, bool) and hint is bool, value
    if hint is float:
        return isinstance(value, (int, float)), float(value) if isinstance(
            value, (int, float)
        ) else value
    return isinstance(value, hint), value


def from_table(cls: type[T], values: Any, where: str, section: str) -> T:
    """An instance of dataclass `cls` from the TOML table `values` of `[section]` in file `where`.

    Args:
        cls: a dataclass whose fields carry the type hints above.
        values: the table as read (a dict).
        where: the file, for messages.
        section: the table's name, for messages.

    Returns:
        The settings, defaults filled in.

    Raises:
        LandscapeError: for a value that is not a table, an unknown or missing setting, or a value
            of the wrong type; one line naming the setting.

    Examples:
        >>> from dataclasses import dataclass
        >>> @dataclass(frozen=True)
        ... class Section:
        ...     steps: int = 10
        ...     rates: tuple[float, ...] = ()
        >>> from_table(Section, {"rates": [1, 0.5]}, "my.toml", "train")
        Section(steps=10, rates=(1.0, 0.5))
        >>> from_table(Section, {"steps": "ten"}, "my.toml", "train")
        Traceback (most recent call last):
        ...
        landscape.errors.LandscapeError: my.toml: [train] steps must be an integer, got 'ten'
    """
    if not isinstance(values, dict):
        raise LandscapeError(f"{where}: [{section}] must be a table of settings, got {values!r}")
    hints = get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise LandscapeError(
            f"{where}: [{section}] unknown setting {unknown[0]!r}; known: {', '.join(fields)}"
        )
    given = {}
    for name, value in values.items():
        ok, converted = convert(value, hints[name])
        if not ok:
            raise LandscapeError(
                f"{where}: [{section}] {name} must be {describe(hints[name])}, got {value!r}"
            )
        given[name] = converted
    missing = [
        n
        for n, f in fields.items()
        if n not in given
        and f.default is dataclasses.MISSING
        and f.default_factory is dataclasses.MISSING
    ]
    if missing:
        raise LandscapeError(f"{where}: [{section}] missing setting {missing[0]!r}")
    return cls(**given)
