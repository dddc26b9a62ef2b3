"""Run a measurement in a fresh subprocess of a benchmark script, so that its peak memory is its own.

The script, called with ``--worker <json spec>``, measures and prints one line ``RESULT <json>``
(:func:`report`); :func:`run_worker` starts it and reads that line back.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

_PREFIX = "RESULT "


def report(result: dict[str, Any]) -> None:
    """Print a worker's result for :func:`run_worker` (call in the worker)."""
    print(_PREFIX + json.dumps(result), flush=True)


def run_worker(script: str | Path, spec: dict[str, Any]) -> tuple[dict[str, Any] | None, str]:
    """Run ``script --worker <spec>`` in a fresh Python process.

    Returns:
        ``(result, "")``, or ``(None, why)`` when the worker failed (e.g. killed for memory) or printed no
        result; ``why`` holds its exit code and the last line of its standard error.
    """
    proc = subprocess.run(
        [sys.executable, str(Path(script).resolve()), "--worker", json.dumps(spec)],
        capture_output=True,
        text=True,
        check=False,
    )
    lines = [line for line in proc.stdout.splitlines() if line.startswith(_PREFIX)]
    if proc.returncode != 0 or not lines:
        tail = proc.stderr.strip().splitlines()[-1:] or ["no output"]
        return None, f"exit {proc.returncode}: {tail[0]}"
    return json.loads(lines[-1].removeprefix(_PREFIX)), ""
