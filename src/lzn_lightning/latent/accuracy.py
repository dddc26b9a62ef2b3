"""Accuracy of the latent ops' values and gradients at training geometry, against float64.

Shared by ``tests/unit/test_latent_gradients.py`` (bounds) and ``benchmarks/gradient_accuracy.py`` (tables).

Each *case* is a differentiable function of named inputs, written once against an implementation
(``"ours"``: the O(b·n) ops of this package; ``"direct"``: the materialising [b, n, d] form of
``latent.reference``, run through plain autograd). A case is scored by the relative L2 error of its output and
of the gradient of a fixed random projection of that output with respect to **every** input, in float32,
against the float64 evaluation of our ops (which the tests tie to the float64 direct form at a smaller size).

Why a random projection: ``<out, w>`` with a dense w gives every output entry a gradient path, as a real loss
does, and keeps one backward pass per case.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor

from lzn_lightning.latent.losses import alignment_loss
from lzn_lightning.latent.reference import dpm_forward_direct, euler_forward_direct, trace_back_direct
from lzn_lightning.latent.solvers import _DEFAULT_END, _DEFAULT_EPS, compute_latent
from lzn_lightning.latent.trace import trace_back

Impl = str  # "ours" | "direct"


def _latent(impl: Impl, anchors: Tensor, start: Tensor, noise: Tensor, solver: str, steps: int) -> Tensor:
    if impl == "ours":
        return compute_latent(anchors, start, noise, steps=steps, solver=solver)
    eps, end = _DEFAULT_EPS[solver], _DEFAULT_END[solver]
    x0 = eps * noise + (1.0 - eps) * start
    if solver == "euler":
        return euler_forward_direct(x0, anchors, eps, end, steps, checkpointed=False)
    return dpm_forward_direct(x0, anchors, eps, end, steps)


def _trace(
    impl: Impl, latent: Tensor, anchors: Tensor, steps: int, log_weights: Tensor | None, targets: Tensor
) -> tuple[Tensor, Tensor]:
    fn = trace_back if impl == "ours" else trace_back_direct
    point, logp = fn(latent, anchors, steps, log_weights=log_weights, targets=targets)
    assert logp is not None
    return point, logp


@dataclass
class Case:
    """One function of named inputs, evaluated by either implementation.

    Attributes:
        name: Short label for tables and test ids.
        inputs: Named float64 input tensors (cast per run).
        fn: ``fn(impl, **inputs) -> tuple of output tensors``.
        fixed: Non-differentiable extras passed through (targets).
    """

    name: str
    inputs: dict[str, Tensor]
    fn: Callable[..., tuple[Tensor, ...]]
    fixed: dict[str, Tensor] = field(default_factory=dict)


def compute_latent_case(solver: str, b: int, d: int, scale: float, seed: int = 0, steps: int = 20) -> Case:
    """``compute_latent`` with ``start`` a permutation of the field anchors held as its own input."""
    g = torch.Generator().manual_seed(seed)
    anchors = scale * torch.randn(b, d, generator=g, dtype=torch.float64)
    start = anchors[torch.randperm(b, generator=g)].clone()  # same points, separate leaf (the DDP geometry)
    noise = torch.randn(b, d, generator=g, dtype=torch.float64)

    def fn(impl: Impl, anchors: Tensor, start: Tensor, noise: Tensor) -> tuple[Tensor, ...]:
        return (_latent(impl, anchors, start, noise, solver, steps),)

    return Case(
        f"compute_latent[{solver},d={d},scale={scale}]",
        {"anchors": anchors, "start": start, "noise": noise},
        fn,
    )


def trace_back_case(
    b: int, n: int, d: int, scale: float, weighted: bool, steps: int = 20, seed: int = 0
) -> Case:
    """``trace_back`` of Gaussian latents into a field of ``n`` anchors, targets a permutation (or
    classes)."""
    g = torch.Generator().manual_seed(seed)
    inputs = {
        "latent": torch.randn(b, d, generator=g, dtype=torch.float64),
        "anchors": scale * torch.randn(n, d, generator=g, dtype=torch.float64),
    }
    if weighted:
        inputs["log_weights"] = torch.log(torch.rand(n, generator=g, dtype=torch.float64) + 0.1)
    targets = torch.randint(0, n, (b,), generator=g) if n != b else torch.randperm(b, generator=g)

    def fn(
        impl: Impl, latent: Tensor, anchors: Tensor, log_weights: Tensor | None = None, *, targets: Tensor
    ):
        return _trace(impl, latent, anchors, steps, log_weights, targets)

    tag = "weighted" if weighted else "unweighted"
    return Case(f"trace_back[n={n},{tag},d={d},scale={scale}]", inputs, fn, {"targets": targets})


def two_view_case(
    d: int, scale: float, form: str, b: int = 256, noise_scale: float = 0.45, seed: int = 0
) -> Case:
    """The representation loss: view-1 latents (Euler, 20 steps) traced into view-2 zones, ``form`` loss."""
    g = torch.Generator().manual_seed(seed)
    view1 = scale * torch.randn(b, d, generator=g, dtype=torch.float64)
    # A second view is a nearby point: 30% of the anchors' own spread away.
    view2 = view1 + 0.3 * scale * torch.randn(b, d, generator=g, dtype=torch.float64)
    noise = noise_scale * torch.randn(b, d, generator=g, dtype=torch.float64)
    targets = torch.arange(b)

    def fn(impl: Impl, view1: Tensor, view2: Tensor, noise: Tensor, *, targets: Tensor) -> tuple[Tensor, ...]:
        z = _latent(impl, view1, view1, noise, "euler", 20)
        _, logp = _trace(impl, z, view2, 20, None, targets)
        return (alignment_loss(logp, cutoff=0.2, form=form),)

    return Case(
        f"two_view[{form},d={d},scale={scale}]",
        {"view1": view1, "view2": view2, "noise": noise},
        fn,
        {"targets": targets},
    )


def joint_label_case(d: int, scale: float, form: str, b: int = 256, classes: int = 10, seed: int = 0) -> Case:
    """The joint-model label loss: image latents (dpm++) traced 100 steps into weighted label zones."""
    g = torch.Generator().manual_seed(seed)
    images = scale * torch.randn(b, d, generator=g, dtype=torch.float64)
    labels = scale * torch.randn(classes, d, generator=g, dtype=torch.float64)
    noise = torch.randn(b, d, generator=g, dtype=torch.float64)
    targets = torch.randint(0, classes, (b,), generator=g)
    log_w = torch.log(torch.bincount(targets, minlength=classes).double().clamp_min(1) / b)

    def fn(
        impl: Impl, images: Tensor, labels: Tensor, noise: Tensor, *, targets: Tensor
    ) -> tuple[Tensor, ...]:
        z = _latent(impl, images, images, noise, "dpm++", 20)
        _, logp = _trace(impl, z, labels, 100, log_w.to(z.dtype), targets)
        return (alignment_loss(logp, cutoff=0.2, form=form),)

    return Case(
        f"joint_label[{form},d={d},scale={scale}]",
        {"images": images, "labels": labels, "noise": noise},
        fn,
        {"targets": targets},
    )


# Separations of the near-duplicate pairs, relative to the anchors' norm: from two clearly distinct zones down
# to float32's resolution of a coordinate (1e-7) and an exact duplicate (0).
SEPARATIONS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6, 1e-7, 0.0)


def near_duplicate_anchors(
    n: int, d: int, norm: float, generator: torch.Generator, separations: tuple[float, ...] = SEPARATIONS
) -> Tensor:
    """n i.i.d. anchors of typical norm ``norm`` [n, d] (float64) in which anchor 2k+1 lies at
    ``separations[k] * |a_2k|`` from anchor 2k in a random direction (0: an exact copy).

    What a duplicate image, two dropout passes of one caption, or an encoder that maps many inputs close
    together put into a field.
    """
    if 2 * len(separations) > n:
        raise ValueError(f"{len(separations)} pairs need n >= {2 * len(separations)}, got {n}")
    a = norm / d**0.5 * torch.randn(n, d, generator=generator, dtype=torch.float64)
    for k, sep in enumerate(separations):
        direction = torch.randn(d, generator=generator, dtype=torch.float64)
        a[2 * k + 1] = a[2 * k] + sep * a[2 * k].norm() * direction / direction.norm()
    return a


def near_duplicate_latent_case(
    solver: str, b: int, d: int, norm: float, seed: int = 0, steps: int = 20
) -> Case:
    """``compute_latent`` of a field with near-duplicate pairs (``near_duplicate_anchors``), start =
    anchors."""
    g = torch.Generator().manual_seed(seed)
    anchors = near_duplicate_anchors(b, d, norm, g)
    noise = torch.randn(b, d, generator=g, dtype=torch.float64)

    def fn(impl: Impl, anchors: Tensor, noise: Tensor) -> tuple[Tensor, ...]:
        return (_latent(impl, anchors, anchors, noise, solver, steps),)

    return Case(f"near_dup_latent[{solver},d={d},|a|={norm}]", {"anchors": anchors, "noise": noise}, fn)


def near_duplicate_trace_case(
    b: int, d: int, norm: float, weighted: bool, seed: int = 0, steps: int = 20
) -> Case:
    """``trace_back`` into a field with near-duplicate pairs, each latent aimed at its own zone, from where it
    lands: its anchor's latent (euler, detached) so that the log posterior of the target is not ~-inf."""
    g = torch.Generator().manual_seed(seed)
    anchors = near_duplicate_anchors(b, d, norm, g)
    noise = torch.randn(b, d, generator=g, dtype=torch.float64)
    latent = compute_latent(anchors, anchors, noise, steps=steps, solver="euler")
    inputs = {"latent": latent, "anchors": anchors}
    if weighted:
        inputs["log_weights"] = torch.log(torch.rand(b, generator=g, dtype=torch.float64) + 0.1)
    targets = torch.arange(b)

    def fn(
        impl: Impl, latent: Tensor, anchors: Tensor, log_weights: Tensor | None = None, *, targets: Tensor
    ):
        return _trace(impl, latent, anchors, steps, log_weights, targets)

    tag = "weighted" if weighted else "unweighted"
    return Case(f"near_dup_trace[{tag},d={d},|a|={norm}]", inputs, fn, {"targets": targets})


