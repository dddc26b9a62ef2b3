"""DDP on CPU (gloo): the LZN loss of 2 ranks with different inputs has the single-process full-batch
gradient, and `lzn fit --trainer.devices=2 --trainer.strategy=ddp` runs end to end."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml

from lzn_lightning import LZNLightningModule

ROOT = Path(__file__).resolve().parents[2]
B = 6  # rows per rank


def _model() -> LZNLightningModule:
    """A tiny image + label model in float64.

    Why float64: at initialisation the anchors of the tower sit close together and the flow is
    ill-conditioned; float32 GEMMs of 6 rows and of 12 rows round differently, and the flow amplifies that
    into gradient differences of order 1 between any two float32 runs, DDP or not. In float64 the comparison
    isolates the DDP wiring (gather with gradients, row offsets, global class weights).
    """
    torch.manual_seed(0)
    return LZNLightningModule(
        modalities={
            "image": {
                "class_path": "ImageModality",
                "init_args": {
                    "encoder": {"name": "tower", "width": 8, "head_hidden": 16, "ch_mult": [1, 2]},
                    "decoder": None,
                },
            },
            "label": {"class_path": "LabelModality", "init_args": {"num_classes": 3}},
        },
        latent_dim=8,
        fields={"image_view2": "image"},
        # Why noise_scale 0: the prior noise comes from per-rank generators, so only the noise-free flow can
        # be compared row for row with a single process.
        flow={"solver": "dpm++", "steps": 4, "noise_scale": 0.0},
        align=[
            {"source": "image", "target": "label", "steps": 6, "form": "prob"},  # global class weights
            {"source": "image", "target": "image_view2", "steps": 5, "form": "log"},  # gathered-row offsets
        ],
        ema_decay=None,
    ).double()


def _batch() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return {
        "image": torch.rand(2 * B, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1,
        "image_view2": torch.rand(2 * B, 1, 8, 8, generator=g, dtype=torch.float64) * 2 - 1,
        "label": torch.tensor([0, 0, 0, 1, 1, 2, 2, 2, 2, 2, 1, 0]),  # different class mix on each rank
    }


def _grads(model: LZNLightningModule) -> dict[str, torch.Tensor]:
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        model = _model()
        local = {k: v[rank * B : (rank + 1) * B] for k, v in _batch().items()}
        losses, _ = model.losses(local, train=True)
        torch.stack(list(losses.values())).sum().backward()
        grads = _grads(model)
        for g in grads.values():  # what DDP does: average the gradients over ranks
            dist.all_reduce(g)
            g /= 2
        out[rank] = {n: g.numpy() for n, g in grads.items()}
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow  # two spawned processes (~12 s)
@pytest.mark.timeout(120)
def test_two_ranks_give_the_single_process_full_batch_gradient() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = mp.Manager().dict()
    mp.spawn(_worker, args=(port, out), nprocs=2, join=True)
    model = _model()
    losses, _ = model.losses(_batch(), train=True)
    assert len(losses) == 2
    torch.stack(list(losses.values())).sum().backward()
    full = _grads(model)
    assert set(out[0]) == set(full) and len(full) > 10
    for name, g in full.items():
        for rank in (0, 1):
            torch.testing.assert_close(torch.from_numpy(out[rank][name]), g, rtol=1e-6, atol=1e-9)


@pytest.mark.ddp
@pytest.mark.slow  # ~25 s: two processes that each import torch and Lightning, then fit
@pytest.mark.timeout(300)
def test_quick_start_recipe_runs_unchanged_on_two_processes(tmp_path: Path) -> None:
    """The README's quick start with --trainer.devices=2: only the step budget is shortened.

    Its evaluation batch (359) does not divide by 2, and the real digits data, networks and callbacks run.
    """
    recipe = ROOT / "recipes" / "digits_joint.yaml"
    lzn = shutil.which("lzn", path=str(Path(sys.executable).parent)) or "lzn"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    budget = ["--trainer.max_steps=4", "--trainer.val_check_interval=2"]
    budget += ["--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"]
    proc = subprocess.run(
        [lzn, "fit", "--config", str(recipe), "--trainer.devices=2", *budget],
        capture_output=True, text=True, timeout=280, env=env, cwd=tmp_path,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "GLOBAL_RANK: 1, MEMBER: 2/2" in proc.stderr
    (last,) = tmp_path.rglob("last.ckpt")
    state = torch.load(last, weights_only=True)
    assert state["global_step"] == 4
    config = yaml.safe_load((last.parents[1] / "config.yaml").read_text())
    assert config["data"]["init_args"]["eval_batch_size"] == 359
