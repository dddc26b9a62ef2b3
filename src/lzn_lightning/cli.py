"""The ``lzn`` console script: LightningCLI (fit / validate / test) plus inference subcommands.

``lzn predict`` is not offered: predictions are files written by ``lzn sample | classify | embed``.

Examples:
    lzn fit --config recipes/digits_joint.yaml
    lzn fit --config recipes/imagenet_repr.yaml --trainer.devices=8 --trainer.num_nodes=4
    lzn sample --ckpt_path runs/digits_joint/last.ckpt --num 100 --out grid.png
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Whether the user asked for offline Hugging Face access (then lzn import-reference reads the cache only).
USER_HF_OFFLINE = os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")
# Why here: without it every timm/hub lookup retries for ~46 s on machines without network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import lightning.pytorch as pl  # noqa: E402
import yaml  # noqa: E402
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO  # noqa: E402
from lightning.pytorch.cli import LightningCLI  # noqa: E402

import lzn_lightning.callbacks  # noqa: E402,F401  (short names for callbacks in recipes)
import lzn_lightning.linear_probe  # noqa: E402,F401  (short name LinearProbeModule in recipes)
import lzn_lightning.modalities  # noqa: E402,F401  (short names for the built-in modalities)
from lzn_lightning.checkpoints import AtomicCheckpointIO, check_fits, read_checkpoint  # noqa: E402
from lzn_lightning.data import LZNDataModule  # noqa: E402
from lzn_lightning.module import LZNLightningModule  # noqa: E402
from lzn_lightning.pretrained import is_pretrained_name  # noqa: E402

if TYPE_CHECKING:
    from lzn_lightning.recipes import RecipeRun

INFERENCE_COMMANDS = ("sample", "classify", "embed")
# Every subcommand with its one-line summary, for `lzn --help` (LightningCLI lists only its own).
SUBCOMMANDS = {
    "fit": "train a recipe: lzn fit --config recipes/digits_joint.yaml (resumes with --ckpt_path last.ckpt)",
    "validate": "run the validation loop and callbacks on a checkpoint (--config ... --ckpt_path ...)",
    "test": "run the test loop and the recipe's evaluation callbacks on a checkpoint (--config ... --ckpt_path ...)",
    "sample": "generate from a checkpoint: images (by label, or from --prompts in a .txt), or captions",
    "classify": "label images (.npy or a folder) or texts (.txt, one per line) with a checkpoint, to CSV",
    "embed": "embed images (.npy or a folder) or texts (.txt) with a checkpoint, to .npy",
    "import-reference": "turn one of the paper's released checkpoints into a checkpoint of its recipe",
    "check-data": "decode every image file of a recipe's data and list the unreadable ones",
    "export": "write a model as a Hugging Face-style folder with a card, or its encoder alone as a file",
    "push-to-hub": "export a model and upload it to a Hugging Face model repository (--repo owner/name)",
}


def top_level_help() -> str:
    """``lzn --help``: every subcommand with one line."""
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: lzn <subcommand> [options]     (lzn <subcommand> --help for its options)", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in SUBCOMMANDS.items()]
    return "\n".join(lines)


class LZNCLI(LightningCLI):
    """LightningCLI with LZN defaults: the LZN module (non-subclass mode) and any LZNDataModule."""

    _checkpoint: dict | None = None  # the --ckpt_path checkpoint, read once while parsing the arguments
    _pretrained: str | None = None  # the --ckpt_path export folder or Hub repository (lzn export)

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]  # noqa: D102
        parser.set_defaults({"trainer.precision": "32-true"})

    def instantiate_trainer(self, **kwargs):  # type: ignore[no-untyped-def]  # noqa: D102
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
        """LightningCLI's subcommands without ``predict`` (``lzn sample | classify | embed`` write predictions)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}


def recipe_cli(args: list[str]) -> RecipeRun:
    """The recipe's model, data and trainer as ``lzn fit`` builds them, without running anything, and without
    its logger, checkpoints or callbacks.

    Args:
        args: ``lzn fit`` arguments without the subcommand, e.g. ``["--config", "recipes/x.yaml"]``.
    """
    from lzn_lightning.recipes import build_run  # it builds on LZNCLI, defined here

    return build_run([], args, logger=False, checkpoints=False, recipe_callbacks=False)


def _lzn_cli(
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


def one_line(err: BaseException) -> str:
    """An error's message for the ``error:`` line; for one re-raised from a DataLoader worker (whose message is
    the worker's whole traceback) the original exception's own message."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        head, sep, rest = last.partition(": ")
        text = rest if sep and " " not in head else last
    return text


def main(args: list[str] | None = None) -> LZNCLI | None:
    """Entry point of ``lzn``; returns the CLI object (its ``model``, ``datamodule``, ``trainer``) for callers.

    A configuration or data error (bad shapes, unknown fields, a missing dataset) ends the command with one
    ``error:`` line and exit status 2 rather than a traceback; set ``LZN_DEBUG=1`` to see the traceback.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return None
    try:
        if argv[0] in INFERENCE_COMMANDS:
            from lzn_lightning.inference_cli import run_inference_command

            run_inference_command(argv[0], argv[1:])
            return None
        if argv[0] == "import-reference":
            from lzn_lightning.reference_import import main as import_reference

            import_reference(argv[1:], offline=USER_HF_OFFLINE)
            return None
        if argv[0] in ("export", "push-to-hub"):
            from lzn_lightning.share_cli import export_main, push_main

            if argv[0] == "export":
                export_main(argv[1:])
            else:
                push_main(argv[1:], offline=USER_HF_OFFLINE)
            return None
        if argv[0] == "check-data":
            from lzn_lightning.check_data import main as check_data

            status = check_data(argv[1:])
            if status:
                raise SystemExit(status)
            return None
        return _lzn_cli(args)  # None: LightningCLI reads sys.argv itself (passing both makes it warn)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        print(f"error: {one_line(err)}\n(set LZN_DEBUG=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def entry() -> None:
    """The ``lzn`` console script (``main`` returns the CLI object, which must not become the exit status)."""
    main()


if __name__ == "__main__":
    entry()
