"""A recipe's header quotes at most one measured number, and docs/results.md holds it where the header says.

The header is the block of ``#`` lines at the top of a recipe. Its one measured number, if any, is on a line

    # expected: <metric> <value> (docs/results.md#<anchor>)
    # expected: <metric> <mean> ± <sd> over <n> seeds (docs/results.md#<anchor>)

(the second for a number that moves between seeds, CPUs and library builds), and the value (the mean and the
spread) must appear in the section of docs/results.md under ``<anchor>``, so a re-run that changes the
number in results.md fails here until the header follows (one home for every number). Any other number with a
decimal point or a percent sign in a header must be the paper's (on a line that says ``Paper``).
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from markdown_sections import sections

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted((ROOT / "recipes").glob("*.yaml"))
RESULTS = ROOT / "docs" / "results.md"
EXPECTED = re.compile(
    r"^# expected: (?P<metric>.+?) (?P<value>\d[\d,]*(?:\.\d+)?%?)"
    r"(?: ± (?P<spread>\d+(?:\.\d+)?%?) over \d+ seeds)?"
    r" \(docs/results\.md#(?P<anchor>[\w-]+)\)\s*$"
)
MEASURED = re.compile(r"\d+\.\d+|\d%")  # what reads as a measured number: a decimal or a percentage
CITATION = re.compile(r"\u00a7\s*\d+(?:\.\d+)*")  # section signs citing docs/design are not measurements


def header(recipe: Path) -> list[str]:
    """The comment lines at the top of ``recipe``."""
    lines = []
    for line in recipe.read_text().splitlines():
        if not line.startswith("#"):
            break
        lines.append(line)
    return lines


def expected_lines(lines: list[str]) -> list[str]:
    return [line for line in lines if line.lower().startswith("# expected")]


def value_in(section: str, value: str) -> bool:
    """Whether ``value`` appears in ``section`` as a whole number (98.89% is not found in 198.89%)."""
    return re.search(rf"(?<![\d.]){re.escape(value)}(?![\d])", section) is not None


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_expected_metric_is_in_results_md(recipe: Path) -> None:
    claims = expected_lines(header(recipe))
    assert len(claims) <= 1, f"{recipe.name}: one expected metric per header, found {claims}"
    if not claims:
        return
    match = EXPECTED.match(claims[0])
    assert match, f"{recipe.name}: write it as '# expected: <metric> <value> (docs/results.md#<anchor>)'"
    found = sections(RESULTS.read_text())
    anchor, value = match.group("anchor"), match.group("value")
    assert anchor in found, f"{recipe.name}: docs/results.md has no heading with anchor #{anchor}"
    for number in (value, match.group("spread")):
        if number is not None:
            assert value_in(found[anchor], number), (
                f"{recipe.name}: {number} is not under docs/results.md#{anchor}"
            )


def test_the_header_pattern_reads_a_spread_over_seeds() -> None:
    line = "# expected: zone_acc 98.42% ± 0.57 over 3 seeds (docs/results.md#some-anchor)"
    match = EXPECTED.match(line)
    assert match and match.group("value") == "98.42%" and match.group("spread") == "0.57"
    assert EXPECTED.match("# expected: zone_acc 98.89% (docs/results.md#a)").group("spread") is None


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.name)
def test_no_other_measured_number_in_the_header(recipe: Path) -> None:
    for line in header(recipe):
        if line.lower().startswith("# expected") or "Paper" in line:
            continue
        number = MEASURED.search(CITATION.sub("", line))
        assert number is None, f"{recipe.name}: {number.group()!r} in {line!r}: link docs/results.md instead"


def test_the_quick_start_recipe_states_its_metric() -> None:
    """The README's quick start is the recipe a new user runs first: its header says what it prints."""
    assert expected_lines(header(ROOT / "recipes" / "digits_joint.yaml"))


def test_value_in_finds_whole_numbers_only() -> None:
    assert value_in("| **98.89%** |", "98.89%") and value_in("0.215 ± 0.013", "0.215")
    assert not value_in("198.89%", "98.89%") and not value_in("98.891", "98.89")
