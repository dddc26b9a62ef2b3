"""``lzn`` as the Markdown tests run it: the real CLI, with every recipe shrunk by its tiny overlay.

``python lzn_shim.py <subcommand> [args]`` runs ``lzn <subcommand> [args]`` (its entry point) after these
changes, and no others:

* ``fit``, ``validate`` and ``test`` get the recipe's tiny overlay (tests/overrides/tiny_recipe.py: synthetic
  data, tiny networks, 2 steps) right after the command's last ``--config``, so every flag the user wrote
  still wins (``--trainer.devices=2`` included). The recipe's logger is kept, so checkpoints land where the
  docs say (``runs/<recipe>/lightning_logs/version_N/checkpoints/last.ckpt``).
* ``fit --ckpt_path`` (a resume) trains 2 steps more than the checkpoint holds, so a resume trains.
* ``import-reference`` gets the tiny overlay too, and a released file named by its model-page path is served
  from a local Hugging Face cache in ``.tiny/hub`` holding an authors'-layout checkpoint of the recipe's tiny
  model (tests/overrides/authors_checkpoint.py); the real command then reads it offline, as a user's cache.

The overlay is written to ``.tiny/`` in the working folder (the folder the docs' relative paths start from).
"""

from __future__ import annotations

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "overrides"))
from tiny_recipe import tiny_override

from lzn_lightning.cli import entry

TRAINING_COMMANDS = ("fit", "validate", "test")


def _option(args: list[str], name: str) -> list[tuple[int, str]]:
    """Every (index of the value, value) of ``--name VALUE`` or ``--name=VALUE`` in ``args``."""
    found = []
    for i, arg in enumerate(args):
        if arg == name and i + 1 < len(args):
            found.append((i + 1, args[i + 1]))
        elif arg.startswith(name + "="):
            found.append((i, arg.split("=", 1)[1]))
    return found


def _serve_released(recipe: Path, name: str) -> None:
    """Put an authors'-layout tiny checkpoint of ``recipe`` in ``.tiny/hub`` as the model page's ``name``."""
    from authors_checkpoint import authors_checkpoint
    from huggingface_hub import constants

    from lzn_lightning.reference_import import HF_REPO

    commit = "0" * 40  # any snapshot id: the cache's refs/main names it
    repo = Path(".tiny/hub").resolve() / f"models--{HF_REPO.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True, exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    target = repo / "snapshots" / commit / name
    if not target.is_file():
        authors_checkpoint(recipe, Path(".tiny"), path=target)
    constants.HF_HUB_CACHE = str(repo.parent)


def tiny_args(args: list[str]) -> list[str]:
    """The arguments of ``lzn`` with the tiny overlay inserted (see the module docstring)."""
    if args and args[0] == "import-reference":
        recipe = Path(_option(args, "--recipe")[-1][1])
        Path(".tiny").mkdir(exist_ok=True)
        checkpoint = _option(args, "--checkpoint")[-1][1]
        if not Path(checkpoint).is_file():
            _serve_released(recipe, checkpoint)
        return [*args, "--config", str(tiny_override(recipe, Path(".tiny")))]
    if not args or args[0] not in TRAINING_COMMANDS:
        return args
    configs = _option(args, "--config")
    if not configs:
        return args
    recipe = next(Path(v) for _, v in configs if Path(v).parent.name == "recipes")
    folder = Path(".tiny")
    folder.mkdir(exist_ok=True)
    overlay = tiny_override(recipe, folder, keep_logger=True)
    last = configs[-1][0] + 1
    out = [*args[:last], "--config", str(overlay), *args[last:]]
    resume = _option(args, "--ckpt_path")
    if args[0] == "fit" and resume and Path(resume[-1][1]).is_file():  # else lzn says what is wrong
        done = int(torch.load(resume[-1][1], map_location="cpu", weights_only=True)["global_step"])
        out.append(f"--trainer.max_steps={done + 2}")
    return out


def run(args: list[str]) -> None:
    """Run ``lzn args`` with the changes above."""
    # sys.argv is what Lightning re-runs for the other ranks of a multi-process fit: give it the final
    # arguments and this script as the program, so the ranks run the same command.
    sys.argv = [__file__, *tiny_args(args)]
    entry()


if __name__ == "__main__":
    run(sys.argv[1:])
