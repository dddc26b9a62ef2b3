"""Which features a representation number is about: anchors vs pre-head, raw pixels, probe convergence.

For a representation recipe, probes (the benchmarks' protocol: logistic regression on standardised features of
the clean training split, tested on the test split; and a 20-NN cosine vote) the features of

* raw pixels (flattened; no encoder),
* the recipe's encoder at its seeded random initialisation (``--seeds``), and trained checkpoints if given,

each on two feature sets: the anchors (``model.embed`` for the tower encoder: the sum of heads on flattened
feature maps at every scale, the input resolution included) and the pre-head feature (the deepest map,
average-pooled). The probe runs at ``max_iter`` 1000 (the benchmarks') and again at 10x that, so that a number
that moves with the iteration budget shows. Each feature set also gets the 20-NN vote on features centred on
their training mean, the ratio of that mean's norm to the features' RMS distance from it (a common offset
that the cosine vote sees and the standardised probe does not), and the effective rank of their covariance
(exp of the entropy of its spectrum: dimensional collapse).

    python benchmarks/repr_feature_sets.py --recipe recipes/digits_repr.yaml --seeds 0 1 2 [--ckpt C.ckpt ...]
"""

from __future__ import annotations

import argparse
import warnings
from pathlib import Path

import numpy as np
import torch
from sklearn.exceptions import ConvergenceWarning

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks.base import dataset_tensors
from lzn_lightning.metrics import effective_rank, features_of, knn_accuracy, linear_probe_accuracy
from lzn_lightning.recipes import QUIET, build_run

#: L-BFGS iteration budgets of the linear probe (``--probe-iters``).
PROBE_ITERS = [1000, 10000]


def probes(train: tuple[np.ndarray, np.ndarray], test: tuple[np.ndarray, np.ndarray]) -> dict[str, str]:
    """Linear probe at 1,000 and 10,000 L-BFGS iterations (a * marks "did not converge") and 20-NN, in %."""
    out = {}
    for iters in PROBE_ITERS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", ConvergenceWarning)
            acc = linear_probe_accuracy(*train, *test, max_iter=iters)
        stalled = any(issubclass(w.category, ConvergenceWarning) for w in caught)
        out[f"probe@{iters}"] = f"{100 * acc:.2f}{'*' if stalled else ''}"
    out["20-NN"] = f"{100 * knn_accuracy(*train, *test, k=20):.2f}"
    # The cosine vote sees a common offset of the features (the alignment loss does not: it is translation
    # invariant), the linear probe standardises it away; the vote on features centred on the training mean
    # shows what the offset costs the 20-NN number.
    mean = train[0].mean(0, keepdims=True)
    centred = knn_accuracy(train[0] - mean, train[1], test[0] - mean, test[1], k=20)
    out["20-NN centred"] = f"{100 * centred:.2f}"
    spread = np.sqrt(((train[0] - mean) ** 2).sum(1).mean())  # RMS distance to the mean
    out["offset / spread"] = f"{np.linalg.norm(mean) / spread:.2f}"
    # Dimensional collapse: exp(entropy) of the centred features' covariance spectrum, from 1 (one direction
    # holds all the variance) to the feature width (isotropic).
    out["effective rank"] = f"{effective_rank(train[0]):.1f}"
    return out


def feature_rows(model: LZNLightningModule, name: str, train, test) -> list[tuple[str, dict[str, str]]]:
    image = model.modality(model.routing.source_field())
    rows = []
    with model.inference():  # EMA weights, eval mode, no gradients
        for features, fn in (("anchors", image.embed), ("pre-head", image.trunk_features)):
            # in batches, as quality.py: 60,000 images in one pass hold gigabytes of activations per layer
            ftr, fte = (features_of(fn, x) for x in (train[0], test[0]))
            rows.append((f"{name}, {features} ({ftr.shape[1]}-d)", probes((ftr, train[1]), (fte, test[1]))))
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--recipe", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="*", default=[0])
    p.add_argument("--ckpt", type=Path, nargs="*", default=[], help="trained checkpoints of the recipe")
    p.add_argument(
        "--probe-iters", type=int, nargs="+", default=PROBE_ITERS,
        help="linear-probe L-BFGS budgets (one column each; the benchmarks use 1000)",
    )  # fmt: skip
    p.add_argument("--no-pixels", action="store_true", help="skip the raw-pixel row (slow on 784-d pixels)")
    args = p.parse_args()
    PROBE_ITERS[:] = args.probe_iters
    torch.set_grad_enabled(False)
    data = build_run([args.recipe], ["--data.init_args.two_views=false"], **QUIET).datamodule
    data.setup("fit")
    data.setup("test")
    train = [t.numpy() if i else t for i, t in enumerate(dataset_tensors(data.train_dataset))]
    test = [t.numpy() if i else t for i, t in enumerate(dataset_tensors(data.test_dataset))]
    rows = []
    if not args.no_pixels:
        pixels = [x.flatten(1).numpy() for x in (train[0], test[0])]  # [N, C*H*W]
        rows.append(("raw pixels", probes((pixels[0], train[1]), (pixels[1], test[1]))))
    for seed in args.seeds:
        model = build_run([args.recipe], [], seed=seed, **QUIET).model
        rows += feature_rows(model, f"random-init encoder, seed {seed}", train, test)
    for ckpt in args.ckpt:
        model = LZNLightningModule.load_from_checkpoint(ckpt, map_location="cpu")
        rows += feature_rows(model, f"trained ({ckpt})", train, test)
    keys = list(rows[0][1])
    print(
        f"{args.recipe}: {len(train[1])} train -> {len(test[1])} test images (* = L-BFGS did not converge)\n"
    )
    unitless = ("offset / spread", "effective rank")
    print("| features | " + " | ".join(k if k in unitless else f"{k} (%)" for k in keys) + " |")
    print("|---|" + "---:|" * len(keys))
    for name, values in rows:
        print(f"| {name} | " + " | ".join(values[k] for k in keys) + " |")


if __name__ == "__main__":
    main()
