"""Training throughput and peak GPU memory of a recipe's model, on synthetic data of the recipe's image shape.

Builds the run as `lzn fit` does (`lzn_lightning.recipes.build_run`: the networks, latent flow and alignment
are the real ones), swaps the data for `SyntheticDataModule` with the same image shape and classes (the GPU
machine has no dataset), and trains `--steps` steps on one device at the given precision, without validation,
checkpoints or the recipe's callbacks. Reports images/s over the
steps after `--warmup` and `torch.cuda.max_memory_allocated`.

    python benchmarks/train_throughput.py --recipe recipes/cifar10_joint.yaml --precision bf16-mixed \
        --steps 200 --batch-size 250 --out docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from results_md import write_section

from lzn_lightning.recipes import build_run


class _Timer(pl.Callback):
    """Wall time of the training steps after a warm-up (CUDA synchronised)."""

    def __init__(self, warmup: int) -> None:
        self.warmup, self.t0, self.t1, self.losses = warmup, 0.0, 0.0, []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        if trainer.global_step == self.warmup:
            self.t0 = time.perf_counter()
            torch.cuda.reset_peak_memory_stats() if torch.cuda.is_available() else None
        self.t1 = time.perf_counter()
        loss = trainer.callback_metrics.get("train/loss")
        if loss is not None:
            self.losses.append(float(loss))


def run(recipe: Path, precision: str, steps: int, warmup: int, batch_size: int) -> dict:
    """Train the recipe's model for ``steps`` steps and return the measurements."""
    spec = build_run([recipe], logger=False, checkpoints=False).model.hparams  # the recipe's model, as built
    image = spec["modalities"]["image"]["init_args"]
    labels = spec["modalities"].get("label", {}).get("init_args", {}).get("num_classes", 10)
    synthetic = {
        "num_samples": batch_size * 4,
        "num_test_samples": batch_size,
        "image_shape": (image["channels"], image["size"], image["size"]),
        "num_classes": labels,
        "batch_size": batch_size,
        "two_views": "image_view2" in (spec.get("fields") or {}),
        "num_workers": 4,
    }
    timer = _Timer(warmup)
    one_device = {"trainer.precision": precision, "trainer.accelerator": "auto", "trainer.devices": 1,
                  "trainer.num_nodes": 1, "trainer.strategy": "auto"}  # fmt: skip
    data = {"class_path": "lzn_lightning.data.SyntheticDataModule", "init_args": synthetic}
    built = build_run(
        [recipe], {"data": data, **one_device},
        max_steps=steps, logger=False, checkpoints=False, progress_bar=False, validation=False,
        recipe_callbacks=False, callbacks=[timer],
    )  # fmt: skip
    built.fit()
    model, trainer = built.model, built.trainer
    timed = steps - warmup
    seconds = timer.t1 - timer.t0
    return {
        "recipe": recipe.stem,
        "precision": precision,
        "batch_size": batch_size,
        "steps_timed": timed,
        "s_per_step": seconds / timed,
        "images_per_s": batch_size * timed / seconds,
        "peak_gib": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else float("nan"),
        "params_m": sum(p.numel() for p in model.modalities.parameters()) / 1e6,
        "first_loss": timer.losses[0] if timer.losses else float("nan"),
        "last_loss": timer.losses[-1] if timer.losses else float("nan"),
        "skipped": int(model.iteration) - trainer.global_step,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/cifar10_joint.yaml"))
    p.add_argument("--precision", nargs="+", default=["bf16-mixed", "32-true"])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument(
        "--warmup", type=int, default=20, help="steps excluded from the timing (compile, allocator)"
    )
    p.add_argument("--batch-size", type=int, nargs="+", default=[250])
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path)
    args = p.parse_args()
    results = [
        run(args.recipe, precision, args.steps, args.warmup, bs)
        for bs in args.batch_size
        for precision in args.precision
    ]
    device = torch.cuda.get_device_name(0) if torch.cuda.is_available() else platform.processor()
    lines = [
        "## Training throughput on a GPU",
        "",
        f"Command: `python benchmarks/train_throughput.py --recipe {args.recipe} --precision "
        f"{' '.join(args.precision)} --steps {args.steps} "
        f"--batch-size {' '.join(map(str, args.batch_size))}`. "
        f"Machine: {device}, torch {torch.__version__}, lightning {pl.__version__}. The recipe's full model "
        f"({results[0]['params_m']:.1f} M parameters in the modalities) on synthetic data of the recipe's "
        f"image shape (the GPU machine has no dataset); one GPU; the per-GPU batch of the recipe's 8-GPU "
        f"set-up is 250. Timing excludes the first {args.warmup} steps; peak = "
        "`torch.cuda.max_memory_allocated`.",
        "",
        "| precision | batch / GPU | s / step | images / s | peak GPU memory | loss first → last "
        "| skipped steps |",
        "|---|---:|---:|---:|---:|---|---:|",
    ]
    for r in results:
        lines.append(
            f"| {r['precision']} | {r['batch_size']} | {r['s_per_step']:.3f} | {r['images_per_s']:.0f} "
            f"| {r['peak_gib']:.1f} GiB | {r['first_loss']:.3f} → {r['last_loss']:.3f} | {r['skipped']} |"
        )
    section = "\n".join(lines)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.out:
        write_section(args.out, "train_throughput", section)


if __name__ == "__main__":
    main()
