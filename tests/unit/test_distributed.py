"""Distributed helpers: identity at world size 1, exact global-batch gradients with 2 gloo processes."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from lzn_lightning import distributed as D
from lzn_lightning.latent import compute_latent


def test_world_size_one_is_identity() -> None:
    x = torch.randn(5, 3, requires_grad=True)
    y = D.gather_with_grad(x)
    assert y.shape == (5, 3) and y is x
    assert D.world_size() == 1 and D.rank() == 0
    assert D.all_ranks_true(True) and not D.all_ranks_true(False)
    counts = torch.tensor([1.0, 2.0], requires_grad=True)
    summed = D.global_sum(counts)
    assert torch.equal(summed, counts.detach()) and not summed.requires_grad


def test_rank_generators_differ_and_repeat() -> None:
    a0 = torch.randn(4, generator=D.rank_generator(0, 0))
    a1 = torch.randn(4, generator=D.rank_generator(0, 1))
    again = torch.randn(4, generator=D.rank_generator(0, 0))
    assert torch.equal(a0, again) and not torch.equal(a0, a1)


def _loss(local: torch.Tensor, everyone: torch.Tensor, noise: torch.Tensor) -> torch.Tensor:
    return compute_latent(everyone, local, noise, steps=4, solver="euler").square().mean()


def _worker(rank: int, port: int, anchors: torch.Tensor, noise: torch.Tensor, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        b = anchors.shape[0] // 2
        local = anchors[rank * b : (rank + 1) * b].clone().requires_grad_(True)
        everyone = D.gather_with_grad(local)
        assert everyone.shape == anchors.shape
        loss = _loss(local, everyone, noise[rank * b : (rank + 1) * b])
        loss.backward()
        # The all-gather backward sums every rank's loss gradient onto this rank's slice; DDP then averages
        # the (shared) encoder gradients over the 2 ranks, hence the / 2.
        out[rank] = (local.grad / 2).numpy()
        assert D.all_ranks_true(rank == 0) is False
        assert float(D.global_sum(torch.tensor([1.0]))) == 2.0
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow  # two spawned processes (~8 s)
def test_gather_with_grad_matches_single_process_gradient() -> None:
    torch.manual_seed(0)
    anchors, noise = torch.randn(8, 5, dtype=torch.float64), torch.randn(8, 5, dtype=torch.float64)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = mp.Manager()
    out = manager.dict()
    mp.spawn(_worker, args=(port, anchors, noise, out), nprocs=2, join=True)
    # One process, full batch: the mean over ranks of per-rank mean losses = the global mean loss.
    full = anchors.clone().requires_grad_(True)
    _loss(full, full, noise).backward()
    b = anchors.shape[0] // 2
    for rank in range(2):
        torch.testing.assert_close(torch.from_numpy(out[rank]), full.grad[rank * b : (rank + 1) * b])
