"""Classification through label zones: the reference's batch context vs the batch-independent bank context.

Trains the digits_joint recipe's model in Python (or loads ``--ckpt``), runs the evaluation callbacks once
(``trainer.test``), then measures test accuracy of ``model.classify`` over contexts, field sizes, prior-noise
scales and seeds, and how often a label changes when the test set is reshuffled (batch-mates change).

    python experiments/classification_modes.py --recipe recipes/digits_joint.yaml --out-json modes.json
    python experiments/classification_modes.py --ckpt runs/.../last.ckpt --out-json modes.json
    python experiments/classification_modes.py --recipe recipes/mnist_joint.yaml --ckpt runs/.../last.ckpt \
        --fields 1000 128 --banks 128 512 all --noise 0 --out-json modes.json

The run and its data are built as ``lzn fit`` builds them from the recipe (digits, MNIST-5k, ...); further
arguments are ``lzn fit`` overrides (``--model.x=1``, ``--config overlay.yaml``). ``--fields`` / ``--banks`` /
``--noise`` choose the batch-context field sizes, bank sizes and prior-noise scales measured.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from lzn_lightning.callbacks import (
    FID,
    KNN,
    AnchorBank,
    ConditionalSampleAccuracy,
    LinearProbe,
    ReconstructionL2,
    SampleGrid,
    ZoneAccuracy,
)
from lzn_lightning.module import load_for_inference
from lzn_lightning.recipes import build_run


def datamodule(recipe: Path, overrides: list[str]) -> pl.LightningDataModule:
    """The recipe's data module, as ``lzn fit --config <recipe> <overrides>`` builds it."""
    return build_run([recipe], overrides, logger=False, checkpoints=False, recipe_callbacks=False).datamodule


def train(recipe: Path, steps: int | None, root: Path, accelerator: str, overrides: list[str]) -> Any:
    """Fit the recipe's run (``lzn fit`` overrides applied) with every evaluation callback at its test run;
    returns the model."""
    callbacks = [
        AnchorBank(),
        SampleGrid(every_n_validations=0, on_test=True),
        ZoneAccuracy(every_n_validations=1, on_test=True),
        ConditionalSampleAccuracy(every_n_validations=0),
        FID(every_n_validations=0),
        ReconstructionL2(every_n_validations=0),
        LinearProbe(every_n_validations=0),
        KNN(every_n_validations=0),
    ]
    built = build_run(
        [recipe], [*overrides, f"--trainer.accelerator={accelerator}"], max_steps=steps, root=root,
        progress_bar=False, recipe_callbacks=False, callbacks=callbacks,
    )  # fmt: skip
    model, data, trainer = built.model, built.datamodule, built.trainer
    start = time.perf_counter()
    built.fit()
    fit_s = time.perf_counter() - start
    trainer.test(model, data)
    trainer.save_checkpoint(root / "model.ckpt", weights_only=True)  # no optimiser state: small
    model.fit_seconds = fit_s
    model.callback_metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
    return model


def accuracy(model: Any, x: torch.Tensor, y: torch.Tensor, **kw: Any) -> tuple[float, float]:
    """(accuracy, seconds) of model.classify."""
    start = time.perf_counter()
    pred = model.classify(x, progress=False, **kw)
    return float((pred == y).float().mean()), time.perf_counter() - start


