"""Lazy exports (PEP 562): a package names its public objects without importing their modules.

`import landscape` and the command line's `--help` therefore load neither torch nor matplotlib; the
module behind a name is imported the first time the name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exporter(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """The module-level `__getattr__` and `__dir__` of a package whose names load on first use.

    Args:
        package: the package's `__name__`.
        exports: each public name -> the module defining it, relative to `package` (".io.store").

    Returns:
        `(__getattr__, __dir__)`: the first imports a name's module on first use and caches the
        value in the package; an unknown name raises `AttributeError`. The second lists the
        exported names and whatever the package already holds.

    Examples:
        >>> getattr_, dir_ = exporter("landscape", {"LandscapeError": ".errors"})
        >>> getattr_("LandscapeError").__name__
        'LandscapeError'
        >>> "LandscapeError" in dir_()
        True
        >>> getattr_("nothing")
        Traceback (most recent call last):
        ...
        AttributeError: module 'landscape' has no attribute 'nothing'
    """

    def __getattr__(name: str) -> object:
        module = exports.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(module, package), name)
        importlib.import_module(package).__dict__[name] = value  # later look-ups skip this function
        return value

    def __dir__() -> list[str]:
        return sorted(set(exports) | set(importlib.import_module(package).__dict__))

    return __getattr__, __dir__
