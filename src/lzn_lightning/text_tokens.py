"""The character tokenizer of text fields: characters of a fixed alphabet <-> token ids.

Part of the core, not of the text plug-in, because the datamodules tokenise their texts too (data/captions.py,
data/vader.py, data/synthetic.py); ``TextModality`` (modalities/text.py) builds one from its spec. Nothing is
downloaded: the vocabulary is the alphabet, an argument, so it travels in every checkpoint as part of the
modality's spec (the tokenizer itself is never stored).
"""

from __future__ import annotations

import string
from collections.abc import Sequence

import torch
from torch import Tensor

PAD, BOS, EOS = 0, 1, 2
SPECIALS = 3  # ids below this are PAD, BOS, EOS; character k of the alphabet is id SPECIALS + k
# Lower-case letters, digits, space and light punctuation: enough for captions and short labelled texts.
DEFAULT_ALPHABET = string.ascii_lowercase + string.digits + " .,;:!?'-()/&%+"


class CharTokenizer:
    """Characters of a fixed alphabet <-> token ids, padded to a fixed length.

    Args:
        alphabet: The characters, each once; character ``k`` gets id ``3 + k``.
        max_len: Tokens per text including its EOS, so at most ``max_len - 1`` characters.
        lowercase: Lower-case texts before encoding (for an alphabet without capitals).
    """

    def __init__(self, alphabet: str, max_len: int, lowercase: bool = True) -> None:
        if len(set(alphabet)) != len(alphabet) or not alphabet:
            raise ValueError("alphabet must be a non-empty string of distinct characters")
        if max_len < 2:
            raise ValueError(f"max_len must be >= 2 (one character and EOS), got {max_len}")
        self.alphabet, self.max_len, self.lowercase = alphabet, max_len, lowercase
        self.ids = {c: SPECIALS + k for k, c in enumerate(alphabet)}

    @property
    def vocab_size(self) -> int:
        """Number of token ids (specials + alphabet)."""
        return SPECIALS + len(self.alphabet)

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Token ids [len(texts), max_len] (int64).

        Raises:
            ValueError: An empty text, a text longer than ``max_len - 1`` characters, or characters outside
                the alphabet (all of them are listed).
        """
        if isinstance(texts, str):
            raise TypeError("encode takes a list of texts, not one string; wrap it: [text]")
        out = torch.full((len(texts), self.max_len), PAD, dtype=torch.long)
        for i, text in enumerate(texts):
            text = text.lower() if self.lowercase else text
            if not text:
                raise ValueError(f"text {i} is empty; every text needs at least one character")
            if len(text) > self.max_len - 1:
                raise ValueError(
                    f"text {i} has {len(text)} characters, more than max_len - 1 = {self.max_len - 1}: "
                    f"{text[:40]!r}...; shorten it or raise the modality's max_len"
                )
            unknown = sorted(set(text) - set(self.ids))
            if unknown:
                raise ValueError(
                    f"text {i} ({text[:40]!r}) has characters outside the alphabet: {unknown}; remove "
                    "them or add them to the modality's alphabet"
                )
            out[i, : len(text)] = torch.tensor([self.ids[c] for c in text])
            out[i, len(text)] = EOS
        return out

    def decode(self, ids: Tensor) -> list[str]:
        """Strings from token ids [B, L]: the characters up to the first EOS (or PAD)."""
        texts = []
        for row in ids.tolist():
            chars = []
            for t in row:
                if t in (EOS, PAD):
                    break
                if t >= SPECIALS:
                    chars.append(self.alphabet[t - SPECIALS])
            texts.append("".join(chars))
        return texts
