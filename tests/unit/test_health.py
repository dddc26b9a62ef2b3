"""Training-health statistics: their definitions, and that a fit logs them for every group and field."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import torch
from tiny_lzn import tiny_data, tiny_model, tiny_trainer

from lzn_lightning.health import anchor_stats, group_grad_norms, latent_stats


def test_anchor_stats_separate_offset_from_spread() -> None:
    a = torch.tensor([[3.0, 4.0], [5.0, 4.0]])  # mean (4, 4), each 1 away from it
    stats = anchor_stats(a)
    assert math.isclose(float(stats["anchor_offset"]), math.hypot(4, 4), rel_tol=1e-6)
    assert math.isclose(float(stats["anchor_spread"]), 1.0, rel_tol=1e-6)
    assert math.isclose(float(stats["anchor_norm"]), (5.0 + math.hypot(5, 4)) / 2, rel_tol=1e-6)


def test_latent_stats_of_prior_draws_are_near_one() -> None:
    z = torch.randn(4096, 32, generator=torch.Generator().manual_seed(0))
    stats = latent_stats(z)
    assert abs(float(stats["latent_sq"]) - 1.0) < 0.02
    assert float(stats["latent_mean"]) < 3 / 4096**0.5
    assert math.isclose(float(latent_stats(2 * z)["latent_sq"]), 4 * float(stats["latent_sq"]), rel_tol=1e-5)


def test_group_grad_norms_add_up_to_the_total() -> None:
    w1, w2 = torch.zeros(3, requires_grad=True), torch.zeros(2, requires_grad=True)
    w1.grad, w2.grad = torch.tensor([3.0, 0.0, 0.0]), torch.tensor([0.0, 4.0])
    norms = group_grad_norms([{"name": "a", "params": [w1]}, {"name": "b", "params": [w2]}])
    assert {k: float(v) for k, v in norms.items()} == {"a": 3.0, "b": 4.0}


class _Recorder(pl.Callback):
    def __init__(self) -> None:
        self.rows: list[dict[str, float]] = []

    def on_train_batch_end(self, trainer: pl.Trainer, *args: object) -> None:
        self.rows.append({k: float(v) for k, v in trainer.callback_metrics.items()})


def test_fit_logs_health_per_group_and_field(tmp_path: Path) -> None:
    pl.seed_everything(0)
    model = tiny_model(grad_clip=1e-3)  # clip hard, so pre-clip norms differ from what the optimizer applies
    recorder = _Recorder()
    tiny_trainer(tmp_path, 3, [recorder], log_every_n_steps=1).fit(model, tiny_data())
    row = recorder.rows[-1]
    groups = {f"{name}.{g['name']}" for name, m in model.modalities.items() for g in m.param_groups()}
    group_norms = [row[f"train/health/grad_norm/{g}"] for g in groups]
    # The groups' pre-clip norms make up the pre-clip total, which is far above the clip.
    assert math.isclose(math.sqrt(sum(n * n for n in group_norms)), row["train/grad_norm"], rel_tol=1e-4)
    assert row["train/grad_norm"] > 1e-2
    for key in ("anchor_norm", "anchor_spread", "anchor_offset", "latent_sq", "latent_mean"):
        assert math.isfinite(row[f"train/health/{key}/image"]) and row[f"train/health/{key}/image"] > 0
    assert "train/health/anchor_norm/label" not in row  # a categorical table is not a batch of anchors
