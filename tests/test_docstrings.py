"""The docstring rule of the library packages (docs/conventions.md, "Docstrings").

Every public function, class and method of `landscape` and `fusion` has a Google-style docstring:
an `Args:` section when it takes parameters, and every public module-level function and class a
small example (`>>>`) that `make test` runs with `pytest --doctest-modules landscape fusion`.
Ruff's docstring rules (pyproject.toml) check the sections' form, `Returns:`, `Yields:` and
`Raises:`; this test checks what ruff does not: that the sections and the examples exist.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
MODULES = sorted(
    p
    for package in ("landscape", "fusion")
    for p in (ROOT / package).rglob("*.py")
    if not any(part.startswith("_") and part != "__init__.py" for part in p.relative_to(ROOT).parts)
)


def _parameters(node: ast.FunctionDef) -> list[str]:
    """The parameters a caller passes (not self or cls)."""
    a = node.args
    names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
    names += [x.arg for x in (a.vararg, a.kwarg) if x is not None]
    return [n for n in names if n not in ("self", "cls")]


def _is_property(node: ast.FunctionDef) -> bool:
    return any(
        (isinstance(d, ast.Name) and d.id in ("property", "cached_property"))
        or (isinstance(d, ast.Attribute) and d.attr in ("setter", "deleter"))
        for d in node.decorator_list
    )


def _missing(path: Path) -> list[str]:
    """What the docstring rule finds missing in one module, one line per object."""
    tree = ast.parse(path.read_text())
    found = []

    def check(node: ast.AST, where: str, example: bool) -> None:
        doc = ast.get_docstring(node) or ""
        if not doc:
            found.append(f"{where}: no docstring")
            return
        if isinstance(node, ast.FunctionDef) and _parameters(node) and "Args:" not in doc:
            found.append(f"{where}: no Args section")
        if example and ">>>" not in doc:
            found.append(f"{where}: no example (>>>)")

    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and not node.name.startswith("_"):
            check(node, node.name, example=True)
        elif isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
            check(node, node.name, example=True)
            for item in node.body:
                if (
                    isinstance(item, ast.FunctionDef)
                    and not item.name.startswith("_")
                    and not _is_property(item)
                ):
                    check(item, f"{node.name}.{item.name}", example=False)
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_public_objects_are_documented(path):
    assert _missing(path) == []


def test_the_rule_finds_what_is_missing(tmp_path):
    module = tmp_path / "m.py"
    module.write_text(
        "def f(x):\n"
        '    """No sections."""\n'
        "class C:\n"
        '    """A class.\n\n    >>> C()\n    """\n'
        "    def g(self, y):\n"
        '        """Args missing."""\n'
        "    @property\n    def p(self):\n"
        '        """A property needs neither."""\n'
        "def _private(z):\n    pass\ndef h():\n"
        '    """Nothing to pass.\n\n    >>> h()\n    """\n'
    )
    assert _missing(module) == [
        "f: no Args section",
        "f: no example (>>>)",
        "C.g: no Args section",
    ]
