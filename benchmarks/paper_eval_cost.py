"""Time of a paper recipe's whole `lzn test` protocol on this machine, from measured per-image costs.

For each recipe it builds the paper's networks at their real size (the recipe as `lzn fit` builds it), times
one decoder call (the RF velocity network, what every sampler step costs) and one encoder pass per image, and
multiplies by the counts the recipe's evaluation callbacks declare (GenerationMetrics: samples x samplers;
ReconstructionL2: images x draws x (encoder + inversion + decoding); ZoneAccuracy: test images x noise
scales). Euler-10 costs exactly 10 decoder calls per solve; RK45 is adaptive, so its number of calls per
solve (K) depends on the trained decoder and is not measured here (no released weights on this machine): the
table gives its time per 100 calls, and the total as ``Euler part + K/100 x RK45 part``. The Inception and
CLIP feature passes are not measured (their weights are not downloadable here). Weights are random: the cost
of a call does not depend on their values.

    OMP_NUM_THREADS=1 python benchmarks/paper_eval_cost.py                 # the five recipes, 1 thread
    OMP_NUM_THREADS=1 python benchmarks/paper_eval_cost.py --recipes cifar10_gen --batch 4 --repeats 3
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import yaml

import lzn_lightning
from lzn_lightning.callbacks.generation_metrics import parse_sampler
from lzn_lightning.recipes import recipe_cli

ROOT = Path(__file__).resolve().parents[1]
RECIPES = ("cifar10_gen", "cifar10_joint", "afhq_cat_gen", "celebahq_gen", "lsun_bedroom_gen")
# Size of the split ZoneAccuracy classifies, for the recipes that declare it (CIFAR-10's test set).
ACCURACY_SPLIT = {"cifar10_joint": 10000}


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median CPU time of ``fn()`` over ``repeats`` runs after one warm-up run.

    CPU time of the process, not wall time: on a shared machine other processes stretch the wall time of a
    single-threaded job, not the CPU time it needs (run with OMP_NUM_THREADS=1 so the two are comparable).
    """
    fn()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def protocol(recipe: str) -> dict[str, dict[str, Any]]:
    """The recipe's evaluation callbacks: ``{class name: init_args}``."""
    spec = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    return {cb["class_path"]: cb.get("init_args", {}) for cb in spec["trainer"]["callbacks"]}


@torch.no_grad()
def per_image_costs(recipe: str, batch: int, repeats: int) -> tuple[float, float, int]:
    """(seconds of one decoder call per image, seconds of one encoder pass per image, parameters) of the
    recipe's networks at real size."""
    run = recipe_cli(["--config", str(ROOT / "recipes" / f"{recipe}.yaml")])
    image = run.model.modality("image").eval()
    x = image.example_batch(batch)  # [B, C, H, W]
    t = torch.full((batch,), 0.5)
    latent = torch.randn(batch, run.model.latent_dim)
    labels = torch.zeros(batch, dtype=torch.long) if image.decoder_classes > 0 else None
    decoder = median_seconds(lambda: image.decoder(x, t, latent, labels), repeats) / batch
    encoder = median_seconds(lambda: image.encode(x), repeats) / batch
    return decoder, encoder, sum(p.numel() for p in image.parameters())


def protocol_seconds(recipe: str, decoder: float, encoder: float) -> tuple[float, float, str]:
    """(seconds of the Euler parts and the encoder, seconds of the RK45 parts per 100 calls per solve, what
    was counted)."""
    p = protocol(recipe)
    euler, rk45_per_100, parts = 0.0, 0.0, []
    gen = p.get("GenerationMetrics")
    if gen is not None:
        n = int(gen.get("num_samples", 50000))
        for name in gen.get("samplers", ["rk45", "euler10"]):
            method, steps = parse_sampler(name)
            if method == "rk45":
                rk45_per_100 += n * 100 * decoder
            else:
                euler += n * (steps or 20) * decoder
        parts.append(f"{n} samples x {len(gen.get('samplers', []))} samplers")
    rec = p.get("ReconstructionL2")
    if rec is not None:
        m, r = int(rec.get("num_samples", 256)), int(rec.get("repeats", 1))
        for name in rec.get("samplers") or ["euler"]:
            method, steps = parse_sampler(name)
            euler += m * r * encoder  # the latents of every draw
            if method == "rk45":
                rk45_per_100 += m * r * 2 * 100 * decoder  # inversion + decoding
            else:
                euler += m * r * 2 * (steps or 20) * decoder
        parts.append(f"recon {m} x {r} draws")
    acc = p.get("ZoneAccuracy")
    if acc is not None:
        n_test = ACCURACY_SPLIT.get(recipe, 0)
        euler += n_test * len(acc.get("noise_scales", [0.0, 1.0])) * encoder
        parts.append(f"accuracy {n_test} x {len(acc.get('noise_scales', []))} noise scales")
    return euler, rk45_per_100, "; ".join(parts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES))
    parser.add_argument("--batch", type=int, default=2, help="images per timed call")
    parser.add_argument("--repeats", type=int, default=2, help="timed calls (median) after one warm-up")
    args = parser.parse_args()
    threads = torch.get_num_threads()
    print(
        f"lzn-lightning {lzn_lightning.__version__}, torch {torch.__version__}, "
        f"{platform.processor() or 'cpu'}, {threads} thread(s), batch {args.batch}, median of {args.repeats}"
    )
    print(
        "\n| recipe | image networks | decoder call (CPU s/image) | encoder (CPU s/image) | protocol | "
        "Euler-10 + encoder (CPU h) | RK45 per 100 calls/solve (CPU h) | Inception + CLIP features | "
        "total (CPU h) |"
    )
    print("|---|---|---|---|---|---|---|---|---|", flush=True)
    measured: dict[tuple[str, bool], tuple[float, float, int]] = {}
    for recipe in args.recipes:
        size = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
        key = (str(size["model"]["modalities"]["image"]["init_args"]), recipe.endswith("joint"))
        if key not in measured:  # the three 256 px recipes share one network: time it once
            measured[key] = per_image_costs(recipe, args.batch, args.repeats)
        decoder, encoder, params = measured[key]
        euler, rk45, what = protocol_seconds(recipe, decoder, encoder)
        h = 3600.0
        print(
            f"| {recipe} | {params / 1e6:.1f} M | {decoder:.3g} | {encoder:.3g} | {what} | "
            f"{euler / h:,.0f} | {rk45 / h:,.0f} | not measured | "
            f"{euler / h:,.0f} + K/100 x {rk45 / h:,.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
