"""Wall time of a recipe's training step on this machine: ``lzn fit`` on the recipe's real data, validation off.

Runs ``--steps`` steps through the CLI (the recipe's model, data, callbacks and optimiser as ``lzn fit`` builds
them; no logger, no validation) and prints each step's time and the median after ``--warmup`` steps, so a
change to the step is measured where users feel it (the quick start).

    python benchmarks/train_step_time.py --recipe recipes/digits_joint.yaml --steps 12
    python benchmarks/train_step_time.py --recipe recipes/cifar10_gen.yaml --steps 4 --warmup 1 \
        --config benchmarks/configs/synthetic_cifar_batch32.yaml     # overlays as for lzn fit
    PYTHONPATH=<checkout of another commit>/src python benchmarks/train_step_time.py   # the same for that code
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

import lzn_lightning
from lzn_lightning.cli import main as lzn


class StepTimer(pl.Callback):
    """Seconds of every training batch, start to end (forward, backward, optimiser step, EMA)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    args, overrides = p.parse_known_args()  # the rest: lzn fit overrides (--config overlay.yaml, --a.b=c)
    with tempfile.TemporaryDirectory() as root:
        cli = lzn([
            "fit", "--config", str(args.recipe), *overrides, f"--trainer.max_steps={args.steps}",
            "--trainer.limit_val_batches=0", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            f"--trainer.default_root_dir={root}", "--trainer.callbacks+=train_step_time.StepTimer",
        ])  # fmt: skip
    assert cli is not None
    # by name: this file runs as __main__, the CLI imported it again as train_step_time
    (timer,) = [cb for cb in cli.trainer.callbacks if type(cb).__name__ == "StepTimer"]
    ms = [round(s * 1e3) for s in timer.seconds]
    print(f"lzn_lightning from {lzn_lightning.__file__}; {args.recipe}")
    print(f"step ms: {ms}; median after {args.warmup}: {statistics.median(ms[args.warmup:])} ms")


if __name__ == "__main__":
    main()
