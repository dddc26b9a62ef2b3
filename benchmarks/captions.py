"""Image <-> text through one latent (digits_caption) against a CLIP-style InfoNCE model on the same encoders.

Trains the recipe (both decoders, image <-> text zone alignment) and, with the same encoders, data and budget,
InfoNCE both ways on the anchors (no decoders, no flow), ``--seeds`` times each. Scored on the held-out test
split, all of it as one batch (the recipe's ``eval_batch_size``):

* image -> text: the caption the text decoder writes (greedy) from each image's latent names the right digit
  (``i2t_digit``); its attribute words (stroke, width, slant) agree with the image's own (``i2t_attr``, mean
  over the three);
* text -> image: the image decoder's sample from each caption's latent is recognised as the digit the caption
  names by a CNN trained on the training images (``t2i_digit``);
* retrieval R@1 both ways: the retrieved caption (image) says the same as the query's (digit and the three
  attributes; the template is ignored), ``r1_i2t`` / ``r1_t2i``. LZN retrieves by tracing the query's latent
  back to the other field's zones; InfoNCE by cosine similarity of the anchors.

    python benchmarks/captions.py --recipe recipes/digits_caption.yaml --seeds 1 \
        --out-json docs/quality_caption_digits.json
"""

from __future__ import annotations

import argparse
import re
import time
from pathlib import Path
from typing import Any

import quality
import torch
from torch import Tensor

from lzn_lightning.crossmodal import retrieve, translate
from lzn_lightning.data.captions import DIGIT_WORDS
from lzn_lightning.metrics import predict
from lzn_lightning.objectives import infonce_logits

SLOTS = (("thin", "bold"), ("narrow", "wide"), ("slanted left", "slanted right"))


def meaning(caption: str) -> tuple[int | None, ...]:
    """(digit, stroke, width, slant) of a caption, attributes -1 / 0 / +1; the template does not matter."""
    numeral = re.search(r"digit (\d)", caption)
    words = [k for k, w in enumerate(DIGIT_WORDS) if re.search(rf"\b{w}\b", caption)]
    digit = int(numeral.group(1)) if numeral else (words[0] if len(words) == 1 else None)
    attrs = tuple(-1 if low in caption else 1 if high in caption else 0 for low, high in SLOTS)
    return (digit, *attrs)


class CaptionScore:
    """The test split, its captions' meanings and one CNN judge, shared by every method and seed."""

    def __init__(self, recipe: quality.Recipe) -> None:
        self.judge = quality.CNNJudge(recipe)
        data = recipe.data()
        test = data.test_dataset
        self.images, self.labels = self.judge.test
        self.tokens = torch.stack([test[i]["text"] for i in range(len(test))])  # [N, max_len]
        self.meanings = [meaning(c) for c in test.captions]
        self.info = {"judge": self.judge.description, "n_test": len(test)}

    def _r1(self, picked: Tensor) -> float:
        return sum(self.meanings[j] == self.meanings[i] for i, j in enumerate(picked.tolist())) / len(picked)

    def __call__(self, model: Any, name: str, seed: int) -> dict[str, Any]:
        if name.startswith("InfoNCE"):
            with model.inference():
                a_img = model.modality("image").encode(self.images)
                a_txt = model.modality("text").encode(self.tokens)
            return {
                "r1_i2t": self._r1(infonce_logits(a_img, a_txt, 1.0).argmax(1)),
                "r1_t2i": self._r1(infonce_logits(a_txt, a_img, 1.0).argmax(1)),
            }
        text = model.modality("text")
        captions = text.detokenize(translate(model, self.images, "image", "text"))
        said = [meaning(c) for c in captions]
        digit = sum(s[0] == int(y) for s, y in zip(said, self.labels, strict=True)) / len(said)
        attr = sum(
            sum(a == b for a, b in zip(s[1:], m[1:], strict=True)) / 3
            for s, m in zip(said, self.meanings, strict=True)
        )
        generated = translate(model, self.tokens, "text", "image", generator=torch.Generator().manual_seed(0))
        t2i = (predict(self.judge.net, generated.float().cpu()) == self.labels).float().mean().item()
        return {
            "i2t_digit": digit,
            "i2t_attr": attr / len(said),
            "t2i_digit": t2i,
            "r1_i2t": self._r1(retrieve(model, self.images, "image", "text", self.tokens)),
            "r1_t2i": self._r1(retrieve(model, self.tokens, "text", "image", self.images)),
            "examples": [f"{m} -> {c!r}" for m, c in zip(self.meanings[:6], captions[:6], strict=True)],
        }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_caption.yaml"))
    p.add_argument("--seeds", type=int, default=1)
    p.add_argument("--steps", type=int, default=None, help="training steps (default: the recipe's max_steps)")
    p.add_argument("--root", type=Path, default=Path("runs/quality"))
    p.add_argument("--log", action="store_true", help="keep each fit's metrics.csv under --root")
    p.add_argument("--out-json", type=Path, required=True)
    args = p.parse_args()
    recipe = quality.Recipe(args.recipe)
    steps = args.steps or recipe.max_steps()
    start = time.perf_counter()
    score = CaptionScore(recipe)
    methods = {
        "LZN image <-> text (recipe)": [],
        "InfoNCE both ways, same encoders": [quality.OVERLAYS / "caption_infonce.yaml"],
    }
    result = quality.new_result("caption", args.recipe, steps, start, score, methods)
    quality.run_methods(recipe, methods, range(args.seeds), score, result, args, steps)


if __name__ == "__main__":
    main()
