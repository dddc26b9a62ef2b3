"""``python -m lzn_lightning`` == ``lzn``."""

from lzn_lightning.cli import entry

entry()
