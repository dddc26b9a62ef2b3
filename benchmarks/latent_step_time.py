"""CPU time of the latent ops as a training step runs them (forward + backward), median of repeats.

* compute_latent: b = n, 20 steps, euler and dpm++, read-out ``z.square().mean()``;
* joint label step: dpm++ latents traced 100 steps into 10 label zones, prob-form alignment loss;
* two-view step: euler latents (noise 0.45) traced 20 steps into the second view's zones, log form.

Prints a Markdown table. To compare two versions of the code, run it once per checkout:

    OMP_NUM_THREADS=2 python benchmarks/latent_step_time.py
    OMP_NUM_THREADS=1 python benchmarks/latent_step_time.py --geometry 128 64 --cpu-time  # a recipe's
    OMP_NUM_THREADS=2 PYTHONPATH=<checkout of another commit>/src python benchmarks/latent_step_time.py
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable

import torch

import lzn_lightning
from lzn_lightning.latent import alignment_loss, compute_latent, trace_back


def median_seconds(
    fn: Callable[[], None], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = clock()
        fn()
        times.append(clock() - start)
    return statistics.median(times)


def step_ops(n: int, d: int) -> dict[str, Callable[[], None]]:
    """The four timed ops at b = n, dimension d, each a closure over its own random inputs."""
    anchors = torch.randn(n, d, requires_grad=True)
    noise = torch.randn(n, d)
    labels = torch.randn(10, d, requires_grad=True)
    classes = torch.randint(0, 10, (n,))
    view2 = anchors.detach() + 0.1 * torch.randn(n, d)

    def latent(solver: str) -> Callable[[], None]:
        def run() -> None:
            compute_latent(anchors, anchors, noise, steps=20, solver=solver).square().mean().backward()

        return run

    def joint() -> None:
        z = compute_latent(anchors, anchors, noise, steps=20, solver="dpm++")
        _, logp = trace_back(z, labels, steps=100, targets=classes)
        alignment_loss(logp, form="prob").backward()

    def two_view() -> None:
        z = compute_latent(anchors, anchors, 0.45 * noise, steps=20, solver="euler")
        _, logp = trace_back(z, view2, steps=20, targets=torch.arange(n))
        alignment_loss(logp, form="log").backward()

    ops = {"compute_latent euler": latent("euler"), "compute_latent dpm++": latent("dpm++")}
    return ops | {"joint label step": joint, "two-view step": two_view}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument(
        "--geometry", type=int, nargs=2, action="append", metavar=("N", "D"),
        help="batch size and latent dimension (repeatable; default: 256 32, 256 200, 1024 200)",
    )  # fmt: skip
    p.add_argument(
        "--cpu-time", action="store_true",
        help="time with the process's CPU clock (with OMP_NUM_THREADS=1: the op's cost on one idle core, "
        "whatever else the machine runs) instead of the wall clock",
    )  # fmt: skip
    args = p.parse_args()
    clock = time.process_time if args.cpu_time else time.perf_counter
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(f"lzn_lightning from {lzn_lightning.__file__}, torch {torch.__version__}, {threads} threads")
    print(f"| op | b = n | d | {'CPU ' if args.cpu_time else ''}ms |")
    print("|---|---|---|---:|")
    for n, d in args.geometry or ((256, 32), (256, 200), (1024, 200)):
        for name, fn in step_ops(n, d).items():
            ms = median_seconds(fn, args.repeats, clock) * 1e3
            print(f"| {name} | {n} | {d} | {ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
