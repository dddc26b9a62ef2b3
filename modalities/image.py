"""Images: an anchor encoder and an optional latent-conditioned rectified-flow decoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor

from lzn_lightning.modality import Modality
from lzn_lightning.nets import AnchorTower, LatentUNet, TimmAnchorEncoder, rf_invert, rf_loss, rf_sample
from lzn_lightning.nets.anchor_norm import anchor_norm as anchor_norm_module
from lzn_lightning.nets.ncsnpp import NCSNppDecoder, NCSNppEncoder
from lzn_lightning.nets.resnet_gn import GroupNormResNet
from lzn_lightning.user_files import load_images, write_images


class ImageModality(Modality):
    """Images in [-1, 1], layout [B, C, H, W].

    The encoder maps an image to its anchor: ``encoder="ncsnpp"`` is the paper's NCSN++ encoder (case studies
    1 and 3: a latent head on every feature map, summed), ``"resnet50_gn"`` the paper's GroupNorm ResNet-50
    with its 2-layer projection head (case study 2), ``"tower"`` a smaller multi-scale tower of the same kind
    for the digits recipes; any other name is a timm backbone plus a 2-layer projection head. The optional
    decoder is a rectified-flow U-Net whose time embedding also takes the LZN latent (and a one-hot label when
    ``num_classes > 0``), trained with the RF velocity loss: ``decoder_arch="ncsnpp"`` is the paper's,
    ``"unet"`` the smaller one of the digits recipes. The paper's networks load the authors' released
    checkpoints (``lzn import-reference``).

    Args:
        channels: Image channels.
        size: Image height and width.
        encoder: ``"ncsnpp"``, ``"resnet50_gn"``, ``"tower"``, ``"none"`` (no encoder: plain RF baseline) or a
            timm model name.
        encoder_width: Base channels of the tower / NCSN++ encoder.
        encoder_ch_mult: Channel multipliers per resolution of the tower / NCSN++ encoder.
        encoder_blocks: Residual blocks per resolution of the tower / NCSN++ encoder.
        head_channels: 1x1-conv channels of each tower / NCSN++ head.
        head_hidden: Hidden width of each tower / NCSN++ head, or of the timm projection head.
        head_min_resolution: Smallest feature-map resolution of the tower / NCSN++ encoder that gets a head.
        head_max_resolution: Largest feature-map resolution that gets a head (None: all). The 256-px paper
            encoders keep heads only at 64..4 px.
        anchor_norm: How the tower's anchors end: ``"none"`` (the reference tower), ``"group"`` (a
            GroupNorm, 32 groups of at least 8 dimensions, learnable scale, zero bias, as the reference's
            ResNet projection head ends; ``true`` is an alias) or ``"batch"`` (each dimension standardised
            over the batch, then multiplied by ``anchor_scale``; running statistics at evaluation).
            ``"batch"`` keeps the anchors from drifting away from the origin or growing, which made short CPU
            runs diverge (docs/notes/2026-12-01-anchor-drift.md).
            timm encoders always end with the GroupNorm.
        anchor_scale: Per-dimension standard deviation of the anchors with ``anchor_norm="batch"``. Why 0.15:
            the spread an unconstrained tower starts with (anchor norm ~0.8 at d=32); at 1.0 (the latent's
            scale) the gradient norm was ~1e3 from the first step and the digits run barely learned.
        small_input: For timm ResNets: 3x3 stride-1 stem without max-pool (images of 32 px or less).
        encoder_dropout: Dropout in the tower.
        encoder_lr: Learning rate of the encoder.
        decoder: Whether to build the RF decoder.
        decoder_arch: ``"ncsnpp"`` (the paper's) or ``"unet"``.
        decoder_width: Base channels of the U-Net.
        decoder_ch_mult: Channel multipliers per resolution of the U-Net.
        decoder_blocks: Residual blocks per resolution of the U-Net.
        attn_resolutions: Resolutions with self-attention in the U-Net.
        decoder_dropout: Dropout in the U-Net.
        decoder_lr: Learning rate of the decoder.
        fir: NCSN++ only: resample with the [1,3,3,1] FIR filter (the paper's 256 px networks).
        progressive: NCSN++ only: the input image joins every down level, and the decoder sums per-level image
            predictions (the paper's 256 px networks).
        time_embedding: NCSN++ decoder only: ``"positional"`` (sinusoidal of 999 t, CIFAR) or ``"fourier"``
            (Gaussian Fourier features of log(999 t), 256 px).
        scale_by_sigma: NCSN++ decoder only: divide its output by 999 t, as the paper's 256 px decoders do.
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
        encoder: str = "tower",
        encoder_width: int = 32,
        encoder_ch_mult: tuple[int, ...] = (1, 2),
        encoder_blocks: int = 1,
        head_channels: int = 20,
        head_hidden: int = 200,
        head_min_resolution: int = 1,
        head_max_resolution: int | None = None,
        anchor_norm: bool | str = False,
        anchor_scale: float = 0.15,
        small_input: bool = True,
        encoder_dropout: float = 0.0,
        encoder_lr: float = 1e-3,
        decoder: bool = True,
        decoder_arch: str = "unet",
        decoder_width: int = 32,
        decoder_ch_mult: tuple[int, ...] = (1, 2),
        decoder_blocks: int = 1,
        attn_resolutions: tuple[int, ...] = (),
        decoder_dropout: float = 0.0,
        decoder_lr: float = 1e-3,
        fir: bool = False,
        progressive: bool = False,
        time_embedding: str = "positional",
        scale_by_sigma: bool = False,
        latent_conditioning: bool = True,
        num_classes: int = 0,
        label_field: str = "label",
        sample_steps: int = 20,
        sample_method: str = "euler",
    ) -> None:
        super().__init__()
        if encoder == "none" and not decoder:
            raise ValueError("ImageModality with encoder='none' and decoder=False has nothing to train")
        anchor_norm_module(anchor_norm, 8, anchor_scale)  # fail at construction on a bad kind or scale
        if decoder_arch not in ("unet", "ncsnpp"):
            raise ValueError(f"decoder_arch must be 'unet' or 'ncsnpp', got {decoder_arch!r}")
        if sample_method not in ("euler", "rk45"):
            raise ValueError(f"sample_method must be 'euler' or 'rk45', got {sample_method!r}")
        self.channels, self.size = channels, size
        self.encoder_name = encoder
        self.encoder_lr, self.decoder_lr = encoder_lr, decoder_lr
        self.want_decoder = decoder
        self.latent_conditioning = latent_conditioning
        self.num_classes = num_classes
        self.label_field = label_field
        self.sample_steps, self.sample_method = sample_steps, sample_method

    def build(self, latent_dim: int) -> None:
        """Create the encoder and decoder for a latent of size ``latent_dim``."""
        super().build(latent_dim)
        a = self.init_args
        self.encoder: torch.nn.Module | None
        # what the NCSN++ encoder and the smaller tower share
        trunk = dict(
            width=a["encoder_width"],
            ch_mult=tuple(a["encoder_ch_mult"]),
            num_res_blocks=a["encoder_blocks"],
            head_channels=a["head_channels"],
            head_hidden=a["head_hidden"],
            dropout=a["encoder_dropout"],
        )
        if self.encoder_name == "none":
            self.encoder = None
        elif self.encoder_name == "ncsnpp":
            self.encoder = NCSNppEncoder(
                self.channels,
                self.size,
                latent_dim,
                attn_resolutions=tuple(a["attn_resolutions"]),
                fir=a["fir"],
                progressive=a["progressive"],
                head_resolutions=self._head_resolutions(len(a["encoder_ch_mult"])),
                **trunk,
            )
        elif self.encoder_name == "resnet50_gn":
            self.encoder = GroupNormResNet(out_dim=latent_dim, channels=self.channels)
        elif self.encoder_name == "tower":
            self.encoder = AnchorTower(
                self.channels,
                self.size,
                latent_dim,
                head_min_resolution=a["head_min_resolution"],
                head_max_resolution=a["head_max_resolution"],
                **trunk,
            )
        else:
            self.encoder = TimmAnchorEncoder(
                self.encoder_name,
                channels=self.channels,
                out_dim=latent_dim,
                head_hidden=a["head_hidden"],
                small_input=a["small_input"],
            )
        self.anchor_norm = (
            anchor_norm_module(a["anchor_norm"], latent_dim, a["anchor_scale"])
            if self.encoder_name == "tower"
            else None
        )
        self.decoder = self._build_decoder(latent_dim) if self.want_decoder else None

    def _head_resolutions(self, levels: int) -> list[int]:
        """The encoder's feature-map resolutions within [head_min_resolution, head_max_resolution]."""
        lo, hi = self.init_args["head_min_resolution"], self.init_args["head_max_resolution"]
        every = [self.size // 2**level for level in range(levels)]
        return [r for r in every if r >= lo and (hi is None or r <= hi)]

    def _build_decoder(self, latent_dim: int) -> torch.nn.Module:
        a = self.init_args
        common = dict(
            num_classes=self.num_classes,
            width=a["decoder_width"],
            ch_mult=tuple(a["decoder_ch_mult"]),
            num_res_blocks=a["decoder_blocks"],
            attn_resolutions=tuple(a["attn_resolutions"]),
            dropout=a["decoder_dropout"],
            latent_conditioning=self.latent_conditioning,
        )
        if a["decoder_arch"] == "ncsnpp":
            paper = {k: a[k] for k in ("fir", "progressive", "time_embedding", "scale_by_sigma")}
            return NCSNppDecoder(self.channels, self.size, latent_dim, **common, **paper)
        return LatentUNet(self.channels, self.size, latent_dim, **common)

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
            raise RuntimeError("this ImageModality was built with encoder='none'")
        anchors = self.encoder(x)  # [B, d]
        return self.anchor_norm(anchors) if self.anchor_norm is not None else anchors

    def embed(self, x: Tensor) -> Tensor:
        """The representation: the pre-head feature for timm backbones, the anchor for the tower."""
        if isinstance(self.encoder, (TimmAnchorEncoder, GroupNormResNet)):
            return self.encoder.features(x)
        return self.encode(x)

    def trunk_features(self, x: Tensor) -> Tensor:
        """The encoder's pre-head feature [B, C] (tower: pooled deepest map; timm: pooled backbone output)."""
        if self.encoder is None:
            raise RuntimeError("this ImageModality was built with encoder='none'")
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
            raise RuntimeError("this ImageModality has no decoder (decoder=False)")
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
            raise RuntimeError("this ImageModality has no decoder (decoder=False)")
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
