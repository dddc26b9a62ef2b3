"""A recipe's run (model, data module, trainer) built from Python exactly as ``lzn fit`` builds it.

Benchmarks and experiments train recipes many times with small changes (a seed, fewer steps, no logger, a
baseline overlay). :func:`build_run` parses the same ``--config`` files and ``--key=value`` overrides as
``lzn fit`` with the same parser, so the recipe's data class, trainer settings and callbacks come exactly as
the command line would make them::

    run = build_run(["recipes/digits_joint.yaml", "benchmarks/overlays/supervised_ce.yaml"],
                    ["--model.decoder_weight=0.1"], seed=1, max_steps=10, logger=False)
    run.fit()

is ``lzn fit --config recipes/digits_joint.yaml --config benchmarks/overlays/supervised_ce.yaml
--model.decoder_weight=0.1 --seed_everything=1 --model.seed=1 --trainer.max_steps=10 --trainer.logger=false``.
"""

from __future__ import annotations

import functools
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from pydoc import locate
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.cli import SaveConfigCallback

from lzn_lightning.data import LZNDataModule
from lzn_lightning.lightning_cli import LZNCLI, build_cli
from lzn_lightning.module import LZNLightningModule


@dataclass
class RecipeRun:
    """What ``lzn fit`` would train: the model, the data module and the trainer, built but not run.

    Attributes:
        model: The recipe's model, at its seeded initialisation.
        datamodule: The recipe's data module (not set up).
        trainer: The recipe's trainer with its callbacks.
        args: The ``lzn fit`` arguments (without ``fit``) that build this run.
    """

    model: LZNLightningModule
    datamodule: LZNDataModule
    trainer: pl.Trainer
    args: list[str]

    def fit(self) -> None:
        """Train as ``lzn fit`` does."""
        self.trainer.fit(self.model, datamodule=self.datamodule)


def override_args(overrides: Sequence[str] | Mapping[str, Any]) -> list[str]:
    """``lzn fit`` arguments from overrides.

    A list is taken as it is (``["--config", "x.yaml", "--a.b=1"]``); a mapping of dotted keys becomes
    ``--key=value`` arguments, a string value as it is (the parser reads it as ``lzn fit`` would: a path stays
    a string), any other value written as JSON (which the parser reads back as YAML).
    """
    if isinstance(overrides, Mapping):
        return [f"--{key}={_arg(value)}" for key, value in overrides.items()]
    return [str(a) for a in overrides]


def _arg(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


#: ``build_run`` keywords for a run that is trained and then scored by a script (benchmarks, experiments):
#: no logger, validation, checkpoints, progress bar, model summary or recipe callbacks.
QUIET = {"logger": False, "validation": False, "checkpoints": False, "progress_bar": False,
         "model_summary": False, "recipe_callbacks": False}  # fmt: skip


def build_run(
    configs: Sequence[str | Path],
    overrides: Sequence[str] | Mapping[str, Any] = (),
    *,
    seed: int | None = None,
    max_steps: int | None = None,
    root: str | Path | None = None,
    logger: bool | None = None,
    progress_bar: bool | None = None,
    model_summary: bool | None = None,
    validation: bool | None = None,
    checkpoints: bool | None = None,
    recipe_callbacks: bool = True,
    callbacks: Sequence[pl.Callback] = (),
) -> RecipeRun:
    """Build the run of ``lzn fit --config configs[0] --config configs[1] ... <overrides>``.

    Keyword settings come after the overrides (they win); None leaves the recipe's own setting.

    Args:
        configs: Recipe and overlay files, in ``--config`` order (later ones change earlier ones).
        overrides: More ``lzn fit`` arguments, or ``{dotted key: value}`` (see :func:`override_args`).
        seed: ``seed_everything`` (weight initialisation and training order) and the model's ``seed`` (prior
            noise and RF times).
        max_steps: ``trainer.max_steps``.
        root: ``trainer.default_root_dir``.
        logger: False: no logger (True: Lightning's default logger).
        progress_bar: ``trainer.enable_progress_bar``.
        model_summary: ``trainer.enable_model_summary``.
        validation: False: no validation loop (so no validation-time callback runs) and no sanity check; True
            or None: the recipe's.
        checkpoints: False: no checkpoint is written (the recipe's ``ModelCheckpoint`` callbacks, subclasses
            too, are dropped).
        recipe_callbacks: False: drop every callback of the recipe's ``trainer.callbacks``.
        callbacks: Callback objects added after the recipe's.

    Returns:
        The model, data module and trainer, not run (:meth:`RecipeRun.fit` trains).
    """
    args = [a for path in configs for a in ("--config", str(path))] + override_args(overrides)
    settings: dict[str, Any] = {}
    if seed is not None:
        settings |= {"seed_everything": seed, "model.seed": seed}
    if max_steps is not None:
        settings["trainer.max_steps"] = max_steps
    if root is not None:
        settings["trainer.default_root_dir"] = str(root)
    if logger is not None:
        settings["trainer.logger"] = logger
    if progress_bar is not None:
        settings["trainer.enable_progress_bar"] = progress_bar
    if model_summary is not None:
        settings["trainer.enable_model_summary"] = model_summary
    if validation is False:
        settings |= {"trainer.limit_val_batches": 0, "trainer.num_sanity_val_steps": 0}
    if checkpoints is not None:
        settings["trainer.enable_checkpointing"] = checkpoints
    args += override_args(settings)
    keep = _CallbackFilter(recipe=recipe_callbacks, checkpoints=checkpoints is not False)
    argv, sys.argv = sys.argv, sys.argv[:1]  # LightningCLI warns when it sees both args= and a command line
    try:
        cli = build_cli(
            args,
            run=False,
            cli_class=functools.partial(_RunCLI, keep),
            trainer_defaults={"callbacks": list(callbacks)},
            # config.yaml goes to the log folder, as with lzn fit; without a logger it would land in
            # default_root_dir, where the next run of a benchmark would refuse to overwrite it.
            save_config_callback=None if logger is False else SaveConfigCallback,
        )
    finally:
        sys.argv = argv
    return RecipeRun(cli.model, cli.datamodule, cli.trainer, args)


def recipe_cli(args: list[str]) -> RecipeRun:
    """The recipe's model, data and trainer as ``lzn fit`` builds them, without running anything, and without
    its logger, checkpoints or callbacks (``lzn check-data``, ``lzn import-reference``).

    Args:
        args: ``lzn fit`` arguments without the subcommand, e.g. ``["--config", "recipes/x.yaml"]``.
    """
    return build_run([], args, logger=False, checkpoints=False, recipe_callbacks=False)


@dataclass(frozen=True)
class _CallbackFilter:
    """Which of the recipe's ``trainer.callbacks`` entries to build."""

    recipe: bool
    checkpoints: bool

    def __call__(self, class_path: str) -> bool:
        return self.recipe and (self.checkpoints or not issubclass(locate(class_path), ModelCheckpoint))


class _RunCLI(LZNCLI):
    """``LZNCLI`` that leaves out some of the recipe's callbacks before they are built."""

    def __init__(self, keep: _CallbackFilter, *args: Any, **kwargs: Any) -> None:
        self._keep = keep
        super().__init__(*args, **kwargs)

    def before_instantiate_classes(self) -> None:
        """Drop the callbacks the run does not keep (Lightning refuses a ``ModelCheckpoint`` callback on a
        trainer with ``enable_checkpointing=False``)."""
        trainer = self.config["trainer"]
        trainer["callbacks"] = [cb for cb in trainer.get("callbacks") or [] if self._keep(cb["class_path"])]
