"""The plug-in contract, checked for every Modality subclass that is importable (built-ins and the README example).

A new data type gets these checks for free: spec round trip, shapes, finite losses, a gradient for every
trainable parameter, and a state-dict round trip. Extra configurations of a class (e.g. a timm encoder) are
listed in EXTRA_CONFIGS; any other subclass is checked with its defaults.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
import vector_modality  # noqa: F401  (the README example plug-in, from tests/plugins)

import lzn_lightning.modalities  # noqa: F401  (registers the built-ins as Modality subclasses)
from lzn_lightning import Modality

LATENT_DIM = 8


def _all_subclasses(cls: type) -> list[type]:
    out = []
    for sub in cls.__subclasses__():
        out += [sub, *_all_subclasses(sub)]
    return out


# Small or alternative configurations, keyed by class name; every subclass is also checked with its defaults.
EXTRA_CONFIGS: dict[str, list[dict[str, Any]]] = {
    "ImageModality": [
        {"encoder_width": 8, "decoder_width": 8, "head_hidden": 16, "num_classes": 3},  # label-conditioned decoder
        {"encoder": "resnet18", "head_hidden": 16, "decoder": False, "channels": 3},  # timm backbone + GN head
        {"encoder": "none", "decoder_width": 8, "latent_conditioning": False},  # the plain RF baseline
    ],
    "VectorModality": [{"decoder": True}],
    "TextModality": [{"width": 16, "heads": 2, "encoder_layers": 1, "decoder_layers": 1, "max_len": 12}],
}
CASES = [
    pytest.param(cls, cfg, id=f"{cls.__name__}-{i}")
    for cls in _all_subclasses(Modality)
    for i, cfg in enumerate([{}, *EXTRA_CONFIGS.get(cls.__name__, [])])
]


def _build(cls: type, cfg: dict[str, Any]) -> Modality:
    m = cls(**cfg)
    m.build(LATENT_DIM)
    return m


def _loss(m: Modality, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """A scalar that touches every part of the modality: anchors (or the table) and the decoder loss."""
    batch = {"image": x, "label": torch.randint(0, 3, (x.shape[0],), generator=g)}
    if m.kind == "categorical":
        loss = m.anchor_table().square().mean()
    else:
        has_encoder = m.has_encoder
        loss = m.encode(x).square().mean() if has_encoder else torch.zeros(())
    if m.has_decoder:
        latent = torch.randn(x.shape[0], LATENT_DIM, generator=g, requires_grad=True)
        loss = loss + m.decoder_loss(x, latent, batch, g)
    return loss


def test_every_builtin_is_covered() -> None:
    names = {p.values[0].__name__ for p in CASES}
    assert {"ImageModality", "LabelModality", "TextModality", "VectorModality"} <= names


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_spec_round_trip(cls: type, cfg: dict[str, Any]) -> None:
    m = cls(**cfg)
    spec = m.spec()
    assert set(spec) == {"class_path", "init_args"}
    again = Modality.from_spec(spec)
    assert type(again) is cls and again.init_args == m.init_args
    assert again.spec() == spec
    assert m.kind in ("instance", "categorical")


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_shapes_finite_losses_and_every_parameter_gets_a_gradient(cls: type, cfg: dict[str, Any]) -> None:
    g = torch.Generator().manual_seed(0)
    m = _build(cls, cfg)
    x = m.example_batch(4, g)
    m.check_field(x, "field")
    if m.kind == "categorical":
        table = m.anchor_table()
        assert table.dim() == 2 and table.shape[1] == LATENT_DIM
    elif m.has_encoder:
        anchors = m.encode(x)
        assert anchors.shape == (4, LATENT_DIM) and torch.isfinite(anchors).all()
    loss = _loss(m, x, g)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    trainable = [n for n, p in m.named_parameters() if p.requires_grad]
    assert trainable
    missing = [n for n, p in m.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, f"parameters without a gradient: {missing}"
    grouped = {id(p) for group in m.param_groups() for p in group["params"]}
    assert grouped == {id(p) for p in m.parameters() if p.requires_grad}, "param_groups must cover every parameter"
    if m.has_decoder:
        with torch.no_grad():
            kw = {"labels": torch.zeros(4, dtype=torch.long)} if getattr(m, "num_classes", 0) and m.kind == "instance" else {}
            out = m.decode(torch.randn(4, LATENT_DIM, generator=g), **kw)
        assert out.shape == x.shape


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_state_dict_round_trip(cls: type, cfg: dict[str, Any]) -> None:
    g = torch.Generator().manual_seed(1)
    m = _build(cls, cfg).eval()
    other = Modality.from_spec(m.spec())
    other.build(LATENT_DIM)
    other.load_state_dict(m.state_dict())
    other.eval()
    x = m.example_batch(3, g)
    with torch.no_grad():
        if m.kind == "categorical":
            torch.testing.assert_close(other.anchor_table(), m.anchor_table())
        elif m.has_encoder:
            torch.testing.assert_close(other.encode(x), m.encode(x))


@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_bad_field_is_a_clear_error(cls: type, cfg: dict[str, Any]) -> None:
    m = _build(cls, cfg)
    wrong = torch.zeros(2, 3, 5, 7, 9)  # no modality takes a 5-d float field
    with pytest.raises(ValueError, match="field 'x'"):
        m.check_field(wrong, "x")
