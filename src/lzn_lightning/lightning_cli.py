"""LZNCLI: LightningCLI with lzn's model, data and defaults, and :func:`build_cli`, which makes one.

The layer under ``lzn fit | validate | test`` and :func:`lzn_lightning.recipes.build_run`. Importing it has no
side effects (``lzn`` sets its own process defaults in :func:`lzn_lightning.cli.entry`).
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import yaml
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.cli import LightningCLI

import lzn_lightning.callbacks  # short names for callbacks in recipes
import lzn_lightning.linear_probe  # short name LinearProbeModule in recipes
import lzn_lightning.modalities  # noqa: F401  (short names for the built-in modalities)
from lzn_lightning.checkpoints import AtomicCheckpointIO, check_fits, read_checkpoint
from lzn_lightning.data import LZNDataModule
from lzn_lightning.module import LZNLightningModule
from lzn_lightning.pretrained import is_pretrained_name


class LZNCLI(LightningCLI):
    """LightningCLI with LZN defaults: the LZN module (non-subclass mode) and any LZNDataModule."""

    _checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once while parsing the arguments
    _pretrained: str | None = None  # the --ckpt_path export folder or Hub repository (lzn export)

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]
        parser.set_defaults({"trainer.precision": "32-true"})

    def instantiate_trainer(self, **kwargs):  # type: ignore[no-untyped-def]
        trainer = super().instantiate_trainer(**kwargs)
        # Atomic checkpoint writes unless the config chose its own CheckpointIO plugin.
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _parse_ckpt_path(self) -> None:
        """Only check that ``--ckpt_path`` is a readable LZN checkpoint; do not merge its hyper-parameters.

        LightningCLI (a private hook) would replace the configured model by the checkpoint's
        hyper-parameters, silently training or testing another model than the recipe describes. Here the
        recipe defines the model and :meth:`_check_checkpoint` refuses a checkpoint that does not fit it.
        """
        path = self._ckpt_path()
        if path is not None and is_pretrained_name(path):
            self._pretrained, path = path, None
        self._checkpoint = read_checkpoint(path, probe=True) if path is not None else None

    def _ckpt_path(self) -> str | None:
        """``--ckpt_path`` when it names a local file or an export (not Lightning's ``last``/``best``/... or
        another URL)."""
        subcommand = self.config.get("subcommand")
        path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if path is None or str(path) in ("last", "best", "hpc", "registry"):
            return None
        if "://" in str(path) and not str(path).startswith("hf://"):
            return None
        return str(path)

    def _load_pretrained(self) -> None:
        """Load an export's weights into the recipe's model; the trainer then runs without a checkpoint."""
        from lzn_lightning.pretrained import export_weights, load_weights, read_config, resolve

        if self.subcommand == "fit":
            raise ValueError(
                f"--ckpt_path {self._pretrained} is an lzn export (inference weights, no training state): "
                "lzn fit resumes only a checkpoint it wrote"
            )
        folder = resolve(self._pretrained)
        load_weights(
            self.model, export_weights(folder, read_config(folder, self._pretrained)), self._pretrained
        )
        self.config_init[self.subcommand]["ckpt_path"] = None

    def _check_checkpoint(self, required: bool) -> None:
        """One-line errors for a missing, corrupt or foreign ``--ckpt_path`` (not Lightning's traceback)."""
        path = self.config[self.subcommand].get("ckpt_path")
        if path is None:
            if required:
                raise ValueError(
                    f"lzn {self.subcommand} evaluates a trained model: pass --ckpt_path "
                    f"(e.g. runs/<recipe>/lightning_logs/version_0/checkpoints/last.ckpt)"
                )
            return
        if self._pretrained is not None:
            self._load_pretrained()
        if self._checkpoint is not None:  # read (and checked readable) while parsing the arguments
            check_fits(self.model, self._checkpoint, path)

    def before_fit(self) -> None:
        """Check a resume checkpoint before training starts."""
        self._check_checkpoint(required=False)

    def before_validate(self) -> None:
        """Refuse to evaluate randomly initialised weights or an unusable checkpoint."""
        self._check_checkpoint(required=True)

    def before_test(self) -> None:
        """Refuse to evaluate randomly initialised weights or an unusable checkpoint."""
        self._check_checkpoint(required=True)

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """LightningCLI's subcommands but ``predict`` (``lzn sample|classify|embed`` write predictions)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}


def build_cli(
    args: list[str] | None, run: bool = True, cli_class: Callable[..., LZNCLI] = LZNCLI, **kwargs: Any
) -> LZNCLI:
    """LightningCLI with lzn's model, data and defaults (``args=None``: it reads ``sys.argv`` itself).

    ``cli_class`` and ``kwargs`` (more LightningCLI arguments) serve :func:`lzn_lightning.recipes.build_run`.
    A recipe's ``model:`` section holds LZNLightningModule's arguments, unless a ``--config`` file gives it a
    ``class_path``: then it names any LightningModule (``LinearProbeModule`` in recipes/imagenet_linear.yaml).
    """
    names_class = names_model_class(sys.argv[1:] if args is None else args)
    return cli_class(
        pl.LightningModule if names_class else LZNLightningModule,
        LZNDataModule,
        subclass_mode_model=names_class,
        subclass_mode_data=True,
        seed_everything_default=0,
        auto_configure_optimizers=False,
        run=run,
        args=args,
        **kwargs,
    )


def names_model_class(args: list[str]) -> bool:
    """Whether the command line names its model's class: a ``--config`` file whose ``model:`` has a
    ``class_path``, or ``--model=<class>`` / ``--model.class_path=<class>``. A file that cannot be read is
    left to LightningCLI, which reports it."""
    paths = [b for a, b in itertools.pairwise(args) if a == "--config"]
    paths += [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    for path in paths:
        try:
            config = yaml.safe_load(Path(path).read_text())
        except (OSError, yaml.YAMLError):
            continue
        model = config.get("model") if isinstance(config, dict) else None
        if isinstance(model, dict) and "class_path" in model:
            return True
    return any(a.startswith(("--model=", "--model.class_path")) for a in args)
