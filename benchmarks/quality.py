"""Side-by-side quality of LZN and its baselines at CPU scale, same code and budget (the paper's 3 claims).

Every method of a part is built from the same recipe (same networks, steps, batch, learning rates, data
split) and trained ``--seeds`` times from scratch; only the objective differs.

Part ``joint`` (claim 3): the joint recipe (RF decoder + label-zone alignment) against the supervised baseline
on the same encoder (``align form: ce``: cross-entropy over the label anchors, no decoder, no flow). Scored on
the held-out test split through ``model.classify`` (LZN: the default bank of all training images at zone
centres; CE: nearest label anchor).

Part ``gen`` (claim 1): the generation recipe (RF + LZN: the U-Net decoder conditioned on the image's latent)
against plain RF (the same U-Net with its latent input fixed to zeros, no encoder). Scored by

* FID of ``--fid-samples`` unconditional samples against the training images, in the 128-d penultimate
  features of one small CNN trained once per invocation on the training split (Inception features mean little
  on 8x8 / 28x28 digits; the CNN's held-out accuracy is reported), plus the floor FID(test images, train);
* reconstruction L2 of 256 training images (RF inversion then decoding, latents in one field of all 256,
  the reference's "Recon"), mean over 3 prior-noise draws;
* PNG grids of seed 0's samples and reconstructions (``--img-prefix``).

Part ``repr`` (claim 2): the representation recipe (two augmented views, view-1 latents must land in their
own view-2 zone) against InfoNCE on the same views and encoder (``align form: infonce``) and against the same
encoder at random initialisation. Scored by a linear probe (logistic regression) and a 20-NN vote on the
frozen ``embed`` features of the clean training images, tested on the clean test split.

    python benchmarks/quality.py --part joint --recipe recipes/digits_joint.yaml --seeds 3 \
        --out-json docs/quality_joint_digits.json
    python benchmarks/quality.py --part gen --recipe recipes/digits_gen.yaml --seeds 3 \
        --out-json docs/quality_gen_digits.json --img-prefix docs/img/gen_digits
    python benchmarks/quality.py --part repr --recipe recipes/digits_repr.yaml --seeds 3 \
        --out-json docs/quality_repr_digits.json

Every run is built as ``lzn fit`` builds it (:func:`lzn_lightning.recipes.build_run`: the recipe's data and
trainer settings; validation, checkpoints and the recipe's callbacks off: the benchmark scores); a baseline is
the recipe plus its overlay from ``benchmarks/overlays/``. Further arguments are ``lzn fit`` overrides and
measure a variant, e.g. ``--model.decoder_weight=0.1`` or ``--config my_overlay.yaml``; its LZN method is then
named after them instead of "(recipe)" (baselines get them too, before their overlay: pair them with
``--only LZN`` to train the variant alone). ``--log`` keeps each fit's training log (metrics.csv) and config
(config.yaml) under ``--root``.

``--score-at 600 1200`` (part repr) also scores each trained method at those steps of its fit, so one fit of
``--steps 2400`` gives the probe against training steps (kept per run under ``at_steps``; quality_tables.py
prints it as a second table):

    python benchmarks/quality.py --part repr --recipe recipes/fashion_repr.yaml --seeds 1 --steps 2400 \
        --score-at 600 1200 1800 --out-json docs/quality_repr_fashion_2400.json

Prints a Markdown table (mean +- std over seeds, wall time per run) and writes every run to the JSON after
each run (and each ``--score-at`` point as it is scored), so an interrupted benchmark keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch import Callback
from quality_tables import METRICS, markdown_table
from torch import Tensor
from torchvision.utils import make_grid, save_image

from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.metrics import (
    effective_rank,
    features_of,
    frechet_distance,
    knn_accuracy,
    linear_probe_accuracy,
    mean_reconstruction_l2,
    predict,
    train_classifier,
)
from lzn_lightning.recipes import QUIET, RecipeRun, build_run, override_args

OVERLAYS = Path(__file__).parent / "overlays"  # the baselines, as overlays on a recipe
RECON_IMAGES = 256  # why 256: the recipes' batch, i.e. the field size the zones were trained with
RECON_REPEATS = 3  # prior-noise draws averaged per reconstruction score
GRID_UPSCALE = 4  # 8x8 digits are unreadable at 1:1 in a browser


# ----------------------------------------------------------------------------------------- shared helpers
@dataclass
class Recipe:
    """The recipe a benchmark trains: its file and the ``lzn fit`` overrides that make a variant of it."""

    path: Path
    overrides: list[str] = field(default_factory=list)

    def run(
        self, overlays: Sequence[Path] = (), more: dict[str, Any] | None = None, **settings: Any
    ) -> RecipeRun:
        """The run ``lzn fit --config <recipe> <overrides> --config <overlay> ... <more>`` builds, quiet: no
        logger, validation, checkpoints or progress bar, none of the recipe's callbacks (the benchmark
        scores).

        ``more``: dotted keys set last (see ``override_args``); ``settings``: ``build_run`` keywords.
        """
        configs = [a for overlay in overlays for a in ("--config", str(overlay))]
        args = [*self.overrides, *configs, *override_args(more or {})]
        return build_run([self.path], args, **{**QUIET, **settings})

    def data(self, **init_args: Any) -> Any:
        """The recipe's data module (``init_args`` replace some of its own), set up for fit and test."""
        data = self.run(more={f"data.init_args.{k}": v for k, v in init_args.items()}).datamodule
        data.setup("fit")
        data.setup("test")
        return data

    def max_steps(self) -> int:
        """The recipe's ``trainer.max_steps``."""
        return self.run().trainer.max_steps


