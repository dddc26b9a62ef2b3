"""Every relative link of the docs reaches a file, and every ``page.md#anchor`` a heading of that page.

Numbers live in docs/results.md and docs/performance.md, and the README, guide, notes and recipes link to
their sections by anchor, so a renamed heading must not leave a link pointing nowhere.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_sections import sections

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
LINK = re.compile(r"\]\(([^)\s]+)\)")  # [text](target)
FENCE = re.compile(r"^\s*```.*?^\s*```", re.S | re.M)
RECIPE_LINK = re.compile(r"docs/(results|performance)\.md#([\w-]+)")


def _links(doc: Path) -> list[str]:
    return [t for t in LINK.findall(FENCE.sub("", doc.read_text())) if not re.match(r"[a-z]+:", t)]


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(doc: Path) -> None:
    broken = []
    for target in _links(doc):
        path, _, anchor = target.partition("#")
        page = (doc.parent / path).resolve() if path else doc
        if not page.exists():
            broken.append(target)
        elif anchor and page.suffix == ".md" and anchor not in sections(page.read_text()):
            broken.append(target)
    assert not broken, f"{doc.relative_to(ROOT)}: links to nothing: {broken}"


def test_recipe_comments_link_existing_results_sections() -> None:
    found = {
        page: sections((ROOT / "docs" / f"{page}.md").read_text()) for page in ("results", "performance")
    }
    broken = [
        f"{recipe.name}: {page}.md#{anchor}"
        for recipe in sorted((ROOT / "recipes").glob("*.yaml"))
        for page, anchor in RECIPE_LINK.findall(recipe.read_text())
        if anchor not in found[page]
    ]
    assert not broken, broken