def measure(
    model: Any,
    data: pl.LightningDataModule,
    seeds: int,
    dump: Any = None,
    fields: tuple[int | str, ...] = ("all", 256, 64, 16),
    banks: tuple[int | str, ...] = (64, 256, "all"),
    noises: tuple[float, ...] = (1.0, 0.0),
    split: str = "test",
) -> dict[str, Any]:
    """Accuracy over contexts / field sizes / noise scales / seeds, and label stability under reshuffling.

    ``fields``: batch-context field sizes ("all": the whole test set is one field); ``banks``: bank sizes
    drawn from the training split ("all": all of it); ``noises``: prior-noise scales; ``split``: the images
    classified ("train": the training split itself, e.g. how many training images a loss leaves
    misclassified).
    """
    data.setup("fit")
    dataset = getattr(data, f"{split}_dataset")
    test = [dataset[i] for i in range(len(dataset))]
    x = torch.stack([t["image"] for t in test])
    y = torch.stack([t["label"] for t in test])
    # Shuffled with seed 0 as the reference's test set: a split stored class by class (MNIST-5k's) would make
    # batch-context fields of one or a few classes.
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(0))
    x, y = x[order], y[order]
    train = [data.train_dataset[i] for i in range(len(data.train_dataset))]
    xtr = torch.stack([t["image"] for t in train])
    rows: list[dict[str, Any]] = []

    def record(
        context: str, field: int, noise: float, accs: list[float], secs: list[float], stable: float | None
    ):
        rows.append({
            "context": context, "field": field, "noise": noise, "acc_mean": statistics.mean(accs),
            "acc_std": statistics.pstdev(accs), "seeds": len(accs), "seconds": statistics.mean(secs),
            "stable_under_reshuffle": stable,
        })  # fmt: skip
        print(rows[-1], flush=True)
        if dump is not None:  # partial results survive a time-out
            dump(rows)

    saved_bank = model.anchor_bank
    model.set_anchor_bank(None)
    perm = torch.randperm(len(x), generator=torch.Generator().manual_seed(123))
    for bs in [len(x) if f == "all" else int(f) for f in fields]:  # a field of 1 image: pure noise
        for noise in noises:
            runs = [
                accuracy(model, x, y, context="batch", batch_size=bs, noise_scale=noise, seed=s)
                for s in range(seeds)
            ]
            p0 = model.classify(x, context="batch", batch_size=bs, noise_scale=noise, seed=0, progress=False)
            p1 = model.classify(
                x[perm], context="batch", batch_size=bs, noise_scale=noise, seed=0, progress=False
            )
            stable = float((p0[perm] == p1).float().mean())
            record("batch", bs, noise, [a for a, _ in runs], [s for _, s in runs], stable)
    for size in [len(xtr) if b == "all" else int(b) for b in banks]:
        for noise in sorted(noises):
            accs, secs = [], []
            for s in range(seeds):  # a different random bank per seed
                idx = torch.randperm(len(xtr), generator=torch.Generator().manual_seed(s))[:size]
                model.set_anchor_bank(xtr[idx])
                a, t = accuracy(model, x, y, context="bank", noise_scale=noise, seed=s)
                accs.append(a)
                secs.append(t)
            p0 = model.classify(x, context="bank", noise_scale=noise, seed=0, progress=False)
            p1 = model.classify(
                x[perm], context="bank", noise_scale=noise, seed=0, progress=False, batch_size=7
            )
            record("bank", size, noise, accs, secs, float((p0[perm] == p1).float().mean()))
    model.set_anchor_bank(saved_bank)
    return {"rows": rows}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--ckpt", type=Path, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--root", type=Path, default=Path("runs/classification_modes"))
    p.add_argument("--accelerator", default="auto")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--fields", nargs="*", default=["all", 256, 64, 16], help="batch-context field sizes")
    p.add_argument(
        "--banks", nargs="*", default=[64, 256, "all"], help="bank sizes (all: the training split)"
    )
    p.add_argument("--split", default="test", choices=["train", "val", "test"], help="the images classified")
    p.add_argument("--noise", nargs="+", type=float, default=[1.0, 0.0], help="prior-noise scales")
    p.add_argument("--out-json", type=Path, required=True)
    args, overrides = p.parse_known_args()  # the rest: lzn fit overrides
    if args.ckpt is not None:
        model = load_for_inference(args.ckpt, "cuda" if torch.cuda.is_available() else "cpu")
        info: dict[str, Any] = {"ckpt": str(args.ckpt)}
    else:
        args.root.mkdir(parents=True, exist_ok=True)
        model = train(args.recipe, args.steps, args.root, args.accelerator, overrides)
        info = {"fit_seconds": model.fit_seconds, "callback_metrics": model.callback_metrics}
    data = datamodule(args.recipe, overrides)
    result: dict[str, Any] = {
        "device": str(model.device),
        "split": args.split,
        "overrides": overrides,
        **info,
    }

    def dump(rows: list[dict[str, Any]]) -> None:
        args.out_json.write_text(json.dumps({**result, "rows": rows}, indent=1))

    dump([])
    fields, banks = tuple(args.fields), tuple(args.banks)
    measure(model, data, args.seeds, dump, fields, banks, tuple(args.noise), args.split)


if __name__ == "__main__":
    main()
