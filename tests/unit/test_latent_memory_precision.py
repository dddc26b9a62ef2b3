"""Memory is O(b·n + n²) (never b·n·d, nothing [b, n] per step), the bank context's work per step is O(b·n)
plus its GEMMs, and the latent ops ignore the caller's autocast/TF32 settings."""

from __future__ import annotations

import math

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from lzn_lightning.latent import compute_latent, trace_back


def _saved(fn) -> dict[int, int]:  # type: ignore[no-untyped-def]
    """Bytes of every distinct storage autograd saves for backward while running fn(), by storage pointer
    (a tensor that every step saves, such as the anchors or their pairwise distances, is held once)."""
    sizes: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        sizes[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sizes


def test_backward_saves_no_bn_blocks_and_nothing_steps_times_bn() -> None:
    b = n = 512
    d = 16
    anchors = torch.randn(n, d, requires_grad=True)
    noise = torch.randn(b, d)
    for steps in (5, 40):
        sizes = _saved(
            lambda steps=steps: compute_latent(anchors, anchors, noise, steps=steps, solver="dpm++")
        )
        # One [n, n] block: the anchors' pairwise distances, computed once for all steps ...
        assert sorted(sizes.values())[-1] == 4 * n * n
        # ... every other saved tensor is a [b, d]/[n, d] state (the anchors once in float64, for that
        # distance GEMM) or a vector ...
        assert sorted(sizes.values())[-2] <= 8 * n * d
        # ... and what grows with steps is O(steps·b·d), never O(steps·b·n).
        assert sum(sizes.values()) <= steps * 16 * b * d * 4 + 4 * n * n


def test_latent_ops_run_float32_under_bf16_autocast() -> None:
    anchors = torch.randn(64, 8)
    noise = torch.randn(64, 8)
    ref = compute_latent(anchors, anchors, noise, steps=10, solver="dpm++")
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = compute_latent(anchors.bfloat16(), anchors.bfloat16(), noise, steps=10, solver="dpm++")
        point, logp = trace_back(out, anchors, steps=10, targets=torch.zeros(64, dtype=torch.long))
    assert out.dtype == torch.float32 and point.dtype == torch.float32 and logp is not None
    assert logp.dtype == torch.float32
    # bf16 only rounds the inputs; the flow itself is float32
    assert torch.allclose(
        out, compute_latent(anchors.bfloat16().float(), anchors.bfloat16().float(), noise, 10, "dpm++")
    )
    assert (out - ref).abs().max() < 0.1


def test_matmul_precision_setting_is_restored() -> None:
    torch.set_float32_matmul_precision("medium")
    try:
        compute_latent(torch.randn(4, 3), torch.randn(4, 3), torch.randn(4, 3), steps=2)
        assert torch.get_float32_matmul_precision() == "medium"
    finally:
        torch.set_float32_matmul_precision("highest")


_Output = tuple[tuple[int, ...], torch.dtype]


class _OpOutputs(TorchDispatchMode):
    """Records (shape, dtype) of every tensor an aten op writes while active (views write nothing)."""

    def __init__(self) -> None:
        super().__init__()
        self.outputs: list[_Output] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
        out = func(*args, **(kwargs or {}))
        if not func.is_view:
            tensors = [t for t in tree_flatten(out)[0] if isinstance(t, torch.Tensor)]
            self.outputs += [(tuple(t.shape), t.dtype) for t in tensors]
        return out


def _bank_flow_outputs(solver: str, steps: int, b: int, n: int, d: int) -> list[_Output]:
    """(shape, dtype) of every tensor written by one bank-context flow (no grad, as inference runs it)."""
    g = torch.Generator().manual_seed(0)
    bank = 3.0 * torch.randn(n, d, generator=g)
    own = 3.0 * torch.randn(b, d, generator=g)
    own[0] = bank[5]  # a bank item identical to the query: the case the distances must get right
    with torch.no_grad(), _OpOutputs() as ops:
        compute_latent(bank, own, torch.zeros(b, d), steps=steps, solver=solver, self_in_field=True)
    return ops.outputs


@pytest.mark.parametrize("solver", ["euler", "dpm++"])
def test_bank_flow_forms_no_bnd_tensor_and_its_distances_once(solver: str) -> None:
    """The bank context (``self_in_field``, ``model.classify``'s default) costs O(b·n) per step like a shared
    field: it never forms the [c, n, d] differences of each row's own anchor to the bank (which made it 10x
    slower than the batch context), and the distances own-to-bank (its only float64 work) once per flow."""
    b, n, d = 64, 1000, 16  # b·n·d = 16 b·n: a difference tensor stands out from every legitimate block
    runs = {steps: _bank_flow_outputs(solver, steps, b, n, d) for steps in (10, 20)}
    numels = {steps: [math.prod(shape) for shape, _ in out] for steps, out in runs.items()}
    # No tensor larger than one [b, n+1] logits block (the bank's n zones and the row's own) ...
    assert max(numels[20]) <= b * (n + 1), max(zip(numels[20], runs[20], strict=True))
    # ... and a step writes a few such blocks, nothing that grows with d beyond the [b, d]/[n, d] states.
    per_step = (sum(numels[20]) - sum(numels[10])) / 10
    assert per_step <= 4 * b * (n + 1) + 12 * (b + n) * d, per_step / (b * n)
    wide = {steps: [s for s, dtype in out if dtype == torch.float64 and math.prod(s) >= b * n]
            for steps, out in runs.items()}  # fmt: skip
    assert wide[10] == wide[20] != [], wide[20]
