"""The tiny overlay of a recipe: tests/overrides/tiny.yaml (synthetic data, tiny networks, 2 CPU steps) made to
fit that recipe's modalities. Used by the recipe smoke runs, the resume tests and the README's commands."""

from __future__ import annotations

from pathlib import Path

import yaml

TINY = Path(__file__).with_name("tiny.yaml")


def tiny_override(recipe: Path, folder: Path, keep_logger: bool = False) -> Path:
    """Write the tiny overlay of ``recipe`` to ``folder/tiny_<recipe>.yaml`` and return its path.

    tests/overrides/tiny.yaml, plus the recipe's other modalities restated by class (a dict given in a later
    config replaces the earlier dict's entries, so every modality key must appear; their init_args still merge).

    Args:
        recipe: The recipe the overlay goes after.
        folder: Where to write it.
        keep_logger: Keep the recipe's logger (the overlay turns it off), so runs write
            ``lightning_logs/version_N`` as a user's run does.
    """
    override = yaml.safe_load(TINY.read_text())
    if keep_logger:
        del override["trainer"]["logger"]
    modalities = yaml.safe_load(Path(recipe).read_text())["model"]["modalities"]
    if "image" not in modalities:  # e.g. a text <-> label recipe: no image networks to shrink
        del override["model"]["modalities"]["image"]
    for key, spec in modalities.items():
        override["model"]["modalities"].setdefault(key, {"class_path": spec["class_path"]})
        if spec["class_path"].endswith("LabelModality") and "num_classes" in spec.get("init_args", {}):
            override["data"]["init_args"]["num_classes"] = spec["init_args"]["num_classes"]
        if spec["class_path"].endswith("TextModality"):  # synthetic captions, a tiny transformer
            # The recipe's max_len stays: the texts the docs pass must fit as they would in a real run.
            max_len = spec.get("init_args", {}).get("max_len", 16)
            tiny_text = {
                "max_len": max_len,
                "width": 16,
                "heads": 2,
                "encoder_layers": 1,
                "decoder_layers": 1,
            }
            override["model"]["modalities"][key]["init_args"] = tiny_text
            override["data"]["init_args"]["text_max_len"] = max_len
    path = Path(folder) / f"tiny_{Path(recipe).stem}.yaml"
    path.write_text(yaml.safe_dump(override))
    return path
