"""Wall time of a recipe's training step on this machine: `lzn fit` on the recipe's real data, no validation.

Runs ``--steps`` steps of the run ``lzn fit`` builds (``lzn_lightning.recipes.build_run``: the recipe's model,
data, callbacks and optimiser; no logger, no validation) and prints each step's time and the median after
``--warmup`` steps, so a change to the step is measured where users feel it (the quick start).

    python benchmarks/train_step_time.py --recipe recipes/digits_joint.yaml --steps 12
    python benchmarks/train_step_time.py --recipe recipes/cifar10_gen.yaml --steps 4 --warmup 1 \
        --config benchmarks/overlays/synthetic_cifar_batch32.yaml   # overlays as for lzn fit
    PYTHONPATH=<checkout of another commit>/src python benchmarks/train_step_time.py   # that code's time
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
from lzn_lightning.recipes import build_run


class StepTimer(pl.Callback):
    """Seconds of every training batch, start to end (forward, backward, optimiser step, EMA), on the wall
    clock and on the process's CPU clock (with ``OMP_NUM_THREADS=1`` the latter is the step's cost on one
    idle core, whatever else the machine runs)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self.cpu_seconds: list[float] = []
        self._start = (0.0, 0.0)

    def on_train_batch_start(self, *args: Any) -> None:
        self._start = (time.perf_counter(), time.process_time())

    def on_train_batch_end(self, *args: Any) -> None:
        self.seconds.append(time.perf_counter() - self._start[0])
        self.cpu_seconds.append(time.process_time() - self._start[1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--warmup", type=int, default=2)
    args, overrides = p.parse_known_args()  # the rest: lzn fit overrides (--config overlay.yaml, --a.b=c)
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as root:
        build_run(
            [args.recipe], overrides, max_steps=args.steps, root=root, logger=False, progress_bar=False,
            validation=False, callbacks=[timer],
        ).fit()  # fmt: skip
    print(f"lzn_lightning from {lzn_lightning.__file__}; {args.recipe}")
    for clock, seconds in (("wall", timer.seconds), ("CPU", timer.cpu_seconds)):
        ms = [round(s * 1e3) for s in seconds]
        print(f"{clock} step ms: {ms}; median after {args.warmup}: {statistics.median(ms[args.warmup :])} ms")


if __name__ == "__main__":
    main()
