"""Side-by-side quality of LZN and its baselines at CPU scale, same code and budget (the paper's three claims).

Every method of a part is built from the same recipe (same networks, steps, batch, learning rates, data split)
and trained ``--seeds`` times from scratch; only the objective differs.

Part ``joint`` (claim 3): the joint recipe (RF decoder + label-zone alignment) against the supervised baseline on
the same encoder (``align form: ce``: cross-entropy over the label anchors, no decoder, no flow). Scored on the
held-out test split through ``model.classify`` (LZN: the default bank of all training images at zone centres;
CE: nearest label anchor).

Part ``gen`` (claim 1): the generation recipe (RF + LZN: the U-Net decoder conditioned on the image's latent)
against plain RF (the same U-Net with its latent input fixed to zeros, no encoder). Scored by

* FID of ``--fid-samples`` unconditional samples against the training images, in the 128-d penultimate
  features of one small CNN trained once per invocation on the training split (Inception features mean little
  on 8x8 / 28x28 digits; the CNN's held-out accuracy is reported), plus the floor FID(test images, train);
* reconstruction L2 of 256 training images (RF inversion then decoding, latents in one field of all 256,
  the reference's "Recon"), mean over 3 prior-noise draws;
* PNG grids of seed 0's samples and reconstructions (``--img-prefix``).

Part ``repr`` (claim 2): the representation recipe (two augmented views, view-1 latents must land in their own
view-2 zone) against InfoNCE on the same views and encoder (``align form: infonce``) and against the same
encoder at random initialisation. Scored by a linear probe (logistic regression) and a 20-NN vote on the frozen
``embed`` features of the clean training images, tested on the clean test split.

    python benchmarks/quality.py --part joint --recipe recipes/digits_joint.yaml --seeds 3 --out-json docs/quality_joint_digits.json
    python benchmarks/quality.py --part gen --recipe recipes/digits_gen.yaml --seeds 3 --out-json docs/quality_gen_digits.json --img-prefix docs/img/gen_digits
    python benchmarks/quality.py --part repr --recipe recipes/digits_repr.yaml --seeds 3 --out-json docs/quality_repr_digits.json

``--set model.decoder_weight=0.1`` (any dotted recipe key) measures a variant; its LZN method is then named
after the setting instead of "(recipe)" (baselines are built from the changed recipe too: pair it with
``--only LZN`` to train the variant alone). ``--log`` keeps each fit's training log (metrics.csv) under
``--root``.

Prints a Markdown table (mean +- std over seeds, wall time per run) and writes every run to the JSON after each
run, so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import re
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import lzn_lightning.modalities  # noqa: F401  (short class names in recipes)
import torch
import torch.nn.functional as F
import yaml
from lightning.pytorch.loggers import CSVLogger
from quality_tables import METRICS, markdown_table
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.data import DigitsDataModule, MNIST5kDataModule
from lzn_lightning.inference import LZNInference
from lzn_lightning.metrics import (
    features_of,
    frechet_distance,
    knn_accuracy,
    linear_probe_accuracy,
    mean_reconstruction_l2,
    predict,
    train_classifier,
)

DATA = {"DigitsDataModule": DigitsDataModule, "MNIST5kDataModule": MNIST5kDataModule}
RECON_IMAGES = 256  # why 256: the recipes' batch, i.e. the field size the zones were trained with
RECON_REPEATS = 3  # prior-noise draws averaged per reconstruction score
GRID_UPSCALE = 4  # 8x8 digits are unreadable at 1:1 in a browser


# ----------------------------------------------------------------------------------------- shared helpers
def build_data(cfg: dict[str, Any], **overrides: Any) -> Any:
    """The recipe's datamodule (``overrides`` replace init args), set up."""
    data_cls = DATA[cfg["data"]["class_path"].rsplit(".", 1)[-1]]
    data = data_cls(**{**cfg["data"]["init_args"], **overrides})
    data.setup("fit")
    data.setup("test")
    return data


def tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """All images [N, C, H, W] and labels [N] of a labelled dataset of batch dicts."""
    images, labels = dataset_tensors(dataset)
    if labels is None:
        raise ValueError(f"{dataset!r} has no labels; the quality benchmarks score against labels")
    return images, labels


def fit(
    cfg: dict[str, Any],
    model_cfg: dict[str, Any],
    seed: int,
    root: Path,
    steps: int,
    bank: bool,
    log_name: str | None = None,
) -> tuple[Any, float]:
    """Train one model from scratch on the recipe's data; returns (model, fit seconds).

    ``bank``: store all training images as the anchor bank (the field ``model.classify`` uses by default).
    ``log_name``: keep the training log (losses, per-group gradient norms, anchor and latent statistics) as
    ``root/<log_name>/seed<seed>/metrics.csv``; None logs nothing.
    """
    model = untrained(model_cfg, seed)
    logger = CSVLogger(root, name=log_name, version=f"seed{seed}") if log_name else False
    trainer = pl.Trainer(
        max_steps=steps, accelerator="cpu", precision="32-true", logger=logger, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0, num_sanity_val_steps=0,
        default_root_dir=root, callbacks=[AnchorBank(num=10**9)] if bank else [],
        log_every_n_steps=cfg["trainer"].get("log_every_n_steps", 50),
    )  # fmt: skip
    start = time.perf_counter()
    try:
        trainer.fit(model, build_data(cfg))
    except FloatingPointError as err:  # the module gives up after 100 non-finite steps: a result, not a crash
        raise Diverged(f"step {trainer.global_step}: {err}") from err
    return model, time.perf_counter() - start


class Diverged(RuntimeError):
    """Training stopped on non-finite losses or gradients (the message names the step)."""


def untrained(model_cfg: dict[str, Any], seed: int) -> Any:
    """The model at its seeded random initialisation."""
    pl.seed_everything(seed)
    return LZNLightningModule(**{**model_cfg, "seed": seed})


class CNNJudge:
    """One SmallCNN (seed 0) trained on the recipe's training split: the FID feature network and the judge of
    conditional samples, identical for every method and seed of a benchmark run.

    Attributes: ``train`` and ``test`` (images, labels), ``net``, ``description`` (with its test accuracy) and
    ``real`` (features of the training images).
    """

    def __init__(self, cfg: dict[str, Any]) -> None:
        data = build_data(cfg)
        self.train = tensors(data.train_dataset)
        self.test = tensors(data.test_dataset)
        trained = train_classifier(*self.train, int(self.train[1].max()) + 1, self.test, seed=0)
        self.net, self.description = trained.net, trained.description
        self.real = features_of(self.net, self.train[0])


