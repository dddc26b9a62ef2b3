"""Text <-> label through one latent (vader_sentiment) vs supervised cross-entropy on the same text encoder.

Both methods are built from the recipe (same encoder, data split, steps, batch, rates); the baseline replaces
the alignment by ``form: ce`` (cross-entropy over the label anchors) and trains no decoder. Scored on the
held-out test split:

* ``test_accuracy``: LZN: each text's latent (the whole test split as the field, zone centres) traced back to
  the label zones (``crossmodal.retrieve``); CE: the nearest label anchor;
* class-conditional text (LZN only): ``--samples`` texts per class written by the text decoder from the label
  zones (temperature 1), judged by the same seed's CE model (``cond_acc``; the judge's own test accuracy is
  the ceiling to compare with), the share that are entries of the lexicon (``cond_in_lexicon``), and of the
  asked class (``cond_lexicon_class``, over those in the lexicon). A few samples per class go into the JSON.

    python benchmarks/text_label.py --recipe recipes/vader_sentiment.yaml --seeds 3 \
        --out-json docs/quality_text_vader.json
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import quality
import torch
from torch import Tensor

from lzn_lightning.crossmodal import retrieve, translate
from lzn_lightning.objectives import prototype_logits

SHOWN = 8  # samples per class kept in the JSON


def ce_predict(model: Any, tokens: Tensor) -> Tensor:
    """Class of each text by the nearest label anchor (how the CE baseline classifies)."""
    with model.inference():
        anchors = model.modality("text").encode(tokens)
        return prototype_logits(anchors, model.modality("label").anchor_table()).argmax(1).cpu()


class TextLabelScore:
    """The test split, the lexicon's classes and the number of conditional samples."""

    def __init__(self, recipe: quality.Recipe, samples: int) -> None:
        data = recipe.data()
        test = data.test_dataset
        self.tokens, self.labels = test.tokens, test.labels
        texts, labels = data.entries()
        self.lexicon = dict(zip(texts, labels.tolist(), strict=True))
        self.samples = samples
        self.judges: dict[int, Any] = {}
        self.info = {"n_test": len(test), "n_lexicon": len(texts), "samples_per_class": samples}

    def __call__(self, model: Any, name: str, seed: int) -> dict[str, Any]:
        if name.startswith("supervised CE"):
            self.judges[seed] = model
            return {"test_accuracy": (ce_predict(model, self.tokens) == self.labels).float().mean().item()}
        predicted = retrieve(model, self.tokens, "text", "label")
        run: dict[str, Any] = {"test_accuracy": (predicted == self.labels).float().mean().item()}
        if not model.decode_fields:  # no text decoder trained: nothing to write with
            return run
        asked = torch.arange(2).repeat_interleave(self.samples)  # [2 * samples] class of each sample
        g = torch.Generator().manual_seed(seed)
        ids = translate(model, asked, "label", "text", noise_scale=1.0, generator=g, temperature=1.0)
        written = model.modality("text").detokenize(ids)
        known = [(w, y) for w, y in zip(written, asked.tolist(), strict=True) if w in self.lexicon]
        run["cond_in_lexicon"] = len(known) / len(written)
        run["cond_lexicon_class"] = sum(self.lexicon[w] == y for w, y in known) / max(len(known), 1)
        judge = self.judges.get(seed)
        if judge is not None:
            run["cond_acc"] = (ce_predict(judge, ids) == asked).float().mean().item()
        run["samples"] = {k: written[k * self.samples : k * self.samples + SHOWN] for k in range(2)}
        return run


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=Path("recipes/vader_sentiment.yaml"))
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's max_steps)")
    p.add_argument("--samples", type=int, default=200, help="class-conditional texts per class")
    p.add_argument("--only", nargs="+", default=None, help="only methods whose name contains one of these")
    p.add_argument(
        "--no-text-decoder", action="store_true",
        help="ablation: the LZN recipe without its text decoder (decode: []), classification only",
    )  # fmt: skip
    p.add_argument("--root", type=Path, default=Path("runs/quality"))
    p.add_argument("--log", action="store_true", help="keep each fit's metrics.csv under --root")
    p.add_argument("--out-json", type=Path, required=True)
    args = p.parse_args()
    recipe = quality.Recipe(args.recipe)
    steps = args.steps or recipe.max_steps()
    start = time.perf_counter()
    score = TextLabelScore(recipe, args.samples)
    # CE first: each seed's CE model is the judge of that seed's LZN samples.
    methods = {"supervised CE, same encoder": [quality.OVERLAYS / "text_ce.yaml"]}
    if args.no_text_decoder:
        methods["LZN text <-> label, no text decoder"] = [quality.OVERLAYS / "no_decoder_loss.yaml"]
    else:
        methods["LZN text <-> label (recipe)"] = []
    if args.only:
        methods = {name: m for name, m in methods.items() if any(key in name for key in args.only)}
    result = quality.new_result("text_label", args.recipe, steps, start, score, methods)
    quality.run_methods(recipe, methods, range(args.seeds), score, result, args, steps)


if __name__ == "__main__":
    main()
