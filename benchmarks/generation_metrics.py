"""Cost of the paper's generation metrics on features, on this CPU: time and peak memory per case.

Cases (random features; the cost depends on the sizes only):

* ``precision_recall``: :func:`lzn_lightning.metrics.precision_recall`, k = 3, ``--pr-n`` real and as many
  generated 2048-d features (Inception pool3's size), default blocks of 10,000;
* ``inception_score``: :func:`lzn_lightning.metrics.inception_score` of ``--is-n`` softmaxes over 1008 classes
  (the Inception graph's), splits of 5,000;
* ``cmmd``: :func:`lzn_lightning.metrics.cmmd` of ``--cmmd-n`` real and as many generated unit-length 768-d
  embeddings (CLIP ViT-L/14@336's size).

Each case runs once in a fresh subprocess (so its peak RSS is its own); the features are made before the clock
starts. Peak memory is the peak RSS above the RSS after the features were made. The feature networks
(Inception, CLIP) are not measured here: their weights cannot be downloaded on this machine.

Usage::

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_metrics.py --out docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from latent_ops import _current_rss_mib, _max_rss_mib, cpu_idle_fraction, machine_info
from results_md import publish
from worker import report, run_worker

CASES = ("precision_recall", "inception_score", "cmmd")
COMMAND = "OMP_NUM_THREADS=1 .venv/bin/python benchmarks/generation_metrics.py --out docs/performance.md"


def run_case(spec: dict[str, Any]) -> dict[str, Any]:
    """Make the case's random features, then time one call of its metric (call in a fresh process)."""
    import numpy as np
    import torch

    from lzn_lightning import metrics

    rng = np.random.default_rng(0)
    n = spec["n"]
    if spec["case"] == "precision_recall":
        real = rng.normal(size=(n, 2048)).astype(np.float32)  # as a feature network returns them
        fake = (0.1 + rng.normal(size=(n, 2048))).astype(np.float32)
        call = lambda: metrics.precision_recall(real, fake, k=3, batch_size=spec["batch_size"])  # noqa: E731
    elif spec["case"] == "inception_score":
        logits = rng.normal(size=(n, 1008)).astype(np.float32) * 3
        probs = torch.from_numpy(logits).softmax(1).numpy()
        call = lambda: metrics.inception_score(probs, split_size=5000)  # noqa: E731
    else:
        real = rng.normal(size=(n, 768)).astype(np.float32)
        real /= np.linalg.norm(real, axis=1, keepdims=True)
        fake = real + 0.05 * rng.normal(size=(n, 768)).astype(np.float32)
        fake /= np.linalg.norm(fake, axis=1, keepdims=True)
        call = lambda: metrics.cmmd(real, fake)  # noqa: E731
    baseline = _current_rss_mib()
    start, cpu_start = time.perf_counter(), time.process_time()
    value = call()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - cpu_start
    return {
        "seconds": seconds,
        "cpu_seconds": cpu_seconds,
        "peak_mib": _max_rss_mib() - baseline,
        "value": value,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
    }


def measure(args: argparse.Namespace) -> list[dict[str, Any]]:
    sizes = {"precision_recall": args.pr_n, "inception_score": args.is_n, "cmmd": args.cmmd_n}
    rows = []
    for case in args.cases:
        spec = {"case": case, "n": sizes[case], "batch_size": args.batch_size}
        print(f"running {case} n={spec['n']} ...", flush=True)
        result, why = run_worker(__file__, spec)
        if result is None:
            raise RuntimeError(f"the {case} worker failed ({why})")
        rows.append({**spec, **result})
        cpu, peak = result["cpu_seconds"], result["peak_mib"]
        print(f"  {result['seconds']:.1f} s ({cpu:.1f} s CPU), peak {peak:,.0f} MiB", flush=True)
    return rows


def table(rows: list[dict[str, Any]], args: argparse.Namespace, idle: tuple[Any, Any]) -> str:
    m = machine_info([])
    threads = rows[0]["threads"] if rows else "?"
    what = {
        "precision_recall": lambda r: (
            f"`precision_recall`, k=3, {r['n']:,} real x {r['n']:,} generated, 2048-d, "
            f"blocks of {r['batch_size']:,}"
        ),
        "inception_score": lambda r: (
            f"`inception_score`, {r['n']:,} softmaxes x 1008 classes, splits of 5,000"
        ),
        "cmmd": lambda r: f"`cmmd`, {r['n']:,} real x {r['n']:,} generated, 768-d",
    }
    lines = [
        "## Generation metrics on features (precision/recall, Inception Score, CMMD)",
        "",
        f"Command: `{COMMAND}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; torch {rows[0]['torch'] if rows else '?'} "
        f"({threads} thread{'s' if threads != 1 else ''}, OMP_NUM_THREADS=1), Python {m['python']}; "
        f"{m['date']}. "
        f"CPU idle just before / after the run: {_pct(idle[0])} / {_pct(idle[1])}.",
        "",
        "Random float32 features, made before the clock starts; float64 inside the metrics. One timed call "
        "per case in a fresh subprocess; *peak MiB* is the peak RSS above the RSS after the features were "
        "made. *CPU s* is the process's CPU time (on one thread: the wall time less the waits for a busy "
        "machine's cores); *per generated image* divides it by the number of generated samples. The feature "
        "networks (Inception, CLIP) are not measured: their weights cannot be downloaded on this machine.",
        "",
        "| case | wall s | CPU s | CPU per generated image, ms | peak MiB |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in rows:
        lines.append(
            f"| {what[r['case']](r)} | {r['seconds']:.1f} | {r['cpu_seconds']:.1f} | "
            f"{1000 * r['cpu_seconds'] / r['n']:.2f} | "
            f"{r['peak_mib']:,.0f} |"
        )
    return "\n".join(lines)


def _pct(x: float | None) -> str:
    return "?" if x is None else f"{100 * x:.0f}%"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument(
        "--pr-n", type=int, default=10000, help="real (= generated) features of precision_recall"
    )
    parser.add_argument("--batch-size", type=int, default=10000, help="precision_recall's distance block")
    parser.add_argument("--is-n", type=int, default=50000, help="softmaxes of inception_score")
    parser.add_argument("--cmmd-n", type=int, default=10000, help="real (= generated) embeddings of cmmd")
    parser.add_argument("--out", type=Path, help="write the table as a section of this Markdown file")
    args = parser.parse_args()
    if args.worker:
        report(run_case(json.loads(args.worker)))
        return
    idle_before = cpu_idle_fraction()
    rows = measure(args)
    idle_after = cpu_idle_fraction()
    publish(args.out, "generation_metrics", table(rows, args, (idle_before, idle_after)))


if __name__ == "__main__":
    sys.exit(main())