def tensors(dataset: Any) -> tuple[Tensor, Tensor]:
    """All images [N, C, H, W] and labels [N] of a labelled dataset of batch dicts."""
    images, labels = dataset_tensors(dataset)
    if labels is None:
        raise ValueError(f"{dataset!r} has no labels; the quality benchmarks score against labels")
    return images, labels


def fit(
    recipe: Recipe,
    overlays: Sequence[Path],
    seed: int,
    root: Path,
    steps: int,
    bank: bool,
    log_name: str | None = None,
    callbacks: Sequence[Any] = (),
) -> tuple[Any, float]:
    """Train one model from scratch: the recipe with ``overlays``; returns (model, fit seconds).

    ``bank``: store all training images as the anchor bank (the field ``model.classify`` uses by default).
    ``log_name``: keep the training log (losses, per-group gradient norms, anchor and latent statistics) and
    the run's config as ``root/<log_name>/seed<seed>/``; None logs nothing. ``callbacks``: more callbacks
    (e.g. :class:`ScoreAt`).
    """
    more: dict[str, Any] = {}
    if log_name:
        csv = {"save_dir": str(root), "name": log_name, "version": f"seed{seed}"}
        more["trainer.logger"] = {"class_path": "lightning.pytorch.loggers.CSVLogger", "init_args": csv}
    run = recipe.run(
        overlays, more, seed=seed, max_steps=steps, root=root, logger=None if log_name else False,
        callbacks=[*([AnchorBank(num=10**9)] if bank else []), *callbacks],
    )  # fmt: skip
    start = time.perf_counter()
    try:
        run.fit()
    except FloatingPointError as err:  # the module gives up after 100 non-finite steps: a result, not a crash
        raise Diverged(f"step {run.trainer.global_step}: {err}") from err
    return run.model, time.perf_counter() - start


class Diverged(RuntimeError):
    """Training stopped on non-finite losses or gradients (the message names the step)."""


class ScoreAt(Callback):
    """Scores the model being trained at chosen optimizer steps, so one fit gives a curve of the score.

    The learning rate is constant after warm-up and every step seeds its own randomness, so the model at step
    ``s`` of a longer fit is the model a fit of ``s`` steps ends with: the curve costs one fit. Scoring runs
    under ``model.inference()`` (EMA weights, eval mode, restored after) with the global RNG forked, so the
    training that follows is unchanged.

    Args:
        steps: Global steps (optimizer steps) after which to score.
        score: The part's scorer, called as ``score(model, name, seed)``.
        name: The method's name (each point is scored as ``"<name> @ <step>"``).
        seed: The run's seed.
        report: Called with ``(step, scores)`` after each point (e.g. to write the JSON at once).
    """

    def __init__(
        self,
        steps: Sequence[int],
        score: Callable[[Any, str, int], dict[str, Any]],
        name: str,
        seed: int,
        report: Callable[[int, dict[str, Any]], None],
    ) -> None:
        self.steps = set(steps)
        self.score, self.name, self.seed, self.report = score, name, seed, report

    def on_train_batch_end(self, trainer: Any, pl_module: Any, *args: Any) -> None:
        step = trainer.global_step
        if step not in self.steps:
            return
        self.steps.discard(step)  # a skipped (non-finite) step leaves global_step as it was: score once
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            scores = self.score(pl_module, f"{self.name} @ {step}", self.seed)
        self.report(step, {**scores, "eval_seconds": time.perf_counter() - t0})


def untrained(recipe: Recipe, seed: int) -> Any:
    """The recipe's model at its seeded random initialisation."""
    return recipe.run(seed=seed).model


