"""benchmarks/quality.py --set (variants by dotted key, typos refused) and benchmarks/merge_results.py."""

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
        ("model.latent_dim.x=1", "the recipe has no 'model.latent_dim.x'"),  # a number has no keys
        ("model.decoder_weight", "expected KEY=VALUE"),
    ],
)
def test_bad_settings_stop_with_the_key(setting: str, message: str) -> None:
    cfg = yaml.safe_load(RECIPE.read_text())
    with pytest.raises(SystemExit, match=message):
        apply_settings(cfg, [setting])


def _result(part: str = "gen", steps: int = 400, **runs: list[int]) -> dict:
    return {
        "part": part,
        "steps": steps,
        "runs": {m: [{"seed": s, "fid": s / 10} for s in seeds] for m, seeds in runs.items()},
    }


def test_merge_concatenates_runs_by_seed_and_refuses_mismatches() -> None:
    from merge_results import merge_results

    merged = merge_results([_result(rf=[0], lzn=[0]), _result(rf=[2, 1], variant=[0])], ["a.json", "b.json"])
    assert {m: [r["seed"] for r in runs] for m, runs in merged["runs"].items()} == {
        "rf": [0, 1, 2], "lzn": [0], "variant": [0],
    }  # fmt: skip
    assert merged["merged_from"] == ["a.json", "b.json"] and merged["steps"] == 400
    with pytest.raises(ValueError, match="'rf' already has seed"):
        merge_results([_result(rf=[0, 1]), _result(rf=[1])], ["a.json", "b.json"])
    with pytest.raises(ValueError, match="steps 800 differs"):
        merge_results([_result(rf=[0]), _result(steps=800, rf=[1])], ["a.json", "b.json"])
