"""Rectified-flow (RF) training loss, sampler and inversion for the image decoder
(docs/design/lzn.md §3.5, §4).

RF time convention (opposite to the latent flow's tau): t=0 is Gaussian noise x0, t=1 is data x1, and the
straight path is ``x_t = t * x1 + (1 - t) * x0`` with constant velocity ``x1 - x0``. The network is called as
``net(x_t, t, latent, labels)`` with ``t`` of shape [B]; the latent (and label) are constant along the ODE.

The ODE ``dx/dt = net(x, t, latent, labels)`` is integrated over [t_min, 1] with ``t_min = 1e-3`` as the
reference: the sampler treats the Gaussian draw as the state at t_min, and the inversion maps a data point
back to t_min and converts the state there into the noise on the straight line (see :func:`rf_invert`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from torch import Tensor

VelocityNet = Callable[[Tensor, Tensor, Tensor | None, Tensor | None], Tensor]
METHODS = ("euler", "rk45")

# Why 1e-5: the reference's RK45 sampler and inversion use rtol = atol = 1e-5 (rk45_sampler.py).
_RK45_TOL = 1e-5


def rf_loss(
    net: VelocityNet,
    x1: Tensor,
    latent: Tensor | None,
    labels: Tensor | None = None,
    generator: torch.Generator | None = None,
    t_min: float = 1e-3,
) -> Tensor:
    """Rectified-flow regression loss on a batch of data.

    Draws ``t ~ U[t_min, 1)`` per sample and ``x0 ~ N(0, I)``, forms ``x_t = t x1 + (1-t) x0`` and regresses
    ``net(x_t, t, latent, labels)`` on ``x1 - x0``.

    Args:
        net: Velocity network ``net(x, t, latent, labels)``.
        x1: [B, ...] data (images in [-1, 1]).
        latent: [B, d] conditioning latents, or ``None``.
        labels: [B] class labels, or ``None``.
        generator: Random generator for ``t`` and ``x0`` (on ``x1``'s device); ``None`` uses the global RNG.
        t_min: Lower end of the time range.

    Returns:
        Scalar loss: the squared error averaged over all non-batch dims, then over the batch (float32 at
        least).
    """
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}")
    if x1.dim() < 2:
        raise ValueError(f"x1 must be [B, ...], got {tuple(x1.shape)}")
    batch = x1.shape[0]
    t = t_min + (1.0 - t_min) * torch.rand(batch, generator=generator, device=x1.device)  # [B] float32
    x0 = torch.randn(x1.shape, generator=generator, device=x1.device, dtype=x1.dtype)
    t_b = t.to(x1.dtype).view(batch, *([1] * (x1.dim() - 1)))  # [B, 1, ..., 1] for broadcasting
    x_t = t_b * x1 + (1.0 - t_b) * x0
    v = net(x_t, t.to(x1.dtype), latent, labels)
    err = (v.float() - (x1 - x0).float()) ** 2  # float32 even when the net runs in bf16
    return err.flatten(1).mean(dim=1).mean()  # [B, C*H*W] -> [B] -> scalar


def _check(method: str, steps: int, t_min: float) -> None:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; choose one of {METHODS}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not 0.0 <= t_min < 1.0:
        raise ValueError(f"t_min must be in [0, 1), got {t_min}")


def _euler(
    net: VelocityNet,
    x: Tensor,
    latent: Tensor | None,
    labels: Tensor | None,
    t_start: float,
    t_end: float,
    steps: int,
) -> Tensor:
    """``steps`` equal Euler steps, ``t_start`` to ``t_end`` (either direction); velocity at step start."""
    h = (t_end - t_start) / steps
    for k in range(steps):
        t = torch.full((x.shape[0],), t_start + k * h, device=x.device, dtype=x.dtype)  # [B]
        x = x + h * net(x, t, latent, labels)
    return x


def _rk45(
    net: VelocityNet,
    x: Tensor,
    latent: Tensor | None,
    labels: Tensor | None,
    t_start: float,
    t_end: float,
) -> Tensor:
    """Adaptive RK45 (scipy ``solve_ivp``) over the whole batch as one float64 state vector.

    The network sees the state cast back to ``x``'s dtype (float32 in practice, as the reference) and a [B]
    time.
    """
    from scipy.integrate import solve_ivp

    shape, dtype, device = x.shape, x.dtype, x.device

    def fun(t: float, y: np.ndarray) -> np.ndarray:
        state = torch.from_numpy(y).to(device=device, dtype=dtype).view(shape)  # [N] -> [B, ...]
        v = net(state, torch.full((shape[0],), t, device=device, dtype=dtype), latent, labels)
        return v.detach().to(device="cpu", dtype=torch.float64).numpy().reshape(-1)  # [B, ...] -> [N]

    y0 = x.detach().to(device="cpu", dtype=torch.float64).numpy().reshape(-1)  # [B, ...] -> [N]
    # Why t_eval=[t_end]: without it solve_ivp keeps the state after every accepted step (tens to hundreds of
    # copies of the whole batch); only the final state is needed.
    sol = solve_ivp(fun, (t_start, t_end), y0, method="RK45", t_eval=[t_end], rtol=_RK45_TOL, atol=_RK45_TOL)
    if not sol.success:
        raise RuntimeError(f"RK45 integration failed: {sol.message}")
    return torch.from_numpy(sol.y[:, -1]).to(device=device, dtype=dtype).view(shape)  # [N] -> [B, ...]


@torch.no_grad()
def rf_sample(
    net: VelocityNet,
    x0: Tensor,
    latent: Tensor | None,
    labels: Tensor | None = None,
    steps: int = 10,
    method: str = "euler",
    t_min: float = 1e-3,
) -> Tensor:
    """Generate data by integrating ``dx/dt = net(x, t, latent, labels)`` from ``t_min`` to 1.

    ``x0`` is used as the state at ``t = t_min`` (the reference starts its samplers from the Gaussian draw at
    t=1e-3). The caller chooses train/eval mode and EMA weights; this function only disables gradients.

    Args:
        net: Velocity network ``net(x, t, latent, labels)``.
        x0: [B, ...] initial noise.
        latent: [B, d] conditioning latents, or ``None``.
        labels: [B] class labels, or ``None``.
        steps: Number of Euler steps of size ``(1 - t_min) / steps`` (ignored by ``"rk45"``).
        method: ``"euler"`` or ``"rk45"`` (adaptive, scipy ``solve_ivp``, rtol = atol = 1e-5).
        t_min: Start time.

    Returns:
        [B, ...] samples at t=1, same dtype and device as ``x0``.
    """
    _check(method, steps, t_min)
    if method == "euler":
        return _euler(net, x0, latent, labels, t_min, 1.0, steps)
    return _rk45(net, x0, latent, labels, t_min, 1.0)


@torch.no_grad()
def rf_invert(
    net: VelocityNet,
    x1: Tensor,
    latent: Tensor | None,
    labels: Tensor | None = None,
    steps: int = 10,
    method: str = "euler",
    t_min: float = 1e-3,
) -> Tensor:
    """Recover the noise that generates ``x1``: integrate the ODE backwards from t=1 to ``t_min``.

    As the reference's reconstruction metric, the state ``x_t`` reached at ``t = t_min`` is converted into the
    noise on the straight line through ``x1``: ``x0 = (x_t - t x1) / (1 - t)``. For a perfectly straight flow
    this is the exact initial noise; otherwise it differs from ``x_t`` by ``O(t_min)``, so
    ``rf_sample(rf_invert(x1))`` reproduces ``x1`` up to the solver error plus a term of order ``t_min``.

    Args:
        net: Velocity network ``net(x, t, latent, labels)``.
        x1: [B, ...] data.
        latent: [B, d] conditioning latents, or ``None``.
        labels: [B] class labels, or ``None``.
        steps: Number of Euler steps of size ``(1 - t_min) / steps`` (ignored by ``"rk45"``).
        method: ``"euler"`` or ``"rk45"`` (adaptive, scipy ``solve_ivp``, rtol = atol = 1e-5).
        t_min: End time of the backward integration.

    Returns:
        [B, ...] noise x0, same dtype and device as ``x1``.
    """
    _check(method, steps, t_min)
    if method == "euler":
        x_t = _euler(net, x1, latent, labels, 1.0, t_min, steps)
    else:
        x_t = _rk45(net, x1, latent, labels, 1.0, t_min)
    return (x_t - t_min * x1) / (1.0 - t_min)
