"""LZNLightningModule: minibatch latent computation and alignment across the registered modalities.

Orchestration only; the maths lives in :mod:`lzn_lightning.latent`. One training step's losses
(:mod:`lzn_lightning.batch_losses`, docs/design/architecture.md §5):

1. every instance field of the batch is encoded to anchors; anchors are gathered across ranks with gradients;
2. the ``latent_from`` field's latents (and those of every other ``decode`` field) are computed through the
   field of all gathered anchors of that field;
3. each ``decode`` field's decoder loss is conditioned on its latents;
4. each ``align`` term traces the source latents back through the target anchors and rewards the right zone.

Optimisation is manual so that the reference behaviours hold under DDP: a non-finite loss or gradient norm
skips the step on every rank together; one joint gradient clip; per-group learning rates with linear warm-up;
frozen phases by iteration count (which counts skipped steps too); EMA updates only after real steps.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable, Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from lzn_lightning import anchor_banks
from lzn_lightning import distributed as D
from lzn_lightning.batch_losses import batch_losses
from lzn_lightning.checkpoints import (
    check_fits,
    first_line,
    read_checkpoint,
    start_next_epoch_after_finished_one,
)
from lzn_lightning.config import AlignConfig, FlowConfig, as_config
from lzn_lightning.ema import ModalityEMA
from lzn_lightning.inference import LZNInference
from lzn_lightning.inference.routing import FieldRouting
from lzn_lightning.latent import compute_latent
from lzn_lightning.modality import Modality
from lzn_lightning.optimization import adam_with_warmup, clip_gradients, drop_frozen_gradients, param_names
from lzn_lightning.seeding import mix_seed, trainer_seed


def _inference_method(name: str) -> Callable[..., Any]:
    """A module method that runs ``LZNInference(self).<name>`` (its signature and docstring, for help())."""
    impl = getattr(LZNInference, name)

    @functools.wraps(impl)
    def method(self: LZNLightningModule, *args: Any, **kwargs: Any) -> Any:
        return impl(LZNInference(self), *args, **kwargs)

    return method


class LZNLightningModule(pl.LightningModule):
    """A Latent Zoning Network over any set of modalities.

    Args:
        modalities: Modality plug-ins keyed by name (``{image: {class_path: ImageModality, ...}, ...}``). By
            default the key is also the batch field the modality reads.
        latent_dim: Size d of the shared latent space.
        fields: Extra batch fields read by an existing modality, e.g. ``{image_view2: image}`` for two views.
        latent_from: Field whose minibatch anchors define each sample's latent (None: no latent, plain
            decoder).
        decode: Instance fields whose decoders train on their own latents, e.g. ``[image, text]`` for a model
            that generates both from the shared latent; None means ``[latent_from]`` (every field with a
            decoder when ``latent_from`` is None: a plain, unconditioned decoder).
        flow: Latent computation settings.
        align: Latent alignment terms.
        decoder_weight: Coefficient of every ``decode`` field's decoder loss.
        decoder_trains_encoder: Whether the decoder loss's gradient reaches the encoders through the latents
            (the paper's setting). False: decoders learn on detached latents and the encoders learn from the
            alignment terms alone (a measurement of what the decoder's pull costs a joint model).
        freeze_after: ``{"<modality>.<group>": iteration}``: stop updating that parameter group (and its EMA)
            from that iteration on, e.g. ``{image.decoder: 60000}``; the group stays in the graph.
        warmup_steps: Linear learning-rate warm-up from 1/warmup_steps to 1 (0 disables it).
        grad_clip: Max global gradient norm over all parameters together (0 disables clipping).
        ema_decay: EMA decay of the modality weights used for evaluation and inference (None disables EMA).
        eval_flow_noise: Prior-noise scale of the latent flow in validation/test (0: zone centres).
        seed: Seed of the per-rank generators for prior noise and RF times; None: the trainer's seed
            (``seed_everything``, as the training order uses), so ``lzn fit --seed_everything 1`` changes them
            too.
        max_consecutive_skips: Stop with an error after this many consecutive skipped (non-finite) steps; a
            skipped step does not advance ``trainer.global_step``, so ``max_steps`` alone would never end
            such a run.
        init_from: An lzn checkpoint whose weights and EMA a new ``lzn fit`` starts from, e.g. one written by
            ``lzn import-reference``; the optimiser, learning-rate schedule and step count start fresh.
            Ignored when resuming with ``--ckpt_path``.
    """

    def __init__(
        self,
        modalities: dict[str, Modality],
        latent_dim: int = 200,
        fields: dict[str, str] | None = None,
        latent_from: str | None = "image",
        decode: list[str] | None = None,
        flow: FlowConfig | None = None,
        align: list[AlignConfig] | None = None,
        decoder_weight: float = 1.0,
        decoder_trains_encoder: bool = True,
        freeze_after: dict[str, int] | None = None,
        warmup_steps: int = 5000,
        grad_clip: float = 1.0,
        ema_decay: float | None = 0.9999,
        eval_flow_noise: float = 1.0,
        seed: int | None = None,
        max_consecutive_skips: int = 100,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.automatic_optimization = False
        if not modalities:
            raise ValueError("model.modalities is empty: register at least one Modality")
        built = {name: Modality.from_spec(spec) for name, spec in modalities.items()}
        for name, modality in built.items():
            modality.build(latent_dim)
            modality.check_contract(name)
        self.modalities = nn.ModuleDict(built)
        self.latent_dim = latent_dim
        self.field_map: dict[str, str] = {name: name for name in built} | dict(fields or {})
        self.latent_from = latent_from
        self.decode_fields: list[str] = list(decode) if decode is not None else self._default_decode_fields()
        self.flow: FlowConfig = as_config(flow, FlowConfig) or FlowConfig()
        self.align: list[AlignConfig] = [as_config(a, AlignConfig) for a in (align or [])]
        self.decoder_weight = decoder_weight
        self.decoder_trains_encoder = decoder_trains_encoder
        self.freeze_after = dict(freeze_after or {})
        self.warmup_steps = warmup_steps
        self.grad_clip = grad_clip
        self.eval_flow_noise = eval_flow_noise
        self.seed = seed
        self.max_consecutive_skips = max_consecutive_skips
        self.init_from = init_from
        self._consecutive_skips = 0
        # Which field does what, checked once here; the inference layer, callbacks and commands ask it.
        self.routing = FieldRouting(built, self.field_map, latent_from, self.decode_fields, self.align)
        self._check_freeze_after()
        self.ema = ModalityEMA(self.modalities, ema_decay) if ema_decay else None
        self.register_buffer("iteration", torch.zeros((), dtype=torch.long))
        self._generator: torch.Generator | None = None
        self._ema_active = False
        self._evaluation: contextlib.ExitStack | None = None  # the EMA swap of a validation or test epoch
        # Checkpoints hold specs and plain dicts only, so they load with torch.load(weights_only=True).
        self.save_hyperparameters(ignore=["modalities", "flow", "align"])
        self.hparams["modalities"] = {name: m.spec() for name, m in built.items()}
        self.hparams["flow"] = asdict(self.flow)
        self.hparams["align"] = [asdict(a) for a in self.align]

    # ------------------------------------------------------------------------------------------ validation
    def _default_decode_fields(self) -> list[str]:
        if self.latent_from is not None:
            return [self.latent_from] if self.modality(self.latent_from).has_decoder else []
        return [name for name, m in self.modalities.items() if m.has_decoder]  # plain decoders, no latent

    def _check_freeze_after(self) -> None:
        """Every ``freeze_after`` key names a parameter group (``<modality>.<group>``)."""
        groups = {f"{name}.{g['name']}" for name, m in self.modalities.items() for g in m.param_groups()}
        for key in self.freeze_after:
            if key not in groups:
                raise ValueError(
                    f"freeze_after names unknown parameter group {key!r}; groups: {sorted(groups)}"
                )

    def modality(self, field: str) -> Modality:
        """The modality that reads batch field ``field``."""
        return self.modalities[self.field_map[field]]  # type: ignore[return-value]

    def setup(self, stage: str) -> None:
        """Check the data against the model (links cannot reach dict entries: each modality checks itself)."""
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is None:
            return
        for name, m in self.modalities.items():
            m.check_datamodule(datamodule, name)  # type: ignore[operator]

    def on_fit_start(self) -> None:
        """Start from ``init_from``'s weights and EMA (a new run only; a resumed one has its own)."""
        if self.init_from is None or self.trainer.ckpt_path is not None:
            return
        ckpt = read_checkpoint(self.init_from)
        check_fits(self, ckpt, self.init_from)
        weights = {k: v for k, v in ckpt["state_dict"].items() if k.startswith(("modalities.", "ema."))}
        missing, _ = self.load_state_dict(weights, strict=False)
        assert all(not k.startswith(("modalities.", "ema.")) for k in missing), missing

    # ------------------------------------------------------------------------------------------ randomness
    def noise_seed(self) -> int:
        """Seed of prior noise and RF times: ``seed``, or the trainer's (``seed_everything``) when None."""
        return self.seed if self.seed is not None else trainer_seed()

    def generator(self) -> torch.Generator:
        """This rank's generator for prior noise and RF times (reseeded at every training step)."""
        if self._generator is None or self._generator.device != self.device:
            self._generator = D.rank_generator(self.noise_seed(), D.rank(), self.device)
        return self._generator

    def prior_noise(self, rows: int, scale: float) -> Tensor:
        """Prior noise [rows, d] drawn from this rank's generator."""
        return scale * torch.randn(rows, self.latent_dim, generator=self.generator(), device=self.device)

    # ------------------------------------------------------------------------------------------- the maths
    def latents_of(self, anchors: Tensor, noise_scale: float) -> Tensor:
        """Latents of this rank's anchors [b, d] through the field of every rank's anchors (gathered)."""
        everyone = D.gather_with_grad(anchors)  # [world*b, d]
        noise = self.prior_noise(anchors.shape[0], noise_scale)
        return compute_latent(everyone, anchors, noise, self.flow.steps, self.flow.solver, self.flow.eps)

    def losses(self, batch: dict[str, Tensor], train: bool) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
        """Weighted loss terms and (detached) diagnostics for one batch (``batch_losses.batch_losses``)."""
        return batch_losses(self, batch, train)

    # ------------------------------------------------------------------------------------------ training
    def frozen_groups(self) -> set[str]:
        """Names of the parameter groups ``freeze_after`` has frozen at the current iteration.

        Their gradients are dropped before each optimiser step; callbacks that measure gradients
        (``LossGradientMix``) skip them too.
        """
        step = int(self.iteration)
        return {key for key, at in self.freeze_after.items() if step >= at}

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        """Seed this step's randomness from (seed, rank, iteration) alone.

        Prior noise, RF times and the global RNG (dropout) of a step then do not depend on what ran before it
        (validation, callbacks, a restart), so a run resumed from any checkpoint draws exactly what the
        uninterrupted run drew, and no RNG state needs saving.
        """
        step_seed = mix_seed(self.noise_seed(), D.rank(), int(self.iteration))
        self.generator().manual_seed(step_seed)
        torch.manual_seed(step_seed)

    def training_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """One manual optimisation step with the rank-consistent skip rules."""
        opt = self.optimizers()
        scheduler = self.lr_schedulers()
        frozen = self.frozen_groups()
        losses, stats = self.losses(batch, train=True)
        total = torch.stack(list(losses.values())).sum()
        self.iteration += 1  # counts skipped steps too, like the reference's iteration counter
        if not D.all_ranks_true(torch.isfinite(total).item(), self.device):
            self._skip(f"non-finite loss ({ {k: float(v) for k, v in losses.items()} })")
            return
        opt.zero_grad(set_to_none=True)
        self.manual_backward(total)
        frozen_names = drop_frozen_gradients(opt.param_groups, frozen)
        grad_norm, group_norms = clip_gradients(opt.param_groups, self.grad_clip)
        if not D.all_ranks_true(torch.isfinite(grad_norm).item(), self.device):
            opt.zero_grad(set_to_none=True)
            self._skip(f"non-finite gradient norm ({float(grad_norm)})")
            return
        self._consecutive_skips = 0
        opt.step()
        scheduler.step()  # type: ignore[union-attr]
        if self.ema is not None:
            self.ema.update(self.modalities, param_names(self.modalities, frozen_names))
        b = next(iter(batch.values())).shape[0]
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=b)
        self.log("train/grad_norm", grad_norm.detach(), batch_size=b)
        for name, norm in group_norms.items():
            self.log(f"train/health/grad_norm/{name}", norm, batch_size=b)
        for key, value in {**losses, **stats}.items():
            self.log(f"train/{key}", value.detach(), prog_bar=key.startswith("zone_acc"), batch_size=b)

    def _skip(self, why: str) -> None:
        """Record a skipped step (decided on every rank together); give up after too many in a row."""
        self._consecutive_skips += 1
        self.log("train/skipped", 1.0, on_step=True, on_epoch=False)
        if self._consecutive_skips >= self.max_consecutive_skips:
            raise FloatingPointError(
                f"{self._consecutive_skips} consecutive training steps skipped, the last for a {why}; lower "
                "the learning rates or check the data for NaNs"
            )

    def configure_optimizers(self) -> Any:
        """One Adam with a parameter group per (modality, group) at its own learning rate, linear warm-up."""
        return adam_with_warmup(self.modalities, self.warmup_steps)

    # ---------------------------------------------------------------------------------------- inference
    # Each is one call of lzn_lightning.inference.LZNInference (same arguments and docstring), so a loaded
    # checkpoint generates, classifies, embeds and reconstructs without another import.
    generate = _inference_method("generate")
    classify = _inference_method("classify")
    embed = _inference_method("embed")
    latents = _inference_method("latents")
    reconstruct = _inference_method("reconstruct")

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

    def anchor_bank_of(self, field: str) -> Tensor | None:
        """The bank items of ``field`` that form the field of ``context="bank"`` (see ``set_anchor_bank``)."""
        return anchor_banks.bank_of(self, field)

    @property
    def anchor_bank(self) -> Tensor | None:
        """The anchor bank of the encoded field (``latent_from``), or None."""
        try:
            return self.anchor_bank_of(self.routing.source_field())
        except ValueError:  # nothing is encoded (plain RF): no bank
            return None

    def set_anchor_bank(self, data: Tensor | None, field: str | None = None) -> None:
        """Register (or with None, remove) the items whose anchors form ``field``'s batch-independent field.

        The items, not their anchors, are stored (a buffer saved in the checkpoint), and are encoded with the
        weights in use at each call, so the bank never goes stale as training goes on. Use training items,
        about one training batch of them: the zones were trained in fields of that size (a random sample of
        the training split is right; :class:`~lzn_lightning.callbacks.AnchorBank` does it at fit start).

        Args:
            data: A batch of ``field`` in its layout (images Float [n, C, H, W] in [-1, 1], token ids, ...)
                with n >= 1, or None.
            field: An instance field with an encoder (None: the encoded field, ``latent_from``).
        """
        field = self.routing.source_field(field)
        anchor_banks.store(self, field, data, self.modality(field))

    def load_state_dict(self, state_dict: Any, strict: bool = True, assign: bool = False) -> Any:
        """``nn.Module.load_state_dict`` that first gives the anchor banks the checkpoint's sizes (or drops
        them)."""
        anchor_banks.make_room(self, state_dict, self.field_map)
        return super().load_state_dict(state_dict, strict=strict, assign=assign)

    # ---------------------------------------------------------------------------------------- evaluation
    @contextlib.contextmanager
    def ema_weights(self) -> Iterator[None]:
        """Evaluate with the EMA weights (the live weights before the first EMA update)."""
        if self.ema is None or self._ema_active:
            yield
            return
        self._ema_active = True
        try:
            with self.ema.swapped_into(self.modalities):
                yield
        finally:
            self._ema_active = False

    def _eval_step(self, batch: dict[str, Tensor], stage: str) -> None:
        losses, stats = self.losses(batch, train=False)
        b = next(iter(batch.values())).shape[0]
        total = torch.stack(list(losses.values())).sum()
        self.log(f"{stage}/loss", total, sync_dist=True, batch_size=b)
        for key, value in {**losses, **stats}.items():
            self.log(
                f"{stage}/{key}", value, sync_dist=True, prog_bar=key.startswith("zone_acc"), batch_size=b
            )

    def validation_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Losses and zone accuracies with the EMA weights."""
        self._eval_step(batch, "val")

    def test_step(self, batch: dict[str, Tensor], batch_idx: int) -> None:
        """Losses and zone accuracies with the EMA weights."""
        self._eval_step(batch, "test")

    def _start_evaluation(self) -> None:
        """Swap the EMA weights in for a validation or test epoch (callbacks' epoch-end hooks see them)."""
        self._evaluation = contextlib.ExitStack()
        self._evaluation.enter_context(self.ema_weights())

    def _end_evaluation(self) -> None:
        """Swap the live weights back in at the end of a validation or test epoch."""
        if self._evaluation is not None:
            self._evaluation.close()
            self._evaluation = None

    on_validation_epoch_start = on_test_epoch_start = _start_evaluation
    on_validation_epoch_end = on_test_epoch_end = _end_evaluation

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Resume a run that ended with a complete epoch at the start of the next one (Lightning reads it
        before the loops' state)."""
        start_next_epoch_after_finished_one(checkpoint)

    @classmethod
    def from_pretrained(
        cls, name: str | Path, revision: str | None = None, map_location: str | torch.device = "cpu"
    ) -> LZNLightningModule:
        """A model exported by ``lzn export``, in inference mode, from a folder or the Hugging Face Hub.

        Embeddings, labels and samples are those of the checkpoint it was exported from (its EMA weights and
        anchor banks). A Hub repository is fetched into huggingface_hub's cache; with ``HF_HUB_OFFLINE=1``
        only the cache is read.

        Args:
            name: An export folder, ``"owner/name"`` or ``"hf://owner/name"`` (``@revision`` may follow).
            revision: A Hub branch, tag or commit (None: ``main``).
            map_location: Device of the returned model.

        Raises:
            FileNotFoundError: No such folder, or a Hub repository that cannot be fetched (or, offline, is not
                in the cache).
            ValueError: A folder that is not an export, or one this version cannot build.
        """
        from lzn_lightning.pretrained import load_pretrained

        return load_pretrained(cls, name, revision=revision, map_location=map_location)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Live weights in ``state_dict`` (EMA under ``ema.*``); randomness needs no state (see above)."""
        if self._ema_active:
            raise RuntimeError("cannot checkpoint while the EMA weights are swapped in")


def load_for_inference(path: str | Path, map_location: str | torch.device = "cpu") -> LZNLightningModule:
    """Load an ``lzn fit`` (or ``trainer.save_checkpoint``) checkpoint for inference, with one-line errors.

    Args:
        path: The ``.ckpt`` file, or an ``lzn export`` folder or Hub repository (``owner/name``,
            ``hf://owner/name``: :meth:`LZNLightningModule.from_pretrained`).
        map_location: Device to load onto.

    Raises:
        FileNotFoundError: No such file.
        ValueError: Not a PyTorch checkpoint, or not one of an LZN model, or weights that do not fit.
    """
    from lzn_lightning.pretrained import is_pretrained_name

    if is_pretrained_name(path):
        return LZNLightningModule.from_pretrained(path, map_location=map_location)
    read_checkpoint(path)
    try:
        model = LZNLightningModule.load_from_checkpoint(path, map_location=map_location, weights_only=True)
    except Exception as err:
        why = f"{type(err).__name__}: {first_line(err)}"
        raise ValueError(f"cannot build the model of {path}: {why}") from None
    model.eval()
    return model
