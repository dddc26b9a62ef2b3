"""The ``lzn`` console script: it dispatches each subcommand to the module that implements it.

``lzn fit | validate | test`` are LightningCLI's (:mod:`lzn_lightning.lightning_cli`); ``lzn sample |
classify | embed`` write predictions as files (:mod:`lzn_lightning.inference_cli`), so LightningCLI's
``predict`` is not offered. The layers import downwards only: this module -> the subcommands
(``inference_cli``, ``share_cli``, ``reference_import``, ``check_data``) -> :mod:`lzn_lightning.recipes` ->
:mod:`lzn_lightning.lightning_cli`. Each is imported when its subcommand runs, so ``lzn --help`` loads none of
them and :func:`entry` sets the process defaults before anything reads them.

Examples:
    lzn fit --config recipes/digits_joint.yaml
    lzn fit --config recipes/imagenet_repr.yaml --trainer.devices=8 --trainer.num_nodes=4
    lzn sample --ckpt_path runs/digits_joint/last.ckpt --num 100 --out grid.png
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from lzn_lightning.lightning_cli import LZNCLI


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


# Whether the user asked for offline Hugging Face access (then lzn import-reference and --ckpt_path owner/name
# read the cache only), recorded before :func:`entry` turns HF_HUB_OFFLINE on for the lzn process.
USER_HF_OFFLINE = _env_flag("HF_HUB_OFFLINE")

INFERENCE_COMMANDS = ("sample", "classify", "embed")
# Every subcommand with its one-line summary, for `lzn --help` (LightningCLI lists only its own).
SUBCOMMANDS = {
    "fit": "train a recipe: lzn fit --config recipes/digits_joint.yaml (resumes with --ckpt_path last.ckpt)",
    "validate": "run the validation loop and callbacks on a checkpoint (--config ... --ckpt_path ...)",
    "test": "run the test loop and the recipe's evaluation callbacks on a checkpoint "
    "(--config ... --ckpt_path ...)",
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
    lines = [
        "usage: lzn <subcommand> [options]     (lzn <subcommand> --help for its options)",
        "",
        "subcommands:",
    ]
    lines += [f"  {name:<{width}}  {summary}" for name, summary in SUBCOMMANDS.items()]
    return "\n".join(lines)


def one_line(err: BaseException) -> str:
    """An error's message for the ``error:`` line; for one re-raised from a DataLoader worker (whose message
    is the worker's whole traceback) the original exception's own message."""
    text = str(err).strip()
    if "Original Traceback" in text:
        last = text.splitlines()[-1]
        head, sep, rest = last.partition(": ")
        text = rest if sep and " " not in head else last
    return text


def main(args: list[str] | None = None) -> LZNCLI | None:
    """Run ``lzn args`` in this process; returns the CLI object of ``fit | validate | test`` (its ``model``,
    ``datamodule``, ``trainer``) for callers.

    A configuration or data error (bad shapes, unknown fields, a missing dataset) ends the command with one
    ``error:`` line and exit status 2 rather than a traceback; set ``LZN_DEBUG=1`` to see the traceback.
    Unlike :func:`entry`, it leaves ``HF_HUB_OFFLINE`` as the caller set it.
    """
    argv = list(sys.argv[1:] if args is None else args)
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return None
    try:
        return _dispatch(argv[0], argv[1:], args)
    except (ValueError, FileNotFoundError) as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        print(f"error: {one_line(err)}\n(set LZN_DEBUG=1 for the traceback)", file=sys.stderr)
        raise SystemExit(2) from None


def _dispatch(command: str, rest: list[str], args: list[str] | None) -> LZNCLI | None:
    """Run one subcommand (``args``: :func:`main`'s, None when LightningCLI is to read ``sys.argv``)."""
    if command in INFERENCE_COMMANDS:
        from lzn_lightning.inference_cli import run_inference_command

        run_inference_command(command, rest)
        return None
    if command == "import-reference":
        from lzn_lightning.reference_import import main as import_reference

        import_reference(rest, offline=USER_HF_OFFLINE)
        return None
    if command in ("export", "push-to-hub"):
        from lzn_lightning.share_cli import export_main, push_main

        if command == "export":
            export_main(rest)
        else:
            push_main(rest, offline=USER_HF_OFFLINE)
        return None
    if command == "check-data":
        from lzn_lightning.check_data import main as check_data

        status = check_data(rest)
        if status:
            raise SystemExit(status)
        return None
    from lzn_lightning.lightning_cli import build_cli

    return build_cli(args)  # None: LightningCLI reads sys.argv itself (passing both makes it warn)


def set_process_defaults() -> None:
    """``lzn``'s process defaults: ``HF_HUB_OFFLINE=1`` unless the user set it.

    Why: without it every timm / Hub lookup retries for ~46 s on machines without network. Only the ``lzn``
    process gets it (importing the library changes nothing); it must run before huggingface_hub is imported,
    which reads the variable once. A fetch the user asks for (``lzn import-reference``, ``--ckpt_path
    owner/name``) goes online unless the user set it (:data:`USER_HF_OFFLINE`).
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")


def entry() -> None:
    """The ``lzn`` console script (``main`` returns the CLI object, which must not become the exit status)."""
    set_process_defaults()
    main()


if __name__ == "__main__":
    entry()
