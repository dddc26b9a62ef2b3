"""CPU time of the latent ops as a training step runs them (forward + backward), median of repeats.

* compute_latent: b = n, 20 steps, euler and dpm++, read-out ``z.square().mean()``;
* joint label step: dpm++ latents traced 100 steps into 10 label zones, prob-form alignment loss;
* two-view step: euler latents (noise 0.45) traced 20 steps into the second view's zones, log form.

Prints a Markdown table. To compare two versions of the code, run it once per checkout:

    OMP_NUM_THREADS=2 python benchmarks/latent_step_time.py
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


def median_seconds(fn: Callable[[], None], repeats: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
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
    args = p.parse_args()
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    print(f"lzn_lightning from {lzn_lightning.__file__}, torch {torch.__version__}, {threads} threads")
    print("| op | b = n | d | ms |")
    print("|---|---|---|---:|")
    for n, d in ((256, 32), (256, 200), (1024, 200)):
        for name, fn in step_ops(n, d).items():
            print(f"| {name} | {n} | {d} | {median_seconds(fn, args.repeats) * 1e3:.1f} |", flush=True)


if __name__ == "__main__":
    main()
