"""Which scales of a tower encoder carry its anchors: each head's share of the anchor variance and probe.

The tower's anchor is the sum of one head per feature map (``AnchorTower``): heads on the 28x28 maps see
nearly raw pixels, the deepest ones the trunk's features. For the recipe's model at random initialisation
(``--seeds``) and for trained checkpoints (``--ckpt``), this prints per head

* its resolution and the feature map's channels,
* its term's share of the anchor variance, ``tr Cov(term) / tr Cov(anchor)`` (terms may correlate, so the
  shares need not sum to 1),
* a linear probe and a 20-NN vote on the term alone (the benchmarks' protocol, on the first ``--train``
  clean training images, tested on the whole test split),

and the same for the whole anchor. EMA weights, eval mode.

    python experiments/anchor_heads.py --recipe recipes/fashion_repr.yaml --seeds 0 --ckpt run/step600.ckpt
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.metrics import knn_accuracy, linear_probe_accuracy
from lzn_lightning.nets.anchor_tower import AnchorTower
from lzn_lightning.recipes import QUIET, build_run


def head_terms(tower: AnchorTower, x: torch.Tensor, batch_size: int = 500) -> list[np.ndarray]:
    """Each head's output [N, d] on images ``x`` (the anchor is their sum), in the tower's head order."""
    out: list[list[torch.Tensor]] = [[] for _ in tower.heads]
    for i in range(0, len(x), batch_size):
        skips, mid = tower.path(x[i : i + batch_size])
        maps = [*skips, mid]
        for k, (m, head) in enumerate(zip(tower.head_index, tower.heads, strict=True)):
            out[k].append(head(maps[m]))
    return [torch.cat(t).double().numpy() for t in out]


def rows_of(model: LZNLightningModule, name: str, train, test) -> list[str]:
    """Markdown rows: one per head, then the whole anchor."""
    tower = model.modality(model.routing.source_field()).encoder
    if not isinstance(tower, AnchorTower):
        raise SystemExit(f"{name}: the encoder is {type(tower).__name__}, not the tower (no heads to split)")
    with model.inference():
        tr, te = head_terms(tower, train[0]), head_terms(tower, test[0])
    total = sum(tr)
    total_var = np.var(total, axis=0).sum()
    channels = [*tower.path.skip_channels, tower.path.out_channels]
    rows = []
    labels = [
        f"{r}x{r}, {channels[i]} ch" for r, i in zip(tower.head_resolutions, tower.head_index, strict=True)
    ]
    for label, a, b in [*zip(labels, tr, te, strict=True), ("whole anchor", total, sum(te))]:
        share = np.var(a, axis=0).sum() / total_var
        probe = linear_probe_accuracy(a, train[1], b, test[1])
        knn = knn_accuracy(a, train[1], b, test[1], k=20)
        rows.append(f"| {name} | {label} | {share:.2f} | {100 * probe:.2f} | {100 * knn:.2f} |")
        print(rows[-1], flush=True)
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="*", default=[0], help="random initialisations to split")
    p.add_argument("--ckpt", type=Path, nargs="*", default=[], help="trained checkpoints of the recipe")
    p.add_argument("--train", type=int, default=10000, help="first N clean training images for the probes")
    args = p.parse_args()
    torch.set_grad_enabled(False)
    data = build_run([args.recipe], ["--data.init_args.two_views=false"], **QUIET).datamodule
    data.setup("fit")
    data.setup("test")
    (xtr, ytr), (xte, yte) = (dataset_tensors(d) for d in (data.train_dataset, data.test_dataset))
    train, test = (xtr[: args.train], ytr[: args.train].numpy()), (xte, yte.numpy())
    print(f"{args.recipe}: {len(train[1])} train -> {len(test[1])} test images\n")
    print(
        "| model | head | share of anchor variance | linear probe (%) | 20-NN (%) |\n|---|---|---:|---:|---:|"
    )
    for seed in args.seeds:
        rows_of(
            build_run([args.recipe], [], seed=seed, **QUIET).model, f"random init, seed {seed}", train, test
        )
    for ckpt in args.ckpt:
        model = LZNLightningModule.load_from_checkpoint(ckpt, map_location="cpu")
        rows_of(model, str(ckpt), train, test)


if __name__ == "__main__":
    main()
