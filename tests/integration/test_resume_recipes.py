"""Exact resume on the recipes' own data modules and networks (``make test-slow``).

tests/integration/test_resume.py resumes tiny networks on synthetic data; here each recipe family runs as a
user runs it (``lzn fit --config recipes/X.yaml``), with its real data module (its split sizes, batch size,
augmentations and workers) and its real networks, only for fewer steps. Per recipe:

* the uninterrupted run of ``steps`` steps;
* a finished run of ``finished`` steps (its last.ckpt, written where the recipe writes it), which also saves a
  mid-run checkpoint at step ``mid``;
* that finished run extended to ``steps`` from its last.ckpt, and a run resumed from the mid-run checkpoint.

Both must end bit for bit where the uninterrupted run ends (weights, EMA, anchor banks, optimiser and
scheduler state, step counters) and must have trained on the same batches with the same random draws at every
step.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
import torch
from test_resume import _assert_same_state, _batch_log, _imagenet_folder

ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class Case:
    """A recipe's resume scenario.

    Attributes:
        steps: Steps of the uninterrupted run.
        finished: Steps of the finished run that is then extended.
        mid: Step of the mid-run checkpoint of the finished run.
        args: Further ``lzn fit`` arguments (data roots, a smaller global batch where the recipe's needs many
            GPUs); never the seeds, augmentations or networks.
        why: What the scenario covers.
    """

    steps: int
    finished: int
    mid: int
    args: tuple[str, ...] = field(default_factory=tuple)
    why: str = ""


CASES = {
    # 1,258 training digits in batches of 256: 4 batches an epoch, 234 left over. A validation after step 4
    # (the last batch of epoch 0) writes the recipe's checkpoint there; the finished run ends there too.
    "digits_joint": Case(7, 4, 2, ("--trainer.val_check_interval=4",), "epoch end, validation, anchor bank"),
    "digits_caption": Case(7, 4, 3, ("--trainer.val_check_interval=4",), "text and image, epoch end"),
    # MNIST-5k: 4,000 training images in batches of 128, 31 batches an epoch: resumed mid-epoch, two views
    # with their random augmentations.
    "mnist_repr": Case(5, 3, 2, (), "two augmented views, mid-epoch"),
    # VADER: 5,896 entries in batches of 256 (23 batches an epoch); text tokens and dropout.
    "vader_sentiment": Case(5, 3, 1, (), "text <-> label, mid-epoch"),
    # ImageNet layout (below): 21 training images in batches of 8, 2 batches an epoch and 5
    # left over, the paper's ResNet-50 at 224 px, workers, device-side photometric views.
    "imagenet_repr": Case(
        5, 2, 1, ("--data.init_args.batch_size=8", "--data.init_args.num_workers=2"), "ImageNet layout"
    ),
}


def _fit(recipe: str, root: Path, steps: int, case: Case, *extra: str) -> Any:
    """``lzn fit --config recipes/<recipe>.yaml`` for ``steps`` steps with a BatchLog; returns the CLI."""
    from lzn_lightning.cli import main

    root.mkdir(parents=True, exist_ok=True)
    args = ["fit", "--config", str(ROOT / "recipes" / f"{recipe}.yaml"), *case.args]
    args += [f"--trainer.max_steps={steps}", f"--trainer.default_root_dir={root}"]
    args += ["--trainer.enable_progress_bar=false", "--trainer.callbacks+=run_probes.BatchLog", *extra]
    return main(args)


@pytest.mark.slow
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("recipe", list(CASES))
def test_recipe_resumes_bit_for_bit_on_its_own_data_and_networks(recipe: str, tmp_path: Path) -> None:
    case = CASES[recipe]
    if recipe == "imagenet_repr":
        # 48x64 JPEGs, 3 classes x 7 training and 2 validation images each
        folder = _imagenet_folder(tmp_path / "imagenet", per_class=(7, 2), size=(48, 64), suffix=".JPEG")
        case = replace(case, args=(*case.args, f"--data.init_args.root={folder}"))
    straight = _fit(recipe, tmp_path / "straight", case.steps, case)

    every = {"dirpath": str(tmp_path / "mid"), "filename": "mid{step}", "auto_insert_metric_name": False}
    every |= {"every_n_train_steps": case.mid, "save_top_k": -1}
    mid_checkpoint = json.dumps({"class_path": "ModelCheckpoint", "init_args": every})
    _fit(recipe, tmp_path / "finished", case.finished, case, f"--trainer.callbacks+={mid_checkpoint}")
    (last,) = (tmp_path / "finished").rglob("last.ckpt")
    assert torch.load(last, weights_only=True)["global_step"] == case.finished
    mid = tmp_path / "mid" / f"mid{case.mid}.ckpt"

    for name, checkpoint, first in (("extended", last, case.finished), ("resumed", mid, case.mid)):
        run = _fit(recipe, tmp_path / name, case.steps, case, f"--ckpt_path={checkpoint}")
        _assert_same_state((straight.model, straight.trainer), (run.model, run.trainer), case.steps)
        seen, again = _batch_log(straight).seen, _batch_log(run).seen
        assert sorted(again) == list(range(first + 1, case.steps + 1)), name
        for step, fingerprint in again.items():
            assert fingerprint == seen[step], (
                f"{recipe} {name}: step {step} read other data or drew other noise"
            )
