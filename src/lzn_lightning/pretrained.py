"""Load an export folder (``lzn export``) from disk or from the Hugging Face Hub.

``LZNLightningModule.from_pretrained(name)`` and every ``--ckpt_path`` of ``lzn sample | classify | embed |
test | validate`` take:

* a local export folder;
* ``owner/name`` or ``hf://owner/name`` (``hf://owner/name@revision`` picks a branch, tag or commit): a Hub
  repository, fetched into huggingface_hub's cache (``snapshot_download``); with ``HF_HUB_OFFLINE=1`` only the
  cache is read.

A name is a Hub repository only when it is not an existing path, has exactly one ``/``, and does not end in a
checkpoint suffix (``runs/last.ckpt`` stays a missing file, with that error).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file

from lzn_lightning.checkpoints import BANK_PREFIX, first_line
from lzn_lightning.export import BANKS, CONFIG, FORMAT_VERSION, LIBRARY_NAME, WEIGHTS

HF_PREFIX = "hf://"
# A Hub repository id: owner/name of letters, digits, '-', '_' and '.' (the Hub's rule, less its length).
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")
_CHECKPOINT_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".safetensors")


def is_pretrained_name(name: str | Path) -> bool:
    """Whether ``name`` names an export (a folder, ``hf://...``, ``owner/name``), not a checkpoint."""
    text = str(name)
    if text.startswith(HF_PREFIX) or Path(text).is_dir():
        return True
    if Path(text).exists():
        return False
    return bool(_REPO_ID.fullmatch(text.partition("@")[0])) and not text.endswith(_CHECKPOINT_SUFFIXES)


def _offline() -> bool:
    """Whether the user asked for offline Hub access. ``lzn`` sets ``HF_HUB_OFFLINE=1`` for timm's lookups
    when the user did not (``lzn_lightning.cli.entry``), so then the user's own setting is the one the ``lzn``
    module recorded (``USER_HF_OFFLINE``, read when it was imported)."""
    cli = sys.modules.get("lzn_lightning.cli")
    if cli is not None:
        return bool(cli.USER_HF_OFFLINE)
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)


