"""From any field to any other through the shared latent: latents, translation and retrieval (functional).

The one-batch operations of :mod:`lzn_lightning.inference.one_batch`, under the names research code uses:
a batch is its own field (no anchor bank, no chunking), results stay on the model's device and in the field's
layout (token ids, not strings). They work on the fields of a trained
:class:`~lzn_lightning.LZNLightningModule`, whatever their data types (image, text, a user's own modality):
nothing here knows about pixels or characters. The batch comes first, then the field(s), as in the
:class:`~lzn_lightning.inference.LZNInference` methods of the same names (``translate(x, source, target)``).

    z = latents(model, tokens, "text")                       # [B, d]: each text through its batch's zones
    images = translate(model, tokens, "text", "image")       # the image decoder from the texts' latents
    captions = translate(model, images, "image", "text")     # the text decoder from the images' latents
    best = retrieve(model, images, "image", "text", tokens)  # per image, the index of the text whose zone
                                                             # its latent lands in (labels: the class zone)
"""

from lzn_lightning.inference.one_batch import anchors, latents, retrieve, translate

__all__ = ["anchors", "latents", "retrieve", "translate"]
