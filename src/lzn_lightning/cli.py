"""The ``lzn`` console script: LightningCLI (fit / validate / test) plus inference subcommands.

``lzn predict`` is not offered: predictions are files written by ``lzn sample | classify | embed``.

Examples:
    lzn fit --config recipes/digits_joint.yaml
    lzn fit --config recipes/imagenet_repr.yaml --trainer.devices=8 --trainer.num_nodes=4
    lzn sample --ckpt_path runs/digits_joint/last.ckpt --num 100 --out grid.png
"""

from __future__ import annotations

import os
import sys

# Why here: without it every timm/hub lookup retries for ~46 s on machines without network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")

from lightning.pytorch.cli import LightningCLI  # noqa: E402

import lzn_lightning.callbacks  # noqa: E402,F401  (short names for callbacks in recipes)
import lzn_lightning.modalities  # noqa: E402,F401  (short names for the built-in modalities)
from lzn_lightning.data import LZNDataModule  # noqa: E402
from lzn_lightning.module import LZNLightningModule  # noqa: E402

INFERENCE_COMMANDS = ("sample", "classify", "embed")
# Every subcommand with its one-line summary, for `lzn --help` (LightningCLI lists only its own).
SUBCOMMANDS = {
    "fit": "train a recipe: lzn fit --config recipes/digits_joint.yaml (resumes with --ckpt_path last.ckpt)",
    "validate": "run the validation loop and callbacks on a checkpoint (--config ... --ckpt_path ...)",
    "test": "run the test loop and the recipe's evaluation callbacks on a checkpoint (--config ... --ckpt_path ...)",
    "sample": "generate from a checkpoint to a PNG grid or .npy/.npz (optionally by label)",
    "classify": "label images (.npy or a folder) with a checkpoint, to CSV",
    "embed": "embed images (.npy or a folder) with a checkpoint, to .npy",
}


def top_level_help() -> str:
    """``lzn --help``: every subcommand with one line."""
    width = max(map(len, SUBCOMMANDS))
    lines = ["usage: lzn <subcommand> [options]     (lzn <subcommand> --help for its options)", "", "subcommands:"]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in SUBCOMMANDS.items()]
    return "\n".join(lines)


class LZNCLI(LightningCLI):
    """LightningCLI with LZN defaults: the LZN module (non-subclass mode) and any LZNDataModule."""

    def add_arguments_to_parser(self, parser) -> None:  # type: ignore[no-untyped-def]  # noqa: D102
        parser.set_defaults({"trainer.precision": "32-true"})

    def _require_checkpoint(self) -> None:
        if self.config[self.subcommand].get("ckpt_path") is None:
            raise ValueError(
                f"lzn {self.subcommand} evaluates a trained model: pass --ckpt_path "
                f"(e.g. runs/<recipe>/lightning_logs/version_0/checkpoints/last.ckpt)"
            )

    def before_validate(self) -> None:
        """Refuse to evaluate randomly initialised weights."""
        self._require_checkpoint()

    def before_test(self) -> None:
        """Refuse to evaluate randomly initialised weights."""
        self._require_checkpoint()

    @staticmethod
    def subcommands() -> dict[str, set[str]]:
        """LightningCLI's subcommands without ``predict`` (``lzn sample | classify | embed`` write predictions)."""
        return {k: v for k, v in LightningCLI.subcommands().items() if k != "predict"}


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
        return LZNCLI(
            LZNLightningModule,
            LZNDataModule,
            subclass_mode_data=True,
            seed_everything_default=0,
            auto_configure_optimizers=False,
            args=args,  # None: LightningCLI reads sys.argv itself (passing both makes it warn)
        )
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        print(f"error: {err}\n(set LZN_DEBUG=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def entry() -> None:
    """The ``lzn`` console script (``main`` returns the CLI object, which must not become the exit status)."""
    main()


if __name__ == "__main__":
    entry()
