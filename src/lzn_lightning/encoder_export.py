"""``lzn export --part encoder``: a field's encoder alone, as a file plain PyTorch loads (no lzn-lightning).

The file maps a float32 batch of the field's items, as ``lzn embed`` feeds them to the model (images
[N, C, H, W] in [-1, 1]), to ``lzn embed``'s features [N, D], with the EMA weights. Two formats:

* ``torchscript`` (``.pt``): ``torch.jit.load(path)(x)``;
* ``export`` (``.pt2``, ``torch.export``): ``torch.export.load(path).module()(x)``.

Both are traced on an example batch of the modality (``example_batch``), with the batch size free.
"""

from __future__ import annotations

import copy
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

FORMATS = {"torchscript": ".pt", "export": ".pt2"}
# Why 3: an example batch of 1 or 2 lets the tracer fold a size-1 or broadcast-like dimension into a constant.
_EXAMPLE_ROWS = 3


class EmbedOnly(nn.Module):
    """``modality.embed`` of a copy of one modality (the EMA weights, in eval mode), as a plain module."""

    def __init__(self, modality: nn.Module) -> None:
        super().__init__()
        self.modality = modality

    def forward(self, x: Tensor) -> Tensor:
        """Features [N, D] of a batch [N, ...] in the field's layout."""
        return self.modality.embed(x)


def encoder_module(model: Any, field: str | None = None) -> tuple[nn.Module, Tensor, str]:
    """(a copy of the field's modality that embeds, with the inference weights; an example batch; the field).

    The copy is taken with the EMA weights swapped in, so it keeps them after the swap ends.
    """

    field = model.routing.source_field(field)
    modality = model.modality(field)
    if modality.kind != "instance" or not modality.has_encoder:
        raise ValueError(f"field {field!r} has no encoder to export")
    with model.inference():
        module = EmbedOnly(copy.deepcopy(modality)).eval().requires_grad_(False)
    example = modality.example_batch(_EXAMPLE_ROWS, generator=torch.Generator().manual_seed(0))
    if not example.is_floating_point():
        raise ValueError(
            f"field {field!r} takes {example.dtype} items (e.g. token ids of text), which a traced file does "
            "not tokenise: only image encoders are exported"
        )
    return module.cpu(), example.float().cpu(), field


def export_encoder(model: Any, out: Path, fmt: str = "torchscript", field: str | None = None) -> str:
    """Write the encoder file; returns a one-line summary.

    Args:
        model: A loaded ``LZNLightningModule``.
        out: The file to write (``.pt`` for torchscript, ``.pt2`` for export).
        fmt: ``"torchscript"`` or ``"export"``.
        field: The instance field (None: the encoded field, ``latent_from``).
    """
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    if out.suffix != FORMATS[fmt]:
        raise ValueError(f"--out of --format {fmt} must end in {FORMATS[fmt]}, got {out}")
    module, example, field = encoder_module(model, field)
    out.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad():
        if fmt == "torchscript":
            with warnings.catch_warnings():
                # The encoders' input-shape checks read sizes as Python values: the tracer warns that they
                # become constants, which is right (a file is for one image size; the batch size stays free).
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                warnings.simplefilter("ignore", FutureWarning)  # torch.jit warns that it is deprecated (2.14)
                traced = torch.jit.trace(module, example, check_trace=False)
            traced.save(str(out))
        else:
            batch = torch.export.Dim("batch", min=1)
            program = torch.export.export(module, (example,), dynamic_shapes={"x": {0: batch}})
            torch.export.save(program, str(out))
        dims = list(module(example).shape[1:])
    shape = ["N", *example.shape[1:]]
    return (
        f"wrote the {field!r} encoder ({fmt}: float32 {shape} in [-1, 1] -> features [N, {dims[0]}]) to {out}"
    )
