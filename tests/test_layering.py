"""The architecture's rules (docs/conventions.md, "Layout"): the dependency direction cli -> fusion,
landscape; no import circles; `fusion` needs nothing of `landscape` but its errors and spec modules;
`--help` loads no heavy library; curated exports resolve to the objects they name."""

import ast
import importlib
import json
import pkgutil
import subprocess
import sys
import types
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("landscape", "fusion", "cli")
FORBIDDEN = {"landscape": {"fusion", "cli"}, "fusion": {"cli"}}
HEAVY = ("torch", "matplotlib", "h5py", "ot", "scipy", "sklearn", "seaborn")


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for package in PACKAGES for p in (ROOT / package).rglob("*.py")}


def _imports(path: Path, name: str, known: dict[str, Path]) -> set[str]:
    """Every project module that `path` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known}
    return {m for m in found if m in known}


def test_no_forbidden_imports():
    known = _modules()
    offenders = {
        name: {m.split(".")[0] for m in _imports(path, name, known)} & FORBIDDEN[name.split(".")[0]]
        for name, path in known.items()
        if name.split(".")[0] in FORBIDDEN
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on_stack, out = {}, {}, [], set(), []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph[v]:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


def test_no_import_circles():
    known = _modules()
    graph = {name: _imports(path, name, known) - {name} for name, path in known.items()}
    assert _cycles(graph) == []


def test_cycle_detector_finds_a_circle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def _loaded_after(code: str) -> list[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_fusion_needs_only_the_errors_and_spec_modules_of_landscape():
    modules = sorted(n for n in _modules() if n.startswith("fusion"))
    code = f"import fusion, importlib\nfor m in {modules!r}: importlib.import_module(m)"
    loaded = [m for m in _loaded_after(code) if m.split(".")[0] == "landscape"]
    assert set(loaded) <= {"landscape", "landscape._lazy", "landscape.errors", "landscape.spec"}, (
        loaded
    )


@pytest.mark.parametrize(
    "command", [[], ["eig"], ["study"], ["fuse"], ["barrier"], ["train"], ["contour"]]
)
def test_help_loads_no_heavy_library(command):
    code = (
        f"from cli.main import main\ntry:\n    main({[*command, '--help']!r})\nexcept "
        "SystemExit:\n    pass"
    )
    loaded = {m.split(".")[0] for m in _loaded_after(code)}
    assert loaded & set(HEAVY) == set()


def _lazy_packages() -> list[str]:
    return sorted(
        n for n, p in _modules().items() if p.name == "__init__.py" and "_EXPORTS" in p.read_text()
    )


@pytest.mark.parametrize("package", _lazy_packages())
def test_curated_exports_are_the_objects_they_name(package):
    pkg = importlib.import_module(package)
    for info in pkgutil.walk_packages(
        pkg.__path__, f"{package}."
    ):  # every submodule loaded: no name shadowed
        importlib.import_module(info.name)
    for name in pkg.__all__:
        value = getattr(pkg, name)
        assert not isinstance(value, types.ModuleType), f"{package}.{name} is a module"
        assert value is getattr(importlib.import_module(pkg._EXPORTS[name], package), name)
