"""Checkpoints: atomic writes, and reading one with a clear error when it is broken or of another model.

Writes that a crash cannot half-finish: a temporary file in the same folder, then a rename. Lightning's
default writer goes through an fsspec transaction that stages the file in the system temp folder and *moves*
it into place; across file systems that move is a copy, so a kill during it leaves a truncated ``last.ckpt``.
A rename within one folder is atomic on POSIX file systems: readers see the old file or the new one.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from torch import nn

# State-dict keys of anchor banks: ``anchor_bank_<field>`` (lzn_lightning.anchor_banks).
# Why they are left out of the fit check: a bank is registered by the AnchorBank callback at fit start and
# sized by the checkpoint on load (anchor_banks.make_room), so a freshly built model never has one
# while every checkpoint of a recipe with that callback does. They are data, not weights of another model.
BANK_PREFIX = "anchor_bank_"


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are atomic and durable (fsync of the file and of its folder).

    ``lzn fit`` installs it; with a Python ``Trainer`` pass ``plugins=[AtomicCheckpointIO()]``. Remote paths
    (``s3://...``) fall back to Lightning's writer.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        """Write ``checkpoint`` to ``path`` atomically."""
        if "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        if storage_options is not None:
            raise TypeError(f"{type(self).__name__} takes no storage_options, got {storage_options!r}")
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                torch.save(checkpoint, f)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o644)  # mkstemp creates 0600; checkpoints are ordinary readable files
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise
        _fsync_folder(path.parent)


def _fsync_folder(folder: Path) -> None:
    """Persist the rename itself (the folder entry); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------------- reading
def first_line(err: BaseException) -> str:
    """The first line of an exception's message (its type name when the message is empty)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def is_probe_checkpoint(ckpt: Any) -> bool:
    """Whether a loaded checkpoint is one of a linear probe (:class:`~lzn_lightning.linear_probe.
    LinearProbeModule`) rather than of an LZN model."""
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    return isinstance(hparams, dict) and {"num_classes", "encoder_ckpt", "image_key"} <= set(hparams)


def read_checkpoint(path: str | Path, probe: bool = False) -> dict[str, Any]:
    """Load an lzn-lightning checkpoint on the CPU (tensors memory-mapped), or explain in one line why not.

    Args:
        path: The ``.ckpt`` file.
        probe: Also accept a linear probe's checkpoint (``lzn test`` of ``recipes/imagenet_linear.yaml``).

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a readable PyTorch checkpoint (corrupt, truncated), or not one of an LZN model (nor,
            with ``probe``, of a linear probe).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as err:
        raise ValueError(
            f"{path} is not a readable PyTorch checkpoint, it may be truncated or corrupt ({first_line(err)})"
        ) from None
    if "state_dict" in ckpt and is_probe_checkpoint(ckpt):
        if probe:
            return ckpt
        raise ValueError(
            f"{path} is a linear probe's checkpoint (recipes/imagenet_linear.yaml); pass the checkpoint of "
            "the LZN model it probes (its encoder_ckpt) or one written by `lzn fit` of an LZN recipe"
        )
    hparams = ckpt.get("hyper_parameters") if isinstance(ckpt, dict) else None
    if not isinstance(hparams, dict) or "modalities" not in hparams or "state_dict" not in ckpt:
        raise ValueError(
            f"{path} is not an lzn-lightning model checkpoint (no model.modalities in its hyper-parameters); "
            "pass a checkpoint written by `lzn fit` (e.g. .../checkpoints/last.ckpt)"
        )
    return ckpt


def check_fits(model: nn.Module, ckpt: dict[str, Any], path: str | Path) -> None:
    """Raise ValueError (one line) if the checkpoint's weights do not fit ``model`` (another recipe's)."""
    theirs = {k: v for k, v in ckpt["state_dict"].items() if not k.startswith(BANK_PREFIX)}
    ours = {k: v for k, v in model.state_dict().items() if not k.startswith(BANK_PREFIX)}
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    reshaped = [
        f"{k} {list(theirs[k].shape)} vs {list(v.shape)}"
        for k, v in ours.items()
        if k in theirs and tuple(theirs[k].shape) != tuple(v.shape)
    ]
    if not (missing or unexpected or reshaped):
        return
    parts = [
        f"{len(items)} {what} (e.g. {items[0]})"
        for what, items in (
            ("missing", missing),
            ("unexpected", unexpected),
            ("with another shape", reshaped),
        )
        if items
    ]
    raise ValueError(
        f"{path} holds another model's weights than this configuration builds: {'; '.join(parts)} tensors. "
        "Use the recipe (and overrides) the checkpoint was trained with"
    )


def start_next_epoch_after_finished_one(checkpoint: dict[str, Any]) -> bool:
    """Make a checkpoint written after an epoch's last batch resume with a whole new epoch.

    After the last batch of an epoch Lightning (2.6) can write a checkpoint with the epoch not yet counted as
    done (``on_train_epoch_end``, or a validation after that batch) or done (the end of a run stopped by
    ``max_steps``), each time with the batch counters of the epoch still at its end (``is_last_batch`` true).
    Lightning resumes those states with these counters: it ends the resumed epoch after one batch, or at
    once, and the data of the resumed run skip part of an epoch. Here the epoch is counted as done and the
    batch counters are those of an epoch not yet started, the state Lightning itself resumes from when the
    checkpoint was written in the last batch's ``on_train_batch_end`` (which is left as it is). The training
    loader then starts the next epoch from its beginning, as its own state says
    (:class:`~lzn_lightning.data.resumable.ResumableDataLoader`).

    Args:
        checkpoint: The checkpoint dict, changed in place (its ``loops``, when it has them).

    Returns:
        Whether the loop state was changed.
    """
    fit = checkpoint.get("loops", {}).get("fit_loop", {})
    epochs = fit.get("epoch_progress")
    batches = fit.get("epoch_loop.batch_progress")
    if not epochs or not batches or not batches.get("is_last_batch"):
        return False
    current = batches["current"]
    if current["completed"] != current["processed"]:
        return False  # written in the last batch's on_train_batch_end: Lightning resumes that one right
    for counts in (epochs["total"], epochs["current"]):
        done = counts["started"]  # epochs whose batches ran, the last one included
        counts.update(ready=done, started=done, processed=done, completed=done)
    batches["current"] = dict.fromkeys(current, 0)
    batches["is_last_batch"] = False
    return True
