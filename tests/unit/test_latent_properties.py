"""Statistical, solver and gradient properties of the latent ops."""

from __future__ import annotations

import pytest
import torch

from lzn_lightning.latent import alignment_loss, compute_latent, nearest_anchor, trace_back, velocity


def test_latents_of_spread_anchors_are_standard_normal() -> None:
    n, d = 2048, 8
    anchors = torch.randn(n, d) * 2.0
    z = compute_latent(anchors, anchors, torch.randn(n, d), steps=50, solver="euler")
    assert z.mean(dim=0).abs().max() < 0.12  # 4 standard errors of the mean at n=2048
    cov = torch.cov(z.T)
    assert (cov - torch.eye(d)).abs().max() < 0.15


@pytest.mark.parametrize("solver", ["euler", "dpm++"])
def test_trace_back_returns_to_own_zone(solver: str) -> None:
    anchors = torch.randn(64, 16) * 2.0  # separated zones
    z = compute_latent(anchors, anchors, torch.randn(64, 16), steps=500, solver=solver)
    point, _ = trace_back(z, anchors, steps=500)
    hit = (nearest_anchor(point, anchors) == torch.arange(64)).float().mean()
    assert hit >= 0.95  # reverse Euler discretisation can swap a latent near a zone boundary


def test_dpm_20_steps_agrees_with_euler_1000() -> None:
    anchors = torch.randn(64, 16, dtype=torch.float64)
    noise = torch.randn(64, 16, dtype=torch.float64)
    ref = compute_latent(anchors, anchors, noise, steps=1000, solver="euler", eps=1e-3, tau_end=0.999)
    dpm = compute_latent(anchors, anchors, noise, steps=20, solver="dpm++")
    euler20 = compute_latent(anchors, anchors, noise, steps=20, solver="euler", eps=1e-3, tau_end=0.999)
    err_dpm = ((dpm - ref).norm() / ref.norm()).item()
    err_euler20 = ((euler20 - ref).norm() / ref.norm()).item()
    assert err_dpm < 0.01
    assert err_dpm < err_euler20 / 5  # the higher order pays off at equal NFE


def test_dpm_exact_for_single_anchor() -> None:
    # One anchor: m is constant, the flow is the straight line x_tau = tau*e + (1-tau)*a; 1st-3rd order exact.
    a = torch.randn(1, 6, dtype=torch.float64)
    noise = torch.randn(1, 6, dtype=torch.float64)
    z = compute_latent(a, a, noise, steps=7, solver="dpm++")
    assert torch.allclose(z, 0.999 * noise + 0.001 * a, atol=1e-12)


def test_gradcheck_compute_latent_and_trace_back() -> None:
    anchors = torch.randn(5, 3, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(5, 3, dtype=torch.float64)
    log_w = torch.randn(4, dtype=torch.float64, requires_grad=True)
    labels = torch.randn(4, 3, dtype=torch.float64, requires_grad=True)
    targets = torch.tensor([0, 1, 2, 3, 0])

    def fn(a: torch.Tensor, lw: torch.Tensor, lab: torch.Tensor) -> torch.Tensor:
        z = compute_latent(a, a, noise, steps=4, solver="dpm++", eps=0.05, tau_end=0.95)
        _, logp = trace_back(z, lab, steps=6, log_weights=lw, targets=targets)
        assert logp is not None
        return torch.cat([z.flatten(), logp.flatten()])

    assert torch.autograd.gradcheck(fn, (anchors, log_w, labels), eps=1e-6, atol=1e-5)


def test_gradcheck_euler_with_separate_start() -> None:
    anchors = torch.randn(6, 3, dtype=torch.float64, requires_grad=True)
    start = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    noise = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(
        lambda a, s, e: compute_latent(a, s, e, steps=5, solver="euler", eps=0.1), (anchors, start, noise)
    )


def test_zero_weight_zone_gives_no_nan() -> None:
    anchors = torch.randn(10, 8, requires_grad=True)
    log_w = torch.zeros(10)
    log_w[3] = float("-inf")  # class absent from the batch
    latent = torch.randn(16, 8, requires_grad=True)
    targets = torch.randint(0, 10, (16,))
    targets[targets == 3] = 4
    x = torch.randn(16, 8)
    assert torch.isfinite(velocity(x, anchors, 1e-3, log_w)).all()
    _, logp = trace_back(latent, anchors, steps=20, log_weights=log_w, targets=targets)
    assert logp is not None and torch.isfinite(logp).all()
    alignment_loss(logp, form="log").backward()
    assert torch.isfinite(anchors.grad).all() and torch.isfinite(latent.grad).all()


def test_alignment_loss_forms_and_cutoff() -> None:
    logp = torch.log(torch.tensor([[0.9, 0.9], [0.1, 0.2], [0.5, 0.4], [0.3, 0.1]]))
    # cutoff 0.5 of 4 steps drops rows 0-1; max over rows 2-3 = [0.5, 0.4]
    assert torch.isclose(alignment_loss(logp, 0.5, "prob"), torch.tensor(-0.45))
    assert torch.isclose(alignment_loss(logp, 0.5, "log"), -torch.log(torch.tensor([0.5, 0.4])).mean())
    assert torch.isclose(alignment_loss(logp, 0.0, "prob"), torch.tensor(-0.9))
    with pytest.raises(ValueError, match="unknown alignment form"):
        alignment_loss(logp, form="nll")


def test_bad_shapes_raise_clear_errors() -> None:
    with pytest.raises(ValueError, match="same d"):
        velocity(torch.randn(3, 4), torch.randn(5, 6), 0.5)
    with pytest.raises(ValueError, match="unknown solver"):
        compute_latent(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), solver="rk4")
    with pytest.raises(ValueError, match="tau must be"):
        velocity(torch.randn(3, 4), torch.randn(5, 4), 0.0)


@pytest.mark.parametrize("solver", ["euler", "dpm++"])
@pytest.mark.parametrize("noise_scale", [0.0, 1.0])
def test_self_in_field_is_one_field_per_row(solver: str, noise_scale: float) -> None:
    """The batched bank context equals computing each row through the field [bank; its own anchor]."""
    g = torch.Generator().manual_seed(3)
    bank = torch.randn(40, 8, generator=g, dtype=torch.float64)
    own = torch.randn(12, 8, generator=g, dtype=torch.float64)
    own[:4] = bank[:4] + 0.01 * torch.randn(4, 8, generator=g, dtype=torch.float64)  # close zones
    noise = noise_scale * torch.randn(12, 8, generator=g, dtype=torch.float64)
    rows = torch.cat([
        compute_latent(
            torch.cat([bank, own[i : i + 1]]), own[i : i + 1], noise[i : i + 1], steps=10, solver=solver
        )
        for i in range(len(own))
    ])  # fmt: skip
    batched = compute_latent(bank, own, noise, steps=10, solver=solver, self_in_field=True)
    assert torch.allclose(batched, rows, rtol=1e-10, atol=1e-10)  # the same maths (float64)
    batched32 = compute_latent(
        bank.float(), own.float(), noise.float(), steps=10, solver=solver, self_in_field=True
    )
    assert ((batched32.double() - rows).norm(dim=1) / rows.norm(dim=1)).max() < 1e-3  # float32 rounding only
    # Batch-independent: any split of the rows gives the same latents.
    halves = [compute_latent(bank, own[s], noise[s], steps=10, solver=solver, self_in_field=True)
              for s in (slice(0, 5), slice(5, 12))]  # fmt: skip
    assert torch.allclose(batched, torch.cat(halves), rtol=1e-12, atol=1e-12)
