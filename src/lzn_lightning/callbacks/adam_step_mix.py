"""Which loss term makes each Adam step: the optimiser's first moment split exactly by term.

``LossGradientMix`` compares the terms' gradients of single steps. Adam does not step along one gradient: it
steps along a running average of gradients (the first moment), divided coordinate by coordinate by a running
RMS. A term that is small at every step but points the same way step after step can therefore make a larger
part of the step than its per-step norm suggests. This callback measures that part.

Adam's first moment is linear in the gradients. With clip factor ``c_t`` (the module's joint clip) and term
gradients ``g_{T,t}``::

    m_t = beta1 * m_{t-1} + (1 - beta1) * c_t * sum_T g_{T,t}  =  sum_T m_{T,t}

where ``m_{T,t}`` is the same average of term ``T``'s gradients alone. The step of a parameter is
``-lr * u`` with ``u = m_hat / (sqrt(v_hat) + eps)`` (bias-corrected moments), so term ``T`` contributes
``u_T = m_hat_T / (sqrt(v_hat) + eps)`` with the optimiser's own ``v``, and the ``u_T`` add up to ``u``.
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.distributed as dist
from torch import Tensor

from lzn_lightning import distributed as D
from lzn_lightning.callbacks.gradient_mix import flatten_gradients, term_gradients

# The first moment already in the optimiser when tracking started (a resumed run).
BEFORE = "(before tracking)"


class AdamStepMix(pl.Callback):
    """Each loss term's part of each Adam step, per parameter group.

    Every training step, each loss term's gradient is taken on its own (as ``LossGradientMix`` does, on the
    step's own batch and noise), scaled by the step's clip factor, and averaged into a per-term first moment
    with Adam's ``beta1``. Every ``log_every_n_steps`` steps it logs, per optimiser group ``G`` and term
    ``T``:

    * ``train/adam_mix/G/T/step_share``: ``<u_T, u> / |u|^2``, the part of Adam's step ``u`` (along its own
      direction) that term T makes. The shares of a group add up to 1;
    * ``train/adam_mix/G/T/step_norm``: ``|u_T| / |u|``;
    * ``train/adam_mix/G/T/grad_share`` and ``grad_norm``: the same share of this step's gradient alone
      (``<g_T, g> / |g|^2``, what a step without momentum and per-coordinate scaling would take) and the
      norm of term T's gradient (``LossGradientMix``'s ``norm``), to compare with the Adam step;
    * ``train/adam_mix/G/moment_residual``: ``|sum_T m_T - m| / |m|`` against the optimiser's own first moment
      ``m``: a check of the decomposition, float32 rounding when it holds.

    A run resumed from a checkpoint starts with a first moment built before tracking; it is kept as the term
    ``(before tracking)`` and decays like the others. The training itself is unchanged (gradients are taken
    with ``torch.autograd.grad``; buffers are restored). Cost: one forward and one backward per term at
    *every* step, about three times a plain step with two terms. Under DDP the terms' gradients are averaged
    over ranks, as the step's gradient is. Needs the module's Adam without weight decay or AMSGrad.

    Args:
        log_every_n_steps: Log the shares after every n-th optimiser step.
    """

    def __init__(self, log_every_n_steps: int = 10) -> None:
        if log_every_n_steps < 1:
            raise ValueError(f"log_every_n_steps must be >= 1, got {log_every_n_steps}")
        self.log_every_n_steps = log_every_n_steps
        self.moments: dict[str, dict[int, Tensor]] = {}  # term -> id(parameter) -> first moment of that term
        self.last: dict[str, float] = {}
        self._pending: dict[str, dict[int, Tensor]] = {}  # this step's clipped term gradients
        self._steps_before: dict[int, float] = {}
        self._grad_stats: dict[str, float] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opt = _adam(pl_module)
        for group in opt.param_groups:
            if group.get("weight_decay", 0) or group.get("amsgrad", False) or group.get("maximize", False):
                raise ValueError(
                    "AdamStepMix splits plain Adam's first moment; this optimiser group uses weight decay, "
                    "AMSGrad or maximize, which it does not model"
                )

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        opt = _adam(pl_module)  # restored from the checkpoint by now when the fit resumes
        before = {
            id(p): st["exp_avg"].detach().clone()
            for g in opt.param_groups
            for p in g["params"]
            if (st := opt.state.get(p)) and "exp_avg" in st
        }
        if before:  # a resumed optimiser already holds a first moment: keep it as its own term
            self.moments[BEFORE] = before

    def on_train_batch_start(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        opt = _adam(pl_module)
        per_group = term_gradients(pl_module, batch, batch_idx)
        pending: dict[str, dict[int, Tensor]] = {}  # term -> id(parameter) -> gradient
        for per_term in per_group.values():
            for term, (grads, params) in per_term.items():
                for g, p in zip(grads, params, strict=True):
                    if g is not None:
                        pending.setdefault(term, {})[id(p)] = g.detach().float()
        if D.world_size() > 1:  # the step averages gradients over ranks (DDP); so do the terms
            for grads in pending.values():
                for g in grads.values():
                    dist.all_reduce(g)
                    g /= D.world_size()
        self._grad_stats = {}
        total_sq = 0.0  # squared norm of the step's whole gradient, for the clip factor
        for name, per_term in per_group.items():
            params = next(iter(per_term.values()))[1]
            flat = {  # term -> [numel of the group]
                t: flatten_gradients([pending.get(t, {}).get(id(p)) for p in params], params)
                for t in per_term
            }
            # [numel]: the step's gradient on the group
            step_grad = torch.stack(list(flat.values())).sum(dim=0)
            g_sq = float(step_grad @ step_grad)
            total_sq += g_sq
            for t, g_t in flat.items():
                self._grad_stats[f"train/adam_mix/{name}/{t}/grad_norm"] = float(g_t.norm())
                if g_sq > 0:
                    self._grad_stats[f"train/adam_mix/{name}/{t}/grad_share"] = float(g_t @ step_grad) / g_sq
        clip = float(getattr(pl_module, "grad_clip", 0.0))
        # clip_grads_with_norm_'s factor: max_norm / (norm + 1e-6), never above 1
        factor = min(1.0, clip / (total_sq**0.5 + 1e-6)) if clip > 0 else 1.0
        self._pending = {t: {k: factor * g for k, g in gs.items()} for t, gs in pending.items()}
        self._steps_before = {id(p): _step(opt, p) for g in opt.param_groups for p in g["params"]}

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        opt = _adam(pl_module)
        params = {id(p): p for g in opt.param_groups for p in g["params"]}
        beta1_of = {id(p): g["betas"][0] for g in opt.param_groups for p in g["params"]}
        stepped = {k for k, p in params.items() if _step(opt, p) > self._steps_before.get(k, 0.0)}
        reached = {k for gs in self._pending.values() for k in gs} & stepped
        for k in reached:  # the parameters Adam moved this step (a skipped or frozen one keeps its moments)
            beta1 = beta1_of[k]
            for term in set(self.moments) | set(self._pending):
                m = self.moments.setdefault(term, {})
                g = self._pending.get(term, {}).get(k)
                prev = m.get(k)
                if prev is None:
                    prev = torch.zeros_like(params[k], dtype=torch.float32)
                m[k] = beta1 * prev + (1 - beta1) * g if g is not None else beta1 * prev
        self._pending = {}
        step = int(getattr(pl_module, "iteration", trainer.global_step))
        if stepped and step % self.log_every_n_steps == 0:
            self.last = {**self.shares(opt), **self._grad_stats}
            if trainer.is_global_zero:
                for logger in trainer.loggers:
                    logger.log_metrics(self.last, step=trainer.global_step - 1)  # the row of the step taken

    def shares(self, opt: torch.optim.Optimizer) -> dict[str, float]:
        """Each term's share of the current Adam step per group (metric name -> value)."""
        out: dict[str, float] = {}
        for i, group in enumerate(opt.param_groups):
            name = group.get("name", str(i))
            beta1, beta2 = group["betas"]
            u: list[Tensor] = []
            u_terms: dict[str, list[Tensor]] = {t: [] for t in self.moments}
            m_sum: list[Tensor] = []
            m_opt: list[Tensor] = []
            for p in group["params"]:
                st = opt.state.get(p)
                if not st or "exp_avg" not in st:
                    continue
                t = _step(opt, p)
                denom = (st["exp_avg_sq"].float() / (1 - beta2**t)).sqrt() + group["eps"]
                corr = 1 - beta1**t
                u.append((st["exp_avg"].float() / corr / denom).flatten())
                zero = torch.zeros_like(p, dtype=torch.float32)
                parts = {term: m.get(id(p), zero) for term, m in self.moments.items()}
                for term, m_t in parts.items():
                    u_terms[term].append((m_t / corr / denom).flatten())
                m_sum.append(sum(parts.values(), zero).flatten())
                m_opt.append(st["exp_avg"].float().flatten())
            if not u:
                continue
            u_all = torch.cat(u)
            u_sq = float(u_all @ u_all)
            if u_sq == 0:
                continue
            for term, pieces in u_terms.items():
                u_t = torch.cat(pieces)
                out[f"train/adam_mix/{name}/{term}/step_share"] = float(u_t @ u_all) / u_sq
                out[f"train/adam_mix/{name}/{term}/step_norm"] = float(u_t.norm()) / u_sq**0.5
            m_all = torch.cat(m_opt)
            out[f"train/adam_mix/{name}/moment_residual"] = float(
                (torch.cat(m_sum) - m_all).norm() / m_all.norm().clamp_min(1e-30)
            )
        return out


def _adam(pl_module: Any) -> torch.optim.Optimizer:
    opt = pl_module.optimizers()
    opt = getattr(opt, "optimizer", opt)  # Lightning's wrapper
    if not isinstance(opt, torch.optim.Adam):
        raise TypeError(f"AdamStepMix needs torch.optim.Adam, the module's optimiser is {type(opt).__name__}")
    return opt


def _step(opt: torch.optim.Optimizer, p: Tensor) -> float:
    st = opt.state.get(p)
    return float(st["step"]) if st and "step" in st else 0.0
