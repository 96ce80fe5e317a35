"""The documentation: generated pages current, every relative link resolving, no machine paths, the
site built."""

import importlib.util
import re
import subprocess
import sys
from pathlib import Path

import pytest

from cli.docs import api_reference, reference

ROOT = Path(__file__).resolve().parent.parent
PAGES = sorted([ROOT / "README.md", ROOT / "CHANGELOG.md", *(ROOT / "docs").glob("*.md")])
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)")


def _anchors(page: Path) -> set[str]:
    """The anchors of `page`'s headings, spelled as GitHub and mkdocs spell them."""
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    headings = re.findall(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M)
    return {re.sub(r"\s", "-", re.sub(r"[^\w\s-]", "", h.lower()).strip()) for h in headings}


def _links(page: Path) -> list[str]:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)
    return [t for t in LINK.findall(text) if not re.match(r"[a-z]+:", t)]


def test_cli_reference_is_current():
    assert (ROOT / "docs" / "cli.md").read_text() == reference(), (
        "docs/cli.md is stale: run `python -m cli.docs cli > docs/cli.md`"
    )


def test_api_reference_is_current():
    assert (ROOT / "docs" / "api.md").read_text() == api_reference(), (
        "docs/api.md is stale: run `python -m cli.docs api > docs/api.md`"
    )


def test_every_command_is_documented():
    text = (ROOT / "docs" / "cli.md").read_text()
    from cli.main import cli

    assert {f"## `landscape {name}`" for name in cli.commands} <= set(text.splitlines())


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page):
    broken = []
    for target in _links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(target)
        elif anchor and dest.suffix == ".md" and anchor not in _anchors(dest):
            broken.append(target)
    assert broken == []


def test_anchor_spelling():
    """The slug rule the link test relies on, on headings of the pages."""
    assert {
        "errors-and-warnings",
        "the-quick-study-resultsquick",
        "expected-cost-on-one-gpu",
    } <= _anchors(ROOT / "docs" / "errors.md") | _anchors(ROOT / "docs" / "study.md")


def test_no_machine_paths():
    """Nothing in the repository points into this project's machines or their shared folders."""
    files = subprocess.run(
        ["git", "ls-files"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    patterns = ("/" + "work/", "../" + "shared", "/" + "home/", "/" + "tmp/bash_jobs")
    texts = [
        name
        for name in files
        if (ROOT / name).is_file() and Path(name).suffix not in {".png", ".pdf", ".h5"}
    ]
    hits = [
        f"{name}: {p}"
        for name in texts
        for p in patterns
        if p in (ROOT / name).read_text(errors="ignore")
    ]
    assert hits == []


@pytest.mark.skipif(
    importlib.util.find_spec("mkdocs") is None, reason="mkdocs is not installed (docs extra)"
)
def test_site_builds_strict(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "-q", "-d", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stderr
