"""How much of raw pixels' probe accuracy survives a squeeze to the width of an encoder's features.

The representation recipes' encoders give 64-d features (anchors and pre-head), while the raw-pixel baseline
is probed on all 784 (28x28) pixels. A linear probe on fewer dimensions can do less, learned or not, so this
probes (the benchmarks' protocol: logistic regression on standardised features of the clean training split,
tested on the test split; 20-NN cosine vote) the pixels

* whole (flattened),
* projected on their first ``k`` principal components (fitted on the training split) for each ``--dims``,
* projected by a seeded Gaussian random matrix to each ``--dims`` (a linear random "encoder").

    python experiments/pixel_dims.py --recipe recipes/fashion_repr.yaml --dims 16 32 64 128
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from sklearn.decomposition import PCA

from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.metrics import knn_accuracy, linear_probe_accuracy
from lzn_lightning.recipes import build_run


def split(recipe: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Flattened clean training and test images [N, C*H*W] and labels, as the recipe's data gives them."""
    data = build_run([recipe], ["--data.init_args.two_views=false"], logger=False).datamodule
    data.setup("fit")
    data.setup("test")
    (xtr, ytr), (xte, yte) = (dataset_tensors(d) for d in (data.train_dataset, data.test_dataset))
    return xtr.flatten(1).numpy(), ytr.numpy(), xte.flatten(1).numpy(), yte.numpy()


def probe(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray) -> dict[str, float]:
    """Linear-probe and 20-NN test accuracy of one feature set."""
    return {
        "linear_probe": linear_probe_accuracy(xtr, ytr, xte, yte),
        "knn": knn_accuracy(xtr, ytr, xte, yte, k=20),
        "dim": xtr.shape[1],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, required=True, help="a representation recipe (its data split)")
    p.add_argument("--dims", type=int, nargs="+", default=[16, 32, 64, 128])
    p.add_argument("--seed", type=int, default=0, help="seed of the random projections")
    p.add_argument("--out-json", type=Path, default=None)
    args = p.parse_args()
    xtr, ytr, xte, yte = split(args.recipe)
    rows = {"pixels": probe(xtr, ytr, xte, yte)}
    print("pixels", rows["pixels"], flush=True)
    g = torch.Generator().manual_seed(args.seed)
    for k in args.dims:
        pca = PCA(n_components=k, random_state=args.seed).fit(xtr)
        rows[f"pca{k}"] = probe(pca.transform(xtr), ytr, pca.transform(xte), yte)
        print(f"pca{k}", rows[f"pca{k}"], flush=True)
        w = torch.randn(xtr.shape[1], k, generator=g, dtype=torch.float64).numpy()  # [784, k]
        rows[f"random{k}"] = probe(xtr @ w, ytr, xte @ w, yte)
        print(f"random{k}", rows[f"random{k}"], flush=True)
    print("| features | dim | linear probe (%) | 20-NN (%) |\n|---|---:|---:|---:|")
    for name, r in rows.items():
        print(f"| {name} | {r['dim']} | {100 * r['linear_probe']:.2f} | {100 * r['knn']:.2f} |")
    if args.out_json:
        record = {"recipe": str(args.recipe), "seed": args.seed, **rows}
        args.out_json.write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
