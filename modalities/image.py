"""Images: an anchor encoder and an optional latent-conditioned rectified-flow decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from lzn_lightning.modalities.image_legacy import from_flat
from torch import Tensor

from lzn_lightning.modality import Modality
from lzn_lightning.nets import rf_invert, rf_loss, rf_sample
from lzn_lightning.nets.anchor_norm import anchor_norm as anchor_norm_module
from lzn_lightning.nets.factory import (
    check_image_decoder,
    check_image_encoder,
    create_image_decoder,
    create_image_encoder,
    network_name_and_args,
)
from lzn_lightning.user_files import load_images, write_images


class ImageModality(Modality):
    """Images in [-1, 1], layout [B, C, H, W].

    The encoder maps an image to its anchor and the optional decoder is a rectified-flow U-Net whose time
    embedding also takes the LZN latent (and a one-hot label when ``num_classes > 0``), trained with the RF
    velocity loss. Each is a network name, or ``{name: ..., <the network's own arguments>}`` with the
    network's own defaults for the rest (docs/design/networks.md):

    * encoders: ``ncsnpp`` (the paper's NCSN++ encoder, case studies 1 and 3: a latent head on every
      feature map, summed), ``resnet50_gn`` (the paper's GroupNorm ResNet-50 with its 2-layer projection
      head, case study 2), ``tower`` (a smaller multi-scale tower of the same kind, the digits recipes), or
      any timm model name (the backbone plus a 2-layer GroupNorm projection head: ``head_hidden``,
      ``small_input``, ...);
    * decoders: ``ncsnpp`` (the paper's) or ``unet`` (the smaller one of the digits recipes).

    The paper's networks load the authors' released checkpoints (``lzn import-reference``).

    Args:
        channels: Image channels.
        size: Image height and width.
        encoder: The anchor encoder: a name (``"tower"``) or ``{name: tower, width: 32, ...}``; null for none
            (a plain RF baseline).
        decoder: The RF decoder: a name (``"unet"``) or ``{name: ncsnpp, fir: true, ...}``; null for none.
        anchor_norm: How the anchors end, after any encoder: ``"none"`` (the reference tower), ``"group"`` (a
            GroupNorm, 32 groups of at least 8 dimensions, learnable scale, zero bias, as the reference's
            ResNet projection head ends; ``true`` is an alias) or ``"batch"`` (each dimension standardised
            over the batch, then multiplied by ``anchor_scale``; running statistics at evaluation).
            ``"batch"`` keeps the anchors from drifting away from the origin or growing, which made short CPU
            runs diverge (docs/notes/2026-12-01-anchor-drift.md). The timm and ResNet-50 encoders already end
            with a GroupNorm.
        anchor_scale: Per-dimension standard deviation of the anchors with ``anchor_norm="batch"``. Why 0.15:
            the spread an unconstrained tower starts with (anchor norm ~0.8 at d=32); at 1.0 (the latent's
            scale) the gradient norm was ~1e3 from the first step and the digits run barely learned.
        encoder_lr: Learning rate of the encoder.
        decoder_lr: Learning rate of the decoder.
        latent_conditioning: Condition the decoder on the LZN latent (False = plain RF baseline).
        num_classes: If > 0, the decoder is also conditioned on the one-hot label of ``label_field``.
        label_field: Batch field holding the labels the decoder is conditioned on.
        sample_steps: Euler steps of the RF sampler used by ``decode`` (``sample_method="rk45"`` is adaptive).
        sample_method: ``"euler"`` or ``"rk45"``.
    """

    kind: ClassVar[str] = "instance"

    def __init__(
        self,
        channels: int = 1,
        size: int = 8,
        encoder: str | dict[str, Any] | None = "tower",
        decoder: str | dict[str, Any] | None = "unet",
        anchor_norm: bool | str = False,
        anchor_scale: float = 0.15,
        encoder_lr: float = 1e-3,
        decoder_lr: float = 1e-3,
        latent_conditioning: bool = True,
        num_classes: int = 0,
        label_field: str = "label",
        sample_steps: int = 20,
        sample_method: str = "euler",
    ) -> None:
        super().__init__()
        if encoder is None and decoder is None:
            raise ValueError("ImageModality with neither encoder nor decoder has nothing to train")
        anchor_norm_module(anchor_norm, 8, anchor_scale)  # fail at construction on a bad kind or scale
        if sample_method not in ("euler", "rk45"):
            raise ValueError(f"sample_method must be 'euler' or 'rk45', got {sample_method!r}")
        # fail at construction on an unknown network or argument, not at build
        self.encoder_spec = network_name_and_args(encoder, "encoder") if encoder is not None else None
        self.decoder_spec = network_name_and_args(decoder, "decoder") if decoder is not None else None
        if self.encoder_spec is not None:
            check_image_encoder(self.encoder_spec[0], **self.encoder_spec[1])
        if self.decoder_spec is not None:
            check_image_decoder(self.decoder_spec[0], **self.decoder_spec[1])
        self.channels, self.size = channels, size
        self.encoder_lr, self.decoder_lr = encoder_lr, decoder_lr
        self.latent_conditioning = latent_conditioning
        self.num_classes = num_classes
        self.label_field = label_field
        self.sample_steps, self.sample_method = sample_steps, sample_method

    @classmethod
    def upgrade_init_args(cls, init_args: dict[str, Any]) -> dict[str, Any]:
        """The flat arguments of checkpoints written before issue 34 as today's (``image_legacy``)."""
        return from_flat(init_args)

    def build(self, latent_dim: int) -> None:
        """Create the encoder and decoder for a latent of size ``latent_dim``."""
        super().build(latent_dim)
        self.encoder: torch.nn.Module | None = None
        self.anchor_norm: torch.nn.Module | None = None
        if self.encoder_spec is not None:
            name, args = self.encoder_spec
            self.encoder = create_image_encoder(
                name, channels=self.channels, size=self.size, out_dim=latent_dim, **args
            )
            self.anchor_norm = anchor_norm_module(
                self.init_args["anchor_norm"], latent_dim, self.init_args["anchor_scale"]
            )
        self.decoder: torch.nn.Module | None = None
        if self.decoder_spec is not None:
            name, args = self.decoder_spec
            self.decoder = create_image_decoder(
                name,
                channels=self.channels,
                size=self.size,
                latent_dim=latent_dim,
                num_classes=self.num_classes,
                latent_conditioning=self.latent_conditioning,
                **args,
            )

    @property
    def has_encoder(self) -> bool:
        """Whether this image modality produces anchors."""
        return self.encoder is not None

    # ----------------------------------------------------------------------------------------- user files
    input_suffixes: ClassVar[tuple[str, ...]] = (".npy", "/")
    output_suffixes: ClassVar[tuple[str, ...]] = (".png", ".jpg", ".npz", ".npy")

    def read_inputs(self, path: str | Path) -> tuple[Tensor, dict[str, list[str]]]:
        """Images [N, C, H, W] in [-1, 1] from a ``.npy`` of floats in [-1, 1] (the datamodule's layout;
        [N, H, W] for one channel) or a folder of image files (searched recursively, sorted by path, converted
        to ``channels`` and resized + centre-cropped to ``size``), with ``{"file": names}`` for a folder."""
        images, files = load_images(path, self.channels, self.size)
        return images, ({"file": files} if files else {})

    def write_outputs(
        self,
        outputs: Tensor,
        path: str | Path,
        columns: dict[str, Any] | None = None,
        nrow: int | None = None,
        **options: Any,
    ) -> str:
        """Images [N, C, H, W] in [-1, 1] as a PNG/JPG grid of ``nrow`` per row (default sqrt(N)), a
        ``.npz`` (``images`` and the columns in the plural, e.g. ``labels``) or a ``.npy``."""
        write_images(outputs, path, columns, nrow)
        return f"{len(outputs)} samples {list(outputs.shape[1:])}"

    def check_field(self, x: Tensor, name: str) -> None:
        """Images must be float [B, channels, size, size]."""
        expected = (self.channels, self.size, self.size)
        if x.dim() != 4 or tuple(x.shape[1:]) != expected:
            raise ValueError(
                f"field {name!r}: ImageModality expects images "
                f"[B, {self.channels}, {self.size}, {self.size}], got {tuple(x.shape)}; "
                "set model.modalities.<image>.init_args.channels/size to match the data"
            )
        if not x.is_floating_point():
            raise ValueError(f"field {name!r}: images must be float in [-1, 1], got {x.dtype}")

    def check_datamodule(self, datamodule: Any, name: str) -> None:
        """The datamodule's ``image_shape`` must be (channels, size, size)."""
        shape = getattr(datamodule, "image_shape", None)
        expected = (self.channels, self.size, self.size)
        if shape is not None and tuple(shape) != expected:
            raise ValueError(
                f"model.modalities.{name} expects images {expected} but the data gives {tuple(shape)}; set "
                f"model.modalities.{name}.init_args.channels={shape[0]} and size={shape[-1]}"
            )

    def encode(self, x: Tensor) -> Tensor:
        """Anchors [B, d]."""
        if self.encoder is None:
            raise RuntimeError("this ImageModality was built without an encoder (encoder=None)")
        anchors = self.encoder(x)  # [B, d]
        return self.anchor_norm(anchors) if self.anchor_norm is not None else anchors

    def embed(self, x: Tensor) -> Tensor:
        """The representation the encoder declares (``representation``): the anchor (tower, NCSN++) or the
        pre-head feature (timm backbones, GroupNorm ResNet-50)."""
        if self.encoder is not None and self.encoder.representation == "features":
            return self.trunk_features(x)
        return self.encode(x)

    def trunk_features(self, x: Tensor) -> Tensor:
        """The encoder's pre-head feature [B, C] (tower: pooled deepest map; timm: pooled backbone output)."""
        if self.encoder is None:
            raise RuntimeError("this ImageModality was built without an encoder (encoder=None)")
        return self.encoder.features(x)

    @property
    def has_decoder(self) -> bool:
        """Whether the RF decoder exists."""
        return self.decoder is not None

    @property
    def decoder_classes(self) -> int:
        """``num_classes`` when the decoder is label-conditioned (the paper's joint model), else 0."""
        return self.num_classes if self.decoder is not None else 0

    def _labels(self, batch: dict[str, Tensor] | None, labels: Tensor | None) -> Tensor | None:
        if self.num_classes <= 0:
            return None
        if labels is None and batch is not None:
            if self.label_field not in batch:
                raise ValueError(
                    f"the image decoder is label-conditioned (num_classes={self.num_classes}) "
                    f"but the batch has no {self.label_field!r} field"
                )
            labels = batch[self.label_field]
        if labels is None:
            raise ValueError(f"this image decoder is conditioned on labels (num_classes={self.num_classes})")
        return labels.long()

    def decoder_loss(
        self, x: Tensor, latent: Tensor | None, batch: dict[str, Tensor], generator: torch.Generator | None
    ) -> Tensor:
        """Rectified-flow velocity loss, the decoder conditioned on the latent (docs/design/lzn.md §3.1)."""
        assert self.decoder is not None
        return rf_loss(self.decoder, x, latent, self._labels(batch, None), generator=generator)

    def decode(
        self,
        latent: Tensor,
        labels: Tensor | None = None,
        generator: torch.Generator | None = None,
        steps: int | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Images [B, C, H, W] in [-1, 1] from latents [B, d] (and labels when label-conditioned)."""
        if self.decoder is None:
            raise RuntimeError("this ImageModality has no decoder (decoder=None)")
        b = latent.shape[0]
        x0 = torch.randn(b, self.channels, self.size, self.size, generator=generator, device=latent.device)
        out = rf_sample(
            self.decoder,
            x0,
            latent,
            self._labels(None, labels),
            steps=steps or self.sample_steps,
            method=method or self.sample_method,
        )
        return out.clamp(-1.0, 1.0)

    @torch.no_grad()
    def reconstruct(
        self,
        x: Tensor,
        latent: Tensor | None,
        labels: Tensor | None = None,
        steps: int | None = None,
        method: str | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Invert the RF ODE from each image to its noise, then decode again ("Recon", docs/design/lzn.md §4).

        Args:
            x: Images [B, C, H, W] in [-1, 1].
            latent: Their latents [B, d] (None for a decoder not conditioned on latents: plain RF).
            labels: Classes [B] for a label-conditioned decoder.
            steps: Euler steps of inversion and decoding (None: ``sample_steps``).
            method: ``"euler"`` or ``"rk45"`` (None: ``sample_method``).
            **kwargs: Ignored (other modalities' options).
        """
        if self.decoder is None:
            raise RuntimeError("this ImageModality has no decoder (decoder=None)")
        y = self._labels(None, labels)
        steps, method = steps or self.sample_steps, method or self.sample_method
        # x0 [B, C, H, W]: the noise each image came from
        x0 = rf_invert(self.decoder, x, latent, y, steps=steps, method=method)
        return rf_sample(self.decoder, x0, latent, y, steps=steps, method=method).clamp(-1.0, 1.0)

    def param_groups(self) -> list[dict[str, Any]]:
        """``encoder`` and ``decoder`` groups with their own learning rates."""
        groups = []
        if self.encoder is not None:
            params = list(self.encoder.parameters())
            params += list(self.anchor_norm.parameters()) if self.anchor_norm is not None else []
            groups.append({"name": "encoder", "params": params, "lr": self.encoder_lr})
        if self.decoder is not None:
            groups.append(
                {"name": "decoder", "params": list(self.decoder.parameters()), "lr": self.decoder_lr}
            )
        return groups

    def example_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Uniform noise images in [-1, 1]."""
        return torch.rand(batch_size, self.channels, self.size, self.size, generator=generator) * 2 - 1
