"""The tiny overlay of a recipe: tests/overrides/tiny.yaml (synthetic data, tiny networks, 2 CPU steps) made
to fit that recipe's modalities. Used by the recipe smoke runs, the resume tests and the README's commands."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

TINY = Path(__file__).with_name("tiny.yaml")
# The paper recipes' lzn test protocol at tiny scale: a few samples, stand-in feature networks
# (tests/overrides/stand_in_features.py: Inception and CLIP weights cannot be downloaded offline), one draw.
TINY_EVAL = {
    "GenerationMetrics": {
        "num_samples": 8,
        "batch_size": 8,  # one call per sampler: an RK45 solve of the tiny random decoder takes ~250 calls
        "feature_batch_size": 4,
        "feature_network": {"class_path": "stand_in_features.StandInInception"},
        "clip_network": {"class_path": "stand_in_features.StandInCLIP"},
        "progress": False,
    },
    # Euler only: RK45 inversion + decoding are two more ~250-call solves (GenerationMetrics keeps RK45).
    "ReconstructionL2": {"num_samples": 2, "repeats": 1, "samplers": ["euler10"]},
}


def tiny_callbacks(callbacks: list[dict], folder: Path) -> list[dict] | None:
    """The recipe's ``trainer.callbacks`` with its paper-evaluation callbacks shrunk (:data:`TINY_EVAL`, the
    real-feature cache in ``folder/real_features``); None when it has none to shrink."""
    out, changed = [], False
    for spec in callbacks:
        tiny = TINY_EVAL.get(spec["class_path"].rsplit(".", 1)[-1])
        if tiny is not None:
            extra = {"cache_dir": str(Path(folder) / "real_features")} if "feature_network" in tiny else {}
            spec = {**spec, "init_args": {**spec.get("init_args", {}), **tiny, **extra}}
            changed = True
        out.append(spec)
    return out if changed else None


def tiny_network(init_args: dict[str, Any], part: str, tiny: dict[str, dict[str, Any]]) -> Any:
    """The recipe's image ``encoder`` or ``decoder`` (``part``) with the tiny arguments of its network merged
    in (``tiny``: tiny.yaml's arguments by network name); unchanged for a network tiny.yaml leaves alone."""
    default = {"encoder": "tower", "decoder": "unet"}[part]
    spec = init_args.get(part, default)
    if spec is None:
        return None
    args = {"name": spec} if isinstance(spec, str) else dict(spec)
    shrink = tiny.get(args["name"])
    return spec if shrink is None else args | shrink


def tiny_override(recipe: Path, folder: Path, keep_logger: bool = False) -> Path:
    """Write the tiny overlay of ``recipe`` to ``folder/tiny_<recipe>.yaml`` and return its path.

    tests/overrides/tiny.yaml, plus the recipe's other modalities restated by class (a dict given in a later
    config replaces the earlier dict's entries, so every modality key must appear; their init_args still
    merge), plus the recipe's callbacks with its paper evaluation shrunk (:func:`tiny_callbacks`).

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
    else:
        tiny_image = override["model"]["modalities"]["image"]["init_args"]
        for part in ("encoder", "decoder"):
            tiny_image[part] = tiny_network(modalities["image"].get("init_args", {}), part, tiny_image[part])
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
    callbacks = tiny_callbacks(
        yaml.safe_load(Path(recipe).read_text())["trainer"].get("callbacks") or [], folder
    )
    if callbacks is not None:  # a list in a later config replaces the earlier one: restate it whole
        override["trainer"]["callbacks"] = callbacks
    path = Path(folder) / f"tiny_{Path(recipe).stem}.yaml"
    path.write_text(yaml.safe_dump(override))
    return path
