"""The shared writer of the generated sections of docs/results.md and docs/performance.md
(benchmarks/results_md.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from results_md import write_section


def test_write_section_replaces_in_place_and_keeps_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "results.md"
    write_section(path, "a", "first")
    path.write_text(path.read_text() + "\nhand-written text\n")
    write_section(path, "b", "other")
    write_section(path, "a", "second")
    text = path.read_text()
    assert "second" in text and "first" not in text
    assert text.index("bench:a:start") < text.index("hand-written text") < text.index("bench:b:start")
    assert text.count("bench:a:start") == 1 and "other" in text


def test_a_section_present_twice_is_refused_not_half_updated(tmp_path: Path) -> None:

    path = tmp_path / "results.md"
    write_section(path, "a", "first")
    path.write_text(path.read_text() * 2)  # e.g. a copy-paste left a stale duplicate
    with pytest.raises(ValueError, match="more than once"):
        write_section(path, "a", "second")


@pytest.mark.parametrize("page", ["results.md", "performance.md"])
def test_docs_results_has_each_generated_section_once(page: str) -> None:
    text = (Path(__file__).parents[2] / "docs" / page).read_text()
    import re

    names = re.findall(r"<!-- bench:(\S+):start -->", text)
    assert names and len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
