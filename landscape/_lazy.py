"""Lazy exports (PEP 562): a package names its public objects without importing the modules that
define them.

`import landscape` and the command line's `--help` therefore load neither torch nor matplotlib; the
module behind a name is imported the first time the name is used.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable


def exporter(
    package: str, exports: dict[str, str]
) -> tuple[Callable[[str], object], Callable[[], list[str]]]:
    """`__getattr__` and `__dir__` for `package`, whose public names map to the (relative) modules
    defining them.
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
