"""Distributed helpers that are correct at any world size (plain torch.distributed, no launcher).

Lightning's DDP strategy starts the processes; these helpers only assume a default process group when one
exists, so every function degrades to the identity at world size 1.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.distributed.nn.functional as dist_fn
from torch import Tensor


def world_size() -> int:
    """Number of processes in the default group (1 when not distributed)."""
    return dist.get_world_size() if dist.is_available() and dist.is_initialized() else 1


def rank() -> int:
    """Global rank of this process (0 when not distributed)."""
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def gather_with_grad(x: Tensor) -> Tensor:
    """All-gather rows from every rank, differentiably, as one [world*b, ...] tensor in rank order.

    The backward pass sums the gradients of all ranks onto each rank's slice, which together with DDP's
    gradient averaging gives exactly the gradient of the global-batch loss (docs/design/lzn.md §5). Every rank
    must pass the same shape. At world size 1 the input is returned unchanged, so the shape is [b, ...]
    either way.
    """
    if world_size() == 1:
        return x
    parts = dist_fn.all_gather(x.contiguous())
    return torch.cat(parts, dim=0)  # [world*b, ...]


def all_ranks_true(flag: bool | Tensor, device: torch.device | None = None) -> bool:
    """True only if ``flag`` is true on every rank (e.g. "my loss is finite"): all ranks decide together."""
    t = torch.as_tensor(flag, dtype=torch.float32, device=device).reshape(1)
    if world_size() > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def global_sum(x: Tensor) -> Tensor:
    """Sum of ``x`` over ranks, without gradient (e.g. class counts for the batch prior)."""
    x = x.detach().clone()
    if world_size() > 1:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def rank_generator(seed: int, global_rank: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A generator for prior noise and RF times, different on every rank and reproducible from ``seed``.

    Seeding every rank identically would draw the same noise on all ranks (a known flow-matching pitfall).
    """
    g = torch.Generator(device=device)
    # Why 1_000_003: a prime stride keeps (seed, rank) pairs from colliding for any realistic world size.
    g.manual_seed((seed * 1_000_003 + global_rank) % (2**63 - 1))
    return g


def gather_rows(x: Tensor, device: torch.device | str | None = None) -> Tensor:
    """All-gather rows [n_r, ...] of possibly different counts n_r from every rank, as one [sum n_r, ...]
    tensor in rank order, on every rank (no gradient; e.g. features of the samples each rank generated).

    Rows are padded to the largest count for the collective and cut back after it. ``device`` is where the
    collective runs (NCCL needs the rank's GPU); the result comes back on ``x``'s device. At world size 1 the
    input is returned unchanged.
    """
    if world_size() == 1:
        return x
    home, device = x.device, torch.device(device) if device is not None else x.device
    x = x.detach().to(device).contiguous()
    count = torch.tensor([len(x)], device=device)
    counts = [torch.zeros_like(count) for _ in range(world_size())]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = torch.zeros((max(sizes), *x.shape[1:]), dtype=x.dtype, device=device)
    padded[: len(x)] = x
    parts = [torch.empty_like(padded) for _ in sizes]
    dist.all_gather(parts, padded)
    return torch.cat([p[:n] for p, n in zip(parts, sizes, strict=True)]).to(home)  # [sum n_r, ...]


def broadcast_object(obj: object, src: int = 0) -> object:
    """Rank ``src``'s ``obj`` on every rank (a picklable Python object; the identity at world size 1)."""
    if world_size() == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=src)
    return box[0]
