"""``lzn export``: a trained model as a Hugging Face-style folder that needs no training state.

The folder (see :data:`FILES`) holds the inference weights (the EMA weights, as ``lzn sample | classify |
embed`` use them) in ``model.safetensors``, the anchor banks the model classifies with in
``anchor_banks.safetensors``, the model's spec (the recipe's ``model:`` section, as the checkpoint records it)
in ``config.json``, the run's whole recipe in ``recipe.yaml`` when the run's log folder holds it, and a model
card ``README.md`` (:mod:`lzn_lightning.model_card`). :func:`lzn_lightning.pretrained.load_pretrained` builds
the model back from it; no file is pickled, so loading one runs no code of its author.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from lzn_lightning.checkpoints import BANK_PREFIX, read_checkpoint

LIBRARY_NAME = "lzn-lightning"
# Version of the folder layout; a reader refuses a newer one (load_pretrained says to upgrade).
FORMAT_VERSION = 1
CONFIG = "config.json"
WEIGHTS = "model.safetensors"
BANKS = "anchor_banks.safetensors"
RECIPE = "recipe.yaml"
CARD = "README.md"
FILES = (CONFIG, WEIGHTS, BANKS, RECIPE, CARD)
# Hyper-parameters that describe training only: a path on the training machine, not the model.
_TRAINING_ONLY = ("init_from",)


def model_spec(hparams: dict[str, Any]) -> dict[str, Any]:
    """The model's constructor arguments (``LZNLightningModule(**spec)``) from a checkpoint's
    hyper-parameters, without the training-only ones."""
    return {k: v for k, v in hparams.items() if k not in _TRAINING_ONLY}


def inference_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The weights inference uses: ``modalities.*`` with the EMA parameters swapped in (live buffers, as
    ``model.inference()`` uses them), each a contiguous copy (safetensors stores no shared or strided
    tensors)."""
    with model.ema_weights():
        return {
            f"modalities.{k}": v.detach().cpu().clone().contiguous()
            for k, v in model.modalities.state_dict().items()
        }


def anchor_banks(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``{field: bank items}`` of every anchor bank the model holds."""
    return {
        k[len(BANK_PREFIX) :]: v.detach().cpu().clone().contiguous()
        for k, v in model.named_buffers()
        if k.startswith(BANK_PREFIX)
    }


def write_export(
    model: torch.nn.Module,
    out: Path,
    card: str,
    training: dict[str, Any],
    recipe_yaml: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Write the export folder of a loaded model (whole, in a temporary folder, then renamed into place).

    Args:
        model: An ``LZNLightningModule`` (its EMA weights are exported).
        out: The folder to write.
        card: The text of ``README.md``.
        training: What ``config.json`` records of the run (steps, source checkpoint, import).
        recipe_yaml: The run's whole recipe, or None.
        overwrite: Replace an existing ``out``.
    """
    from lzn_lightning import __version__

    out = Path(out)
    if out.exists() and not (overwrite and out.is_dir()):
        raise ValueError(f"--out {out} already exists; pass --overwrite to replace it")
    banks = anchor_banks(model)
    config = {
        "library_name": LIBRARY_NAME,
        "format_version": FORMAT_VERSION,
        "lzn_lightning_version": __version__,
        "model": model_spec(dict(model.hparams)),
        "anchor_banks": sorted(banks),
        "training": training,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        save_file(inference_state(model), str(tmp / WEIGHTS), metadata={"format": "pt"})
        if banks:
            save_file(banks, str(tmp / BANKS), metadata={"format": "pt"})
        (tmp / CONFIG).write_text(json.dumps(config, indent=2, default=str) + "\n")
        if recipe_yaml is not None:
            (tmp / RECIPE).write_text(recipe_yaml)
        (tmp / CARD).write_text(card)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def training_record(ckpt: dict[str, Any], source: str) -> dict[str, Any]:
    """What ``config.json`` records of how the weights were made: steps, EMA updates, the source checkpoint's
    file name, and for an imported paper model the authors' file (``lzn_import``)."""
    state = ckpt["state_dict"]
    ema_updates = state.get("ema.num_updates")
    record: dict[str, Any] = {
        "global_step": int(ckpt.get("global_step", 0)),
        "iteration": int(state["iteration"]) if "iteration" in state else None,
        "ema_updates": int(ema_updates) if ema_updates is not None else None,
        "checkpoint": Path(source).name,
    }
    if "lzn_import" in ckpt:
        record["imported_from"] = ckpt["lzn_import"]
    return record


def export_checkpoint(
    ckpt_path: str | Path,
    out: str | Path,
    log_dir: str | Path | None = None,
    license: str = "mit",
    overwrite: bool = False,
    repo_id: str | None = None,
) -> Path:
    """``lzn export``: turn an ``lzn fit`` (or ``lzn import-reference``) checkpoint into an export folder.

    Args:
        ckpt_path: The ``.ckpt`` file.
        out: The folder to write.
        log_dir: The run's log folder (``config.yaml``, ``metrics.csv``) for the card; None: the folder above
            the checkpoint's ``checkpoints/`` folder, when it is one.
        license: The card's ``license`` field (a Hugging Face license id, e.g. ``mit``, ``apache-2.0``).
        overwrite: Replace an existing ``out``.
        repo_id: The Hub repository the folder is meant for (the card's commands name it), or None.

    Returns:
        The folder written.
    """
    from lzn_lightning.model_card import RunLog, model_card
    from lzn_lightning.module import load_for_inference

    out = Path(out)
    if out.exists() and not overwrite:
        raise ValueError(f"--out {out} already exists; pass --overwrite to replace it")
    ckpt = read_checkpoint(ckpt_path)
    model = load_for_inference(ckpt_path)
    training = training_record(ckpt, str(ckpt_path))
    log = RunLog.find(Path(ckpt_path), None if log_dir is None else Path(log_dir))
    card = model_card(
        model_spec(dict(model.hparams)),
        training,
        log,
        sorted(anchor_banks(model)),
        license,
        repo_id,
        out.name,
    )
    return write_export(model, out, card, training, log.recipe_yaml, overwrite=overwrite)
