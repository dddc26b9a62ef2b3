"""One loss term's part of a group's gradient and Adam step, from a metrics.csv that AdamStepMix logged.

    python experiments/adam_mix_table.py runs/mnist_joint_adam_mix/lightning_logs/version_0/metrics.csv \
        --group image.encoder --term image/decoder --against "align/image->label"

Prints a Markdown table, one row per logged step: both terms' gradient norms of the step and their ratio,
the term's share of the step's gradient (``grad_share``), of the Adam step (``step_share``) and the norm of
its part of the Adam step relative to the step (``step_norm``); then the largest ``moment_residual`` (the
check that the per-term moments add up to the optimiser's own).
"""

from __future__ import annotations

import argparse
import csv
from pathlib import Path


def adam_mix_table(path: Path, group: str, term: str, against: str) -> str:
    """The Markdown table for ``term`` (vs ``against``) on optimiser group ``group``."""
    prefix = f"train/adam_mix/{group}/"
    with path.open() as f:
        rows = [r for r in csv.DictReader(f) if r.get(prefix + "moment_residual")]
    if not rows:
        raise SystemExit(f"{path} has no AdamStepMix values for group {group!r}")
    missing = [t for t in (term, against) if not rows[0].get(f"{prefix}{t}/grad_norm")]
    if missing:
        raise SystemExit(f"{path} logs no term {missing[0]!r} on {group!r}")

    def value(row: dict[str, str], t: str, key: str) -> float:
        return float(row[f"{prefix}{t}/{key}"])

    lines = [
        f"| step | {term} gradient norm | {against} gradient norm | ratio "
        f"| {term} share of the step's gradient | {term} share of the Adam step "
        f"| {term} part of the Adam step, norm relative to the step |",
        "|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        norm, other = value(r, term, "grad_norm"), value(r, against, "grad_norm")
        ratio = f"{100 * norm / other:.2f}%" if other > 0 else "–"
        step = int(r["step"]) + 1  # logged at step s after s + 1 updates
        lines.append(
            f"| {step} | {norm:.4f} | {other:.3f} | {ratio} "
            f"| {100 * value(r, term, 'grad_share'):+.3f}% | {100 * value(r, term, 'step_share'):+.3f}% "
            f"| {100 * value(r, term, 'step_norm'):.2f}% |"
        )
    worst = max(float(r[prefix + "moment_residual"]) for r in rows)
    lines += ["", f"Largest moment_residual: {worst:.1e}"]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("metrics", type=Path, help="metrics.csv of a fit with the AdamStepMix callback")
    p.add_argument("--group", default="image.encoder", help="optimiser group, e.g. image.encoder")
    p.add_argument("--term", default="image/decoder", help="the loss term to follow")
    p.add_argument(
        "--against", default="align/image->label", help="the term to compare its gradient norm with"
    )
    args = p.parse_args()
    print(adam_mix_table(args.metrics, args.group, args.term, args.against))


if __name__ == "__main__":
    main()
