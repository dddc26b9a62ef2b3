"""Plot a metric logged by ``lzn fit`` (CSVLogger's metrics.csv) against the training step, one line a run.

    python experiments/plot_curves.py \
        "LZN joint (recipe)=runs/mnist_joint_curve/lightning_logs/version_0/metrics.csv" \
        "LZN joint, no image decoder=runs/mnist_joint_curve_no_decoder/lightning_logs/version_0/metrics.csv" \
        --metric zone_acc --reference "supervised CE at 800 steps=0.974" --out docs/img/mnist_joint_curve.png

Each positional argument is ``label=path``; ``--reference label=value`` draws a horizontal line (repeatable).
``label=path::metric`` plots that run's own metric instead of ``--metric`` (two terms of one log together).
``--log-y`` plots on a log scale (gradient norms that differ by orders of magnitude), e.g.

    python experiments/plot_curves.py "recipe=A/metrics.csv" "decoder cut off=B/metrics.csv" \
        --metric train/health/grad_norm/image.encoder --ylabel "encoder gradient norm" --log-y --out g.png

Prints the plotted points as a Markdown table, so the numbers behind the figure can go next to it.
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt


def points(path: Path, metric: str) -> list[tuple[int, float]]:
    """(step, value) of every row of a metrics.csv that holds ``metric``."""
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(metric)]
    if not rows:
        raise SystemExit(f"{path} has no {metric!r} values yet")
    return [(int(r["step"]) + 1, float(r[metric])) for r in rows]  # logged at step s after s + 1 updates


def references(specs: list[str]) -> list[tuple[str, float]]:
    """``--reference label=value`` arguments as (label, value) pairs."""
    return [(label, float(value)) for label, value in (spec.split("=", 1) for spec in specs)]


def draw_references(ax, refs: list[tuple[str, float]]) -> None:
    """A dashed horizontal line per reference, labelled at the left edge (call after the x scale)."""
    for label, value in refs:
        ax.axhline(value, linestyle="--", color="grey", linewidth=1)
        ax.annotate(label, (ax.get_xlim()[0], value), textcoords="offset points", xytext=(4, 4), fontsize=8)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", help="label=path/to/metrics.csv, or label=path::metric")
    p.add_argument("--metric", default="zone_acc")
    p.add_argument("--reference", action="append", default=[], help="label=value: a horizontal line")
    p.add_argument("--ylabel", default="test accuracy through the label zones")
    p.add_argument("--log-y", action="store_true", help="log-scale y axis")
    p.add_argument("--legend-loc", default="lower right", help="matplotlib legend location")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    table = []
    for spec in args.runs:
        label, path = spec.split("=", 1)
        path, _, metric = path.partition("::")
        pts = points(Path(path), metric or args.metric)
        ax.plot([s for s, _ in pts], [v for _, v in pts], marker="o", label=label)
        table += [(label, s, v) for s, v in pts]
    draw_references(ax, references(args.reference))
    if args.log_y:
        ax.set_yscale("log")
    ax.set_xlabel("training step")
    ax.set_ylabel(args.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc=args.legend_loc)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print("| run | step | value |\n|---|---:|---:|")
    for label, step, value in table:
        print(f"| {label} | {step} | {value:.4f} |")


if __name__ == "__main__":
    main()
