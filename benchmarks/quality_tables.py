"""Markdown tables of ``benchmarks/quality.py`` JSONs, written into docs/results.md by the shared writer.

    python benchmarks/quality_tables.py docs/quality_joint_digits.json docs/quality_gen_digits.json \
        --out docs/results.md

Each JSON becomes the generated section ``quality_<file stem>``: one row per method, mean ± std over its seeds
for every metric (per-seed values below the table with ``--per-seed``; the JSON keeps them), and the mean fit
time per run. A repr JSON scored with ``quality.py --score-at`` also gives the section
``quality_<file stem>_steps``: the probe against training steps.
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path
from typing import Any

from results_md import write_section

# metric key -> column label; "%" in a label shows the value x100.
METRICS: dict[str, dict[str, str]] = {
    "joint": {
        "test_accuracy": "test accuracy (%)",
        "cond_acc": "conditional samples recognised (%)",
        "fid": "FID (CNN features)",
    },
    "gen": {"fid": "FID (CNN features)", "recon_l2": "reconstruction L2"},
    # A repr run's keys per feature set: "" = the anchors (``embed`` of the tower), "_trunk" = the pre-head
    # feature (the deepest map, average-pooled); the table has one row per method and feature set.
    "repr": {"linear_probe": "linear probe (%)", "knn": "20-NN (%)"},
    "text_label": {
        "test_accuracy": "test accuracy (%)",
        "cond_acc": "conditional texts judged right (%)",
        "cond_in_lexicon": "conditional texts in the lexicon (%)",
        "cond_lexicon_class": "... of the asked class (%)",
    },
    "caption": {
        "i2t_digit": "image -> caption names the digit (%)",
        "i2t_attr": "image -> caption attributes right (%)",
        "t2i_digit": "caption -> image recognised (%)",
        "r1_i2t": "R@1 image -> caption (%)",
        "r1_t2i": "R@1 caption -> image (%)",
    },
}


def _scale(label: str) -> tuple[float, int]:
    return (100.0, 2) if "%" in label else (1.0, 3)


def summary(values: list[float], scale: float = 100.0, digits: int = 2) -> str:
    """``mean ± std`` (population std; the value alone for one seed) of ``values`` times ``scale``."""
    values = [scale * v for v in values]
    if len(values) == 1:
        return f"{values[0]:.{digits}f}"
    return f"{statistics.mean(values):.{digits}f} ± {statistics.pstdev(values):.{digits}f}"


#: The feature sets of a repr run: key suffix -> the name of its rows.
REPR_FEATURES = {"": "anchors", "_trunk": "pre-head"}


def repr_rows(result: dict[str, Any]) -> dict[str, Any]:
    """A repr result with one row per (method, feature set), the raw-pixel baseline of the JSON first.

    Each run ``{"linear_probe": ..., "knn": ..., "linear_probe_trunk": ..., ...}`` becomes the rows
    "<method>, anchors" and "<method>, pre-head" with keys ``linear_probe`` and ``knn``.
    """
    runs: dict[str, list[dict[str, Any]]] = {}
    if "raw_pixels_linear_probe" in result:  # the same probe protocol on flattened pixels: no encoder at all
        pixels = {"linear_probe": result["raw_pixels_linear_probe"], "fit_seconds": 0.0}
        if "raw_pixels_knn" in result:
            pixels["knn"] = result["raw_pixels_knn"]
        runs["raw pixels (no encoder)"] = [pixels]
    for name, method_runs in result["runs"].items():
        for suffix, features in REPR_FEATURES.items():
            rows = []
            for run in method_runs:
                row = {k: v for k, v in run.items() if k in ("seed", "fit_seconds", "diverged")}
                row.update({key: run[key + suffix] for key in METRICS["repr"] if key + suffix in run})
                rows.append(row)
            runs[f"{name}, {features}"] = rows
    return {**result, "runs": runs}


def markdown_table(result: dict[str, Any], per_seed_values: bool = False) -> str:
    """The table of one quality.py result: methods x metrics (mean ± std), then per-seed values if asked.

    A repr result has a row per method and feature set (anchors, pre-head) and a raw-pixel row, which is
    deterministic (no seed) and is not counted in the header's seeds.
    """
    metrics = METRICS[result["part"]]
    if result["part"] == "repr":
        result = repr_rows(result)
    seeds = max(
        (len(runs) for name, runs in result["runs"].items() if not name.startswith("raw pixels")), default=0
    )
    lines = [
        f"| method ({seeds} seed{'s' if seeds != 1 else ''}) | "
        + " | ".join(metrics.values())
        + " | fit s/run |",
        "|---|" + "---:|" * (len(metrics) + 1),
    ]
    per_seed = []
    for name, runs in result["runs"].items():
        diverged = sum("diverged" in r for r in runs)
        runs = [r for r in runs if "diverged" not in r]
        label = name + (f" ({diverged} of {diverged + len(runs)} runs diverged)" if diverged else "")
        if not runs and not diverged:  # a method the JSON lists but no run finished (stopped, or --only)
            label += " (no finished run)"
        elif diverged + len(runs) < seeds and not name.startswith(
            "raw pixels"
        ):  # a variant measured on fewer seeds than the table's other rows
            label += f" (seed{'s' if len(runs) > 1 else ''} {', '.join(str(r['seed']) for r in runs)} only)"
        cells = []
        for key, col in metrics.items():
            values = [r[key] for r in runs if key in r]
            cells.append(summary(values, *_scale(col)) if values else "–")
            if len(values) > 1:
                scale, digits = _scale(col)
                per_seed.append(f"{name}, {col}: " + ", ".join(f"{scale * v:.{digits}f}" for v in values))
        fit = f"{statistics.mean(r['fit_seconds'] for r in runs):.0f}" if runs else "–"
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {fit} |")
    if per_seed and per_seed_values:
        lines += ["", "Per seed (0, 1, 2, ...):", ""] + [f"- {line}" for line in per_seed]
    return "\n".join(lines)


def steps_table(result: dict[str, Any]) -> str | None:
    """The probe against training steps of a repr result scored with ``quality.py --score-at`` (None if no run
    was): one row per method and feature set, one column per step, cells "linear probe / 20-NN" (%, mean over
    the seeds that reached the step)."""
    curves = {name: [r["at_steps"] for r in runs if "at_steps" in r] for name, runs in result["runs"].items()}
    curves = {name: c for name, c in curves.items() if c}
    if not curves:
        return None
    steps = sorted({int(s) for runs in curves.values() for run in runs for s in run})
    seeds = max(len(runs) for runs in curves.values())
    lines = [
        f"| method ({seeds} seed{'s' if seeds != 1 else ''}), linear probe / 20-NN (%) | "
        + " | ".join(f"step {s}" for s in steps) + " |",
        "|---|" + "---:|" * len(steps),
    ]  # fmt: skip
    for name, runs in curves.items():
        for suffix, features in REPR_FEATURES.items():
            cells = []
            for step in steps:
                points = [run[str(step)] for run in runs if str(step) in run]
                probe = [p["linear_probe" + suffix] for p in points if "linear_probe" + suffix in p]
                knn = [p["knn" + suffix] for p in points if "knn" + suffix in p]
                cells.append(f"{summary(probe)} / {summary(knn)}" if probe and knn else "–")
            lines.append(f"| {name}, {features} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("jsons", type=Path, nargs="+")
    p.add_argument(
        "--out", type=Path, help="markdown file whose quality_<stem> sections are written/replaced"
    )
    p.add_argument(
        "--per-seed",
        action="store_true",
        help="list each seed's values below the table (the JSON keeps them)",
    )
    p.add_argument(
        "--steps-only", action="store_true",
        help="write only the probe-against-steps sections (the last step's table stays in the JSON)",
    )  # fmt: skip
    args = p.parse_args()
    for path in args.jsons:
        table = markdown_table(json.loads(path.read_text()), per_seed_values=args.per_seed)
        print(f"{path}:\n{table}\n")
        section = f"quality_{path.stem.removeprefix('quality_')}"
        if args.out and not args.steps_only:
            write_section(args.out, section, table)
        steps = steps_table(json.loads(path.read_text()))
        if steps:
            print(f"{path} against training steps:\n{steps}\n")
            if args.out:
                write_section(args.out, f"{section}_steps", steps)


if __name__ == "__main__":
    main()
