"""Run the ``lzn`` command in-process the way a shell would see it: exit status, stdout and stderr."""

from __future__ import annotations

import pytest

from lzn_lightning.cli import main


def run_lzn(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    """``lzn argv...``: (exit status, stdout, stderr); a clean return is status 0."""
    try:
        main(argv)
        code = 0
    except SystemExit as exit_:
        code = int(exit_.code or 0)
    out = capsys.readouterr()
    return code, out.out, out.err