class CNNJudge:
    """One SmallCNN (seed 0) trained on the recipe's training split: the FID feature network and the judge of
    conditional samples, identical for every method and seed of a benchmark run.

    Attributes: ``train`` and ``test`` (images, labels), ``net``, ``description`` (with its test accuracy) and
    ``real`` (features of the training images).
    """

    def __init__(self, recipe: Recipe) -> None:
        data = recipe.data()
        self.train = tensors(data.train_dataset)
        self.test = tensors(data.test_dataset)
        # Why fewer epochs on large splits: 30 epochs of 60,000 images is 14,000 CPU steps of the judge
        # alone; a budget of 150,000 images seen (30 epochs of 5,000) is kept, and at least 3 epochs.
        epochs = min(30, max(3, round(30 * 5000 / len(self.train[1]))))
        trained = train_classifier(
            *self.train, int(self.train[1].max()) + 1, self.test, epochs=epochs, seed=0
        )
        self.net, self.description = trained.net, trained.description
        self.real = features_of(self.net, self.train[0])


# ------------------------------------------------------------------------------------- part: joint
class JointScore:
    """Test accuracy through ``model.classify``; for models with a decoder also the FID and the accuracy of
    class-conditional samples, both through one small CNN trained once on the training split."""

    metrics = METRICS["joint"]

    def __init__(self, recipe: Recipe, args: argparse.Namespace) -> None:
        judge = CNNJudge(recipe)
        self.net, self.real = judge.net, judge.real
        self.x, self.y = judge.test
        self.train_y = judge.train[1]
        self.info = {"feature_network_and_judge": judge.description, "real_images": len(self.train_y)}
        if args.cond_samples is not None and args.cond_samples < len(self.train_y):
            # the labels of a seeded random subset of the training images (the same class mix, in expectation)
            pick = torch.randperm(len(self.train_y), generator=torch.Generator().manual_seed(0))
            self.train_y = self.train_y[pick[: args.cond_samples]]
            self.info["conditional_samples"] = args.cond_samples

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
class GenScore:
    """FID in a fixed CNN's features, reconstruction L2 and (seed 0) PNG grids."""

    metrics = METRICS["gen"]

    def __init__(self, recipe: Recipe, args: argparse.Namespace) -> None:
        judge = CNNJudge(recipe)
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
class ReprScore:
    """Linear-probe and kNN test accuracy of frozen ``embed`` features (clean images, no augmentation), and
    the effective rank of the training features (:func:`~lzn_lightning.metrics.effective_rank`)."""

    metrics = METRICS["repr"]

    def __init__(self, recipe: Recipe, args: argparse.Namespace) -> None:
        data = recipe.data(two_views=False)  # same split, clean images
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
        image = model.modality(model.routing.source_field())
        with model.inference():  # EMA weights, eval mode, no gradients
            for suffix, fn in (("", image.embed), ("_trunk", image.trunk_features)):
                # in batches: 60,000 images in one forward pass hold ~6 GB of activations per layer
                ftr, fte = (features_of(fn, x) for x in (self.train[0], self.test[0]))
                out["linear_probe" + suffix] = linear_probe_accuracy(ftr, ytr, fte, yte)
                out["knn" + suffix] = knn_accuracy(ftr, ytr, fte, yte, k=20)
                out["dim" + suffix] = ftr.shape[1]
                out["effective_rank" + suffix] = effective_rank(ftr)  # dimensional collapse shows here
        return out


# ------------------------------------------------------------------------------------------- main
def variant_name(overrides: Sequence[str]) -> str:
    """``lzn fit`` overrides as a method name: ``--a.b=1 --config x.yaml`` -> ``a.b=1, config=x.yaml``."""
    names: list[str] = []
    for arg in overrides:
        if arg.startswith("--"):
            names.append(arg[2:])
        elif names and "=" not in names[-1]:
            names[-1] += f"={arg}"  # the value of "--key value"
        else:
            names.append(arg)
    return ", ".join(names)


