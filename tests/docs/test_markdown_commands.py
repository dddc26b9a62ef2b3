"""Every command the docs show runs, in the order a reader runs them, on what the earlier commands wrote.

The code blocks of README.md and docs/*.md are read with pytest-codeblocks (``extract_from_file``), one test
per block, in document order, in one working folder per document (with ``recipes/``, ``benchmarks/`` and
``experiments/`` linked in, as in a clone). Shell blocks run in bash (``set -euo pipefail``) with ``lzn`` on
the PATH being tests/docs/lzn_shim.py (the real CLI with each recipe shrunk to its tiny overlay), served by a
fork server so that each call skips the imports. Python blocks run as written, in that folder. A block that
must not run here (an install, a download, a GPU) says so in the Markdown right above it, with
``<!--pytest.mark.skip(reason="...")-->``, where a reader sees the rule.
"""

from __future__ import annotations

import os
import runpy
import shlex
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from pytest_codeblocks import extract_from_file

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("**/*.md"))]
RUNS = ("bash", "sh", "python")  # the fences that are commands; yaml, text and others are shown, not run
HERE = Path(__file__).resolve().parent
LINKED = ("recipes", "benchmarks", "experiments")  # what the docs' relative paths read from a clone


def _blocks() -> list:
    """(document, block) for every runnable block, in document order, with the Markdown's own marks."""
    params = []
    for doc in DOCS:
        for block in extract_from_file(doc):
            if block.syntax not in RUNS:
                continue
            # The marks are written as Python in the Markdown; pytest-codeblocks evaluates them the same way.
            marks = [eval(m, {"pytest": pytest, "sys": sys}) for m in block.marks]
            name = f"{doc.relative_to(ROOT)}:{block.lineno}"
            params.append(pytest.param(doc, block, id=name, marks=marks))
    return params


@pytest.fixture(scope="module")
def lzn_bin(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A folder with the ``lzn`` the blocks call, and the fork server behind it
    (tests/docs/lzn_forkserver.py).

    Why a fork server: a new Python process spends ~6 s importing torch and Lightning; the docs call ``lzn`` a
    dozen times. Each call is still a process of its own (a fork of one freshly imported process).
    """
    folder = tmp_path_factory.mktemp("bin")
    sock = str(folder / "lzn.sock")
    server = subprocess.Popen(
        [sys.executable, str(HERE / "lzn_forkserver.py"), sock], stdout=subprocess.PIPE, text=True
    )
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        lzn = folder / "lzn"
        client = shlex.quote(str(HERE / "lzn_client.py"))
        lzn.write_text(f'#!/bin/sh\nexec {shlex.quote(sys.executable)} -I -S {client} "$@"\n')
        lzn.chmod(0o755)
        yield folder, sock
    finally:
        server.kill()
        server.wait()


@pytest.fixture(scope="module")
def workdirs() -> dict[Path, Path]:
    """One working folder per document, created on first use, shared by that document's blocks."""
    return {}


def _workdir(workdirs: dict[Path, Path], doc: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    if doc not in workdirs:
        folder = tmp_path_factory.mktemp(doc.stem)
        for name in LINKED:
            (folder / name).symlink_to(ROOT / name)
        workdirs[doc] = folder
    return workdirs[doc]


# Slow as a whole: a document's blocks build on each other's files, so they cannot be split between the fast
# and the slow suite, and the README's and guide's commands take ~2 and ~4 minutes on a 2-core machine.
@pytest.mark.slow
@pytest.mark.timeout(600)
@pytest.mark.parametrize(("doc", "block"), _blocks())
def test_docs_block_runs(
    doc: Path, block, workdirs: dict[Path, Path], lzn_bin: tuple[Path, str],
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    folder = _workdir(workdirs, doc, tmp_path_factory)
    where = f"{doc.relative_to(ROOT)} line {block.lineno}"
    if block.syntax == "python":
        monkeypatch.chdir(folder)
        script = folder / f".block_{block.lineno}.py"
        script.write_text(block.code)
        runpy.run_path(str(script), run_name="__main__")
        return
    bin_dir, sock = lzn_bin
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "LZN_FORKSERVER": sock}
    env["HF_HUB_OFFLINE"] = "1"
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\n" + block.code],
        cwd=folder, env=env, capture_output=True, text=True, timeout=580,
    )  # fmt: skip
    assert proc.returncode == 0, f"{where} failed ({proc.returncode}):\n{block.code}\n{proc.stderr[-4000:]}"