# ------------------------------------------------------------------------------------- part: joint
def supervised_ce(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The recipe's model turned into the supervised baseline: same encoder, CE over the label anchors."""
    cfg = copy.deepcopy(model_cfg)
    cfg["modalities"]["image"]["init_args"]["decoder"] = False
    cfg["latent_from"] = None
    cfg["align"] = [{"source": "image", "target": "label", "form": "ce"}]
    return cfg


class JointScore:
    """Test accuracy through ``model.classify``; for models with a decoder also the FID and the accuracy of
    class-conditional samples, both through one small CNN trained once on the training split."""

    metrics = METRICS["joint"]

    def __init__(self, cfg: dict[str, Any], args: argparse.Namespace) -> None:
        judge = CNNJudge(cfg)
        self.net, self.real = judge.net, judge.real
        self.x, self.y = judge.test
        self.train_y = judge.train[1]
        self.info = {"feature_network_and_judge": judge.description, "real_images": len(self.train_y)}

    def __call__(self, model: Any, name: str, seed: int) -> dict[str, float]:
        pred = model.classify(self.x, progress=False)
        out = {"test_accuracy": float((pred == self.y).float().mean()), "n_test": len(self.y)}
        if any(getattr(model.modality(f), "has_decoder", False) for f in model.field_map):
            # as many samples as real training images, asked for the same labels (same class mix)
            fake = model.generate(len(self.train_y), labels=self.train_y, seed=seed, progress=False)
            out["fid"] = frechet_distance(self.real, features_of(self.net, fake))
            out["cond_acc"] = float((predict(self.net, fake) == self.train_y).float().mean())
        return out


# --------------------------------------------------------------------------------------- part: gen
def plain_rf(model_cfg: dict[str, Any]) -> dict[str, Any]:
    """The recipe's model turned into plain RF: same U-Net, latent input fixed to zeros, no encoder, no flow."""
    cfg = copy.deepcopy(model_cfg)
    image = cfg["modalities"]["image"]["init_args"]
    image.update(encoder="none", latent_conditioning=False)
    cfg["latent_from"] = None
    cfg.pop("align", None)
    return cfg


class GenScore:
    """FID in a fixed CNN's features, reconstruction L2 and (seed 0) PNG grids."""

    metrics = METRICS["gen"]

    def __init__(self, cfg: dict[str, Any], args: argparse.Namespace) -> None:
        judge = CNNJudge(cfg)
        self.net, self.real = judge.net, judge.real
        train_x = judge.train[0]
        self.num_fake = args.fid_samples
        g = torch.Generator().manual_seed(0)
        self.recon_x = train_x[torch.randperm(len(train_x), generator=g)[:RECON_IMAGES]]
        self.img_prefix: Path | None = args.img_prefix
        self.grids: dict[str, tuple[Tensor, Tensor]] = {}
        self.info = {
            "feature_network": judge.description,
            "real_images": len(train_x),
            "generated_images": self.num_fake,
            "fid_floor_test_vs_train": frechet_distance(self.real, features_of(self.net, judge.test[0])),
            "recon_images": len(self.recon_x),
            "recon_repeats": RECON_REPEATS,
        }

    def __call__(self, model: Any, name: str, seed: int) -> dict[str, float]:
        fake = model.generate(self.num_fake, seed=seed, progress=False)
        fid = frechet_distance(self.real, features_of(self.net, fake))
        recon_l2, recon = mean_reconstruction_l2(model, self.recon_x, RECON_REPEATS, context="batch")
        if seed == 0:
            self.grids[name] = (fake[:100], recon[:16])
            self.save_grids()
        return {"fid": fid, "recon_l2": recon_l2}

    def save_grids(self) -> None:
        """``{prefix}_samples.png`` (one 10x10 panel per method, left to right in run order) and
        ``{prefix}_recon.png`` (row 1: originals, then one row of reconstructions per method)."""
        if self.img_prefix is None:
            return
        self.img_prefix.parent.mkdir(parents=True, exist_ok=True)

        def up(x: Tensor) -> Tensor:
            return F.interpolate((x.clamp(-1, 1) + 1) / 2, scale_factor=GRID_UPSCALE, mode="nearest")

        panels = [make_grid(up(s), nrow=10, padding=2, pad_value=1.0) for s, _ in self.grids.values()]
        gap = torch.ones(panels[0].shape[0], panels[0].shape[1], 12)  # white gutter between methods
        row = [p for panel in panels for p in (panel, gap)][:-1]
        save_image(torch.cat(row, dim=2), f"{self.img_prefix}_samples.png")
        rows = [self.recon_x[:16]] + [r for _, r in self.grids.values()]
        save_image(
            make_grid(up(torch.cat(rows)), nrow=16, padding=2, pad_value=1.0), f"{self.img_prefix}_recon.png"
        )


# -------------------------------------------------------------------------------------- part: repr
def infonce(model_cfg: dict[str, Any], temperature: float) -> dict[str, Any]:
    """The recipe's model turned into InfoNCE: same encoder and views, contrastive loss on the anchors."""
    cfg = copy.deepcopy(model_cfg)
    (pair,) = cfg["align"]
    cfg["align"] = [{"source": pair["source"], "target": pair["target"], "form": "infonce",
                     "temperature": temperature, "weight": pair.get("weight", 1.0)}]  # fmt: skip
    return cfg


class ReprScore:
    """Linear-probe and kNN test accuracy of frozen ``embed`` features (clean images, no augmentation)."""

    metrics = METRICS["repr"]

    def __init__(self, cfg: dict[str, Any], args: argparse.Namespace) -> None:
        data = build_data(cfg, two_views=False)  # same split, clean images
        self.train = tensors(data.train_dataset)
        self.test = tensors(data.test_dataset)
        pixels = [
            x.flatten(1).numpy() for x in (self.train[0], self.test[0])
        ]  # [N, C*H*W]: no encoder at all
        ytr, yte = self.train[1].numpy(), self.test[1].numpy()
        self.info = {
            "raw_pixels_linear_probe": linear_probe_accuracy(pixels[0], ytr, pixels[1], yte),
            "raw_pixels_knn": knn_accuracy(pixels[0], ytr, pixels[1], yte, k=20),
        }

    def __call__(self, model: Any, name: str, seed: int) -> dict[str, float]:
        ytr, yte = self.train[1].numpy(), self.test[1].numpy()
        out: dict[str, float] = {"n_train": len(ytr), "n_test": len(yte)}
        image = model.modality(LZNInference(model).source_field())
        with model.inference():  # EMA weights, eval mode, no gradients
            for suffix, fn in (("", image.embed), ("_trunk", image.trunk_features)):
                ftr, fte = (fn(x).float().numpy() for x in (self.train[0], self.test[0]))
                out["linear_probe" + suffix] = linear_probe_accuracy(ftr, ytr, fte, yte)
                out["knn" + suffix] = knn_accuracy(ftr, ytr, fte, yte, k=20)
                out["dim" + suffix] = ftr.shape[1]
        return out


# ------------------------------------------------------------------------------------------- main
def apply_settings(cfg: dict[str, Any], settings: list[str]) -> None:
    """Apply ``dotted.key=yaml_value`` settings to the recipe in place (list items by index: align.0.cutoff).

    Raises:
        SystemExit: a setting without ``=`` or with a key the recipe does not have (a typo would otherwise
            silently run the plain recipe under a variant's name).
    """
    for setting in settings:
        key, sep, value = setting.partition("=")
        if not sep:
            raise SystemExit(f"--set {setting!r}: expected KEY=VALUE, e.g. model.decoder_weight=0.1")
        *parents, leaf = key.split(".")
        node: Any = cfg
        for part in parents:
            node = (
                node[int(part)]
                if isinstance(node, list)
                else node.get(part)
                if isinstance(node, dict)
                else None
            )
            if node is None:
                raise SystemExit(f"--set {setting!r}: the recipe has no {key!r}")
        if isinstance(node, list):
            node[int(leaf)] = yaml.safe_load(value)
        elif isinstance(node, dict) and (leaf in node or parents == ["model"]):
            node[leaf] = yaml.safe_load(value)  # model init args may be left at their default in a recipe
        else:
            raise SystemExit(f"--set {setting!r}: the recipe has no {key!r}")


def methods_of(part: str, model_cfg: dict[str, Any], args: argparse.Namespace) -> dict[str, dict | None]:
    """Method name -> model config to train (None entries are scored at random initialisation)."""
    if part == "joint":
        return {"LZN joint (recipe)": model_cfg, "supervised CE, same encoder": supervised_ce(model_cfg)}
    if part == "gen":
        return {"plain RF, same U-Net": plain_rf(model_cfg), "RF + LZN (recipe)": model_cfg}
    return {
        "LZN (recipe)": model_cfg,
        f"InfoNCE (temperature {args.temperature}), same encoder and views": infonce(
            model_cfg, args.temperature
        ),
        "random-init encoder (no training)": None,
    }


SCORES: dict[str, Callable[..., Any]] = {"joint": JointScore, "gen": GenScore, "repr": ReprScore}


def new_result(
    part: str, recipe: Path, steps: int, start: float, score: Any, methods: dict
) -> dict[str, Any]:
    """The JSON of a benchmark run before its runs: part, recipe, steps, machine, setup time, scorer info."""
    return {
        "part": part, "recipe": str(recipe), "steps": steps,
        "machine": platform.processor() or platform.machine(), "torch": torch.__version__,
        "setup_seconds": time.perf_counter() - start, **getattr(score, "info", {}),
        "runs": {name: [] for name in methods},
    }  # fmt: skip


def run_methods(
    cfg: dict[str, Any],
    methods: dict[str, dict | None],
    seeds: range,
    score: Callable[[Any, str, int], dict[str, Any]],
    result: dict[str, Any],
    args: argparse.Namespace,
    steps: int,
    bank: bool = False,
) -> None:
    """Train and score every method at every seed, writing ``args.out_json`` after each run.

    Seed-major, so an interrupted benchmark still has every method at some seeds. A method config of None is
    the recipe's model left at its random initialisation; a diverged run is recorded, not raised.
    """
    for seed in seeds:
        for name, model_cfg in methods.items():
            t0 = time.perf_counter()
            try:
                if model_cfg is None:
                    model, fit_s = untrained(cfg["model"], seed), 0.0
                else:
                    log_name = re.sub(r"[^A-Za-z0-9.=_-]+", "_", name) if args.log else None
                    model, fit_s = fit(cfg, model_cfg, seed, args.root, steps, bank=bank, log_name=log_name)
            except Diverged as err:
                run = {"seed": seed, "diverged": str(err), "fit_seconds": time.perf_counter() - t0}
            else:
                t0 = time.perf_counter()
                run = {"seed": seed, **score(model, name, seed), "fit_seconds": fit_s}
                run["eval_seconds"] = time.perf_counter() - t0
            result["runs"][name].append(run)
            args.out_json.write_text(json.dumps(result, indent=1))
            print(name, run, flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=tuple(SCORES), default="joint")
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's max_steps)")
    p.add_argument("--fid-samples", type=int, default=1000, help="part gen: generated images per FID")
    p.add_argument("--img-prefix", type=Path, default=None, help="part gen: where seed 0's PNG grids go")
    p.add_argument("--temperature", type=float, default=0.1, help="part repr: InfoNCE temperature")
    p.add_argument(
        "--only", nargs="+", default=None, help="train only methods whose name contains one of these"
    )
    p.add_argument(
        "--set", nargs="+", default=[], metavar="KEY=VALUE",
        help="change the recipe, e.g. model.decoder_weight=0.1; LZN's method name then says so",
    )  # fmt: skip
    p.add_argument("--root", type=Path, default=Path("runs/quality"))
    p.add_argument("--log", action="store_true", help="keep each fit's metrics.csv under --root")
    p.add_argument("--out-json", type=Path, required=True)
    args = p.parse_args()
    cfg = yaml.safe_load(args.recipe.read_text())
    apply_settings(cfg, args.set)
    steps = args.steps or cfg["trainer"]["max_steps"]
    start = time.perf_counter()
    score = SCORES[args.part](cfg, args)
    methods = methods_of(args.part, cfg["model"], args)
    if args.only:
        methods = {name: m for name, m in methods.items() if any(key in name for key in args.only)}
    if args.set:  # a variant, not the recipe: say which
        methods = {name.replace("(recipe)", f"({', '.join(args.set)})"): m for name, m in methods.items()}
    result = new_result(args.part, args.recipe, steps, start, score, methods)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    run_methods(cfg, methods, seeds, score, result, args, steps, bank=args.part == "joint")
    print("\n" + markdown_table(result))


if __name__ == "__main__":
    main()
