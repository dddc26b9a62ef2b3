"""Inference on a trained LZN model, for any of its fields (docs/design/architecture.md §6).

:class:`LZNInference` wraps a model (composition: it holds the module, the module does not inherit from it)
and works on fields, whatever their data type::

    infer = LZNInference(model)
    images = infer.generate(condition={"label": torch.arange(10)})         # label -> image
    images = infer.generate(condition={"text": ["a thick 3", "a 7"]})     # text -> image
    captions = infer.generate(condition={"image": images}, target="text")  # image -> text (strings)
    labels = infer.classify(images)                                       # image -> label
    labels = infer.classify(["great fun"], field="text")                  # text -> label

:class:`~lzn_lightning.LZNLightningModule` exposes the same methods (``model.generate(...)``,
``model.classify(...)``, ...), each a one-line call of this class, so a loaded checkpoint has them; this
package never imports the module (no import cycle).

Every method runs with the EMA weights (when the model has them), in eval mode, without gradients, in batches
on ``model.device``, with a tqdm progress bar for long jobs, and returns CPU tensors (or, for text, strings).
Raw data is turned into a field's tensors by its modality's ``prepare`` (e.g. strings -> token ids) and
decoded tensors into user data by ``present`` (token ids -> strings); images stay tensors.

The package, one concept a file:

* :mod:`~lzn_lightning.inference.routing`: which field does what (:class:`FieldRouting`, built and checked by
  the module when it is constructed: ``model.routing``);
* :mod:`~lzn_lightning.inference.latents`: latents in the ``"bank"`` or ``"batch"`` context, with per-item
  noise (the module docstring there says how the two contexts differ);
* :mod:`~lzn_lightning.inference.generation`: ``generate``'s request, latents and decoding;
* :mod:`~lzn_lightning.inference.one_batch`: a batch as its own field (``latents``, ``anchors``,
  ``translate``, ``retrieve``; :mod:`lzn_lightning.crossmodal` re-exports them);
* :mod:`~lzn_lightning.inference.batching`: data to tensors, chunks, progress bars, generators;
* :mod:`~lzn_lightning.inference.facade`: :class:`LZNInference`, the methods above over them.

The reconstruction metrics (``reconstruction_l2``, ``mean_reconstruction_l2``) are in
:mod:`lzn_lightning.metrics`.
"""

from lzn_lightning.inference.batching import DEFAULT_BATCH_SIZE
from lzn_lightning.inference.facade import LZNInference
from lzn_lightning.inference.latents import CONTEXTS
from lzn_lightning.inference.routing import FieldRouting

__all__ = ["CONTEXTS", "DEFAULT_BATCH_SIZE", "FieldRouting", "LZNInference"]