def methods_of(part: str) -> dict[str, list[Path] | None]:
    """Method name -> the overlays that turn the recipe into it (None: scored at random initialisation)."""
    if part == "joint":
        return {"LZN joint (recipe)": [], "supervised CE, same encoder": [OVERLAYS / "supervised_ce.yaml"]}
    if part == "gen":
        return {"plain RF, same U-Net": [OVERLAYS / "plain_rf.yaml"], "RF + LZN (recipe)": []}
    return {
        "LZN (recipe)": [],
        # "temperature 0.1": the overlay's, named as in the published JSONs
        "InfoNCE (temperature 0.1), same encoder and views": [OVERLAYS / "infonce.yaml"],
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
    recipe: Recipe,
    methods: dict[str, list[Path] | None],
    seeds: range,
    score: Callable[[Any, str, int], dict[str, Any]],
    result: dict[str, Any],
    args: argparse.Namespace,
    steps: int,
    bank: bool = False,
) -> None:
    """Train and score every method at every seed, writing ``args.out_json`` after each run.

    Seed-major, so an interrupted benchmark still has every method at some seeds. A method's overlays of None
    are the recipe's model left at its random initialisation; a diverged run is recorded, not raised.
    """
    for seed in seeds:
        for name, overlays in methods.items():
            t0 = time.perf_counter()
            points: dict[str, Any] = {}  # --score-at: step -> scores, filled during the fit
            try:
                if overlays is None:
                    model, fit_s = untrained(recipe, seed), 0.0
                else:
                    log_name = re.sub(r"[^A-Za-z0-9.=_-]+", "_", name) if args.log else None
                    curve = score_at(args, steps, score, name, seed, points, result)
                    model, fit_s = fit(recipe, overlays, seed, args.root, steps, bank, log_name, curve)
                    fit_s -= sum(point["eval_seconds"] for point in points.values())  # training time only
            except Diverged as err:
                run = {"seed": seed, "diverged": str(err), "fit_seconds": time.perf_counter() - t0}
            else:
                t0 = time.perf_counter()
                run = {"seed": seed, **score(model, name, seed), "fit_seconds": fit_s}
                run["eval_seconds"] = time.perf_counter() - t0
            if points:  # the curve, its last point the fit's own score (a diverged run keeps what it reached)
                last = {k: v for k, v in run.items() if k != "seed"}
                run["at_steps"] = {**points, **({} if "diverged" in run else {str(steps): last})}
            result.pop("in_progress", None)
            result["runs"][name].append(run)
            args.out_json.write_text(json.dumps(result, indent=1))
            print(name, run, flush=True)


def score_at(
    args: argparse.Namespace,
    steps: int,
    score: Callable[[Any, str, int], dict[str, Any]],
    name: str,
    seed: int,
    points: dict[str, Any],
    result: dict[str, Any],
) -> list[ScoreAt]:
    """The :class:`ScoreAt` callback of ``--score-at`` (none without it): each point goes into ``points`` and,
    until the run is finished, into ``result["in_progress"]``, written to ``args.out_json`` at once (an
    interrupted benchmark keeps the points it scored)."""
    if not args.score_at:
        return []

    def report(step: int, scores: dict[str, Any]) -> None:
        points[str(step)] = scores
        result["in_progress"] = {"method": name, "seed": seed, "at_steps": points}
        args.out_json.write_text(json.dumps(result, indent=1))
        print(f"{name} @ step {step}", scores, flush=True)

    return [ScoreAt([s for s in args.score_at if s < steps], score, name, seed, report)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=tuple(SCORES), default="joint")
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--first-seed", type=int, default=0, help="seeds are first-seed .. first-seed + seeds - 1")
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's max_steps)")
    p.add_argument("--fid-samples", type=int, default=1000, help="part gen: generated images per FID")
    p.add_argument(
        "--cond-samples", type=int, default=None,
        help="part joint: class-conditional samples, asked for the labels of this many random training "
        "images (default: all of them); FID against all training images",
    )  # fmt: skip
    p.add_argument("--img-prefix", type=Path, default=None, help="part gen: where seed 0's PNG grids go")
    p.add_argument(
        "--only", nargs="+", default=None, help="train only methods whose name contains one of these"
    )
    p.add_argument(
        "--score-at", type=int, nargs="+", default=None, metavar="STEP",
        help="part repr: also score each trained method after these steps of its fit (one fit gives the "
        "curve; kept per run under at_steps, the final step included)",
    )  # fmt: skip
    p.add_argument("--root", type=Path, default=Path("runs/quality"))
    p.add_argument("--log", action="store_true", help="keep each fit's metrics.csv under --root")
    p.add_argument("--out-json", type=Path, required=True)
    args, overrides = p.parse_known_args()  # the rest: lzn fit overrides (--model.x=1, --config overlay.yaml)
    recipe = Recipe(args.recipe, overrides)
    steps = args.steps or recipe.max_steps()
    if args.score_at and (args.part != "repr" or any(not 0 < s <= steps for s in args.score_at)):
        p.error(
            f"--score-at {args.score_at}: scores part repr only (the other parts' scores need the whole fit: "
            f"a bank, sample grids), at steps between 1 and the fit's {steps}"
        )
    start = time.perf_counter()
    score = SCORES[args.part](recipe, args)
    methods = methods_of(args.part)
    if args.only:
        methods = {name: m for name, m in methods.items() if any(key in name for key in args.only)}
        if not methods:
            known = list(methods_of(args.part))
            p.error(f"--only {args.only} matches none of the methods of part {args.part}: {known}")
    if overrides:  # a variant, not the recipe: say which
        methods = {name.replace("(recipe)", f"({variant_name(overrides)})"): m for name, m in methods.items()}
    result = new_result(args.part, args.recipe, steps, start, score, methods)
    seeds = range(args.first_seed, args.first_seed + args.seeds)
    run_methods(recipe, methods, seeds, score, result, args, steps, bank=args.part == "joint")
    print("\n" + markdown_table(result))


if __name__ == "__main__":
    main()
