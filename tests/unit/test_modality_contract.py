"""The plug-in contract, checked for every Modality subclass that is importable (built-ins and the README
example), and the contract the base declares (defaults, missing hooks named at construction, users' files).

A new data type gets these checks for free: spec round trip, shapes, finite losses, a gradient for every
trainable parameter, and a state-dict round trip. Extra configurations of a class (e.g. a timm encoder) are
listed in EXTRA_CONFIGS; any other subclass is checked with its defaults.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import lzn_lightning.modalities  # noqa: F401  (registers the built-ins as Modality subclasses)
import numpy as np
import pytest
import torch
import vector_modality  # noqa: F401  (the README example plug-in, from tests/plugins)

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
        {
            "encoder": {"name": "tower", "width": 8, "head_hidden": 16},
            "decoder": {"name": "unet", "width": 8},
            "num_classes": 3,
        },  # label-conditioned decoder
        {
            "encoder": {"name": "resnet18", "head_hidden": 16, "small_input": True},
            "decoder": None,
            "channels": 3,
        },  # timm backbone + GN head
        {"encoder": None, "decoder": {"name": "unet", "width": 8}, "latent_conditioning": False},  # plain RF
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
    assert grouped == {id(p) for p in m.parameters() if p.requires_grad}, (
        "param_groups must cover every parameter"
    )
    if m.has_decoder:
        with torch.no_grad():
            kw = (
                {"labels": torch.zeros(4, dtype=torch.long)}
                if getattr(m, "num_classes", 0) and m.kind == "instance"
                else {}
            )
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


# ------------------------------------------------------------------------------------ the declared contract
@pytest.mark.parametrize(("cls", "cfg"), CASES)
def test_every_modality_meets_its_declared_contract(cls: type, cfg: dict[str, Any]) -> None:
    m = _build(cls, cfg)
    m.check_contract("field")  # no hook its kind needs is missing
    assert isinstance(m.num_classes, int) and m.num_classes >= 0
    assert m.sample_steps is None or (isinstance(m.sample_steps, int) and m.sample_steps > 0)
    assert isinstance(m.decoder_classes, int) and m.decoder_classes <= m.num_classes
    for suffix in (*m.input_suffixes, *m.output_suffixes):
        assert suffix == "/" or (suffix.startswith(".") and suffix == suffix.lower()), suffix


def _vector_like(**methods: Any) -> type:
    """A fresh instance Modality subclass with only ``build`` and the given methods/attributes."""

    def build(self: Modality, latent_dim: int) -> None:
        Modality.build(self, latent_dim)
        self.net = torch.nn.Linear(3, latent_dim)

    return type("Partial", (Modality,), {"build": build, **methods})


def test_defaults_of_the_base_behave() -> None:
    m = _vector_like(encode=lambda self, x: self.net(x))()
    m.build(LATENT_DIM)
    m.check_contract("vec")
    assert (m.kind, m.num_classes, m.sample_steps, m.decoder_classes) == ("instance", 0, None, 0)
    assert m.has_encoder and not m.has_decoder
    assert m.input_suffixes == () and m.output_suffixes == ()
    x = torch.ones(2, 3)
    assert m.prepare(x) is x and torch.equal(m.prepare([[1.0, 2.0, 3.0]]), torch.tensor([[1.0, 2.0, 3.0]]))
    assert m.present(x) is x
    assert torch.equal(m.embed(x), m.encode(x))
    with pytest.raises(ValueError, match="Partial reads no input files"):
        m.read_inputs("x.npy")
    with pytest.raises(ValueError, match="Partial writes no output files"):
        m.write_outputs(x, "x.npy")
    with pytest.raises(NotImplementedError, match="no latent\\(\\) flow"):
        m.latent(torch.zeros(2, dtype=torch.long), torch.zeros(2, LATENT_DIM))


@pytest.mark.parametrize(
    ("kind", "methods", "missing"),
    [
        ("instance", {}, "encode()"),
        ("categorical", {"anchor_table": lambda self: torch.zeros(3, LATENT_DIM)}, "decode(), latent()"),
        (
            "instance",
            {"encode": lambda self, x: x, "has_decoder": property(lambda self: True)},
            "decode(), decoder_loss()",
        ),
        ("instance", {"encode": lambda self, x: x, "input_suffixes": (".csv",)}, "read_inputs()"),
        ("instance", {"encode": lambda self, x: x, "output_suffixes": (".csv",)}, "write_outputs()"),
    ],
)
def test_a_plugin_missing_a_hook_fails_at_construction_naming_it(
    kind: str, methods: dict[str, Any], missing: str
) -> None:
    from lzn_lightning import LZNLightningModule

    cls = _vector_like(kind=kind, **methods)
    message = rf"modality 'thing': Partial \(kind '{kind}'.*must implement {re.escape(missing)}; see"
    with pytest.raises(TypeError, match=message):
        LZNLightningModule(modalities={"thing": cls()}, latent_dim=LATENT_DIM)


def test_an_unknown_kind_is_refused() -> None:
    m = _vector_like(kind="sequence", encode=lambda self, x: x)()
    m.build(LATENT_DIM)
    with pytest.raises(TypeError, match="kind must be 'instance' or 'categorical', got 'sequence'"):
        m.check_contract("seq")


# ------------------------------------------------------------------------------------------ users' files
def test_image_files_round_trip_through_the_modality(tmp_path: Path) -> None:
    from lzn_lightning.modalities import ImageModality
    from PIL import Image

    m = ImageModality(channels=1, size=8, encoder={"name": "tower", "width": 8, "head_hidden": 16},
                      decoder={"name": "unet", "width": 8})  # fmt: skip
    images = torch.rand(3, 1, 8, 8) * 2 - 1
    assert m.write_outputs(images, tmp_path / "x.npy") == "3 samples [1, 8, 8]"
    read, columns = m.read_inputs(tmp_path / "x.npy")
    assert torch.equal(read, images) and columns == {}
    m.write_outputs(images, tmp_path / "x.npz", {"label": [0, 1, 2]})
    with np.load(tmp_path / "x.npz") as z:
        assert sorted(z.files) == ["images", "labels"] and z["labels"].tolist() == [0, 1, 2]
    m.write_outputs(images, tmp_path / "grid.png", nrow=3)
    assert Image.open(tmp_path / "grid.png").size == (3 * 9 + 1, 9 + 1)  # 3 per row, 1 px padding
    (tmp_path / "dir").mkdir()
    Image.fromarray(np.full((8, 8), 255, np.uint8)).save(tmp_path / "dir" / "a.png")
    read, columns = m.read_inputs(tmp_path / "dir")
    assert read.shape == (1, 1, 8, 8) and bool((read == 1).all()) and columns == {"file": ["a.png"]}
    with pytest.raises(ValueError, match=r"must be a \.npy file or a folder of images"):
        m.read_inputs(tmp_path / "grid.png")


def test_text_files_round_trip_through_the_modality(tmp_path: Path) -> None:
    from lzn_lightning.modalities import TextModality

    m = TextModality(width=16, heads=2, encoder_layers=1, decoder_layers=1, max_len=12)
    lines = ["a thick 3", "a 7"]
    assert m.write_outputs(lines, tmp_path / "t.txt") == "2 texts"
    tokens, columns = m.read_inputs(tmp_path / "t.txt")
    assert torch.equal(tokens, m.tokenize(lines)) and columns == {"text": lines}
    assert m.write_outputs(lines, tmp_path / "t.csv", {"label": [3, 7]}, name="caption") == "2 captions"
    rows = (tmp_path / "t.csv").read_text().splitlines()
    assert rows == ["index,label,caption", "0,3,a thick 3", "1,7,a 7"]
    (tmp_path / "bad.txt").write_text("fine\n" + "x" * 40 + "\n")
    with pytest.raises(ValueError, match=r"bad\.txt line 2: "):
        m.read_inputs(tmp_path / "bad.txt")
