"""Training data whose order and augmentations a checkpoint can resume exactly, mid-epoch included.

Two rules make a resumed run read exactly what the uninterrupted run reads:

* the order of epoch ``e`` is a permutation drawn from ``(seed, e)`` only (DistributedSampler's rule), so it
  does not depend on how many iterators were created before; a resumed epoch skips the trained batches;
* each sample's random augmentation is drawn from a seed mixed from ``(seed, epoch, index)``, not from the
  global RNG stream, so it depends neither on what ran before (validation, a sanity check) nor on the worker.

:class:`ResumableDataLoader` puts both in a loader with Lightning's ``state_dict`` / ``load_state_dict``
protocol, so the position travels in the checkpoint's fit-loop state and is restored before the first batch
is drawn. Transforms must draw from torch's RNG (torchvision's do); Python's ``random`` and NumPy's global RNG
are not reseeded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from lzn_lightning.seeding import mix_seed


class SeededDataset(Dataset):
    """``dataset[index]`` drawn with torch's CPU RNG seeded by ``seed``, for keys ``(index, seed)``.

    The global RNG state is restored afterwards, so loading a sample never changes the caller's random stream.

    Args:
        dataset: Any map-style dataset whose transforms draw from torch's RNG.
    """

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        index, seed = key
        # Why the CPU generator itself rather than torch.manual_seed / fork_rng: those also visit every other
        # device's generator and cost ~0.26 ms a call (a 256-image batch: ~70 ms); this costs ~8 us.
        cpu = torch.default_generator
        state = cpu.get_state()
        cpu.manual_seed(seed)
        try:
            return self.dataset[index]
        finally:
            cpu.set_state(state)

    def __repr__(self) -> str:
        return f"SeededDataset({self.dataset!r})"


class ResumableSampler(DistributedSampler):
    """This rank's shuffled share of an epoch: ``(index, augmentation seed)`` keys for :class:`SeededDataset`.

    A DistributedSampler subclass, so Lightning keeps it under DDP instead of wrapping it. After
    :meth:`resume`, the next iteration is of the given epoch and skips the samples already trained.

    The epoch of the *data* is the sampler's own: the trainer's ``set_epoch(e)`` gives its epoch count, which
    can run ahead of the data after a resume. A run that stops at ``max_steps`` mid-epoch ends the trainer's
    epoch there, so the same run extended from its last checkpoint starts a new trainer epoch while the data
    must go on with the rest of the interrupted one. The first ``set_epoch`` after :meth:`resume` fixes the
    offset between the two counts, and every later epoch keeps it.

    Args:
        dataset: The training dataset (only its length is used).
        num_replicas: Number of ranks sharing the epoch.
        rank: This rank.
        seed: Seed of the order and of the augmentations (the trainer's seed).
    """

    def __init__(self, dataset: Dataset, num_replicas: int, rank: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=True, seed=seed)
        self._skip = 0
        self._offset = 0  # the data's epoch minus the trainer's epoch count
        self._resumed_epoch: int | None = None  # set by resume() until the trainer's next set_epoch

    def set_epoch(self, epoch: int) -> None:
        """Start the data epoch that follows the trainer's epoch ``epoch`` (see the class docstring)."""
        if self._resumed_epoch is not None:
            self._offset = self._resumed_epoch - epoch
            self._resumed_epoch = None
        super().set_epoch(epoch + self._offset)

    def resume(self, epoch: int, samples_done: int) -> None:
        """Make the next iteration the rest of data epoch ``epoch`` after this rank's first ``samples_done``
        samples."""
        super().set_epoch(epoch)
        self._skip = samples_done
        self._resumed_epoch = epoch

    def __iter__(self) -> Iterator[tuple[int, int]]:  # type: ignore[override]
        indices = list(super().__iter__())[self._skip :]
        self._skip = 0  # only the first iteration after a resume is partial
        epoch = self.epoch
        return iter([(i, mix_seed(self.seed, epoch, i)) for i in indices])


class ResumableDataLoader(DataLoader):
    """A training DataLoader over a :class:`ResumableSampler` whose state is its position in the epoch.

    Args:
        dataset: The training dataset (wrapped in :class:`SeededDataset` here).
        batch_size: Samples per batch on this rank (the last incomplete batch is dropped).
        sampler: This rank's sampler.
        progress: ``(batches, epoch_done)``: the number of batches of the current epoch already *trained*
            (not fetched: Lightning fetches one batch ahead) and whether that was the epoch's last batch, e.g.
            read from the trainer's progress.
        **kwargs: Other DataLoader arguments (workers, pinning).
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        sampler: ResumableSampler,
        progress: Callable[[], tuple[int, bool]],
        **kwargs: Any,
    ) -> None:
        super().__init__(
            SeededDataset(dataset), batch_size=batch_size, sampler=sampler, drop_last=True, **kwargs
        )
        self._progress = progress

    def state_dict(self) -> dict[str, int]:
        """``{"epoch", "batches_done", "epoch_done"}`` of training so far (saved by Lightning in the fit-loop
        state); ``epoch_done`` is 1 when the last trained batch ended the epoch."""
        epoch = int(self.sampler.epoch)  # type: ignore[attr-defined]
        batches, done = self._progress()
        return {"epoch": epoch, "batches_done": int(batches), "epoch_done": int(done)}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Make the next iteration continue the checkpointed epoch after its trained batches, or start the
        next epoch when the checkpoint was written after the epoch's last batch."""
        sampler: ResumableSampler = self.sampler  # type: ignore[assignment]
        batch_size = int(self.batch_size or 1)
        epoch, batches = int(state_dict["epoch"]), int(state_dict["batches_done"])
        # Checkpoints written before "epoch_done" was saved: the epoch is over when no full batch is left
        # (drop_last: a split of 1,258 items in batches of 256 ends after 4 batches, with 234 items unread).
        done = state_dict.get("epoch_done", batches >= len(sampler) // batch_size)
        if done:  # the next epoch starts from its beginning
            sampler.resume(epoch + 1, 0)
        else:
            sampler.resume(epoch, batches * batch_size)
