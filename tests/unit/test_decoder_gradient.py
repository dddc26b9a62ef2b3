"""``decoder_trains_encoder``: whether the decoder loss's gradient reaches the encoder through the latents."""

from __future__ import annotations

import pytest
import torch
from tiny_lzn import NUM_CLASSES, tiny_model


@pytest.mark.parametrize("trains_encoder", [True, False])
def test_decoder_gradient_reaches_the_encoder_only_when_asked(trains_encoder: bool) -> None:
    torch.manual_seed(0)
    model = tiny_model(decoder_trains_encoder=trains_encoder)
    with (
        torch.no_grad()
    ):  # why: the U-Net's output conv starts at zero, so at init no gradient reaches the latent
        for p in model.modality("image").decoder.parameters():
            p.add_(0.05 * torch.randn_like(p))
    batch = {"image": torch.rand(12, 1, 8, 8) * 2 - 1, "label": torch.arange(12) % NUM_CLASSES}
    losses, _ = model.losses(batch, train=True)
    losses["image/decoder"].backward()  # the decoder term alone
    image = model.modality("image")
    encoder = sum(float(p.grad.abs().sum()) for p in image.encoder.parameters() if p.grad is not None)
    decoder = sum(float(p.grad.abs().sum()) for p in image.decoder.parameters() if p.grad is not None)
    assert decoder > 0  # the decoder learns either way
    assert (encoder > 0) is trains_encoder
