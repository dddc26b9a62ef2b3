"""The one error every datamodule raises when its files are not where it looks."""

from __future__ import annotations


class DatasetNotFoundError(FileNotFoundError):
    """A dataset is missing or incomplete on disk.

    The message names the path that was searched and says how to get the data; nothing is ever downloaded
    (training machines often have no network). Subclassing ``FileNotFoundError`` lets callers catch it as one.
    """
