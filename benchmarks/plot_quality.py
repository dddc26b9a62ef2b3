"""One PNG of the side-by-side quality results written by benchmarks/quality.py: a panel per metric, a bar per
method (the mean over seeds) with each seed as a dot, so the seed spread is visible next to the gap.

    python benchmarks/plot_quality.py docs/quality_joint_digits.json docs/quality_gen_digits.json \
        docs/quality_repr_digits.json --out docs/img/quality_digits.png
"""

from __future__ import annotations

import argparse
import json
import textwrap
from pathlib import Path

# part -> [(metric key, axis label, lower is better)]
PANELS = {
    "joint": [("test_accuracy", "test accuracy (%)", False)],
    "gen": [("fid", "FID, CNN features", True), ("recon_l2", "reconstruction L2", True)],
    "repr": [("linear_probe", "linear probe, anchors (%)", False),
             ("linear_probe_trunk", "linear probe, pre-head (%)", False)],
}  # fmt: skip
PERCENT = {"test_accuracy", "linear_probe", "knn", "linear_probe_trunk", "knn_trunk"}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("results", type=Path, nargs="+", help="JSON files of benchmarks/quality.py")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results = [json.loads(path.read_text()) for path in args.results]
    panels = [(r, *panel) for r in results for panel in PANELS[r.get("part", "joint")]]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 3.6), squeeze=False)
    # one axis per panel, by construction (subplots(1, len(panels)))
    for ax, (result, key, label, lower) in zip(axes[0], panels, strict=True):
        names = [n for n, runs in result["runs"].items() if any(key in r for r in runs)]
        scale = 100.0 if key in PERCENT else 1.0
        for i, name in enumerate(names):
            values = [scale * r[key] for r in result["runs"][name] if key in r]
            ax.bar(i, sum(values) / len(values), color=f"C{i}", alpha=0.6)
            ax.scatter([i] * len(values), values, color="k", s=10, zorder=3)
        ax.set_xticks(
            range(len(names)),
            [
                textwrap.fill(
                    n.replace(", same encoder and views", "")
                    .replace(", same encoder", "")
                    .replace(", same U-Net", ""),
                    16,
                )
                for n in names
            ],
            fontsize=7,
        )
        ax.set_title(
            f"{Path(result['recipe']).stem}: {label}" + (" (lower is better)" if lower else ""), fontsize=8
        )
        if key in PERCENT:  # accuracies: zoom on the range that holds the bars' tops
            low = min(scale * r[key] for runs in result["runs"].values() for r in runs if key in r)
            ax.set_ylim(max(0.0, low - 5), 100)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
