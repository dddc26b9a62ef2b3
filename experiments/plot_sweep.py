"""Plot a knob sweep: one metric logged by ``lzn fit`` (CSVLogger's metrics.csv) against the knob's value, one
line per series, e.g. test accuracy against the field size (batch) at two training budgets:

    python experiments/plot_sweep.py \
        --series "800 steps" 64=runs/b64/metrics.csv 128=runs/b128/metrics.csv 256=runs/b256/metrics.csv \
        --series "400 steps" 64=runs/b64/metrics.csv 128=runs/b128/metrics.csv --at-step 400 \
        --xlabel "field size (batch)" --log-x --reference "supervised CE=0.9713" --out docs/img/sweep.png

Each ``--series LABEL X=PATH ...`` is one line; a point takes the run's last logged value of ``--metric``, or
its value at ``--at-step`` (the 1-based step plot_curves prints; applies to the series given before it, or to
every series when given first). Prints the plotted points as a Markdown table, for the page beside the figure.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI machines
import matplotlib.pyplot as plt
from plot_curves import draw_references, points, references


def value_at(path: Path, metric: str, step: int | None) -> tuple[int, float]:
    """(step, value) of ``metric`` in a metrics.csv: the last logged one, or the one logged at ``step``."""
    pts = points(path, metric)
    if step is None:
        return pts[-1]
    for s, v in pts:
        if s == step:
            return s, v
    raise SystemExit(f"{path} has no {metric!r} value at step {step}; it has steps {[s for s, _ in pts]}")


class _Series(argparse.Action):
    """``--series LABEL X=PATH ...`` and ``--at-step N`` (for the series before it): one list of series."""

    def __call__(self, parser, namespace, values, option_string=None):
        series = getattr(namespace, "series_list", None) or []
        if option_string == "--at-step":
            if series:
                series[-1]["step"] = int(values)
            else:
                namespace.default_step = int(values)
        else:
            label, *runs = values
            if not runs or any("=" not in r for r in runs):
                parser.error(f"--series {label!r} needs X=PATH pairs after its label, got {runs}")
            series.append({"label": label, "runs": [r.split("=", 1) for r in runs], "step": None})
        namespace.series_list = series


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--series", nargs="+", action=_Series, required=True, metavar="LABEL X=PATH")
    p.add_argument("--at-step", action=_Series, metavar="N", help="the step to read (default: the last)")
    p.add_argument("--metric", default="zone_acc")
    p.add_argument("--reference", action="append", default=[], help="label=value: a horizontal line")
    p.add_argument("--xlabel", required=True)
    p.add_argument("--ylabel", default="test accuracy through the label zones")
    p.add_argument("--log-x", action="store_true", help="log2-scale x axis (field sizes 64, 128, ...)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    default_step = getattr(args, "default_step", None)

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    table = []
    for s in args.series_list:
        step = s["step"] if s["step"] is not None else default_step
        xy = []
        for x, path in s["runs"]:
            at, value = value_at(Path(path), args.metric, step)
            xy.append((float(x), value))
            table.append((s["label"], x, at, value))
        xy.sort()
        ax.plot([x for x, _ in xy], [v for _, v in xy], marker="o", label=s["label"])
    if args.log_x:
        ax.set_xscale("log", base=2)
        xs = sorted({float(x) for s in args.series_list for x, _ in s["runs"]})
        ax.set_xticks(xs, [f"{x:g}" for x in xs])
    # after the x scale: a label placed at the old left edge would fall outside the new limits
    refs = references(args.reference)
    if refs:  # room above the highest line for its label
        lo, hi = ax.get_ylim()
        ax.set_ylim(lo, max(hi, max(v for _, v in refs) + 0.08 * (hi - lo)))
    draw_references(ax, refs)
    ax.set_xlabel(args.xlabel)
    ax.set_ylabel(args.ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"| series | {args.xlabel} | step | value |\n|---|---:|---:|---:|")
    for label, x, step, value in table:
        print(f"| {label} | {x} | {step} | {value:.4f} |")


if __name__ == "__main__":
    main()
