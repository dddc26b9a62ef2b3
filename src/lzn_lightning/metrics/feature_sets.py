"""Feature networks that return several feature sets at once, for the paper's generation metrics.

* :class:`InceptionFeatureSet`: pool3, spatial (``mixed_6/conv``) and softmax features from one pass of the
  2015-12-05 Inception network that clean-fid uses (its TorchScript port, ``inception-2015-12-05.pt``).
* :class:`CLIPImageEmbeddings`: L2-normalised CLIP ViT-L/14@336 image embeddings for CMMD (optional extra
  ``pip install lzn-lightning[cmmd]``, which brings Hugging Face ``transformers``).
* :func:`feature_sets_of`: runs any such network (anything returning a dict of [B, ...] tensors) over
  images in batches.

Both networks load their weights on first use (clean-fid downloads the Inception file, ``transformers`` the
CLIP model through the Hugging Face cache); without network each raises a one-line error. Tests and offline
users pass a stand-in module with the same structure.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

INCEPTION_SIZE = 299  # the input size of the 2015-12-05 Inception graph
# The layers of the TorchScript port, in the order its ``layers.forward`` applies them (clean-fid calls that
# on images already resized to 299 and scaled to [-1, 1]); pool2 is the global average pool, "pool_3" in TF.
INCEPTION_TRUNK = (
    "conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1",
    "mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6",
    "mixed_7", "mixed_8", "mixed_9", "mixed_10", "pool2",
)  # fmt: skip
_RESIZE_WHAT = {"clean": "clean-fid's PIL bicubic resize", "tensorflow": "the TF graph's bilinear resize"}
SPATIAL_CHANNELS = 7  # sFID keeps the first 7 of mixed_6/conv's 192 channels: 7*17*17 = 2023, close to 2048

CMMD_CLIP_MODEL = "openai/clip-vit-large-patch14-336"  # the CMMD paper's embedding model
# CLIP's published preprocessing constants (the model's CLIPImageProcessor has the same), used with a
# stand-in model; the real model's processor config is read when it is loaded.
CLIP_IMAGE_SIZE = 336
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


def to_uint8_rgb(images: Tensor) -> Tensor:
    """Images [B, C, H, W] in [-1, 1] (C = 1 or 3) as uint8 RGB [B, 3, H, W], rounded as a saved PNG."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, C, H, W] with C = 1 or 3, got shape {tuple(images.shape)}")
    u8 = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return u8.expand(-1, 3, -1, -1) if u8.shape[1] == 1 else u8


def clean_resize(u8: Tensor, size: int = INCEPTION_SIZE) -> Tensor:
    """clean-fid's "clean" resize: PIL bicubic of each channel as float32 (no re-quantisation).

    Args:
        u8: uint8 [B, 3, H, W].
        size: Output side.

    Returns:
        float32 [B, 3, size, size] in about 0..255 (bicubic can overshoot slightly), on the CPU.
    """
    from cleanfid.resize import make_resizer

    resize = make_resizer("PIL", False, "bicubic", (size, size))  # = build_resizer("clean") at 299
    hwc = u8.permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3] as clean-fid expects
    return torch.from_numpy(np.stack([resize(img) for img in hwc])).permute(0, 3, 1, 2).float()


def tensorflow_bilinear_resize(x: Tensor, size: int = INCEPTION_SIZE) -> Tensor:
    """The TF graph's own bilinear resize (TF1 ``ResizeBilinear``, no half-pixel centres), as the TorchScript
    port does it when it is given other sizes (clean-fid's "legacy_tensorflow" mode).

    Output pixel j samples input position j * in / out, edges clamped.

    Args:
        x: float [B, C, H, W] (0..255).
        size: Output side.
    """
    b, c, h, w = x.shape
    theta = torch.eye(2, 3, dtype=torch.float32, device=x.device).repeat(b, 1, 1)
    # Shift the align_corners=False sampling grid so that it lands on j * in / out instead of pixel centres.
    theta[:, 0, 2] = 1.0 / w - 1.0 / size
    theta[:, 1, 2] = 1.0 / h - 1.0 / size
    grid = F.affine_grid(theta, [b, c, size, size], align_corners=False)
    return F.grid_sample(x.float(), grid, mode="bilinear", padding_mode="border", align_corners=False)


