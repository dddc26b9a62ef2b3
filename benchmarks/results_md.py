"""The one writer of generated sections in docs/results.md and docs/performance.md, shared by every benchmark.

A generated section sits between ``<!-- bench:NAME:start -->`` and ``<!-- bench:NAME:end -->``; rerunning a
benchmark replaces its section in place and leaves the hand-written text around it alone.
"""

from __future__ import annotations

from pathlib import Path


def markers(name: str) -> tuple[str, str]:
    """(start, end) marker lines of section ``name``."""
    return f"<!-- bench:{name}:start -->", f"<!-- bench:{name}:end -->"


def section(name: str, body: str) -> str:
    """``body`` wrapped in the markers of section ``name``."""
    start, end = markers(name)
    return f"{start}\n{body.strip()}\n{end}"


def write_section(path: Path, name: str, body: str) -> None:
    """Replace section ``name`` of ``path`` with ``body`` (append it if absent; create the file if needed)."""
    start, end = markers(name)
    text = path.read_text() if path.exists() else "# Results\n"
    if text.count(start) > 1 or text.count(end) > 1:
        raise ValueError(f"{path} holds section {name!r} more than once; delete the stale copy first")
    if start in text and end in text:
        head, rest = text.split(start, 1)
        text = head + section(name, body) + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section(name, body) + "\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def publish(path: Path | None, name: str, body: str) -> None:
    """Print ``body`` and, when ``path`` is given, write it as section ``name`` of ``path``."""
    print("\n" + body)
    if path is not None:
        write_section(path, name, body)
        print(f"\nwrote {path}")
