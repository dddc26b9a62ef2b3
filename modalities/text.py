"""Text: a character tokenizer, a transformer encoder to anchors and an autoregressive decoder from latents.

Nothing is downloaded: the vocabulary is the ``alphabet`` argument, so it is part of the modality's spec and
travels in every checkpoint. A text field is a LongTensor [B, max_len] of token ids: the characters, one EOS,
then PAD up to ``max_len`` (:meth:`TextModality.tokenize` makes it from strings). The tokenizer lives in the
core (:mod:`lzn_lightning.text_tokens`, which the datamodules use too); its names stay importable from here.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn_lightning.modality import Modality
from lzn_lightning.text_tokens import BOS, DEFAULT_ALPHABET, EOS, PAD, SPECIALS, CharTokenizer
from lzn_lightning.user_files import InputError, read_lines, write_texts


class TextModality(Modality):
    """Short texts (captions, sentences) as an instance modality.

    The encoder embeds characters and positions, runs a pre-norm transformer encoder with a padding mask and
    mean-pools the real tokens into the anchor. The optional decoder is an autoregressive transformer that
    attends to ``memory_tokens`` vectors made from the latent and is trained with next-token cross-entropy;
    :meth:`decode` generates greedily (``temperature=0``) or by sampling (``temperature``, ``top_k``).

    Args:
        alphabet: Characters of the vocabulary (stored in the spec, hence in checkpoints).
        max_len: Tokens per text including EOS (texts have at most ``max_len - 1`` characters).
        lowercase: Lower-case texts in :meth:`tokenize`.
        width: Transformer width.
        heads: Attention heads.
        encoder_layers: Encoder depth.
        decoder: Whether to build the text decoder.
        decoder_layers: Decoder depth.
        memory_tokens: Vectors the latent is projected to, which the decoder attends to.
        dropout: Dropout inside both transformers.
        encoder_lr: Learning rate of the encoder.
        decoder_lr: Learning rate of the decoder.
    """

    kind: ClassVar[str] = "instance"

    def __init__(
        self,
        alphabet: str = DEFAULT_ALPHABET,
        max_len: int = 48,
        lowercase: bool = True,
        width: int = 64,
        heads: int = 4,
        encoder_layers: int = 2,
        decoder: bool = True,
        decoder_layers: int = 2,
        memory_tokens: int = 4,
        dropout: float = 0.0,
        encoder_lr: float = 1e-3,
        decoder_lr: float = 1e-3,
    ) -> None:
        super().__init__()
        if width % heads:
            raise ValueError(f"width={width} must be divisible by heads={heads}")
        self.tokenizer = CharTokenizer(alphabet, max_len, lowercase)
        self.max_len, self.width, self.heads, self.dropout = max_len, width, heads, dropout
        self.encoder_layers, self.decoder_layers, self.memory_tokens = (
            encoder_layers,
            decoder_layers,
            memory_tokens,
        )
        self.want_decoder = decoder
        self.encoder_lr, self.decoder_lr = encoder_lr, decoder_lr

    # ---------------------------------------------------------------------------------------------- build
    def _layer(self, cls: type) -> nn.Module:
        return cls(self.width, self.heads, 4 * self.width, self.dropout, batch_first=True, norm_first=True)

    def build(self, latent_dim: int) -> None:
        """Create the encoder (and decoder) once the latent size is known."""
        super().build(latent_dim)
        vocab = self.tokenizer.vocab_size
        self.encoder = nn.ModuleDict({
            "tokens": nn.Embedding(vocab, self.width, padding_idx=PAD),
            "positions": nn.Embedding(self.max_len, self.width),
            "blocks": nn.TransformerEncoder(
                self._layer(nn.TransformerEncoderLayer), self.encoder_layers, enable_nested_tensor=False
            ),
            "norm": nn.LayerNorm(self.width),
            "to_anchor": nn.Linear(self.width, latent_dim),
        })  # fmt: skip
        self.decoder: nn.ModuleDict | None = None
        if self.want_decoder:
            self.decoder = nn.ModuleDict({
                "tokens": nn.Embedding(vocab, self.width, padding_idx=PAD),
                "positions": nn.Embedding(self.max_len, self.width),
                "from_latent": nn.Linear(latent_dim, self.memory_tokens * self.width),
                "blocks": nn.TransformerDecoder(self._layer(nn.TransformerDecoderLayer), self.decoder_layers),
                "norm": nn.LayerNorm(self.width),
                "to_logits": nn.Linear(self.width, vocab),
            })  # fmt: skip

    # ------------------------------------------------------------------------------------------ tokenising
    def tokenize(self, texts: Sequence[str]) -> Tensor:
        """Token ids [B, max_len] of a list of strings (clear errors for empty, long or unknown text)."""
        return self.tokenizer.encode(texts)

    def detokenize(self, ids: Tensor) -> list[str]:
        """Strings from token ids [B, L]."""
        return self.tokenizer.decode(ids)

    def prepare(self, data: Any) -> Tensor:
        """Token ids [B, max_len] of a list of strings (token-id tensors pass through)."""
        if isinstance(data, str):
            raise ValueError("text inputs are a list of strings; got one string (wrap it in a list)")
        if isinstance(data, Tensor):
            return data
        return self.tokenize(list(data))

    def present(self, decoded: Tensor) -> list[str]:
        """The generated texts as strings."""
        return self.detokenize(decoded)

    # ----------------------------------------------------------------------------------------- user files
    input_suffixes: ClassVar[tuple[str, ...]] = (".txt",)
    output_suffixes: ClassVar[tuple[str, ...]] = (".txt", ".csv")

    def read_inputs(self, path: str | Path) -> tuple[Tensor, dict[str, list[str]]]:
        """Token ids [N, max_len] of a UTF-8 file with one text per line, with ``{"text": lines}``; an
        unreadable line is reported with its number."""
        path = Path(path)
        lines = read_lines(path)
        rows = []
        for n, line in enumerate(lines, start=1):
            try:
                rows.append(self.tokenize([line]))
            except ValueError as err:
                raise InputError(f"{path} line {n}: {str(err).replace('text 0 ', 'the text ')}") from None
        return torch.cat(rows), {"text": lines}

    def write_outputs(
        self,
        outputs: Sequence[str],
        path: str | Path,
        columns: dict[str, Any] | None = None,
        name: str = "text",
        **options: Any,
    ) -> str:
        """Texts one per line (``.txt``), or a CSV: index, the ``columns``, then the texts under ``name``."""
        write_texts(outputs, path, name, columns or {})
        return f"{len(outputs)} {name}s"

    def check_field(self, x: Tensor, name: str) -> None:
        """Text fields are int64 token ids [B, max_len], each row non-empty."""
        if x.dtype != torch.long or x.dim() != 2 or x.shape[1] != self.max_len:
            raise ValueError(
                f"field {name!r}: TextModality expects int64 token ids [B, {self.max_len}] "
                f"(tokenize(texts)), got {x.dtype} {tuple(x.shape)}"
            )
        if x.numel() and (int(x.min()) < 0 or int(x.max()) >= self.tokenizer.vocab_size):
            raise ValueError(f"field {name!r}: token ids must be in [0, {self.tokenizer.vocab_size})")
        if x.shape[0] and bool((x[:, 0] < SPECIALS).any()):
            raise ValueError(f"field {name!r}: a text is empty (its first token is not a character)")

    def check_datamodule(self, datamodule: Any, name: str) -> None:
        """A datamodule that tokenises text (``text_alphabet``, ``text_max_len``) must match this modality."""
        for attr, mine in (("text_alphabet", self.tokenizer.alphabet), ("text_max_len", self.max_len)):
            theirs = getattr(datamodule, attr, None)
            if theirs is not None and theirs != mine:
                arg = "alphabet" if attr == "text_alphabet" else "max_len"
                raise ValueError(
                    f"model.modalities.{name}.init_args.{arg}={mine!r} but the data tokenises with "
                    f"{attr}={theirs!r}; set both to the same value"
                )

    # --------------------------------------------------------------------------------------------- encode
    def encode(self, x: Tensor) -> Tensor:
        """Anchors [B, d]: the mean of the transformer outputs over each text's real tokens."""
        enc = self.encoder
        real = x != PAD  # [B, L]; the EOS token counts as real (it marks the length)
        h = enc["tokens"](x) + enc["positions"].weight[: x.shape[1]]  # [B, L, width]
        h = enc["blocks"](h, src_key_padding_mask=~real)
        h = enc["norm"](h)
        weights = real.unsqueeze(-1).to(h.dtype)  # [B, L, 1]
        pooled = (h * weights).sum(1) / weights.sum(1).clamp_min(1.0)  # [B, width]
        return enc["to_anchor"](pooled)

    # --------------------------------------------------------------------------------------------- decode
    @property
    def has_decoder(self) -> bool:
        """True when built with ``decoder=True``."""
        return self.decoder is not None

    def _logits(self, inputs: Tensor, latent: Tensor) -> Tensor:
        """Next-token logits [B, L, vocab] for decoder inputs [B, L] (BOS first) given latents [B, d]."""
        dec = self.decoder
        assert dec is not None, "built with decoder=False"
        b, length = inputs.shape
        memory = dec["from_latent"](latent).view(b, self.memory_tokens, self.width)  # [B, M, width]
        h = dec["tokens"](inputs) + dec["positions"].weight[:length]  # [B, L, width]
        causal = nn.Transformer.generate_square_subsequent_mask(length, device=inputs.device, dtype=h.dtype)
        h = dec["blocks"](h, memory, tgt_mask=causal, tgt_is_causal=True)
        return dec["to_logits"](dec["norm"](h))

    def decoder_loss(
        self, x: Tensor, latent: Tensor, batch: dict[str, Tensor], generator: torch.Generator | None
    ) -> Tensor:
        """Next-token cross-entropy of the text given its latent, over the characters and the EOS."""
        bos = torch.full_like(x[:, :1], BOS)
        inputs = torch.cat([bos, x[:, :-1]], dim=1)  # [B, L]: BOS, then the text shifted right
        logits = self._logits(inputs, latent)  # [B, L, vocab]
        return F.cross_entropy(logits.flatten(0, 1), x.flatten(), ignore_index=PAD)

    @torch.no_grad()
    def decode(
        self,
        latent: Tensor,
        temperature: float = 0.0,
        top_k: int | None = None,
        generator: torch.Generator | None = None,
        **kwargs: Any,
    ) -> Tensor:
        """Token ids [B, max_len] generated from latents [B, d] (PAD after each text's EOS).

        Args:
            latent: Latents [B, d].
            temperature: 0 takes the most likely character (greedy); > 0 samples from the softmax at that
                temperature.
            top_k: When sampling, only the ``top_k`` most likely tokens are candidates.
            generator: Random generator of the sampling.
            **kwargs: Ignored (other modalities' decode options).
        """
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}")
        b = latent.shape[0]
        out = torch.full((b, self.max_len), PAD, dtype=torch.long, device=latent.device)
        inputs = torch.full((b, 1), BOS, dtype=torch.long, device=latent.device)
        finished = torch.zeros(b, dtype=torch.bool, device=latent.device)
        for t in range(self.max_len):
            logits = self._logits(inputs, latent)[:, -1].float()  # [B, vocab]
            logits[:, PAD] = logits[:, BOS] = float("-inf")  # never generated
            if t == 0:
                logits[:, EOS] = float("-inf")  # texts are non-empty
            if t == self.max_len - 1:
                logits[:, SPECIALS:] = float("-inf")  # the last slot can only close the text
            if temperature == 0:
                token = logits.argmax(-1)
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.shape[1]:
                    kth = logits.topk(top_k, dim=-1).values[:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                token = torch.multinomial(logits.softmax(-1), 1, generator=generator).squeeze(1)
            token = torch.where(finished, torch.full_like(token, PAD), token)
            out[:, t] = token
            finished |= token == EOS
            if bool(finished.all()):
                break
            inputs = torch.cat([inputs, token.unsqueeze(1)], dim=1)
        return out

    # --------------------------------------------------------------------------------------- optimisation
    def param_groups(self) -> list[dict[str, Any]]:
        """``encoder`` and ``decoder`` groups with their learning rates."""
        groups = [{"name": "encoder", "params": list(self.encoder.parameters()), "lr": self.encoder_lr}]
        if self.decoder is not None:
            groups.append(
                {"name": "decoder", "params": list(self.decoder.parameters()), "lr": self.decoder_lr}
            )
        return groups

    def example_batch(self, batch_size: int, generator: torch.Generator | None = None) -> Tensor:
        """Random texts of 1 to ``max_len - 1`` characters, tokenised."""
        lengths = torch.randint(1, self.max_len, (batch_size,), generator=generator).tolist()
        chars = [
            torch.randint(0, len(self.tokenizer.alphabet), (n,), generator=generator).tolist()
            for n in lengths
        ]
        return self.tokenize(["".join(self.tokenizer.alphabet[k] for k in row) for row in chars])
