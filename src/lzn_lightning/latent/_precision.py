"""Numerical guard rails shared by every latent op.

The zone logits carry a 1/tau^2 factor (up to 1e8 at the Euler start), so a TF32 or bf16 GEMM turns rounding
error into logit errors of tens of nats (docs/design/lzn.md §7.4). Every latent op therefore runs in float32
(or float64 when the caller passes float64, e.g. gradcheck) with autocast off and TF32 off, whatever the
caller's precision settings are.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator

import torch


def compute_dtype(*tensors: torch.Tensor | None) -> torch.dtype:
    """The dtype latent maths runs in: float64 if any input is float64, else float32."""
    if any(t is not None and t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


@functools.cache
def _cuda_available() -> bool:
    """``torch.cuda.is_available()``, asked once: it probes the driver on every call (~0.2 ms without a
    GPU)."""
    return torch.cuda.is_available()


_active = threading.local()  # per thread: autograd may run backward in another thread than forward


@contextlib.contextmanager
def full_precision() -> Iterator[None]:
    """Disable autocast (every device type) and TF32 matmuls for the duration of the block.

    Re-entering it inside an active block of the same thread does nothing (the settings already hold): the
    latent ops nest it several deep, ~800 entries per training step of the quick start.
    """
    if getattr(_active, "depth", 0):
        _active.depth += 1
        try:
            yield
        finally:
            _active.depth -= 1
        return
    _active.depth = 1
    old_matmul = torch.backends.cuda.matmul.allow_tf32
    old_cudnn = torch.backends.cudnn.allow_tf32
    old_precision = torch.get_float32_matmul_precision()
    try:
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
        torch.set_float32_matmul_precision("highest")
        with torch.autocast("cpu", enabled=False):
            if _cuda_available():
                with torch.autocast("cuda", enabled=False):
                    yield
            else:
                yield
    finally:
        _active.depth = 0
        torch.backends.cuda.matmul.allow_tf32 = old_matmul
        torch.backends.cudnn.allow_tf32 = old_cudnn
        torch.set_float32_matmul_precision(old_precision)
