"""Seeds derived from positions (seed, rank, step, index) rather than from a running random stream.

A random draw that is a function of its position is the same whether a run was interrupted or not, so resuming
from a checkpoint needs no saved RNG state.
"""

from __future__ import annotations

import os

import numpy as np


def trainer_seed() -> int:
    """The trainer's seed (``seed_everything``, which Lightning's own samplers use too); 0 when none was
    set."""
    return int(os.environ.get("PL_GLOBAL_SEED", 0))


def mix_seed(*values: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (NumPy's SeedSequence hash of the tuple)."""
    hi, lo = np.random.SeedSequence([int(v) for v in values]).generate_state(2, dtype=np.uint64)
    return int((int(hi) ^ (int(lo) >> 1)) & (2**63 - 1))
