"""The Python inference API on a field of any modality: one tiny image + text + label model (wiring, shapes,
banks and errors; tests/integration/test_text_end_to_end.py shows that such a model learns)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from tiny_lzn import train_image_text_label

from lzn_lightning import LZNLightningModule
from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.inference import LZNInference
from lzn_lightning.module import load_for_inference

BANK = 10
PROMPTS = ["pattern 1", "pattern 2", "pattern 0"]


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return load_for_inference(
        train_image_text_label(tmp_path_factory.mktemp("fields"), [AnchorBank(num=BANK)])
    )


def test_anchor_bank_holds_every_encoded_modality_and_survives_the_checkpoint(model: Any) -> None:
    assert model.anchor_bank_of("image").shape == (BANK, 1, 8, 8)
    text_bank = model.anchor_bank_of("text")
    assert text_bank.shape == (BANK, 12) and text_bank.dtype == torch.long  # token ids keep their dtype
    assert model.anchor_bank_of("label") is None  # categorical: its anchors are the table


def test_text_is_classified_and_embedded_from_strings(model: Any) -> None:
    bank = model.classify(PROMPTS, field="text")  # the text bank is the field: one label per text
    assert bank.shape == (3,) and bank.dtype == torch.long and bool(((bank >= 0) & (bank < 3)).all())
    alone = torch.cat([model.classify([p], field="text") for p in PROMPTS])
    assert torch.equal(bank, alone)  # bank context: a text's label does not depend on its batch-mates
    tokens = model.modalities["text"].tokenize(PROMPTS)
    assert torch.equal(model.classify(tokens, field="text"), bank)  # token ids work as well as strings
    assert model.embed(PROMPTS, field="text").shape == (3, 8)
    assert model.latents(PROMPTS, field="text").shape == (3, 8)


def test_generate_goes_from_any_field_to_any_decoder(model: Any) -> None:
    images = model.generate(condition={"text": PROMPTS}, seed=0)  # text -> image (latent_from decodes)
    assert images.shape == (3, 1, 8, 8) and images.min() >= -1 and images.max() <= 1
    assert torch.equal(images, model.generate(condition={"text": PROMPTS}, seed=0))
    captions = model.generate(condition={"image": images}, target="text", noise_scale=0.0)  # image -> text
    assert (
        isinstance(captions, list) and len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    )
    by_class = model.generate(condition={"label": torch.arange(3)}, target="text", temperature=1.0, seed=1)
    assert len(by_class) == 3  # label -> text
    assert model.generate(labels=torch.arange(3)).shape == (3, 1, 8, 8)  # label -> image, the shorthand
    assert model.generate(4, target="text") and len(model.generate(4, target="text")) == 4  # unconditional
    assert model.generate(0).shape == (0, 1, 8, 8) and model.generate(0, target="text") == []


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"condition": {"text": PROMPTS, "label": torch.arange(3)}}, "one field"),
        ({"condition": {"caption": PROMPTS}}, "'caption' is not a field"),
        ({"condition": {"text": "pattern 1"}}, "a list of strings"),
        ({"condition": {"text": ["pattern #"]}}, "outside the alphabet"),
        ({"condition": {"text": PROMPTS}, "num": 5}, "num=5 but the condition has 3 items"),
        ({"condition": {"text": PROMPTS}, "target": "label"}, "'label' .* has no decoder"),
        ({"labels": torch.arange(3), "condition": {"text": PROMPTS}}, "labels or condition, not both"),
        ({}, "num must be an int"),
    ],
)
def test_generate_errors_say_what_to_change(model: Any, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        model.generate(**kwargs)


def test_field_errors(model: Any) -> None:
    with pytest.raises(ValueError, match="has no encoder"):
        model.classify(torch.arange(3), field="label")
    with pytest.raises(ValueError, match="'caption' is not a field"):
        model.embed(PROMPTS, field="caption")
    with pytest.warns(RuntimeWarning, match="no anchor bank of 'text'"):
        bare = LZNLightningModule(**model.hparams)
        bare.load_state_dict({k: v for k, v in model.state_dict().items() if k != "anchor_bank_text"})
        bare.classify(PROMPTS, field="text", context="bank")


def test_inference_is_composition_without_an_import_cycle() -> None:
    import lzn_lightning.inference as inference

    for path in Path(inference.__file__).parent.glob("*.py"):  # imported by the module only
        assert "lzn_lightning.module" not in path.read_text(), path.name
    assert LZNInference not in LZNLightningModule.__mro__
    assert LZNLightningModule.generate.__doc__ == LZNInference.generate.__doc__
