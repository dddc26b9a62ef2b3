"""lzn_lightning.recipes.build_run builds what `lzn fit` builds, and each baseline overlay of the benchmarks
changes only what its baseline needs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from tiny_recipe import tiny_override

from lzn_lightning.callbacks import AnchorBank
from lzn_lightning.cli import main
from lzn_lightning.config import AlignConfig
from lzn_lightning.recipes import build_run, override_args

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ROOT / "recipes"
OVERLAYS = ROOT / "benchmarks" / "overlays"


def _type_names(callbacks: list[Callback]) -> list[str]:
    return [type(cb).__name__ for cb in callbacks]


def test_build_run_trains_what_lzn_fit_trains(tmp_path: Path) -> None:
    recipe = RECIPES / "digits_joint.yaml"
    tiny = tiny_override(recipe, tmp_path)
    args = ["--config", str(recipe), "--config", str(tiny), "--model.decoder_weight=0.5"]
    cli = main(["fit", *args, "--seed_everything=3", f"--trainer.default_root_dir={tmp_path / 'cli'}"])
    assert cli is not None
    run = build_run([recipe, tiny], ["--model.decoder_weight=0.5"], seed=3, root=tmp_path / "run")
    assert run.trainer.global_step == 0 and int(run.model.iteration) == 0  # built, not run
    # The recipe's callbacks, data class and trainer settings, as the command line made them.
    assert _type_names(run.trainer.callbacks) == _type_names(cli.trainer.callbacks)
    assert "AnchorBank" in _type_names(run.trainer.callbacks)
    assert type(run.datamodule) is type(cli.datamodule)
    assert type(run.datamodule).__name__ == "SyntheticDataModule"
    assert run.trainer.max_steps == cli.trainer.max_steps == 2
    assert run.trainer.val_check_interval == cli.trainer.val_check_interval
    assert run.trainer.default_root_dir == str(tmp_path / "run")
    assert run.model.decoder_weight == 0.5
    assert {k: v for k, v in run.model.hparams.items() if k != "seed"} == {
        k: v for k, v in cli.model.hparams.items() if k != "seed"
    }
    # The keyword seeds the prior noise too (lzn fit's model follows the trainer's seed: the same value).
    assert run.model.hparams["seed"] == 3 and cli.model.hparams["seed"] is None
    run.fit()
    assert run.trainer.global_step == 2
    trained, expected = run.model.state_dict(), cli.model.state_dict()
    assert trained.keys() == expected.keys()
    for key, value in expected.items():  # same seed: the same two steps, bit for bit
        torch.testing.assert_close(trained[key], value, rtol=0, atol=0, msg=key)


def test_keyword_settings_turn_off_what_a_benchmark_does_not_need(tmp_path: Path) -> None:
    recipe = RECIPES / "digits_joint.yaml"
    tiny = tiny_override(recipe, tmp_path)
    extra = AnchorBank(num=7)
    run = build_run(
        [recipe, tiny], max_steps=5, root=tmp_path, logger=False, validation=False, checkpoints=False,
        progress_bar=False, callbacks=[extra],
    )  # fmt: skip
    names = _type_names(run.trainer.callbacks)
    assert not any(isinstance(cb, ModelCheckpoint) for cb in run.trainer.callbacks)
    banks = [cb for cb in run.trainer.callbacks if isinstance(cb, AnchorBank)]
    assert len(banks) == 2 and banks[-1] is extra  # the recipe's, then the one given
    assert "ZoneAccuracy" in names and "TQDMProgressBar" not in names and "SaveConfigCallback" not in names
    assert run.trainer.max_steps == 5 and run.trainer.limit_val_batches == 0 and run.trainer.logger is None
    assert run.trainer.default_root_dir == str(tmp_path)
    bare = build_run([recipe, tiny], logger=False, checkpoints=False, recipe_callbacks=False)
    assert not {"AnchorBank", "ZoneAccuracy", "SampleGrid"} & set(_type_names(bare.trainer.callbacks))


def test_overrides_as_a_mapping_and_typos_refused(tmp_path: Path) -> None:
    mapping = {"model.latent_from": None, "data.init_args.image_shape": (1, 8, 8), "trainer.max_time": "0:1"}
    assert override_args(mapping) == [
        "--model.latent_from=null", "--data.init_args.image_shape=[1, 8, 8]", "--trainer.max_time=0:1",
    ]  # fmt: skip
    assert override_args(["--config", Path("x.yaml")]) == ["--config", "x.yaml"]
    recipe = RECIPES / "digits_joint.yaml"
    tiny = tiny_override(recipe, tmp_path)
    run = build_run([recipe, tiny], {"model.flow.noise_scale": 0.5, "data.init_args.batch_size": 4})
    assert run.model.flow.noise_scale == 0.5 and run.datamodule.batch_size == 4
    with pytest.raises(SystemExit):  # a misspelt key stops the run instead of training the plain recipe
        build_run([recipe, tiny], ["--model.flow.nosie_scale=0.5"])


def _align(**kw: object) -> AlignConfig:
    return AlignConfig(**kw)  # type: ignore[arg-type]


def _image_args(model: torch.nn.Module) -> dict:
    return model.hparams["modalities"]["image"]["init_args"]


@pytest.mark.parametrize("recipe", ["digits_joint", "mnist_joint"])
def test_supervised_ce_overlay(recipe: str) -> None:
    base = build_run([RECIPES / f"{recipe}.yaml"], logger=False, checkpoints=False).model
    ce = build_run(
        [RECIPES / f"{recipe}.yaml", OVERLAYS / "supervised_ce.yaml"], logger=False, checkpoints=False
    )
    model = ce.model
    assert model.latent_from is None and model.decode_fields == [] and not model.modality("image").has_decoder
    assert model.align == [_align(source="image", target="label", form="ce")]
    assert _image_args(model) == {**_image_args(base), "decoder": None}  # the same encoder
    assert (
        model.hparams["modalities"]["label"] == base.hparams["modalities"]["label"]
    )  # the label modality stays
    assert model.flow == base.flow and model.hparams["warmup_steps"] == base.hparams["warmup_steps"]


@pytest.mark.parametrize("recipe", ["digits_gen", "mnist_gen"])
def test_plain_rf_overlay(recipe: str) -> None:
    base = build_run([RECIPES / f"{recipe}.yaml"], logger=False, checkpoints=False).model
    model = build_run(
        [RECIPES / f"{recipe}.yaml", OVERLAYS / "plain_rf.yaml"], logger=False, checkpoints=False
    ).model
    assert model.latent_from is None and model.align == [] and model.decode_fields == ["image"]
    assert not model.modality("image").has_encoder
    assert _image_args(model) == {**_image_args(base), "encoder": None, "latent_conditioning": False}


@pytest.mark.parametrize("recipe", ["digits_repr", "mnist_repr"])
def test_infonce_overlay(recipe: str) -> None:
    base = build_run([RECIPES / f"{recipe}.yaml"], logger=False, checkpoints=False).model
    model = build_run(
        [RECIPES / f"{recipe}.yaml", OVERLAYS / "infonce.yaml"], logger=False, checkpoints=False
    ).model
    assert model.align == [_align(source="image", target="image_view2", form="infonce", temperature=0.1)]
    assert model.hparams["modalities"] == base.hparams["modalities"] and model.field_map == base.field_map


def test_text_overlays() -> None:
    recipe = RECIPES / "vader_sentiment.yaml"
    base = build_run([recipe], logger=False, checkpoints=False).model
    ce = build_run([recipe, OVERLAYS / "text_ce.yaml"], logger=False, checkpoints=False).model
    assert ce.decode_fields == [] and ce.align == [_align(source="text", target="label", form="ce")]
    assert ce.hparams["modalities"] == base.hparams["modalities"]
    no_decoder = build_run([recipe, OVERLAYS / "no_decoder_loss.yaml"], logger=False, checkpoints=False).model
    assert no_decoder.decode_fields == [] and base.decode_fields == ["text"]
    assert no_decoder.align == base.align and no_decoder.hparams["modalities"] == base.hparams["modalities"]


def test_caption_infonce_overlay() -> None:
    recipe = RECIPES / "digits_caption.yaml"
    base = build_run([recipe], logger=False, checkpoints=False).model
    model = build_run([recipe, OVERLAYS / "caption_infonce.yaml"], logger=False, checkpoints=False).model
    assert model.decode_fields == [] and model.hparams["modalities"] == base.hparams["modalities"]
    assert model.align == [
        _align(source="image", target="text", form="infonce"),
        _align(source="text", target="image", form="infonce"),
    ]
