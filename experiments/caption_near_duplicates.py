"""How often a digits_caption training batch puts nearly coinciding anchors into one field.

Draws ``--batches`` training batches of the recipe's data (batch 256) and counts, per batch, the pairs of rows
whose anchors lie closer than ``--rel`` times their norm, for each encoded field (image and text), with the
recipe's networks at initialisation or from ``--ckpt``; plus the pairs of identical captions (the templates
repeat: same digit, same three attribute words, same wording). The text encoder of the recipe has no dropout,
so identical captions are exact duplicate anchors in the text field.

    python experiments/caption_near_duplicates.py --recipe recipes/digits_caption.yaml [--ckpt last.ckpt]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from lzn_lightning.module import load_for_inference
from lzn_lightning.recipes import build_run


def close_pairs(anchors: torch.Tensor, rel: float) -> int:
    """Pairs (i < j) with |a_i - a_j| < rel * |a_i| (distances from differences, float64)."""
    a = anchors.double()
    dist = (a[:, None, :] - a[None, :, :]).norm(dim=2)  # [b, b]
    close = dist < rel * a.norm(dim=1)[:, None]
    return int(torch.triu(close, diagonal=1).sum())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_caption.yaml"))
    p.add_argument("--ckpt", type=Path, default=None)
    p.add_argument("--batches", type=int, default=4)
    p.add_argument("--rel", type=float, nargs="+", default=[1e-3, 1e-5])
    args = p.parse_args()
    run = build_run([args.recipe], logger=False, checkpoints=False)
    model = load_for_inference(args.ckpt) if args.ckpt else run.model.eval()
    data = run.datamodule
    data.setup("fit")
    loader = data.train_dataloader()
    print(f"weights: {args.ckpt or 'initialisation (seed 0)'}; {args.recipe}")
    print(
        "| batch | rows | identical captions (pairs) | "
        + " | ".join(f"{f} anchors closer than {r:g} (pairs)" for f in ("image", "text") for r in args.rel)
        + " |"
    )
    print("|---|---|---|" + "---|" * (2 * len(args.rel)))
    for k, batch in enumerate(loader):
        if k == args.batches:
            break
        tokens = batch["text"]
        same = (tokens[:, None, :] == tokens[None, :, :]).all(dim=2)  # [b, b]
        identical = int(torch.triu(same, diagonal=1).sum())
        cells = []
        with torch.no_grad(), model.ema_weights():
            for field in ("image", "text"):
                m = model.modality(field)
                anchors = m.encode(m.preprocess(batch[field], False))
                cells += [str(close_pairs(anchors, r)) for r in args.rel]
        print(f"| {k} | {len(tokens)} | {identical} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
