"""Side-by-side quality of LZN and its baselines at CPU scale, same code and budget (issue: the paper's claims).

Part ``joint`` (claim 3): the joint recipe (LZN: RF decoder + label-zone alignment) against the supervised
baseline on the same encoder (``align form: ce``: cross-entropy over the label anchors, no decoder, no flow),
same steps, batch, learning rates and anchor normalisation. Both are trained ``--seeds`` times from scratch and
scored on the held-out test split through ``model.classify`` (LZN: the default bank of all training images at
zone centres; CE: nearest label anchor).

    python benchmarks/quality.py --part joint --recipe recipes/digits_joint.yaml --seeds 3 --out-json docs/quality_joint_digits.json

Prints a Markdown table (mean +- std over seeds, wall time per run) and writes every run to the JSON.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import lzn_lightning.modalities  # noqa: F401  (short class names in recipes)
import torch
import yaml

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.data import DigitsDataModule, MNIST5kDataModule

DATA = {"DigitsDataModule": DigitsDataModule, "MNIST5kDataModule": MNIST5kDataModule}


def supervised_ce(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The recipe's model turned into the supervised baseline: same encoder, CE over the label anchors."""
    cfg = copy.deepcopy(model_cfg)
    cfg["modalities"]["image"]["init_args"]["decoder"] = False
    cfg["latent_from"] = None
    cfg["align"] = [{"source": "image", "target": "label", "form": "ce"}]
    return cfg


def train_and_score(cfg: dict[str, Any], model_cfg: dict[str, Any], seed: int, root: Path) -> dict[str, Any]:
    """Fit one model from scratch and return its test accuracy and wall time."""
    pl.seed_everything(seed)
    model = LZNLightningModule(**{**model_cfg, "seed": seed})
    data_cls = DATA[cfg["data"]["class_path"].rsplit(".", 1)[-1]]
    data = data_cls(**cfg["data"]["init_args"])
    trainer = pl.Trainer(
        max_steps=cfg["trainer"]["max_steps"], accelerator="cpu", precision="32-true", logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        num_sanity_val_steps=0, default_root_dir=root, callbacks=[AnchorBank(num=10**9)],  # the whole train split
    )  # fmt: skip
    start = time.perf_counter()
    trainer.fit(model, data)
    fit_s = time.perf_counter() - start
    data.setup("test")
    items = [data.test_dataset[i] for i in range(len(data.test_dataset))]
    x = torch.stack([it["image"] for it in items])
    y = torch.stack([it["label"] for it in items])
    pred = model.classify(x, progress=False)
    return {"seed": seed, "test_accuracy": float((pred == y).float().mean()), "fit_seconds": fit_s, "n_test": len(y)}


def summary(runs: list[dict[str, Any]], key: str) -> str:
    values = [100 * r[key] for r in runs]
    std = statistics.pstdev(values) if len(values) > 1 else 0.0
    return f"{statistics.mean(values):.2f} ± {std:.2f}"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("joint",), default="joint")
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--root", type=Path, default=Path("runs/quality"))
    p.add_argument("--out-json", type=Path, required=True)
    args = p.parse_args()
    cfg = yaml.safe_load(args.recipe.read_text())
    methods = {"LZN joint (recipe)": cfg["model"], "supervised CE, same encoder": supervised_ce(cfg["model"])}
    result: dict[str, Any] = {
        "recipe": str(args.recipe), "steps": cfg["trainer"]["max_steps"], "machine": platform.processor()
        or platform.machine(), "torch": torch.__version__, "runs": {name: [] for name in methods},
    }  # fmt: skip
    for seed in range(args.seeds):  # seed-major, so an interrupted run still has every method at some seeds
        for name, model_cfg in methods.items():
            result["runs"][name].append(train_and_score(cfg, model_cfg, seed, args.root))
            args.out_json.write_text(json.dumps(result, indent=1))
            print(name, result["runs"][name][-1], flush=True)
    print(f"\n| method | test accuracy (%, {args.seeds} seeds) | fit time per run (s) |")
    print("|---|---:|---:|")
    for name, runs in result["runs"].items():
        print(f"| {name} | {summary(runs, 'test_accuracy')} | {statistics.mean(r['fit_seconds'] for r in runs):.0f} |")


if __name__ == "__main__":
    main()