def resolve(name: str | Path, revision: str | None = None) -> Path:
    """The local folder of an export: ``name`` itself, or the Hub repository's snapshot in the cache.

    Raises:
        FileNotFoundError: No such folder, or a Hub repository not found online (or, offline, in the cache).
    """
    text = str(name)
    if not text.startswith(HF_PREFIX) and Path(text).is_dir():
        return Path(text)
    repo_id = text.removeprefix(HF_PREFIX).rstrip("/")
    repo_id, _, at = repo_id.partition("@")
    revision = revision or at or None
    if not _REPO_ID.fullmatch(repo_id):
        raise FileNotFoundError(
            f"{text} is neither a local folder nor a Hugging Face repository id (owner/name or hf://owner/name)"
        )
    from huggingface_hub import constants, snapshot_download

    offline = _offline()
    saved = constants.HF_HUB_OFFLINE
    constants.HF_HUB_OFFLINE = offline  # lzn forces it on for timm; a download the user asks for is meant
    try:
        return Path(snapshot_download(repo_id, revision=revision, local_files_only=offline))
    except Exception as err:
        at_rev = f" at revision {revision}" if revision else ""
        if offline:
            raise FileNotFoundError(
                f"{text} is no local file or folder, and {repo_id}{at_rev} is not in the Hugging Face cache "
                f"({constants.HF_HUB_CACHE}), the only place HF_HUB_OFFLINE=1 reads: download it once online "
                f"(or `hf download {repo_id}`), or pass a local export folder"
            ) from None
        raise FileNotFoundError(
            f"cannot fetch {repo_id}{at_rev} from the Hugging Face Hub: {first_line(err)} (a private "
            "repository needs `hf auth login`)"
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = saved


def read_config(folder: Path, shown: str) -> dict[str, Any]:
    """``config.json`` of an export folder, checked to be one this version reads."""
    path = folder / CONFIG
    try:
        config = json.loads(path.read_text())
    except FileNotFoundError:
        raise ValueError(
            f"{shown} is not an lzn-lightning export (no {CONFIG}); write one with "
            "`lzn export --ckpt_path <run>/checkpoints/last.ckpt --out <folder>`"
        ) from None
    except (OSError, ValueError) as err:
        raise ValueError(f"{shown}/{CONFIG} is not readable JSON ({first_line(err)})") from None
    if not isinstance(config, dict) or config.get("library_name") != LIBRARY_NAME or "model" not in config:
        raise ValueError(
            f"{shown} is not an lzn-lightning export ({CONFIG} names no library_name {LIBRARY_NAME!r} "
            "and model spec); write one with `lzn export`"
        )
    version = config.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        from lzn_lightning import __version__

        raise ValueError(
            f"{shown} was written by lzn-lightning {config.get('lzn_lightning_version', '?')} in export "
            f"format {version}; this lzn-lightning ({__version__}) reads formats up to {FORMAT_VERSION}: "
            "upgrade lzn-lightning (pip install -U lzn-lightning)"
        )
    if not (folder / WEIGHTS).is_file():
        raise ValueError(f"{shown} is an export without its weights ({WEIGHTS} is missing)")
    return config


def export_weights(folder: Path, config: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The export's state: ``modalities.*`` weights and ``anchor_bank_<field>`` buffers."""
    state = load_file(str(folder / WEIGHTS))
    if config.get("anchor_banks"):
        state |= {BANK_PREFIX + f: bank for f, bank in load_file(str(folder / BANKS)).items()}
    return state


def load_weights(model: torch.nn.Module, state: dict[str, torch.Tensor], shown: str) -> None:
    """Load an export's state into a built model (its EMA, if it has one, is left unused: an EMA without
    updates swaps nothing in, so inference uses these weights). One line when the weights do not fit."""
    ours = {k: v for k, v in model.state_dict().items() if k.startswith("modalities.")}
    theirs = {k: v for k, v in state.items() if k.startswith("modalities.")}
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    reshaped = [k for k in ours if k in theirs and tuple(theirs[k].shape) != tuple(ours[k].shape)]
    if missing or unexpected or reshaped:
        first = (missing or unexpected or reshaped)[0]
        raise ValueError(
            f"{shown} holds another model's weights than this configuration builds ({len(missing)} "
            f"missing, {len(unexpected)} unexpected, {len(reshaped)} with another shape, e.g. {first}); use "
            "the recipe the model was trained with"
        )
    model.load_state_dict(state, strict=False)
    if getattr(model, "ema", None) is not None:
        model.ema.num_updates.zero_()


def load_pretrained(
    cls: type, name: str | Path, revision: str | None = None, map_location: str | torch.device = "cpu"
) -> Any:
    """``LZNLightningModule.from_pretrained``: build the model of an export and load its weights and banks.

    Args:
        cls: The module class to build (``LZNLightningModule``, passed in so that this file never imports
            the module that imports it).
        name: An export folder, ``owner/name`` or ``hf://owner/name[@revision]``.
        revision: A Hub branch, tag or commit (None: ``main``, or the ``@revision`` of ``name``).
        map_location: Device of the returned model.

    Returns:
        The model in inference mode (``eval()``), without an EMA copy: its weights are the EMA weights.
    """
    folder = resolve(name, revision)
    config = read_config(folder, str(name))
    spec = dict(config["model"]) | {"ema_decay": None}  # the weights are already the EMA's
    try:
        model = cls(**spec)
    except Exception as err:
        raise ValueError(
            f"cannot build the model of {name} (written by lzn-lightning "
            f"{config.get('lzn_lightning_version', '?')}) with this lzn-lightning: {type(err).__name__}: "
            f"{first_line(err)}; install the version that wrote it, or the package of its modalities"
        ) from None
    load_weights(model, export_weights(folder, config), str(name))
    model.to(map_location)
    model.eval()
    return model
