"""One PNG of a representation probe against training steps (``quality.py --part repr --score-at ...``).

Two panels (linear probe and 20-NN on the anchors); a line per trained method through its scored steps (the
mean over seeds), and a dashed horizontal line per untrained reference: raw pixels (from the JSON) and every
method of the ``--also`` JSONs that has no steps (e.g. the random-init encoder of a plain ``quality.py`` run).

    python benchmarks/plot_steps.py docs/quality_repr_fashion_2400.json \
        --also docs/quality_repr_fashion.json --out docs/img/repr_fashion_steps.png
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

PANELS = [("linear_probe", "linear probe, anchors (%)"), ("knn", "20-NN, anchors (%)")]


def curves(result: dict[str, Any], key: str) -> dict[str, tuple[list[int], list[float]]]:
    """Method -> (steps, mean score in % over the seeds that reached each step); runs with ``at_steps``."""
    out = {}
    for name, runs in result["runs"].items():
        points = [r["at_steps"] for r in runs if "at_steps" in r]
        steps = sorted({int(s) for p in points for s in p})
        if steps:
            means = [100 * statistics.mean(p[str(s)][key] for p in points if str(s) in p) for s in steps]
            out[name] = (steps, means)
    return out


def references(result: dict[str, Any], also: list[dict[str, Any]], key: str) -> dict[str, float]:
    """Untrained baselines in %: raw pixels, and every method of ``also`` that was not trained (fit 0 s)."""
    refs = {}
    if f"raw_pixels_{key}" in result:
        refs["raw pixels"] = 100 * result[f"raw_pixels_{key}"]
    for other in also:
        for name, runs in other["runs"].items():
            runs = [r for r in runs if r.get("fit_seconds") == 0 and key in r]
            if runs:
                refs[name] = 100 * statistics.mean(r[key] for r in runs)
    return refs


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("result", type=Path, help="a quality.py repr JSON scored with --score-at")
    p.add_argument("--also", type=Path, nargs="*", default=[], help="quality.py JSONs with untrained methods")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    result = json.loads(args.result.read_text())
    also = [json.loads(path.read_text()) for path in args.also]
    if not curves(result, "linear_probe"):
        raise SystemExit(f"{args.result}: no run has at_steps (score it with quality.py --score-at)")
    fig, axes = plt.subplots(1, len(PANELS), figsize=(5.5 * len(PANELS), 4.2))
    for ax, (key, label) in zip(axes, PANELS, strict=True):
        for name, (steps, means) in curves(result, key).items():
            ax.plot(steps, means, marker="o", label=name)
            print(
                f"{label}, {name}: " + ", ".join(f"{s}: {m:.2f}" for s, m in zip(steps, means, strict=True))
            )
        for i, (name, value) in enumerate(references(result, also, key).items()):
            ax.axhline(value, linestyle="--", color=f"C{7 + i}", label=name)
            print(f"{label}, {name}: {value:.2f}")
        ax.set_xlabel("training steps")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.suptitle(f"{result['recipe']}: probe against training steps", fontsize=10)
    fig.tight_layout(rect=(0, 0.045 * (1 + len(labels) // 2), 1, 1))  # why: room for the legend below
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
