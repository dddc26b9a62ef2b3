"""``benchmarks/quality.py --set``: recipe variants by dotted key, and typos refused rather than ignored."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import yaml

sys.path.insert(0, str(Path(__file__).parents[2] / "benchmarks"))

from quality import apply_settings

RECIPE = Path(__file__).parents[2] / "recipes" / "mnist_joint.yaml"


def test_settings_reach_model_keys_nested_dicts_and_list_items() -> None:
    cfg = yaml.safe_load(RECIPE.read_text())
    apply_settings(
        cfg, ["model.decoder_weight=0.1", "model.flow.noise_scale=0.5", "model.align.0.cutoff=0.3",
              "data.init_args.batch_size=256"],
    )  # fmt: skip
    assert cfg["model"]["decoder_weight"] == 0.1  # not in the recipe: a module default, still settable
    assert cfg["model"]["flow"] == {"solver": "dpm++", "steps": 20, "noise_scale": 0.5}
    assert cfg["model"]["align"][0]["cutoff"] == 0.3 and cfg["model"]["align"][0]["form"] == "prob"
    assert cfg["data"]["init_args"]["batch_size"] == 256


@pytest.mark.parametrize(
    ("setting", "message"),
    [
        ("model.flow.nosie_scale=0.5", "the recipe has no 'model.flow.nosie_scale'"),
        ("trainer.nope.x=1", "the recipe has no 'trainer.nope.x'"),
        ("model.decoder_weight", "expected KEY=VALUE"),
    ],
)
def test_bad_settings_stop_with_the_key(setting: str, message: str) -> None:
    cfg = yaml.safe_load(RECIPE.read_text())
    with pytest.raises(SystemExit, match=message):
        apply_settings(cfg, [setting])
