"""Which loss term drives each parameter group: the gradient of every term taken on its own.

The module logs each group's gradient norm of the *sum* of its loss terms (``train/health/grad_norm/...``).
That cannot say whether an encoder learns mostly from its decoder or from an alignment term; comparing runs
with a term switched off confounds the answer with everything else that differs between the runs. This
callback decomposes the gradient of one step instead: same parameters, same batch, same noise.
"""

from __future__ import annotations

import itertools
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor


class LossGradientMix(pl.Callback):
    """Every ``every_n_steps`` training steps, the gradient of each loss term on each parameter group.

    Before the step runs, on the step's own batch and with the step's own noise (the module's per-step seeding
    is applied first), the loss terms are computed again and each term's gradient is taken separately
    (loss weights included, before clipping). Logged per optimiser group ``G`` (e.g. ``image.encoder``) and
    term ``T`` (e.g. ``image/decoder``, ``align/image->label``):

    * ``train/grad_mix/G/T/norm``: L2 norm of term T's gradient on G;
    * ``train/grad_mix/G/T/share``: fraction of G's coordinates where T's gradient is the largest in
      magnitude. Adam scales each coordinate by its own running RMS, so a term that is small in norm can
      still set the sign of many coordinates' steps; this share shows that for the measured step (what Adam
      accumulates over steps is not measured);
    * ``train/grad_mix/G/cos/T1|T2``: cosine between two terms' gradients on G;
    * ``train/grad_mix/G/total_norm``: norm of the summed gradient, i.e. ``train/health/grad_norm/G`` of the
      step that follows.

    The training itself is unchanged: gradients are taken with ``torch.autograd.grad`` (``.grad`` untouched)
    and module buffers (e.g. BatchNorm statistics) are restored after the extra forward pass. Each
    measurement costs one forward and one backward per term; every rank measures its own batch (the loss
    terms gather anchors across ranks) and rank 0 logs it, at the step number of the step that follows.

    Args:
        every_n_steps: Measure before every n-th training step (the first step included).
    """

    def __init__(self, every_n_steps: int = 50) -> None:
        if every_n_steps < 1:
            raise ValueError(f"every_n_steps must be >= 1, got {every_n_steps}")
        self.every_n_steps = every_n_steps
        self.last: dict[str, float] = {}

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if int(pl_module.iteration) % self.every_n_steps:
            return
        self.last = self.measure(pl_module, batch, batch_idx)  # on every rank: the losses gather across ranks
        if trainer.is_global_zero:
            # Straight to the loggers at the coming step's number: values logged through pl_module.log in this
            # hook would be repeated on the rows of the steps that do not measure.
            for logger in trainer.loggers:
                logger.log_metrics(self.last, step=trainer.global_step)

    @staticmethod
    def measure(pl_module: Any, batch: dict[str, Tensor], batch_idx: int = 0) -> dict[str, float]:
        """The decomposition for one batch (metric name -> value), leaving parameters and buffers as found."""
        out: dict[str, float] = {}
        for name, per_term in term_gradients(pl_module, batch, batch_idx).items():
            flat = {t: flatten_gradients(gs, ps) for t, (gs, ps) in per_term.items()}  # term -> [numel]
            terms = list(flat)
            if not any(v.any() for v in flat.values()):
                continue  # a group no term reaches
            stacked = torch.stack([flat[t].abs() for t in terms])  # [terms, numel]
            live = stacked.amax(dim=0) > 0  # coordinates some term moves
            winner = stacked[:, live].argmax(dim=0)  # [live coordinates]
            for k, t in enumerate(terms):
                out[f"train/grad_mix/{name}/{t}/norm"] = float(flat[t].norm())
                out[f"train/grad_mix/{name}/{t}/share"] = float((winner == k).float().mean())
            for t1, t2 in itertools.combinations(terms, 2):
                denom = flat[t1].norm() * flat[t2].norm()
                cos = float(flat[t1] @ flat[t2] / denom) if denom > 0 else 0.0
                out[f"train/grad_mix/{name}/cos/{t1}|{t2}"] = cos
            out[f"train/grad_mix/{name}/total_norm"] = float(sum(flat.values()).norm())  # type: ignore[union-attr]
        return out


TermGradients = dict[str, dict[str, tuple[list[Tensor | None], list[Tensor]]]]


def term_gradients(pl_module: Any, batch: dict[str, Tensor], batch_idx: int = 0) -> TermGradients:
    """Each loss term's gradient on each trainable, unfrozen optimiser group, for the coming training step.

    The step's own noise is drawn (the module's per-step seeding is applied first), the loss terms are
    computed again and each term's gradient is taken with ``torch.autograd.grad``: ``.grad`` stays untouched,
    and module buffers (e.g. BatchNorm statistics) are restored after the extra forward pass.

    Returns:
        group name -> term -> (one gradient per parameter, None where the term does not reach it; the
        group's parameters), weights of the loss included, before clipping, on this rank's batch.
    """
    buffers = [(buf, buf.detach().clone()) for buf in pl_module.buffers()]
    pl_module.on_train_batch_start(batch, batch_idx)  # this step's noise, as the step will draw it
    losses, _ = pl_module.losses(batch, train=True)
    frozen = pl_module.frozen_groups()  # their gradients are dropped before the step: not measured
    groups = [
        (name, [p for p in g["params"] if p.requires_grad])
        for i, g in enumerate(pl_module.optimizers().param_groups)
        if (name := g.get("name", str(i))) not in frozen
    ]
    groups = [(name, ps) for name, ps in groups if ps]
    params = [p for _, ps in groups for p in ps]
    grads: dict[str, list[Tensor | None]] = {}
    terms = list(losses)
    for i, term in enumerate(terms):
        if not losses[term].requires_grad:  # e.g. a term on detached inputs only
            grads[term] = [None] * len(params)
            continue
        grads[term] = list(
            torch.autograd.grad(losses[term], params, retain_graph=i < len(terms) - 1, allow_unused=True)
        )
    with torch.no_grad():
        for buf, saved in buffers:
            buf.copy_(saved)
    out: TermGradients = {}
    start = 0
    for name, ps in groups:
        out[name] = {t: (grads[t][start : start + len(ps)], ps) for t in terms}
        start += len(ps)
    return out


def flatten_gradients(grads: list[Tensor | None], params: list[Tensor]) -> Tensor:
    """One float32 vector of a group's gradients (zeros where a term does not reach a parameter)."""
    return torch.cat(
        [
            (g if g is not None else torch.zeros_like(p)).detach().float().flatten()
            for g, p in zip(grads, params, strict=True)
        ]
    )
