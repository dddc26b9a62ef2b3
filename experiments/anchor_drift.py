"""How the anchors of the digits_joint image encoder evolve under each ``anchor_norm`` (why the recipe uses
one).

Trains the recipe's model (EMA, decoder, label alignment: built as ``lzn fit`` builds it, without validation,
checkpoints or the recipe's callbacks) for ``--steps`` steps per setting and every ``--every`` steps records,
on a fixed batch of 256 training images: the mean anchor norm, the mean pairwise and nearest-neighbour anchor
distance, the gradient norm before clipping, the training alignment loss and zone accuracy (prior noise 1, the
batch's own field). Writes a JSON, a PNG plot and prints a Markdown table.

    python experiments/anchor_drift.py --steps 400 --out-json docs/anchor_drift.json \
        --plot docs/img/anchor_drift.png
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lzn_lightning.recipes import build_run

SETTINGS = {  # name -> ImageModality overrides
    "none (reference tower)": {"anchor_norm": "none"},
    "group": {"anchor_norm": "group"},
    "batch, scale 1.0": {"anchor_norm": "batch", "anchor_scale": 1.0},
    "batch, scale 0.15 (recipe)": {"anchor_norm": "batch", "anchor_scale": 0.15},
}


class AnchorStats(pl.Callback):
    """Anchor geometry of a fixed batch (the first 256 training images), every ``every`` steps."""

    def __init__(self, every: int) -> None:
        self.every, self.rows = every, []
        self.images = torch.empty(0)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: Any) -> None:
        dataset = trainer.datamodule.train_dataset  # set up by now
        self.images = torch.stack([dataset[i]["image"] for i in range(256)])

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step % self.every:
            return
        was = pl_module.training
        pl_module.eval()  # running statistics for batch norm, no dropout
        with torch.no_grad():
            a = pl_module.modality("image").encode(self.images)  # [n, d]
        pl_module.train(was)
        n = len(a)
        dist = torch.cdist(a, a)  # [n, n]
        m = trainer.callback_metrics
        self.rows.append({
            "step": step,
            "anchor_norm": float(a.norm(dim=1).mean()),
            "pairwise": float(dist.sum() / (n * (n - 1))),
            "nearest": float(dist.masked_fill(torch.eye(n, dtype=torch.bool), float("inf")).min(1).values.mean()),  # noqa: E501
            "grad_norm": float(m.get("train/grad_norm", float("nan"))),
            "align_loss": float(m.get("train/align/image->label", float("nan"))),
            "train_zone_acc": float(m.get("train/zone_acc/image->label", float("nan"))),
        })  # fmt: skip


def run(recipe: Path, image_args: dict[str, Any], steps: int, every: int) -> tuple[list[dict], float]:
    """Train the recipe with ``image_args`` replacing some of the image modality's; (rows, fit seconds)."""
    stats = AnchorStats(every)
    changes = {f"model.modalities.image.init_args.{k}": v for k, v in image_args.items()}
    built = build_run(
        [recipe], {**changes, "trainer.log_every_n_steps": 1}, max_steps=steps, logger=False,
        validation=False, checkpoints=False, progress_bar=False, model_summary=False, recipe_callbacks=False,
        callbacks=[stats],
    )  # fmt: skip
    start = time.perf_counter()
    built.fit()
    return stats.rows, time.perf_counter() - start


def plot(results: dict[str, list[dict]], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    for name, rows in results.items():
        steps = [r["step"] for r in rows]
        axes[0].plot(steps, [r["anchor_norm"] for r in rows], label=name)
        axes[1].plot(steps, [r["grad_norm"] for r in rows], label=name)
        axes[2].plot(steps, [r["train_zone_acc"] for r in rows], label=name)
    for ax, title in zip(
        axes, ("mean anchor norm", "gradient norm (before clip)", "train zone accuracy"), strict=True
    ):
        ax.set_title(title)
        ax.set_xlabel("step")
    axes[0].set_yscale("log")
    axes[1].set_yscale("log")
    axes[2].legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--every", type=int, default=25)
    p.add_argument("--out-json", type=Path, required=True)
    p.add_argument("--plot", type=Path, default=None)
    p.add_argument(
        "--settings",
        nargs="+",
        choices=tuple(SETTINGS),
        default=tuple(SETTINGS),
        help="which settings to train",
    )
    args = p.parse_args()
    results, seconds = {}, {}
    for name in args.settings:
        results[name], seconds[name] = run(args.recipe, SETTINGS[name], args.steps, args.every)
        args.out_json.write_text(
            json.dumps({"steps": args.steps, "results": results, "seconds": seconds}, indent=1)
        )
    if args.plot is not None:
        plot(results, args.plot)
    print(
        "| anchor_norm | anchor norm (first -> last) | gradient norm (first -> max) "
        "| train zone acc (max -> last) |"
    )
    print("|---|---|---|---|")
    for name, rows in results.items():
        print(
            f"| {name} | {rows[0]['anchor_norm']:.3g} -> {rows[-1]['anchor_norm']:.3g} | "
            f"{rows[0]['grad_norm']:.3g} -> {max(r['grad_norm'] for r in rows):.3g} | "
            f"{max(r['train_zone_acc'] for r in rows):.3f} -> {rows[-1]['train_zone_acc']:.3f} |"
        )


if __name__ == "__main__":
    main()
