"""TextModality: tokenizer errors, padding masks, causal decoding, sampling options, a decoder that learns."""

from __future__ import annotations

import pytest
import torch
from lzn_lightning.modalities.text import EOS, PAD, CharTokenizer, TextModality

D = 8


def _text(**kw: object) -> TextModality:
    args: dict = {"width": 32, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "max_len": 16}
    m = TextModality(**(args | kw))
    m.build(D)
    return m.eval()


def test_tokenizer_round_trip_and_layout() -> None:
    tok = CharTokenizer("abc ", max_len=6)
    ids = tok.encode(["ab", "Cab a"])  # lower-cased
    assert ids.dtype == torch.long and ids.shape == (2, 6)
    assert ids[0].tolist() == [3, 4, EOS, PAD, PAD, PAD]
    assert tok.decode(ids) == ["ab", "cab a"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "text 0 is empty"),
        ("abcabcabc", "has 9 characters, more than max_len - 1 = 5"),
        ("ab#z", r"outside the alphabet: \['#', 'z'\]"),
    ],
)
def test_tokenizer_errors_say_what_to_do(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        CharTokenizer("abc ", max_len=6).encode([text])


def test_field_check_names_the_expected_layout() -> None:
    m = _text()
    with pytest.raises(ValueError, match=r"int64 token ids \[B, 16\]"):
        m.check_field(torch.zeros(2, 16), "caption")  # floats, e.g. a cast applied by mistake
    with pytest.raises(ValueError, match="a text is empty"):
        m.check_field(torch.full((2, 16), PAD, dtype=torch.long), "caption")


def test_padding_is_masked_in_the_encoder() -> None:
    m = _text()
    ids = m.tokenize(["a two", "seven, thin"])  # [2, 16] with PAD after each EOS
    short = ids[:1, :6]  # "a two" + EOS: the same text without any padding
    torch.testing.assert_close(m.encode(ids)[:1], m.encode(short), atol=1e-6, rtol=1e-5)


def test_decoder_is_causal() -> None:
    m = _text()
    z = torch.randn(2, D)
    a = m.tokenize(["abcdef", "hello"])
    b = a.clone()
    b[:, 4:] = m.tokenize(["zzzzzzzzzzzzzzz", "zzzzzzzzzzzzzzz"])[:, 4:]  # change only the future
    la, lb = m._logits(a, z), m._logits(b, z)
    torch.testing.assert_close(la[:, :4], lb[:, :4])


def test_sampling_options() -> None:
    m = _text()
    z = torch.randn(3, D)
    greedy = m.decode(z)
    assert greedy.shape == (3, 16) and torch.equal(greedy, m.decode(z))
    assert torch.equal(m.decode(z, temperature=1.0, top_k=1), greedy)  # top-1 sampling is greedy
    s1 = m.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(0))
    s2 = m.decode(z, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2)
    assert all(len(t) >= 1 for t in m.detokenize(m.decode(z, temperature=2.0)))  # never an empty text
    with pytest.raises(ValueError, match="temperature"):
        m.decode(z, temperature=-1)


def test_decoder_learns_to_write_the_text_of_each_latent() -> None:
    torch.manual_seed(0)
    m = _text().train()
    texts = ["a thin 3", "a bold seven", "two, slanted", "zero"]
    x = m.tokenize(texts)
    z = torch.randn(4, D)
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    for _ in range(200):
        opt.zero_grad()
        loss = m.decoder_loss(x, z, {}, None)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05
    assert m.eval().detokenize(m.decode(z)) == texts


def test_tokenizer_lives_in_the_core_and_keeps_its_old_path() -> None:
    """The datamodules use the tokenizer too, so it is in lzn_lightning.text_tokens; a pickle that names it by
    its old path (lzn_lightning.modalities.text.CharTokenizer) still loads."""
    import pickle

    from lzn_lightning import text_tokens

    assert CharTokenizer is text_tokens.CharTokenizer and (PAD, EOS) == (text_tokens.PAD, text_tokens.EOS)
    old = pickle.dumps(CharTokenizer("abc ", 6), protocol=0).replace(
        b"lzn_lightning.text_tokens", b"lzn_lightning.modalities.text"
    )
    assert b"lzn_lightning.modalities.text" in old
    assert pickle.loads(old).encode(["ab"]).tolist() == [[3, 4, EOS, PAD, PAD, PAD]]
