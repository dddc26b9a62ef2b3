"""Inference on a trained LZN model: ``generate``, ``classify``, ``embed``, ``reconstruct`` (architecture.md §6).

:class:`LZNInferenceMixin` is a base class of :class:`~lzn_lightning.LZNLightningModule`, so every loaded
checkpoint has these methods::

    model = LZNLightningModule.load_from_checkpoint("last.ckpt", map_location="cpu")
    images = model.generate(20, labels=torch.arange(10).repeat(2))   # [20, C, H, W] in [-1, 1]
    labels = model.classify(images)                                   # LongTensor [20]

Every method runs with the EMA weights (when the model has them), in eval mode, without gradients, in batches
on ``model.device``, with a tqdm progress bar for long jobs, and returns CPU tensors (so tens of thousands of
results do not pile up in GPU memory).

Classification and reconstruction need the latent of an image, which LZN defines through a *field* of anchors
(lzn_reference.md §1.2). Two contexts are offered:

* ``"batch"`` (the reference, §4): the field is the anchors of the images classified together. An image's label
  can change with its batch-mates and with the batch size; a single image alone gets a latent that is pure
  noise.
* ``"bank"`` (the default when the model holds an anchor bank): the field is a fixed bank of training images,
  registered with :meth:`LZNInferenceMixin.set_anchor_bank` and saved in the checkpoint, plus the image's own
  anchor (every image sees the same kind of field as in training: B-1 other training images and itself). A
  batch is computed at once (one extra zone per row), yet each label depends on nothing but the image.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from lzn_lightning.baselines import prototype_logits
from lzn_lightning.checkpoints import first_line, read_checkpoint
from lzn_lightning.latent import compute_latent
from lzn_lightning.nets.rectified_flow import rf_invert, rf_sample

if TYPE_CHECKING:
    from lzn_lightning.config import AlignConfig, FlowConfig
    from lzn_lightning.modality import Modality

CONTEXTS = ("bank", "batch")
# Why 256: the global batch of the CPU recipes, i.e. the field size their zones were trained with; also a
# size at which one batch of 32 px images stays far below a GB on any device.
DEFAULT_BATCH_SIZE = 256
# Why 4: below that a job ends in a blink and a progress bar is noise (e.g. in every callback call).
_PROGRESS_MIN_BATCHES = 4
_BANK_KEY = "anchor_bank_images"  # the buffer (state-dict key); `anchor_bank` is the property


class LZNInferenceMixin:
    """Python inference API of a trained LZN model (mixed into ``LZNLightningModule``).

    It relies on the module's ``modalities``, ``field_map``, ``latent_from``, ``align``, ``flow``,
    ``eval_flow_noise``, ``ema_weights()`` and the LightningModule's ``device``.
    """

    if TYPE_CHECKING:  # provided by LZNLightningModule / LightningModule
        modalities: Any
        field_map: dict[str, str]
        latent_from: str | None
        align: list[AlignConfig]
        flow: FlowConfig
        eval_flow_noise: float
        latent_dim: int
        training: bool
        device: torch.device

        def ema_weights(self) -> contextlib.AbstractContextManager[None]: ...
        def modality(self, field: str) -> Modality: ...
        def train(self, mode: bool = True) -> Any: ...
        def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None: ...

    # ------------------------------------------------------------------------------------- anchor bank
    @property
    def anchor_bank(self) -> Tensor | None:
        """The bank images [n, C, H, W] that form the field of ``context="bank"``, or None."""
        return getattr(self, "_buffers", {}).get(_BANK_KEY)

    def set_anchor_bank(self, images: Tensor | None) -> None:
        """Register (or with None, remove) the images whose anchors form the batch-independent field.

        The images, not their anchors, are stored (a buffer saved in the checkpoint), and are encoded with the
        weights in use at each call, so the bank never goes stale as training goes on. Use training images,
        about one training batch of them: the zones were trained in fields of that size (a random sample of
        the training split is right; :class:`~lzn_lightning.callbacks.AnchorBank` does it at fit start).

        Args:
            images: Float [n, C, H, W] in [-1, 1] of the image field's shape, or None.
        """
        if images is None:
            self._buffers.pop(_BANK_KEY, None)  # type: ignore[attr-defined]
            return
        field = self.image_field()
        if images.dim() != 4 or images.shape[0] < 1:
            raise ValueError(
                f"the anchor bank must be images [n, C, H, W] with n >= 1, got {tuple(images.shape)}"
            )
        self.modality(field).check_field(images, field)
        self.register_buffer(_BANK_KEY, images.detach().to(self.device, torch.float32).clone())

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict`` that first gives the anchor bank the checkpoint's size (or drops it)."""
        bank = state_dict.get(_BANK_KEY)
        if bank is not None:
            self.register_buffer(_BANK_KEY, torch.zeros_like(bank, device=self.device))
        else:
            self._buffers.pop(_BANK_KEY, None)  # type: ignore[attr-defined]
        return super().load_state_dict(state_dict, strict=strict, assign=assign)  # type: ignore[misc]

    # ------------------------------------------------------------------------------- which modality does what
    def image_field(self) -> str:
        """The instance field that is encoded: ``latent_from``, else the first instance modality with an encoder."""
        field = self._encoded_field()
        if field is None:
            raise ValueError("this model has no instance modality with an encoder, so it cannot encode images")
        return field

    def _encoded_field(self) -> str | None:
        candidates = ([self.latent_from] if self.latent_from else []) + list(self.field_map)
        for field in candidates:
            m = self.modality(field)
            if m.kind == "instance" and getattr(m, "has_encoder", True):
                return field
        return None

    def label_field(self, required: bool = True) -> str | None:
        """The categorical field the image latents are aligned with (the classifier's zones)."""
        source = self._encoded_field()  # None for a plain RF model: it may still have a label field
        aligned = [
            a.target
            for a in self.align
            if a.source == source and self.modality(a.target).kind == "categorical"
        ]
        others = [f for f in self.field_map if self.modality(f).kind == "categorical"]
        for field in aligned + others:
            return field
        if required:
            raise ValueError(
                "this model has no label modality (a categorical field aligned with the images), so it cannot "
                "classify; train a joint recipe (e.g. recipes/digits_joint.yaml)"
            )
        return None

    def decoder_field(self) -> str:
        """The field whose modality decodes latents to images."""
        candidates = ([self.latent_from] if self.latent_from else []) + list(self.field_map)
        for field in candidates:
            if getattr(self.modality(field), "has_decoder", False):
                return field
        raise ValueError(
            "this model has no decoder (e.g. a representation recipe), so it cannot generate images"
        )

    # ----------------------------------------------------------------------------------------- plumbing
    @contextlib.contextmanager
    def inference(self) -> Iterator[None]:
        """EMA weights, eval mode and no gradients for the duration of the block; restores the mode after."""
        was_training = self.training
        self.train(False)
        try:
            with self.ema_weights(), torch.no_grad():
                yield
        finally:
            self.train(was_training)

    def _seeded_generator(self, seed: int | None, generator: torch.Generator | None) -> torch.Generator:
        if generator is not None:
            return generator
        if seed is None:  # follow torch's global RNG, so torch.manual_seed / seed_everything apply
            seed = int(torch.randint(0, 2**62, ()).item())
        return torch.Generator(device=self.device).manual_seed(seed)

    def _images(self, images: Tensor, field: str) -> Tensor:
        if not isinstance(images, Tensor):
            images = torch.as_tensor(images)
        self.modality(field).check_field(images, field)
        return images

    @staticmethod
    def _chunks(n: int, batch_size: int) -> list[slice]:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        return [slice(i, min(i + batch_size, n)) for i in range(0, n, batch_size)]

    @staticmethod
    def _bar(total: int, batches: int, progress: bool | None, desc: str) -> tqdm:
        show = batches >= _PROGRESS_MIN_BATCHES if progress is None else progress
        return tqdm(total=total, desc=desc, unit="img", disable=not show, leave=False)

    def _context(self, context: str | None) -> str:
        if context is None:
            return "bank" if self.anchor_bank is not None else "batch"
        if context not in CONTEXTS:
            raise ValueError(f"context must be one of {CONTEXTS}, got {context!r}")
        if context == "bank" and self.anchor_bank is None:
            warnings.warn(
                "this model has no anchor bank (set_anchor_bank / the AnchorBank callback), so latents are "
                "computed through the batch's own anchors (context='batch', the reference behaviour): results "
                "depend on which images share a batch",
                RuntimeWarning,
                stacklevel=3,
            )
            return "batch"
        return context

    # ------------------------------------------------------------------------------------------ latents
    def _encode(self, images: Tensor, field: str, batch_size: int) -> Tensor:
        m = self.modality(field)
        parts = [
            m.encode(images[s].to(self.device, torch.float32)) for s in self._chunks(len(images), batch_size)
        ]
        return torch.cat(parts)  # [n, d]

    def _bank_latents(self, bank: Tensor, anchors: Tensor, noise: Tensor) -> Tensor:
        """Latents [b, d] of anchors [b, d], each through the field of the bank [n, d] plus itself (the image is
        in its own field, as in training), all rows at once: one extra logit per row."""
        flow = self.flow
        return compute_latent(bank, anchors, noise, flow.steps, flow.solver, flow.eps, self_in_field=True)

    def _noise(self, images: Tensor, rows: int, scale: float, g: torch.Generator, base: int | None) -> Tensor:
        """Prior noise [rows, d]. With a ``base`` seed (one per call, drawn from ``g``) each row's draw is seeded
        by ``base`` and its image's bytes, so an image gets the same noise whatever its position, batch-mates
        and batch size."""
        if scale == 0.0:
            return torch.zeros(rows, self.latent_dim, device=self.device)
        if base is None:
            return scale * torch.randn(rows, self.latent_dim, generator=g, device=self.device)
        out = []
        for x in images:
            digest = hashlib.blake2b(x.detach().cpu().numpy().tobytes(), digest_size=8).digest()
            gi = torch.Generator(device=self.device).manual_seed(int.from_bytes(digest, "little") ^ base)
            out.append(torch.randn(1, self.latent_dim, generator=gi, device=self.device))
        return scale * torch.cat(out)

    def _latents(
        self,
        images: Tensor,
        context: str | None,
        noise_scale: float | None,
        batch_size: int,
        seed: int | None,
        progress: bool | None,
        desc: str,
    ) -> Tensor:
        """Latents [N, d] (on ``self.device``) of checked images; ``context`` and ``noise_scale`` as the public
        methods take them (None: the defaults). Call inside :meth:`inference`."""
        context = self._context(context)
        noise_scale = self._noise_scale(context, noise_scale)
        g = self._seeded_generator(seed, None)
        field = self.image_field()
        m = self.modality(field)
        chunks = self._chunks(len(images), batch_size)
        bank = self._encode(self.anchor_bank, field, batch_size) if context == "bank" else None  # [n, d]
        # One base seed per call (not per chunk), so per-image noise does not depend on the chunking.
        base = int(torch.randint(0, 2**31, (), generator=g, device=g.device).item()) if bank is not None else None
        out = []
        with self._bar(len(images), len(chunks), progress, f"{desc} ({context})") as bar:
            for s in chunks:
                x = images[s].to(self.device, torch.float32)
                anchors = m.encode(x)  # [b, d]
                noise = self._noise(x, len(x), noise_scale, g, base)  # [b, d]
                if bank is None:  # the reference: the chunk's own anchors are the field
                    flow = self.flow
                    out.append(compute_latent(anchors, anchors, noise, flow.steps, flow.solver, flow.eps))
                else:  # each row's field is the bank and itself: nothing but the image and the bank decides
                    out.append(self._bank_latents(bank, anchors, noise))
                bar.update(len(x))
        return torch.cat(out)  # [N, d]

    def image_latents(
        self,
        images: Tensor,
        context: str | None = None,
        noise_scale: float | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> Tensor:
        """LZN latents of images (the shared-space point that classification and reconstruction start from).

        Args:
            images: Float [N, C, H, W] in [-1, 1].
            context: ``"bank"`` or ``"batch"`` (see the module docstring); None: ``"bank"`` when the model
                has an anchor bank, else ``"batch"``.
            noise_scale: Prior-noise scale (0: the deterministic zone-centre trajectory); None: 0 for
                ``"bank"``, the model's ``eval_flow_noise`` for ``"batch"``.
            batch_size: Images per batch; in ``"batch"`` context also the size of the field.
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, d] on the CPU.
        """
        with self.inference():
            images = self._images(images, self.image_field())
            z = self._latents(images, context, noise_scale, batch_size, seed, progress, "latents")
        return z.cpu()

    def _noise_scale(self, context: str, noise_scale: float | None) -> float:
        if noise_scale is not None:
            if noise_scale < 0:
                raise ValueError(f"noise_scale must be >= 0, got {noise_scale}")
            return float(noise_scale)
        return 0.0 if context == "bank" else float(self.eval_flow_noise)

    # ------------------------------------------------------------------------------------------- the API
    def generate(
        self,
        num: int,
        labels: Tensor | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        steps: int | None = None,
        method: str | None = None,
        seed: int | None = None,
        generator: torch.Generator | None = None,
        progress: bool | None = None,
    ) -> Tensor:
        """Sample images (lzn_reference.md §4).

        Unconditional (``labels`` None, or a model without a label modality): latent z ~ N(0, I), the
        distribution of LZN latents by construction. Conditional: the latent of label y is the forward label
        flow from y's anchor with N(0, I) prior noise, so it lands inside y's zone. Then the RF decoder
        integrates from Gaussian noise. A label-conditioned decoder given no labels gets the labels of the
        latents' zones (reverse label flow), as the reference does.

        Args:
            num: Number of images N.
            labels: LongTensor [N] of class indices, or None for unconditional samples.
            batch_size: Images per decoder batch.
            steps: RF Euler steps (None: the image modality's ``sample_steps``).
            method: ``"euler"`` or ``"rk45"`` (None: the image modality's ``sample_method``).
            seed: Seed of all the randomness (latents and decoder noise); ignored when ``generator`` is given;
                None draws it from torch's global RNG.
            generator: A torch.Generator on ``self.device`` to draw from.
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, C, H, W] in [-1, 1] on the CPU.
        """
        if num < 0:
            raise ValueError(f"num must be >= 0, got {num}")
        field = self.decoder_field()
        m = self.modality(field)
        label_field = self.label_field(required=False)
        label_mod = self.modality(label_field) if label_field is not None else None
        conditioned = int(getattr(m, "num_classes", 0) or 0) > 0
        if labels is not None:
            labels = torch.as_tensor(labels).long().reshape(-1)
            if labels.shape[0] != num:
                raise ValueError(f"labels must have length num={num}, got {labels.shape[0]}")
            if label_mod is not None:
                label_mod.check_field(labels, label_field)  # type: ignore[arg-type]
            elif not conditioned:
                raise ValueError(
                    "this model has no label modality and an unconditional decoder: pass labels=None"
                )
        g = self._seeded_generator(seed, generator)
        chunks = self._chunks(num, batch_size)
        out = []
        with self.inference(), self._bar(num, len(chunks), progress, "generate") as bar:
            for s in chunks:
                b = s.stop - s.start
                noise = torch.randn(b, self.latent_dim, generator=g, device=self.device)  # [b, d]
                y = labels[s].to(self.device) if labels is not None else None
                if y is not None and label_mod is not None:
                    z = label_mod.latent(y, noise)  # type: ignore[operator]  # [b, d] inside y's zones
                else:
                    z = noise  # the LZN latent distribution is N(0, I)
                if conditioned and y is None:
                    y = (
                        label_mod.decode(z)
                        if label_mod is not None
                        else torch.randint(0, m.num_classes, (b,), generator=g, device=self.device)  # type: ignore[attr-defined]
                    )
                x = m.decode(z, labels=y if conditioned else None, generator=g, steps=steps, method=method)
                out.append(x.float().cpu())
                bar.update(b)
        if not out:
            shape = (getattr(m, "channels", 1), getattr(m, "size", 1), getattr(m, "size", 1))
            return torch.zeros(0, *shape)
        return torch.cat(out)

    def classify(
        self,
        images: Tensor,
        context: str | None = None,
        noise_scale: float | None = None,
        class_weights: Tensor | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> Tensor:
        """Class of each image: image latent, reverse label flow, nearest label anchor (lzn_reference.md §4).

        ``context="bank"`` (default when the model has an anchor bank) gives each image a label that depends
        only on the image: the field is the fixed bank of training images plus the image itself, and the
        prior noise is 0 (the zone-centre trajectory) unless ``noise_scale`` says otherwise (then each image's
        noise is seeded by its own pixels). ``context="batch"`` is the reference: the field is the anchors of
        the ``batch_size`` images classified together and the prior noise is drawn at ``eval_flow_noise``; a
        label can then change with the batch-mates, the batch size and the seed. See docs/results.md for the
        accuracy of both on the digits recipe. A model trained with the supervised ``"ce"`` baseline form
        predicts the nearest label anchor of each image's anchor (no flow; context and noise do not apply).

        Args:
            images: Float [N, C, H, W] in [-1, 1], the datamodule's layout.
            context: ``"bank"`` or ``"batch"``; None: ``"bank"`` when the model has an anchor bank.
            noise_scale: Prior-noise scale of the image flow (None: 0 for ``"bank"``, ``eval_flow_noise`` for
                ``"batch"``).
            class_weights: Optional [K] class prior for the label zones; None (the default) is uniform. The
                reference's "with class weights" accuracy uses the test batch's true class frequencies.
            batch_size: Images per batch (in ``"batch"`` context, also the size of the field).
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            LongTensor [N] on the CPU.
        """
        label_field = self.label_field()
        label_mod = self.modality(label_field)  # type: ignore[arg-type]
        with self.inference():
            images = self._images(images, self.image_field())
            log_w = None
            if class_weights is not None:
                w = torch.as_tensor(class_weights, dtype=torch.float32, device=self.device).reshape(-1)
                k = label_mod.anchor_table().shape[0]
                if w.shape[0] != k or bool((w < 0).any()) or float(w.sum()) <= 0:
                    raise ValueError(f"class_weights must be {k} non-negative numbers, not all 0")
                log_w = torch.log(w / w.sum())
            if self._trained_with_ce(label_field):  # the supervised baseline: nearest label anchor, no flow
                anchors = self._encode(images, self.image_field(), batch_size)  # [N, d]
                logits = prototype_logits(anchors, label_mod.anchor_table())  # [N, K]
                return (logits + (0.0 if log_w is None else log_w)).argmax(1).cpu()
            z = self._latents(images, context, noise_scale, batch_size, seed, progress, "classify")
            preds = [label_mod.decode(z[s], log_weights=log_w) for s in self._chunks(len(z), batch_size)]
        return torch.cat(preds).cpu() if preds else torch.zeros(0, dtype=torch.long)

    def _trained_with_ce(self, label_field: str | None) -> bool:
        """Whether the images were aligned with ``label_field`` by the supervised ``"ce"`` baseline form."""
        source = self.image_field()
        return any(a.form == "ce" and a.source == source and a.target == label_field for a in self.align)

    def embed(
        self, images: Tensor, batch_size: int = DEFAULT_BATCH_SIZE, progress: bool | None = None
    ) -> Tensor:
        """The representation of each image: the image modality's ``embed`` (no flow, batch-independent).

        For timm-backbone recipes it is the pre-head feature (lzn_reference.md §4, "no head"); for the tower
        encoder, the anchor.

        Args:
            images: Float [N, C, H, W] in [-1, 1].
            batch_size: Images per batch.
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, D] on the CPU.
        """
        field = self.image_field()
        m = self.modality(field)
        images = self._images(images, field)
        chunks = self._chunks(len(images), batch_size)
        out = []
        with self.inference(), self._bar(len(images), len(chunks), progress, "embed") as bar:
            for s in chunks:
                out.append(m.embed(images[s].to(self.device, torch.float32)).float().cpu())
                bar.update(s.stop - s.start)
        return torch.cat(out) if out else torch.zeros(0, 0)

    def reconstruct(
        self,
        images: Tensor,
        labels: Tensor | None = None,
        context: str | None = None,
        noise_scale: float | None = None,
        steps: int | None = None,
        method: str | None = None,
        batch_size: int = DEFAULT_BATCH_SIZE,
        seed: int | None = 0,
        progress: bool | None = None,
    ) -> Tensor:
        """Encode, invert the RF ODE from the image to its noise, decode again (the reference's "Recon", §4).

        Args:
            images: Float [N, C, H, W] in [-1, 1].
            labels: LongTensor [N] for a label-conditioned decoder (the reference uses the true labels); None
                uses :meth:`classify`'s labels.
            context: Field of the image latents, as in :meth:`classify` (the reference metric uses ``"batch"``).
            noise_scale: Prior-noise scale of the image flow (None: as in :meth:`classify`).
            steps: RF Euler steps of inversion and decoding (None: the image modality's ``sample_steps``).
            method: ``"euler"`` or ``"rk45"`` (None: the image modality's ``sample_method``).
            batch_size: Images per batch.
            seed: Seed of the prior noise (None: from torch's global RNG).
            progress: Show a progress bar (None: for jobs of several batches).

        Returns:
            Float [N, C, H, W] in [-1, 1] on the CPU.
        """
        dec_field = self.decoder_field()
        m = self.modality(dec_field)
        if self.latent_from is not None and dec_field != self.image_field():
            raise ValueError(
                f"the decoder of {dec_field!r} does not decode the encoded field {self.image_field()!r}"
            )
        net = getattr(m, "decoder", None)
        if net is None:
            raise ValueError(f"modality {dec_field!r} has no RF velocity network to invert")
        conditioned = int(getattr(m, "num_classes", 0) or 0) > 0
        if conditioned and labels is None:
            labels = self.classify(
                images, context=context, noise_scale=noise_scale, batch_size=batch_size, seed=seed
            )
        steps = steps or int(getattr(m, "sample_steps", 20))
        method = method or str(getattr(m, "sample_method", "euler"))
        with self.inference():
            images = self._images(images, dec_field)
            z = (  # a plain RF baseline (no latent_from) is not conditioned on latents: none to compute
                self._latents(images, context, noise_scale, batch_size, seed, progress, "latents")
                if self.latent_from is not None
                else None
            )
            out = []
            for s in self._chunks(len(images), batch_size):
                x = images[s].to(self.device, torch.float32)
                zs = z[s] if z is not None else None
                y = labels[s].to(self.device).long() if conditioned and labels is not None else None
                x0 = rf_invert(net, x, zs, y, steps=steps, method=method)  # [b, C, H, W] noise of each image
                out.append(rf_sample(net, x0, zs, y, steps=steps, method=method).clamp(-1.0, 1.0).cpu())
        return torch.cat(out) if out else images[:0].float().cpu()


def reconstruction_l2(original: Tensor, reconstructed: Tensor) -> float:
    """Mean over images of the L2 norm of the error over (C, H, W), in [-1, 1] units (the reference's Recon)."""
    err = (reconstructed.float() - original.float()).flatten(1)  # [N, C*H*W]
    return float(err.norm(dim=1).mean()) if len(err) else math.nan


def mean_reconstruction_l2(
    model: Any, images: Tensor, repeats: int, seed: int = 0, **reconstruct_kwargs: Any
) -> tuple[float, Tensor]:
    """The reference's Recon: ``model.reconstruct`` of all ``images`` in one batch (one field), once per
    prior-noise seed ``seed, seed + 1, ...``; returns the mean :func:`reconstruction_l2` and the last
    reconstruction.

    Args:
        model: A model with :meth:`LZNInferenceMixin.reconstruct`.
        images: Float [N, C, H, W] in [-1, 1].
        repeats: Number of prior-noise draws.
        seed: Seed of the first draw.
        **reconstruct_kwargs: Passed on to ``reconstruct`` (``labels``, ``context``, ``steps``, ...).
    """
    errors, recon = [], images
    for r in range(repeats):
        recon = model.reconstruct(
            images, batch_size=len(images), seed=seed + r, progress=False, **reconstruct_kwargs
        )
        errors.append(reconstruction_l2(images, recon))
    return sum(errors) / len(errors), recon


def load_for_inference(path: str | Path, map_location: str | torch.device = "cpu") -> Any:
    """Load an ``lzn fit`` (or ``trainer.save_checkpoint``) checkpoint for inference, with one-line errors.

    Args:
        path: The ``.ckpt`` file.
        map_location: Device to load onto.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a PyTorch checkpoint, or not one of an LZN model, or weights that do not fit.
    """
    read_checkpoint(path)
    try:
        from lzn_lightning.module import LZNLightningModule  # lazy: the module imports this file

        model = LZNLightningModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except Exception as err:
        why = f"{type(err).__name__}: {first_line(err)}"
        raise ValueError(f"cannot build the model of {path}: {why}") from None
    model.eval()
    return model
