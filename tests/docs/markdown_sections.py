"""The sections of a Markdown page by the anchors GitHub gives their headings, for the docs' link tests."""

from __future__ import annotations

import re

HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
FENCE = re.compile(r"^\s*(```|~~~)")


def slug(title: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped (``_``, ``-`` kept), spaces to ``-``."""
    return re.sub(r"[^\w\- ]", "", title.strip().lower()).replace(" ", "-")


def sections(text: str) -> dict[str, str]:
    """Each heading's anchor -> its section's text (the heading up to the next heading of its level or above).

    Lines inside fenced code blocks are not headings (a ``# comment`` in a bash block is not one). A repeated
    anchor gets ``-1``, ``-2``, ... as on GitHub.
    """
    lines = text.splitlines()
    headings: list[tuple[int, int, str]] = []  # (line index, level, anchor)
    seen: dict[str, int] = {}
    fenced = False
    for i, line in enumerate(lines):
        if FENCE.match(line):
            fenced = not fenced
            continue
        match = None if fenced else HEADING.match(line)
        if match:
            anchor = slug(match.group(2))
            count = seen.get(anchor, 0)
            seen[anchor] = count + 1
            headings.append((i, len(match.group(1)), f"{anchor}-{count}" if count else anchor))
    found = {}
    for k, (start, level, anchor) in enumerate(headings):
        end = next((i for i, lvl, _ in headings[k + 1 :] if lvl <= level), len(lines))
        found[anchor] = "\n".join(lines[start:end])
    return found
