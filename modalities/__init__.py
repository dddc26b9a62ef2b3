"""Built-in modalities (installed as ``lzn_lightning.modalities``, so YAML can use the short class names).

To add a data type, put one file next to these with a :class:`lzn_lightning.Modality` subclass and import it
here (or refer to it from YAML by its full ``class_path``).
"""

from lzn_lightning.modalities.image import ImageModality
from lzn_lightning.modalities.label import LabelModality
from lzn_lightning.modalities.text import TextModality

__all__ = ["ImageModality", "LabelModality", "TextModality"]
