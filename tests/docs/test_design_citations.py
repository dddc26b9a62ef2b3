"""Every design citation in the code points at a section that exists: ``docs/design/<doc>.md §N[.M]`` (and the
sections listed after it, ``§1.3, §2.1``) must name a heading ``## N.`` / ``### N.M`` of that file, and no
``§`` may stand without its document (a citation of a file outside the repository cannot be followed)."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CITATION = re.compile(r"docs/design/(?P<doc>[\w-]+)\.md(?P<sections>(?:[ ,/]*§ ?\d+(?:\.\d+)?)+)")
SECTION = re.compile(r"§ ?(\d+(?:\.\d+)?)")
HEADING = re.compile(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", re.MULTILINE)


def cited_files() -> list[Path]:
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "src", "modalities", "recipes",
         "benchmarks", "tests", "pyproject.toml", "Makefile"],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return [ROOT / f for f in listed if f.endswith((".py", ".yaml", ".toml", ".md")) or f == "Makefile"]


def headings(doc: str) -> set[str]:
    path = ROOT / "docs" / "design" / f"{doc}.md"
    return set(HEADING.findall(path.read_text())) if path.is_file() else set()


def test_the_design_documents_exist() -> None:
    for doc in ("lzn", "architecture", "networks"):
        assert (ROOT / "docs" / "design" / f"{doc}.md").is_file(), f"docs/design/{doc}.md is missing"


@pytest.mark.parametrize("path", cited_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_citation_names_an_existing_section(path: Path) -> None:
    text = path.read_text(errors="replace")
    if "§" not in text or path == Path(__file__):
        return
    covered: list[tuple[int, int]] = []
    for m in CITATION.finditer(text):
        covered.append(m.span())
        found = headings(m["doc"])
        for section in SECTION.findall(m["sections"]):
            line = text.count("\n", 0, m.start()) + 1
            assert section in found, (
                f"{path.name}:{line} cites docs/design/{m['doc']}.md §{section}, which has no such section"
            )
    for m in re.finditer("§", text):
        line = text.count("\n", 0, m.start()) + 1
        assert any(a <= m.start() < b for a, b in covered), (
            f"{path.name}:{line}: a § without its docs/design/<doc>.md"
        )
