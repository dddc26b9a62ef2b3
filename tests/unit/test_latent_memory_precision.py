"""Memory is O(b·n + n²) (never b·n·d, nothing [b, n] per step) and the latent ops ignore the caller's
autocast/TF32 settings."""

from __future__ import annotations

import torch

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
        sizes = _saved(lambda: compute_latent(anchors, anchors, noise, steps=steps, solver="dpm++"))
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
