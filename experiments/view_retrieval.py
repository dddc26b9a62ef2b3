"""Where a two-view representation run loses its views: in the anchors, or in the flow from anchors to zones.

The representation objective asks that the latent of an image's first view land in its second view's zone
among the batch's second views. For batches of ``--batch`` clean training images, each given two random
views by the data module's own view augmentation (seeded), this measures with the model's EMA weights

* anchor retrieval: how often an image's second-view anchor is the nearest (Euclidean) to its first-view
  anchor among the batch's second-view anchors (what a perfect flow would turn into zone accuracy),
* the same with cosine similarity (what InfoNCE trains),
* zone accuracy: how often the first view's latent lands in its own second view's zone, computed from the
  model's anchors by the recipe's own latent flow and alignment term (so also for a model trained with
  another objective, e.g. InfoNCE): with the recipe's training prior noise (``flow.noise_scale``) and with
  none (latents at the zone centres),
* the distance ratio: median over images of d(own second view) / d(nearest other second view),

for the recipe's model at random initialisation (``--seeds``) and for trained checkpoints (``--ckpt``).

    python experiments/view_retrieval.py --recipe recipes/fashion_repr.yaml --seeds 0 --ckpt run/step600.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.recipes import QUIET, build_run

#: The measured quantities, in table order.
KEYS = ["anchor retrieval", "cosine retrieval", "zone accuracy", "zone accuracy, no noise", "distance ratio"]


def two_views(recipe: Path, batches: int, batch: int, seed: int) -> list[dict[str, torch.Tensor]]:
    """``batches`` batches {image, image_view2} of random clean training images, two random views each."""
    data = build_run([recipe], ["--data.init_args.two_views=false"], **QUIET).datamodule
    data.setup("fit")
    images, _ = dataset_tensors(data.train_dataset)  # [N, C, H, W] in [-1, 1]
    view = data.view_transform()
    torch.manual_seed(seed)  # the views' random crops and flips
    pick = torch.randperm(len(images))[: batches * batch]
    out = []
    for b in range(batches):
        x = images[pick[b * batch : (b + 1) * batch]]
        out.append(
            {"image": torch.stack([view(i) for i in x]), "image_view2": torch.stack([view(i) for i in x])}
        )
    return out


def measure(
    model: LZNLightningModule, judge: LZNLightningModule, batches: list[dict[str, torch.Tensor]]
) -> dict[str, float]:
    """Anchor retrieval (Euclidean, cosine), zone accuracy through ``judge``'s latent flow and first align
    term (training noise and none) and the median distance ratio, as means over the batches."""
    image = model.modality(model.routing.source_field())
    term = judge.align[0].objective()
    sums = dict.fromkeys(KEYS, 0.0)
    judge.generator().manual_seed(0)  # the prior noise of the latents
    for batch in batches:
        with model.inference():
            a1, a2 = image.encode(batch["image"]), image.encode(batch["image_view2"])  # [B, d] each
        own = torch.arange(len(a1))
        with torch.no_grad():
            for key, noise in (("zone accuracy", judge.flow.noise_scale), ("zone accuracy, no noise", 0.0)):
                z = judge.latents_of(a1, noise)  # [B, d], through the field of the first views
                sums[key] += float(term.align(z, a2, own, None).zone_accuracy)
        dist = torch.cdist(a1.double(), a2.double())  # [B, B]: first views x second views
        cos = torch.nn.functional.normalize(a1, dim=1) @ torch.nn.functional.normalize(a2, dim=1).T
        others = dist.masked_fill(torch.eye(len(a1), dtype=torch.bool), float("inf")).min(1).values
        sums["anchor retrieval"] += float((dist.argmin(1) == own).double().mean())
        sums["cosine retrieval"] += float((cos.argmax(1) == own).double().mean())
        sums["distance ratio"] += float((dist.diagonal() / others).median())
    return {k: v / len(batches) for k, v in sums.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, required=True, help="a two-view representation recipe")
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="random initialisations")
    p.add_argument("--ckpt", type=Path, nargs="*", default=[], help="trained checkpoints of the recipe")
    p.add_argument("--batches", type=int, default=8)
    p.add_argument("--batch", type=int, default=128, help="images per batch (the recipe's field size)")
    args = p.parse_args()
    batches = two_views(args.recipe, args.batches, args.batch, seed=0)
    models = [
        (f"random init, seed {s}", build_run([args.recipe], [], seed=s, **QUIET).model) for s in args.seeds
    ]
    models += [(str(c), LZNLightningModule.load_from_checkpoint(c, map_location="cpu")) for c in args.ckpt]
    judge = build_run([args.recipe], [], seed=0, **QUIET).model  # the recipe's flow and alignment term
    print(f"{args.batches} batches of {args.batch} training images, two random views each\n")
    print("| model | " + " | ".join(KEYS) + " |\n|---|" + "---:|" * len(KEYS))
    for name, model in models:
        m = measure(model, judge, batches)
        print(f"| {name} | " + " | ".join(f"{m[k]:.3f}" for k in KEYS) + " |", flush=True)


if __name__ == "__main__":
    main()