def evaluate(case: Case, impl: Impl, dtype: torch.dtype) -> dict[str, Tensor]:
    """Outputs and the gradients of ``sum_k <out_k, w_k>`` (fixed random w_k) w.r.t. every input."""
    leaves = {k: v.to(dtype).requires_grad_(True) for k, v in case.inputs.items()}
    outs = case.fn(impl, **leaves, **case.fixed)
    g = torch.Generator().manual_seed(1234)
    loss = sum((o * torch.randn(o.shape, generator=g, dtype=torch.float64).to(dtype)).sum() for o in outs)
    grads = torch.autograd.grad(loss, list(leaves.values()))
    result = {f"out{i}": o.detach() for i, o in enumerate(outs)}
    result.update({f"grad_{k}": gr for k, gr in zip(leaves, grads, strict=True)})
    return result


def relative_errors(approx: dict[str, Tensor], exact: dict[str, Tensor]) -> dict[str, float]:
    """Relative L2 error per entry, ``|approx - exact| / |exact|`` in float64 (non-finite -> inf)."""
    errors = {}
    for key, ref in exact.items():
        diff = (approx[key].double() - ref).norm()
        errors[key] = float(diff / ref.norm().clamp_min(1e-300)) if torch.isfinite(diff) else float("inf")
    return errors