def load_clean_fid_inception(folder: str | None = None) -> nn.Module:
    """clean-fid's TorchScript ``inception-2015-12-05.pt`` (downloaded into ``folder`` unless already there).

    Args:
        folder: Where the file is (None: clean-fid's own choice, /tmp on Linux), shared with
            :class:`~lzn_lightning.metrics.InceptionFeatures`.
    """
    from cleanfid.inception_torchscript import InceptionV3W

    folder = folder or ("./" if platform.system() == "Windows" else "/tmp")
    try:
        return InceptionV3W(folder, download=True).base
    except Exception as err:  # clean-fid raises bare download errors
        raise RuntimeError(
            f"clean-fid could not load inception-2015-12-05.pt from {folder} ({_first_line(err)}); "
            "copy the file there from a machine with network, or pass network= a loaded module"
        ) from err


class InceptionFeatureSet(nn.Module):
    """pool3, spatial and softmax features of images from clean-fid's 2015-12-05 Inception, in one pass.

    ``forward(images [B, C, H, W] in [-1, 1])`` returns

    * ``"pool3"`` [B, 2048]: the pool_3 features of FID and precision/recall;
    * ``"spatial"`` [B, 2023]: the first 7 channels of ``mixed_6/conv`` (17 x 17), flattened in the TF graph's
      height, width, channel order (sFID);
    * ``"probs"`` [B, 1008]: softmax of ``pool3 @ W`` with the network's 1008-way output weight and **no
      bias** (the TF graph's ``softmax/logits/MatMul``, as the consistency-models evaluator and StyleGAN's IS
      take it; classes 1000-1007 are unused by ImageNet but kept).

    Preprocessing: images are quantised to uint8 (as saved PNGs), grey images repeated to RGB, resized to 299
    and scaled by (x - 128) / 128. ``resize="clean"`` is clean-fid's PIL bicubic (its FID's default);
    ``resize="tensorflow"`` is the TF graph's own bilinear resize, which the consistency-models evaluator the
    LZN authors used applies inside the graph.

    Args:
        device: Where the network runs.
        resize: ``"clean"`` or ``"tensorflow"`` (see above).
        network: The loaded TorchScript module (or any module with its ``layers.<name>`` and ``output``
            structure, e.g. a stand-in in tests); None loads clean-fid's (:func:`load_clean_fid_inception`).
        weights_folder: Where clean-fid keeps ``inception-2015-12-05.pt`` when ``network`` is None.

    Attributes:
        name: Short id of the network and resize (e.g. to key cached real-image features).
        description: One line saying what the features are, for logs and tables.
    """

    def __init__(
        self,
        device: torch.device | str = "cpu",
        resize: str = "clean",
        network: nn.Module | None = None,
        weights_folder: str | None = None,
    ) -> None:
        super().__init__()
        if resize not in ("clean", "tensorflow"):
            raise ValueError(f"resize must be 'clean' or 'tensorflow', got {resize!r}")
        self.resize = resize
        self.network = (network if network is not None else load_clean_fid_inception(weights_folder)).eval()
        layers = getattr(self.network, "layers", None)
        missing = [n for n in INCEPTION_TRUNK if not hasattr(layers, n)]
        if missing or not hasattr(layers.mixed_6, "conv") or not hasattr(self.network, "output"):
            raise ValueError(
                "network must have the structure of clean-fid's inception-2015-12-05.pt (layers.conv ... "
                f"layers.pool2, layers.mixed_6.conv, output); missing layers {missing or ''}"
            )
        self.network.to(device)
        self.name = f"inception-2015-12-05-{resize}"  # e.g. a key for cached real-image features
        self.description = (
            f"clean-fid Inception 2015-12-05 (TorchScript): pool3 2048-d, mixed_6/conv[:7] 2023-d, softmax "
            f"over 1008 classes without bias; uint8, {_RESIZE_WHAT[resize]} to 299"
        )

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The three feature sets of images [B, C, H, W] in [-1, 1] (C = 1 or 3), float32."""
        u8 = to_uint8_rgb(images)
        device = self.network.output.weight.device
        if self.resize == "clean":
            x = clean_resize(u8).to(device)
        else:
            x = tensorflow_bilinear_resize(u8.to(device).float())
        h = (x - 128.0) / 128.0  # the graph's input scaling: [B, 3, 299, 299] in [-1, 1]
        layers = self.network.layers
        spatial = h
        for name in INCEPTION_TRUNK:
            if name == "mixed_6":
                spatial = layers.mixed_6.conv(h)  # [B, 192, 17, 17], the TF graph's mixed_6/conv
            h = getattr(layers, name)(h)
        pool3 = h.reshape(len(h), -1)  # [B, 2048, 1, 1] -> [B, 2048]
        logits = pool3 @ self.network.output.weight.T  # [B, 1008], no bias (see the class docstring)
        first = spatial[:, :SPATIAL_CHANNELS].permute(0, 2, 3, 1)  # [B, 17, 17, 7], NHWC as TF's [..., :7]
        return {
            "pool3": pool3.float(),
            "spatial": first.reshape(len(first), -1).float(),  # [B, 7*17*17]
            "probs": logits.float().softmax(1),
        }


def _first_line(err: BaseException) -> str:
    """``Type: message`` of an exception, cut to its first line (library errors often span several)."""
    lines = str(err).strip().splitlines()
    return f"{type(err).__name__}: {lines[0] if lines else ''}"


def _load_clip(model_name: str) -> tuple[nn.Module, int, Sequence[float], Sequence[float]]:
    """CLIP vision tower with projection and its preprocessing constants, via Hugging Face transformers."""
    try:
        from transformers import CLIPImageProcessor, CLIPVisionModelWithProjection
    except ImportError as err:
        raise ImportError(
            "CMMD's CLIP embeddings need Hugging Face transformers: pip install lzn-lightning[cmmd]"
        ) from err
    try:
        model = CLIPVisionModelWithProjection.from_pretrained(model_name)
        processor = CLIPImageProcessor.from_pretrained(model_name)
    except Exception as err:  # network / cache errors of several types
        raise RuntimeError(
            f"could not load {model_name} ({_first_line(err)}); download it once with network "
            "(it is then read from the Hugging Face cache), or pass model= a loaded module"
        ) from err
    size = int(processor.crop_size["height"])
    return model, size, tuple(processor.image_mean), tuple(processor.image_std)


class CLIPImageEmbeddings(nn.Module):
    """L2-normalised CLIP image embeddings, preprocessed as the published CMMD code does.

    ``forward(images [B, C, H, W] in [-1, 1])`` returns ``{"clip": [B, D]}`` (D = 768 for ViT-L/14@336),
    each row of unit length. Preprocessing as CMMD's reference (google-research ``cmmd``) does for image
    files: uint8 images, centre crop to a square, PIL bicubic resize to the model's size (336) kept as uint8,
    scale to [0, 1], normalise by CLIP's mean and std.

    Args:
        model_name: Hugging Face model id (the CMMD paper's: ``openai/clip-vit-large-patch14-336``).
        device: Where the model runs.
        model: A loaded module mapping ``pixel_values`` [B, 3, S, S] to an output with ``image_embeds`` (or
            a [B, D] tensor), e.g. a stand-in in tests; None loads ``model_name`` with transformers.
        image_size: Model input side S when ``model`` is given.
        mean: Per-channel normalisation mean when ``model`` is given.
        std: Per-channel normalisation std when ``model`` is given.

    Attributes:
        name: The model id (or the stand-in's class name and input size).
        description: One line saying what the embeddings are.
    """

    def __init__(
        self,
        model_name: str = CMMD_CLIP_MODEL,
        device: torch.device | str = "cpu",
        model: nn.Module | None = None,
        image_size: int = CLIP_IMAGE_SIZE,
        mean: Sequence[float] = CLIP_MEAN,
        std: Sequence[float] = CLIP_STD,
    ) -> None:
        super().__init__()
        given = model
        if model is None:
            model, image_size, mean, std = _load_clip(model_name)
        self.model = model.eval().to(device)
        self.image_size = image_size
        self.name = model_name if given is None else f"{type(given).__name__}-{image_size}px"
        self.description = (
            f"CLIP image embeddings ({self.name}), L2-normalised; uint8, centre crop, PIL bicubic to "
            f"{image_size}"
        )
        self.register_buffer(
            "mean", torch.tensor(mean, dtype=torch.float32).view(1, 3, 1, 1), persistent=False
        )
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, 3, 1, 1), persistent=False)
        self.to(device)

    def preprocess(self, images: Tensor) -> Tensor:
        """The model's input [B, 3, S, S] (normalised) of images [B, C, H, W] in [-1, 1]."""
        u8 = to_uint8_rgb(images).permute(0, 2, 3, 1).cpu().numpy()  # [B, H, W, 3]
        s = self.image_size
        resized = np.stack([np.asarray(_square_resize(Image.fromarray(img), s)) for img in u8])  # uint8
        x = torch.from_numpy(resized).permute(0, 3, 1, 2).float().div(255.0)  # [B, 3, S, S] in [0, 1]
        return (x.to(self.mean.device) - self.mean) / self.std

    @torch.no_grad()
    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """``{"clip": [B, D]}`` unit-length embeddings of images in [-1, 1]."""
        out: Any = self.model(pixel_values=self.preprocess(images))
        emb = out.image_embeds if hasattr(out, "image_embeds") else out
        return {"clip": F.normalize(emb.float(), dim=-1)}


def _square_resize(img: Image.Image, size: int) -> Image.Image:
    """Centre crop to a square, then PIL bicubic resize (PIL antialiases when shrinking)."""
    w, h = img.size
    side = min(w, h)
    left, top = (w - side) // 2, (h - side) // 2
    return img.crop((left, top, left + side, top + side)).resize((size, size), resample=Image.BICUBIC)


@torch.no_grad()
def feature_sets_of(net: nn.Module | Any, images: Tensor, batch_size: int = 256) -> dict[str, np.ndarray]:
    """Run a dict-returning feature network over images in batches.

    Args:
        net: Maps images [B, C, H, W] in [-1, 1] to a dict of [B, ...] tensors (e.g.
            :class:`InceptionFeatureSet`, :class:`CLIPImageEmbeddings`, or a stand-in).
        images: [N, C, H, W] in [-1, 1] (any device; batches are moved to the net's).
        batch_size: Images per forward pass.

    Returns:
        One float64 numpy array [N, D] per key (each sample's features flattened).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    params = list(net.parameters()) if isinstance(net, nn.Module) else []
    device = params[0].device if params else torch.device("cpu")
    parts: dict[str, list[Tensor]] = {}
    for i in range(0, len(images), batch_size):
        out = net(images[i : i + batch_size].to(device))
        if not isinstance(out, dict):
            raise ValueError(
                f"the feature network must return a dict of [B, ...] tensors, got {type(out).__name__}; "
                "use features_of for a single-output network"
            )
        if parts and set(out) != set(parts):
            raise ValueError(f"the feature network returned keys {sorted(parts)}, then {sorted(out)}")
        for key, value in out.items():
            parts.setdefault(key, []).append(value.detach().float().cpu().flatten(1))  # [B, D]
    return {key: torch.cat(chunks).double().numpy() for key, chunks in parts.items()}
