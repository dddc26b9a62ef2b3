"""The Modality plug-in contract: one data type = one subclass (docs/design/architecture.md §4).

A modality maps its batch field to *anchors* in the shared latent space R^d and, optionally, decodes latents
back to data. Two kinds exist:

* ``"instance"``: each sample is its own anchor (images, text). Implement :meth:`encode`.
* ``"categorical"``: a learnable table of K anchors (labels); the field holds indices. Implement
  :meth:`anchor_table`.

Subclasses take only plain, typed hyperparameters in ``__init__`` (they are recorded automatically, so
:meth:`spec` can rebuild the module and checkpoints never pickle modules), and create every parameter that
depends on the latent size in :meth:`build`, which the LZN module calls exactly once, then checks the
contract (:meth:`check_contract`): a hook the modality's kind needs and the subclass lacks fails there, with
its name.

Everything the core reads of a modality is declared here, with a default: ``kind``, ``has_encoder``,
``has_decoder``, ``decoder_classes``, ``num_classes``, ``sample_steps``, the data hooks (``encode``,
``anchor_table``, ``latent``, ``decode``, ...), and what users' files hold for the ``lzn sample | classify |
embed`` commands (``input_suffixes`` / :meth:`read_inputs`, ``output_suffixes`` / :meth:`write_outputs`).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import Tensor, nn


class Modality(nn.Module):
    """Base class of every data type plug-in.

    Subclass it, implement ``build`` plus ``encode`` (instance) or ``anchor_table``, ``latent`` and
    ``decode`` (categorical), and, if the type can be generated, ``decoder_loss`` and ``decode``.
    ``example_batch`` makes synthetic data of the right shape for tests, docs and the synthetic datamodule;
    ``read_inputs`` / ``write_outputs`` read and write users' files for the inference commands.
    """

    kind: ClassVar[str] = "instance"
    """``"instance"`` (each item is its own anchor: :meth:`encode`) or ``"categorical"`` (a table of class
    anchors: :meth:`anchor_table`, :meth:`latent`)."""

    num_classes: int = 0
    """Classes K: the zones of a categorical modality (its anchor table's rows), or the classes an instance
    modality's decoder may be conditioned on; 0 when it knows no classes."""

    sample_steps: int | None = None
    """Default solver steps of :meth:`decode` (e.g. the RF sampler of images), reported by the evaluation
    callbacks; None when decoding has no steps."""

    input_suffixes: ClassVar[tuple[str, ...]] = ()
    """The user files :meth:`read_inputs` reads: lower-case suffixes with the dot (``".txt"``), ``"/"`` for a
    folder. Empty: the inference commands take no files of this data type."""

    output_suffixes: ClassVar[tuple[str, ...]] = ()
    """The files :meth:`write_outputs` writes (lower-case suffixes with the dot), in the order a message
    lists them. Empty: the inference commands write no files of this data type."""

    init_args: dict[str, Any]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "__init__" not in cls.__dict__:
            return
        original = cls.__dict__["__init__"]
        signature = inspect.signature(original)

        @functools.wraps(original)
        def recording_init(self: Modality, *args: Any, **kw: Any) -> None:
            outermost = not getattr(self, "_recording_init", False)
            if outermost:
                object.__setattr__(self, "_recording_init", True)
            try:
                original(self, *args, **kw)
            finally:
                if outermost:
                    bound = signature.bind(self, *args, **kw)
                    bound.apply_defaults()
                    recorded = {k: v for k, v in bound.arguments.items() if k != "self"}
                    object.__setattr__(self, "init_args", recorded)
                    object.__setattr__(self, "_recording_init", False)

        cls.__init__ = recording_init  # type: ignore[method-assign]

    def __init__(self) -> None:
        super().__init__()
        self.latent_dim: int | None = None

    # ----------------------------------------------------------------------------------------------- spec
    def spec(self) -> dict[str, Any]:
        """``{"class_path", "init_args"}``: everything needed to rebuild this modality (before ``build``)."""
        cls = type(self)
        return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(self.init_args)}

    @staticmethod
    def from_spec(spec: dict[str, Any] | Modality) -> Modality:
        """Build a modality from a spec dict (or return an instance unchanged)."""
        if isinstance(spec, Modality):
            return spec
        if not isinstance(spec, dict) or "class_path" not in spec:
            raise ValueError(f"a modality spec needs a 'class_path' (and optional 'init_args'), got {spec!r}")
        class_path = spec["class_path"]
        if "." not in class_path:
            class_path = f"lzn_lightning.modalities.{class_path}"
        module_name, _, name = class_path.rpartition(".")
        try:
            cls = getattr(importlib.import_module(module_name), name)
        except (ImportError, AttributeError) as err:
            raise ValueError(f"cannot import modality class {spec['class_path']!r}: {err}") from err
        if not (isinstance(cls, type) and issubclass(cls, Modality)):
            raise ValueError(f"{spec['class_path']!r} is not a Modality subclass")
        return cls(**cls.upgrade_init_args(dict(spec.get("init_args", {}))))

    @classmethod
    def upgrade_init_args(cls, init_args: dict[str, Any]) -> dict[str, Any]:
        """A stored spec's init args in this class's current form (unchanged here). A modality whose arguments
        changed overrides it, so checkpoints written before the change still load (``from_spec`` calls it)."""
        return init_args

    # ---------------------------------------------------------------------------------------------- build
    def build(self, latent_dim: int) -> None:
        """Create the parameters that depend on the latent size. Called once by the LZN module."""
        self.latent_dim = latent_dim

    # --------------------------------------------------------------------------------------------- encode
    def encode(self, x: Tensor) -> Tensor:
        """Anchors [b, d] for a batch of this field (instance modalities)."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind!r} and has no encode()")

    def anchor_table(self) -> Tensor:
        """The [K, d] table of anchors (categorical modalities)."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind!r} and has no anchor_table()")

    def latent(self, labels: Tensor, noise: Tensor) -> Tensor:
        """Latents [B, d] of class indices [B] inside their zones: the forward label flow from each class's
        anchor with prior ``noise`` [B, d] (categorical modalities; label -> data generation)."""
        raise NotImplementedError(f"{type(self).__name__} is {self.kind!r} and has no latent() flow")

    def embed(self, x: Tensor) -> Tensor:
        """The representation used for downstream tasks; defaults to the anchors."""
        return self.encode(x)

    def preprocess(self, x: Tensor, train: bool) -> Tensor:
        """Device-side normalisation/augmentation of a batch field, after transfer. Identity by default."""
        return x

    def prepare(self, data: Any) -> Tensor:
        """A batch of this field from what a user holds (inference inputs); default ``torch.as_tensor``.

        Override when users hold something else than the field's tensors, e.g. strings for token ids.
        """
        return data if isinstance(data, Tensor) else torch.as_tensor(data)

    def present(self, decoded: Tensor) -> Any:
        """What a user gets from a decoded batch (``generate``'s output); default the tensor itself."""
        return decoded

    # ----------------------------------------------------------------------------------------- user files
    def read_inputs(self, path: str | Path) -> tuple[Tensor, dict[str, list[str]]]:
        """The batch a user's file holds (one of ``input_suffixes``), for ``lzn classify | embed | sample``.

        Args:
            path: The file (or folder) named on the command line.

        Returns:
            The batch in what :meth:`prepare` takes (e.g. images [N, C, H, W] in [-1, 1], token ids), and
            per-item columns the commands add to their outputs, named in the singular (e.g.
            ``{"file": [...]}`` for a folder of images, ``{"text": [...]}`` for lines of text; ``{}``: none).

        Raises:
            ValueError: A one-line message when the file cannot be read as this data type.
        """
        raise ValueError(f"{type(self).__name__} reads no input files (it declares no input_suffixes)")

    def write_outputs(
        self, outputs: Any, path: str | Path, columns: dict[str, Any] | None = None, **options: Any
    ) -> str:
        """Write what ``generate`` returned for this modality (its :meth:`present` output) to ``path``.

        Args:
            outputs: The generated items.
            path: The file to write, ending in one of ``output_suffixes``.
            columns: Per-item values to write along, named in the singular (e.g. ``{"label": labels}``).
            **options: Writer options (e.g. ``nrow`` of an image grid, ``name`` of a text column); options a
                modality does not use are ignored.

        Returns:
            What was written, for the command's message (e.g. ``"10 texts"``).
        """
        raise ValueError(f"{type(self).__name__} writes no output files (it declares no output_suffixes)")

    # -------------------------------------------------------------------------------------------- checks
    def check_contract(self, name: str) -> None:
        """Raise a TypeError naming every hook this modality's ``kind`` needs and its class lacks.

        Called by the LZN module right after :meth:`build`, so a new data type fails at construction with
        the list of what to implement rather than in the middle of training or inference.

        Args:
            name: The modality's key in ``model.modalities`` (for the message).
        """
        if self.kind not in ("instance", "categorical"):
            raise TypeError(f"modality {name!r}: kind must be 'instance' or 'categorical', got {self.kind!r}")
        needed = {
            "instance": ["encode"] if self.has_encoder else [],
            "categorical": ["anchor_table", "latent", "decode"],
        }[self.kind]
        if self.has_decoder:
            needed += ["decoder_loss", "decode"]
        if self.input_suffixes:
            needed.append("read_inputs")
        if self.output_suffixes:
            needed.append("write_outputs")
        cls = type(self)
        missing = sorted({hook for hook in needed if getattr(cls, hook) is getattr(Modality, hook)})
        if missing:
            what = ", ".join(f"{hook}()" for hook in missing)
            raise TypeError(
                f"modality {name!r}: {cls.__name__} (kind {self.kind!r}, has_encoder={self.has_encoder}, "
                f"has_decoder={self.has_decoder}) must implement {what}; see lzn_lightning.Modality"
            )

    def check_field(self, x: Tensor, name: str) -> None:
        """Raise a clear ValueError when a batch field does not fit this modality. Override to add checks."""

    def check_datamodule(self, datamodule: Any, name: str) -> None:
        """Raise a clear ValueError when the datamodule's data cannot fit this modality (called at fit start).

        Args:
            datamodule: The trainer's datamodule (e.g. exposes ``image_shape`` and ``num_classes``).
            name: The modality's key in ``model.modalities`` (for the message).
        """

    @property
    def has_encoder(self) -> bool:
        """Whether this modality makes anchors from data (``encode``): instance modalities do unless built
        without an encoder (e.g. an image modality for a plain-RF baseline); categorical ones have a table."""
        return self.kind == "instance"

    # --------------------------------------------------------------------------------------------- decode
    @property
    def has_decoder(self) -> bool:
        """Whether this modality trains a decoder (has a ``decoder_loss``)."""
        return False

    @property
    def decoder_classes(self) -> int:
        """K when the decoder also takes one class per sample (``decode(latent, labels=...)``), else 0."""
        return 0

    def decoder_loss(
        self, x: Tensor, latent: Tensor, batch: dict[str, Tensor], generator: torch.Generator | None
    ) -> Tensor:
        """Loss of the decoder reconstructing ``x`` from its ``latent`` (e.g. rectified flow)."""
        raise NotImplementedError(f"{type(self).__name__} has no decoder")

    def decode(self, latent: Tensor, **kwargs: Any) -> Tensor:
        """Data from latents [b, d]."""
        raise NotImplementedError(f"{type(self).__name__} cannot decode")

    def reconstruct(self, x: Tensor, latent: Tensor | None, **kwargs: Any) -> Tensor:
        """Rebuild a batch ``x`` from its latents (e.g. invert the decoder, then decode); ``reconstruct``."""
        raise NotImplementedError(f"{type(self).__name__} cannot reconstruct")

    # --------------------------------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """Parameter groups with their own learning rates: ``[{"name", "params", "lr"}]``.

        ``name`` is relative to this modality (e.g. ``"encoder"``); the LZN module prefixes the modality key,
        and ``freeze_after`` refers to these names (``image.decoder``).
        """
        params = [p for p in self.parameters() if p.requires_grad]
        return (
            [{"name": "all", "params": params, "lr": float(self.init_args.get("lr", 1e-3))}] if params else []
        )

    # --------------------------------------------------------------------------------------------- testing
    def example_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """A synthetic batch of this field (right shape and dtype)."""
        raise NotImplementedError(f"{type(self).__name__} must implement example_batch()")
