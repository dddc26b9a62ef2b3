"""Image networks by name (lzn_lightning.nets.factory), the representation ``embed`` returns, and the
translation of the old flat ``ImageModality`` arguments that checkpoints written before issue 34 store."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

import lightning
import lightning.pytorch as pl
import pytest
import torch
from lzn_lightning.modalities import ImageModality
from lzn_lightning.modalities.image_legacy import from_flat, is_flat
from torch import Tensor, nn

from lzn_lightning import LZNLightningModule
from lzn_lightning.modality import Modality
from lzn_lightning.nets import factory
from lzn_lightning.nets.factory import (
    create_image_decoder,
    create_image_encoder,
    image_decoders,
    image_encoders,
    register_image_encoder,
)

# Small arguments for every registered network, so each builds in milliseconds.
SMALL_ENCODERS: dict[str, dict[str, Any]] = {
    "tower": {"width": 8, "head_channels": 4, "head_hidden": 16},
    "ncsnpp": {"width": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [], "head_hidden": 16},
    "resnet50_gn": {"layers": [1, 1, 1, 1], "width": 32},
}
SMALL_DECODERS: dict[str, dict[str, Any]] = {
    "unet": {"width": 8},
    "ncsnpp": {"width": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": []},
}


class TinyEncoder(nn.Module):
    """A user's encoder: a linear map of the flattened image (also importable by its dotted name)."""

    representation: ClassVar[str] = "features"

    def __init__(self, channels: int, size: int, out_dim: int, hidden: int = 4) -> None:
        super().__init__()
        self.trunk = nn.Linear(channels * size * size, hidden)
        self.head = nn.Linear(hidden, out_dim)

    def features(self, x: Tensor) -> Tensor:
        return self.trunk(x.flatten(1))  # [B, C*H*W] -> [B, hidden]

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.features(x))


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Registrations made by a test are undone after it."""
    monkeypatch.setattr(factory, "_ENCODERS", dict(factory._ENCODERS))
    monkeypatch.setattr(factory, "_DECODERS", dict(factory._DECODERS))


def test_every_registered_network_has_small_test_arguments() -> None:
    assert image_encoders() == sorted(SMALL_ENCODERS) and image_decoders() == sorted(SMALL_DECODERS)


@pytest.mark.parametrize("name", sorted(SMALL_ENCODERS))
def test_every_registered_encoder_builds_and_offers_anchors_and_features(name: str) -> None:
    net = create_image_encoder(name, channels=3, size=16, out_dim=8, **SMALL_ENCODERS[name])
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    assert net(x).shape == (2, 8)
    assert net.features(x).dim() == 2 and net.features(x).shape[0] == 2
    assert net.representation in factory.REPRESENTATIONS


def test_any_timm_name_is_a_backbone_with_the_projection_head() -> None:
    from lzn_lightning.nets import TimmAnchorEncoder

    net = create_image_encoder("resnet18", channels=1, size=8, out_dim=8, head_hidden=16, small_input=True)
    assert isinstance(net, TimmAnchorEncoder) and net.representation == "features"
    assert net(torch.rand(2, 1, 8, 8)).shape == (2, 8)


@pytest.mark.parametrize("name", sorted(SMALL_DECODERS))
def test_every_registered_decoder_builds_and_gives_a_velocity(name: str) -> None:
    net = create_image_decoder(name, channels=1, size=8, latent_dim=6, num_classes=3, **SMALL_DECODERS[name])
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    assert net(x, t, torch.randn(2, 6), torch.tensor([0, 2])).shape == (2, 1, 8, 8)


def test_an_unknown_name_lists_the_registered_ones() -> None:
    with pytest.raises(ValueError, match=r"unknown image encoder 'towr': registered are ncsnpp, resnet50_gn, "
                       r"tower; any timm model name"):  # fmt: skip
        create_image_encoder("towr", channels=1, size=8, out_dim=4)
    with pytest.raises(ValueError, match=r"unknown image decoder 'unte': registered are ncsnpp, unet"):
        ImageModality(decoder="unte")


def test_an_unknown_argument_names_the_network_and_its_arguments() -> None:
    with pytest.raises(ValueError, match=r"image encoder 'tower' \(AnchorTower\) takes no argument 'widht'; "
                       r"its own arguments are width, ch_mult, "):  # fmt: skip
        ImageModality(encoder={"name": "tower", "widht": 8})
    # what the modality passes is not the network's own argument
    with pytest.raises(ValueError, match=r"'channels'.*\(channels, size, latent_dim, num_classes, "):
        ImageModality(decoder={"name": "unet", "channels": 3})
    with pytest.raises(ValueError, match=r"'size'; .* \(channels, out_dim come from the modality\)"):
        ImageModality(encoder={"name": "resnet50_gn", "size": 8})
    with pytest.raises(ValueError, match="TimmAnchorEncoder"):
        create_image_encoder("resnet18", channels=1, size=8, out_dim=4, width=3)


def test_a_network_is_a_name_or_a_dict_with_a_name() -> None:
    with pytest.raises(
        ValueError, match=r"encoder must be a network name or \{name: \.\.\., <its arguments>\}"
    ):
        ImageModality(encoder={"width": 8})
    with pytest.raises(ValueError, match="neither encoder nor decoder"):
        ImageModality(encoder=None, decoder=None)


@pytest.mark.usefixtures("registry")
def test_a_registered_encoder_is_used_by_name_and_embeds_its_declared_representation() -> None:
    register_image_encoder("linear")(TinyEncoder)
    with pytest.raises(ValueError, match="already registered"):
        register_image_encoder("linear")(TinyEncoder)
    m = ImageModality(encoder={"name": "linear", "hidden": 5}, decoder=None)
    m.build(6)
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert isinstance(m.encoder, TinyEncoder) and m.encode(x).shape == (3, 6)
    assert torch.equal(m.embed(x), m.encoder.features(x)) and m.embed(x).shape == (3, 5)
    with pytest.raises(ValueError, match=r"takes no argument 'width'; its own arguments are hidden"):
        ImageModality(encoder={"name": "linear", "width": 5})


def test_a_dotted_name_is_imported() -> None:
    m = ImageModality(encoder=f"{__name__}.TinyEncoder", decoder=None)
    m.build(4)
    assert type(m.encoder).__name__ == "TinyEncoder"
    with pytest.raises(ValueError, match=r"cannot import image decoder 'nowhere\.Decoder'"):
        ImageModality(decoder="nowhere.Decoder")


@pytest.mark.usefixtures("registry")
def test_an_encoder_without_a_declared_representation_is_refused() -> None:
    class NoRepresentation(TinyEncoder):
        representation = "pooled"  # type: ignore[assignment]

    register_image_encoder("bad")(NoRepresentation)
    with pytest.raises(TypeError, match="must define features\\(x\\) and a class attribute representation"):
        create_image_encoder("bad", channels=1, size=8, out_dim=4)


@pytest.mark.parametrize(
    ("encoder", "representation"),
    [({"name": "tower", **SMALL_ENCODERS["tower"]}, "anchor"),
     ({"name": "resnet50_gn", **SMALL_ENCODERS["resnet50_gn"]}, "features")],
)  # fmt: skip
def test_embed_returns_the_representation_the_encoder_declares(encoder: dict, representation: str) -> None:
    torch.manual_seed(0)
    m = ImageModality(channels=3, size=16, encoder=encoder, decoder=None, anchor_norm="batch")
    m.build(8)
    m.eval()
    x = torch.rand(4, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        expected = m.encode(x) if representation == "anchor" else m.encoder.features(x)
        assert torch.equal(m.embed(x), expected)
        assert torch.equal(m.trunk_features(x), m.encoder.features(x))
    assert m.encoder.representation == representation


# ------------------------------------------------------------------------- the old flat arguments
# A spec as checkpoints before issue 34 recorded it (every argument, defaults included).
OLD_TINY: dict[str, Any] = {
    "channels": 1, "size": 8, "encoder": "tower", "encoder_width": 8, "encoder_ch_mult": (1, 2),
    "encoder_blocks": 1, "head_channels": 4, "head_hidden": 16, "head_min_resolution": 1,
    "head_max_resolution": None, "anchor_norm": "batch", "anchor_scale": 0.15, "small_input": True,
    "encoder_dropout": 0.0, "encoder_lr": 1e-3, "decoder": True, "decoder_arch": "unet", "decoder_width": 8,
    "decoder_ch_mult": (1, 2), "decoder_blocks": 1, "attn_resolutions": (), "decoder_dropout": 0.0,
    "decoder_lr": 1e-3, "fir": False, "progressive": False, "time_embedding": "positional",
    "scale_by_sigma": False, "latent_conditioning": True, "num_classes": 3, "label_field": "label",
    "sample_steps": 3, "sample_method": "euler",
}  # fmt: skip
NEW_TINY: dict[str, Any] = {
    "channels": 1, "size": 8, "anchor_norm": "batch", "anchor_scale": 0.15, "encoder_lr": 1e-3,
    "decoder_lr": 1e-3, "latent_conditioning": True, "num_classes": 3, "label_field": "label",
    "sample_steps": 3, "sample_method": "euler",
    "encoder": {"name": "tower", "width": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "head_channels": 4,
                "head_hidden": 16, "dropout": 0.0, "head_min_resolution": 1, "head_max_resolution": None},
    "decoder": {"name": "unet", "width": 8, "ch_mult": [1, 2], "num_res_blocks": 1, "attn_resolutions": [],
                "dropout": 0.0},
}  # fmt: skip


def test_old_flat_arguments_translate_to_networks_with_their_own_arguments() -> None:
    assert is_flat(OLD_TINY) and not is_flat(NEW_TINY)
    assert from_flat(OLD_TINY) == NEW_TINY
    assert from_flat(NEW_TINY) == NEW_TINY
    old_ncsnpp = {"size": 256, "encoder": "ncsnpp", "encoder_ch_mult": [1, 1, 2, 2, 2, 2, 2],
                  "head_min_resolution": 4, "head_max_resolution": 64, "attn_resolutions": [16], "fir": True,
                  "decoder_arch": "ncsnpp", "time_embedding": "fourier", "anchor_norm": "batch"}  # fmt: skip
    new = from_flat(old_ncsnpp)
    assert new["encoder"]["head_resolutions"] == [64, 32, 16, 8, 4]
    assert new["encoder"]["attn_resolutions"] == new["decoder"]["attn_resolutions"] == [16]
    assert new["encoder"]["fir"] and new["decoder"]["fir"] and new["decoder"]["time_embedding"] == "fourier"
    assert "anchor_norm" not in new  # the old code normalised only the tower's anchors
    assert from_flat({"encoder": "none", "decoder_width": 8})["encoder"] is None
    assert from_flat({"encoder": "resnet50_gn", "decoder": False}) == {
        "encoder": "resnet50_gn",
        "decoder": None,
    }
    assert from_flat({"encoder": "resnet18", "decoder": False})["encoder"] == {
        "name": "resnet18", "head_hidden": 200, "small_input": True,
    }  # fmt: skip


def test_a_checkpoint_with_an_old_flat_spec_loads(tmp_path: Path) -> None:
    pl.seed_everything(0)
    args: dict[str, Any] = {"latent_dim": 8, "ema_decay": 0.9}
    model = LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality", "init_args": NEW_TINY}}, **args
    )
    hparams = dict(model.hparams)
    hparams["modalities"] = {"image": {"class_path": "ImageModality", "init_args": dict(OLD_TINY)}}
    path = tmp_path / "old.ckpt"  # as lzn fit wrote it before issue 34: weights and the flat spec
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": hparams,
                "pytorch-lightning_version": lightning.__version__}, path)  # fmt: skip
    assert (
        torch.load(path, weights_only=True)["hyper_parameters"]["modalities"]["image"]["init_args"]
        == OLD_TINY
    )

    loaded = LZNLightningModule.load_from_checkpoint(path, map_location="cpu")
    assert loaded.hparams["modalities"]["image"]["init_args"] == NEW_TINY  # re-saved in today's form
    assert loaded.state_dict().keys() == model.state_dict().keys()
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    model.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.equal(loaded.modality("image").encode(x), model.modality("image").encode(x))
    image = Modality.from_spec({"class_path": "ImageModality", "init_args": OLD_TINY})
    assert image.init_args == ImageModality(**NEW_TINY).init_args
