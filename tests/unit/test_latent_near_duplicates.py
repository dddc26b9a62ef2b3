"""Fields in which anchors nearly coincide (a duplicate image, two dropout passes of one caption, an encoder
that maps many inputs close together): float32 values and gradients of every latent op against float64.

Each field of b = n = 256 holds 8 pairs at separations 1e-1 ... 1e-7 of the anchors' norm and one exact
duplicate (``accuracy.SEPARATIONS``), the other anchors i.i.d. with norm 1 to 100, d = 32 and 200, Euler from
tau = 1e-4. Before the logits were written relative to each row's reference zone, the GEMM form lost the logit
difference of two such anchors to cancellation (|x||a|/tau^2 ~ 1e12 against a difference of ~1): latents off
by up to 1e5 and anchor gradients by up to 1e9 (relative), where the direct form stays at 1e-3.
"""

from __future__ import annotations

import pytest
import torch

from lzn_lightning.latent import accuracy as acc
from lzn_lightning.latent import compute_latent, posterior_mean

# Why 12x (the i.i.d. fields of test_latent_gradients.py take 5x): for two competing zones j, r the
# softmax-mean backward forms <g, a_j - a_r> from the GEMM g @ a^T, with a relative error of
# eps32 * |a| / |a_j - a_r|, where the direct form differences the anchors first. At separations of 1e-5 and
# below that leaves the anchor gradient at 2-10x the direct form's error (10x worst, Euler, d = 200,
# |a| = 100). The defect this guards against was 1e2-1e9x.
FACTOR = 12.0
FLOOR = 1e-5  # as in test_latent_gradients.py: float32 rounding of a value whose direct-form error is ~0


@pytest.fixture(autouse=True)
def _flush_denormals():
    old = torch.set_flush_denormal(True)  # the direct form's exp() of huge negative logits (speed only)
    yield
    torch.set_flush_denormal(old if isinstance(old, bool) else False)


def _check(case: acc.Case) -> None:
    exact = acc.evaluate(case, "ours", torch.float64)
    ours = acc.relative_errors(acc.evaluate(case, "ours", torch.float32), exact)
    direct = acc.relative_errors(acc.evaluate(case, "direct", torch.float32), exact)
    assert any(k.startswith("grad_") for k in ours)
    too_far = {
        key: f"ours {ours[key]:.2e} vs direct float32 {direct[key]:.2e}"
        for key in exact
        if not ours[key] <= FACTOR * direct[key] + FLOOR
    }
    assert not too_far, f"{case.name}: {too_far}"


# d = 200 costs ~6 s a case (the direct form's [256, 256, 200] blocks): the largest norm there, every norm at
# d = 32. The fast suite keeps one case per op and variant (d = 32, norm 100, the hardest), the rest run in
# `make test-slow`.
GEOMETRIES = [(32, 1.0), (32, 10.0), (32, 100.0), (200, 100.0)]


def _params(*cases: tuple) -> list:
    """The cases (..., d, norm) as pytest params, all but d = 32 at norm 100 marked slow."""
    return [c if c[-2:] == (32, 100.0) else pytest.param(*c, marks=pytest.mark.slow) for c in cases]


@pytest.mark.parametrize(("d", "norm"), _params(*GEOMETRIES))
@pytest.mark.parametrize("solver", ["euler", "dpm++"])
def test_compute_latent_near_duplicates_float32(solver: str, d: int, norm: float) -> None:
    _check(acc.near_duplicate_latent_case(solver, b=256, d=d, norm=norm))


# The weighted trace at d = 200 stands for the unweighted one there (one more ~6 s case would add nothing).
TRACES = _params(*((w, d, norm) for w in (False, True) for d, norm in GEOMETRIES if w or d == 32))


@pytest.mark.parametrize(("weighted", "d", "norm"), TRACES)
def test_trace_back_near_duplicates_float32(weighted: bool, d: int, norm: float) -> None:
    _check(acc.near_duplicate_trace_case(b=256, d=d, norm=norm, weighted=weighted))


@pytest.mark.parametrize("tau", [1e-4, 1e-2, 0.5, 1.0])
def test_exact_duplicates_get_exactly_equal_weight(tau: float) -> None:
    g = torch.Generator().manual_seed(0)
    anchors = 10.0 * torch.randn(64, 32, generator=g)
    anchors[7] = anchors[3]
    x = (1 - tau) * anchors[torch.tensor([3, 7, 3, 7, 5])] + tau * torch.randn(5, 32, generator=g)
    _, to_3 = posterior_mean(x, anchors, tau, targets=torch.full((5,), 3))
    _, to_7 = posterior_mean(x, anchors, tau, targets=torch.full((5,), 7))
    assert to_3 is not None and torch.equal(to_3, to_7)
    if tau < 0.5:  # rows at a duplicated zone split their mass between the two copies
        assert torch.allclose(to_3[:4].exp(), torch.full((4,), 0.5), atol=1e-4)


@pytest.mark.parametrize(("d", "norm"), _params(*GEOMETRIES))
@pytest.mark.parametrize("solver", ["euler", "dpm++"])
def test_bank_context_near_duplicates_float32(solver: str, d: int, norm: float) -> None:
    """The bank context (``self_in_field``) with each query at ``SEPARATIONS`` from a bank item, 0 being the
    item itself (a training image classified again): float32 latents against float64 per-row fields."""
    g = torch.Generator().manual_seed(0)
    k = len(acc.SEPARATIONS)
    a = acc.near_duplicate_anchors(64, d, norm, g)
    bank = torch.cat([a[0 : 2 * k : 2], a[2 * k :]])  # one of each pair and the i.i.d. rest [64 - k, d]
    own = a[1 : 2 * k : 2]  # the other of each pair [k, d]
    for noise_scale in (0.0, 1.0):  # 0: classify's default, the zone centres
        noise = noise_scale * torch.randn(k, d, generator=g, dtype=torch.float64)
        exact = torch.cat([
            compute_latent(torch.cat([bank, own[i : i + 1]]), own[i : i + 1], noise[i : i + 1], solver=solver)
            for i in range(k)
        ])  # fmt: skip
        ours = compute_latent(bank.float(), own.float(), noise.float(), solver=solver, self_in_field=True)
        # Why 2e-4 |a| (latents are of size ~sqrt(d)): float32 logits round in proportion to |a|; measured at
        # most 1.3e-4 |a| (Euler, d = 32); float32 GEMM distances put latents off by 1e-2 ... 4 sqrt(d).
        err = (ours.double() - exact).norm(dim=1) / d**0.5  # [k]
        assert float(err.max()) <= 2e-4 * norm, f"noise {noise_scale}: {err.tolist()}"
