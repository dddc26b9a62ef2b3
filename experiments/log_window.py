"""Mean of logged training metrics over a window of steps, per run, as a Markdown table: what a run's health
looked like late in training, for the page beside a result.

    python experiments/log_window.py --steps 701:800 --groups \
        --metric train/grad_norm --metric train/health/latent_sq/image --metric train/image/decoder \
        "log, seed 0=L0/metrics.csv" "log, seed 1=L1/metrics.csv" "prob, seed 0=P0/metrics.csv"

Each positional argument is ``label=path`` to a CSVLogger metrics.csv written by ``lzn fit`` or
``benchmarks/quality.py --log``. A cell is the mean of the metric's logged values at 1-based steps
``A..B`` (the steps plot_curves prints: a value logged at step s is read as step s + 1), so one noisy logged
batch does not decide it; the last column says how many values each cell averages. Runs that share a label
prefix before ", seed" are also averaged in a last row per group (``--groups``).
"""

from __future__ import annotations

import argparse
import statistics
from pathlib import Path

from plot_curves import points


def window_means(path: Path, metrics: list[str], first: int, last: int) -> tuple[list[float], int]:
    """Mean of each metric over 1-based steps ``first..last`` of one metrics.csv, and the number of values
    averaged (the smallest over the metrics).

    Raises:
        SystemExit: a metric the run never logged, or none of its values inside the window.
    """
    means, counts = [], []
    for metric in metrics:
        inside = [v for step, v in points(path, metric) if first <= step <= last]
        if not inside:
            raise SystemExit(f"{path}: no {metric!r} values at steps {first}..{last}")
        means.append(statistics.mean(inside))
        counts.append(len(inside))
    return means, min(counts)


def group_of(label: str) -> str:
    """``"log, seed 1"`` -> ``"log"``: the label without its seed part."""
    return label.split(", seed")[0]


def markdown(rows: list[tuple[str, list[float], int]], metrics: list[str], groups: bool) -> str:
    """The table: one row per run (and per group of runs with ``groups``), one column per metric."""
    lines = [
        "| run | " + " | ".join(metrics) + " | values per cell |",
        "|---|" + "---:|" * (len(metrics) + 1),
    ]
    lines += [
        f"| {label} | " + " | ".join(f"{v:.4g}" for v in means) + f" | {n} |" for label, means, n in rows
    ]
    if groups:
        by_group: dict[str, list[list[float]]] = {}
        for label, means, _ in rows:
            by_group.setdefault(group_of(label), []).append(means)
        for name, members in by_group.items():
            if len(members) > 1:
                avg = [statistics.mean(col) for col in zip(*members, strict=True)]
                lines.append(
                    f"| **{name}, mean of {len(members)} runs** | "
                    + " | ".join(f"{v:.4g}" for v in avg)
                    + " | |"
                )
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("runs", nargs="+", help="label=path/to/metrics.csv")
    p.add_argument(
        "--metric", action="append", required=True, help="a logged metric, e.g. train/grad_norm (repeatable)"
    )
    p.add_argument("--steps", required=True, help="A:B, the 1-based step window (inclusive)")
    p.add_argument("--groups", action="store_true", help="also average the runs of each label prefix")
    args = p.parse_args()
    try:
        first, last = (int(x) for x in args.steps.split(":"))
    except ValueError:
        raise SystemExit(f"--steps {args.steps!r}: expected A:B, e.g. 701:800") from None
    rows = []
    for spec in args.runs:
        label, sep, path = spec.partition("=")
        if not sep:
            raise SystemExit(f"{spec!r}: expected label=path/to/metrics.csv")
        means, n = window_means(Path(path), args.metric, first, last)
        rows.append((label, means, n))
    print(markdown(rows, args.metric, args.groups))


if __name__ == "__main__":
    main()
