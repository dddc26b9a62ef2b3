"""A real labelled text corpus that ships inside a wheel: the VADER sentiment lexicon.

``vaderSentiment`` (MIT licence, C.J. Hutto 2014; installed by ``make install`` with the dev extras) carries
``vader_lexicon.txt``: 7,520 English words, slang and emoticons, each rated for sentiment from -4 to +4 by ten
people. No entry is rated 0. Here an entry's class is the sign of its mean rating (0 negative, 1 positive);
entries with characters outside the text alphabet or longer than ``text_max_len - 1`` are left out (with the
default alphabet: 7,370 entries, 4,090 negative and 3,280 positive). Small, but real and human-labelled; the
larger labelled corpora one could name (20 Newsgroups, IMDB, AG News) are downloaded at run time, not shipped.
"""

from __future__ import annotations

from importlib import resources
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from lzn_lightning.data.base import LZNDataModule
from lzn_lightning.data.errors import DatasetNotFoundError
from lzn_lightning.data.split import stratified_split
from lzn_lightning.text_tokens import DEFAULT_ALPHABET, CharTokenizer


def load_vader_lexicon() -> list[tuple[str, float]]:
    """``(entry, mean rating)`` of every line of the lexicon, in file order."""
    try:
        text = resources.files("vaderSentiment").joinpath("vader_lexicon.txt").read_text(encoding="utf-8")
    except ModuleNotFoundError:
        raise DatasetNotFoundError(
            "the VADER lexicon ships in the vaderSentiment wheel, which is not installed: run `make install` "
            "(or pip install vaderSentiment)"
        ) from None
    rows = [line.split("\t") for line in text.splitlines() if line.strip()]
    return [(row[0], float(row[1])) for row in rows]


class TextLabelDataset(Dataset):
    """Token ids and labels as batch dicts ``{"text": [max_len], "label": []}``; ``texts``: the strings."""

    def __init__(self, tokens: Tensor, labels: Tensor, texts: list[str]) -> None:
        self.tokens, self.labels, self.texts = tokens, labels, texts

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {"text": self.tokens[index], "label": self.labels[index]}


class VaderSentimentDataModule(LZNDataModule):
    """The VADER lexicon as a text <-> label dataset: batches ``{text, label}``, classes negative/positive.

    Args:
        text_alphabet: Characters of the text modality (must equal its ``alphabet``).
        text_max_len: Tokens per entry including EOS (must equal the text modality's ``max_len``).
        val_fraction: Fraction held out for validation (stratified by class).
        test_fraction: Fraction held out for testing (stratified by class).
        batch_size: Global training batch size, summed over all devices.
        **kwargs: The other common arguments of :class:`~lzn_lightning.data.LZNDataModule`.
    """

    name = "vader"

    def __init__(
        self,
        text_alphabet: str = DEFAULT_ALPHABET,
        text_max_len: int = 24,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 256,
        **kwargs: Any,
    ) -> None:
        super().__init__(batch_size=batch_size, **kwargs)
        self.text_alphabet, self.text_max_len = text_alphabet, text_max_len
        self.val_fraction, self.test_fraction = val_fraction, test_fraction

    @property
    def num_classes(self) -> int:
        return 2

    def entries(self) -> tuple[list[str], Tensor]:
        """The usable entries (lower-cased) and their labels (1 = positive mean rating)."""
        allowed = set(self.text_alphabet)
        kept = [
            (word.lower(), float(mean > 0))
            for word, mean in load_vader_lexicon()
            if len(word) < self.text_max_len and set(word.lower()) <= allowed
        ]
        return [w for w, _ in kept], torch.tensor([y for _, y in kept], dtype=torch.long)

    def build_datasets(self) -> tuple[Dataset, Dataset, Dataset]:
        texts, labels = self.entries()
        tokens = CharTokenizer(self.text_alphabet, self.text_max_len).encode(texts)  # [N, max_len]
        splits = stratified_split(labels.numpy(), self.val_fraction, self.test_fraction, self.seed)
        return tuple(  # type: ignore[return-value]
            TextLabelDataset(tokens[torch.from_numpy(i)], labels[torch.from_numpy(i)], [texts[j] for j in i])
            for i in splits
        )
