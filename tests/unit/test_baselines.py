"""The baseline align forms (``infonce``, ``ce``) against float64 brute force, and inside the module."""

from __future__ import annotations

import math
from pathlib import Path

import lightning.pytorch as pl
import pytest
import torch
from tiny_lzn import IMAGE, LABEL, tiny_data, tiny_trainer

from lzn_lightning import LZNLightningModule
from lzn_lightning.config import AlignConfig
from lzn_lightning.objectives import infonce_logits, make_objective, prototype_logits


def test_infonce_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(0)
    src = torch.randn(5, 4, generator=g, dtype=torch.float64)
    tgt = torch.randn(7, 4, generator=g, dtype=torch.float64)
    index = torch.tensor([0, 3, 6, 2, 1])
    logits = infonce_logits(src, tgt, temperature=0.2)
    expected = 0.0
    for i in range(5):
        row = [float(src[i] @ tgt[j] / (src[i].norm() * tgt[j].norm()) / 0.2) for j in range(7)]
        torch.testing.assert_close(logits[i], torch.tensor(row, dtype=torch.float64))
        expected += -(row[int(index[i])] - math.log(sum(math.exp(r) for r in row))) / 5
    infonce = make_objective("infonce", temperature=0.2)
    assert abs(float(infonce.align(src, tgt, index, None).loss) - expected) < 1e-12


def test_prototype_ce_matches_brute_force() -> None:
    g = torch.Generator().manual_seed(1)
    a = torch.randn(6, 3, generator=g, dtype=torch.float64)
    table = torch.randn(4, 3, generator=g, dtype=torch.float64)
    labels = torch.tensor([0, 1, 2, 3, 0, 1])
    logits = prototype_logits(a, table)
    for i in range(6):
        for k in range(4):
            assert abs(float(logits[i, k]) + 0.5 * float(((a[i] - table[k]) ** 2).sum())) < 1e-12
    # the decision is the nearest class anchor
    assert torch.equal(logits.argmax(1), torch.cdist(a, table).argmin(1))
    expected = -sum(float(torch.log_softmax(logits[i], 0)[labels[i]]) for i in range(6)) / 6
    assert abs(float(make_objective("ce").align(a, table, labels, None).loss) - expected) < 1e-12


BAD = [
    ({"form": "simclr"}, "align form must be one of"),
    ({"form": "infonce", "temperature": 0.0}, "temperature"),
]


@pytest.mark.parametrize(("kw", "match"), BAD)
def test_bad_baseline_settings_are_clear_errors(kw: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        AlignConfig(source="image", target="label", **kw)


def test_ce_baseline_trains_and_classify_uses_the_nearest_label_anchor(tmp_path: Path) -> None:
    pl.seed_everything(0)
    image = {**IMAGE, "init_args": {**IMAGE["init_args"], "decoder": None}}
    model = LZNLightningModule(
        modalities={"image": image, "label": LABEL}, latent_dim=8, latent_from=None,
        align=[{"source": "image", "target": "label", "form": "ce"}], warmup_steps=2, ema_decay=0.0,
    )  # fmt: skip
    data = tiny_data()
    tiny_trainer(tmp_path, 30).fit(model, data)
    data.setup("test")
    items = [data.test_dataset[i] for i in range(len(data.test_dataset))]
    x, y = torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])
    pred = model.classify(x)
    with torch.no_grad():
        model.eval()
        anchors = model.modality("image").encode(x)
        nearest = torch.cdist(anchors, model.modality("label").anchor_table()).argmin(1)
    assert torch.equal(pred, nearest)
    assert float((pred == y).float().mean()) > 0.9  # three well-separated synthetic classes
    assert torch.equal(model.classify(x[:5]), pred[:5])  # no batch dependence


def test_infonce_baseline_gives_the_encoder_gradients() -> None:
    torch.manual_seed(0)
    image = {**IMAGE, "init_args": {**IMAGE["init_args"], "decoder": None}}
    model = LZNLightningModule(
        modalities={"image": image}, fields={"image_view2": "image"}, latent_dim=8, latent_from=None,
        align=[{"source": "image", "target": "image_view2", "form": "infonce", "temperature": 0.5}],
    )  # fmt: skip
    x = torch.rand(6, 1, 8, 8) * 2 - 1
    losses, stats = model.losses({"image": x, "image_view2": x + 0.01 * torch.randn_like(x)}, train=True)
    loss = sum(losses.values())
    loss.backward()
    grads = [p.grad for p in model.modality("image").encoder.parameters()]
    assert all(g is not None for g in grads) and any(float(g.abs().sum()) > 0 for g in grads)
    assert 0.0 <= float(stats["zone_acc/image->image_view2"]) <= 1.0
    assert math.isfinite(float(loss)) and float(loss) > 0


def test_plain_rf_baseline_is_the_same_unet_with_the_latent_ignored() -> None:
    """The generation comparison's baseline (encoder null, latent_conditioning false) has exactly the LZN
    decoder's parameters, and its velocity does not change with the latent."""
    base = {**IMAGE["init_args"], "num_classes": 0}
    lzn = LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality", "init_args": base}}, latent_dim=8
    )
    rf = LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality",
                              "init_args": {**base, "encoder": None, "latent_conditioning": False}}},
        latent_dim=8, latent_from=None,
    )  # fmt: skip
    shapes = {k: v.shape for k, v in lzn.modality("image").decoder.state_dict().items()}
    assert shapes == {k: v.shape for k, v in rf.modality("image").decoder.state_dict().items()}
    assert rf.modality("image").encoder is None
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(4, 1, 8, 8, generator=g), torch.rand(4, generator=g)
    dec = rf.modality("image").decoder
    with torch.no_grad():
        torch.nn.init.normal_(dec.conv_out.weight)  # zero-initialised: make the output depend on the input
        v_zero, v_latent = dec(x, t, torch.zeros(4, 8)), dec(x, t, torch.randn(4, 8, generator=g))
    torch.testing.assert_close(v_zero, v_latent)
    image = lzn.modality("image")
    assert image.trunk_features(x).shape == (4, image.encoder.path.out_channels)
    with pytest.raises(RuntimeError, match="without an encoder"):
        rf.modality("image").trunk_features(x)
