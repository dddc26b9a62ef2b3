"""Checkpoints in the layout of the paper's trainers, of a recipe's tiny model (tests/overrides/tiny.yaml).

Networks under ``model.module.`` (or plain), their EMA as ``{"decay", "num_updates", "shadow_params"}`` with
the trainable parameters in ``parameters()`` order, the decoder's float64 ``sigmas`` table, optimiser and
scheduler state. Every tensor is redrawn so no zero-initialised layer can hide a wrong mapping, and the EMA
is drawn independently of the raw weights (not as a small perturbation of them), so a network that ends up
with the other set is off by the weights' own size. Each network's EMA has its own update count, as the
authors' trainers keep one per network (case study 3's decoder EMA stops at 60k, its encoder and label
anchor EMAs go on to 200k), so a count reported for the wrong network shows. That the layout is the
authors' own is checked against their code by tests/unit/test_paper_networks.py (names, shapes) and by the
scratch comparison in docs/performance.md (outputs).
"""

from __future__ import annotations

from pathlib import Path

import torch
from tiny_recipe import tiny_override

from lzn_lightning.reference_import import _build, paper_networks

PREFIX = "model.module."
# Per network, all different (see the module docstring); the decoder's is the smallest, as in case study 3.
EMA_UPDATES = {"encoder": 1234, "decoder": 600, "label_anchor": 1111}


def _redrawn(module: torch.nn.Module, gen: torch.Generator) -> dict[str, torch.Tensor]:
    out = {}
    for name, t in module.state_dict().items():
        fan_in = t[0].numel() if t.dim() > 1 else 1
        out[name] = torch.randn(t.shape, generator=gen) / fan_in**0.5
    return out


def authors_checkpoint(
    recipe: Path, folder: Path, wrapped: bool = True, seed: int = 0, path: Path | None = None
) -> tuple[Path, dict]:
    """Write an authors'-layout checkpoint of ``recipe``'s tiny model; return its path and, per network, the
    (raw, EMA) state dicts in our names it holds."""
    model = _build(recipe, ["--config", str(tiny_override(recipe, folder))])
    gen = torch.Generator().manual_seed(seed)
    ckpt: dict = {
        "epoch": 3,
        "iteration": 5000,
        "optimizer": {"state": {}, "param_groups": []},
        "lr_scheduler": {"last_epoch": 5000},
        "grad_scalar": {},
    }
    weights = {}
    prefix = PREFIX if wrapped else ""
    for part, _, module, rename in paper_networks(model):
        theirs = {ours: name for name, ours in rename.items()}
        raw = _redrawn(module, gen)
        ema = _redrawn(module, gen)
        state = {prefix + theirs.get(k, k): v for k, v in raw.items()}
        if part == "decoder":  # their decoder's noise-level table, float64, which ours does not hold
            state[prefix + "sigmas"] = torch.linspace(50, 0.01, 1000, dtype=torch.float64)
        trainable = [n for n, p in module.named_parameters() if p.requires_grad]
        ckpt[part] = state
        ckpt[f"{part}_ema"] = {
            "decay": 0.999,
            "num_updates": EMA_UPDATES[part],
            "shadow_params": [ema[n] for n in trainable],
        }
        weights[part] = (raw, {n: ema[n] if n in trainable else raw[n] for n in raw})
    path = path or folder / f"authors_{recipe.stem}{'' if wrapped else '_plain'}.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(ckpt, path)
    return path, weights
