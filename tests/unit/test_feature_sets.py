"""Pre- and post-processing of the metric feature networks, with stand-ins for the Inception and CLIP
weights (not downloadable here): uint8 quantisation, resizes, the spatial slice, the softmax without bias."""

from __future__ import annotations

import sys
from types import SimpleNamespace
from urllib.error import URLError

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from lzn_lightning.metrics import CLIPImageEmbeddings, InceptionFeatureSet, feature_sets_of
from lzn_lightning.metrics.feature_sets import clean_resize, tensorflow_bilinear_resize, to_uint8_rgb


class _Mixed(nn.Module):
    """Like an Inception block: a 1x1 ``conv`` branch (conv + ReLU, 9 channels) and a ``tower``, joined."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(cin, 9, 1), nn.ReLU())
        self.tower = nn.Conv2d(cin, cout - 9, 3, padding=1)

    def forward(self, x: Tensor) -> Tensor:
        return torch.cat([self.conv(x), self.tower(x)], 1)


class _Layers(nn.Module):
    """The TorchScript port's ``layers``: the same child names, applied in the same order, tiny widths."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, stride=2)  # 299 -> 149
        self.conv_1 = nn.Conv2d(4, 4, 3)  # 147
        self.conv_2 = nn.Conv2d(4, 4, 3, padding=1)
        self.pool0 = nn.MaxPool2d(3, 2)  # 73
        self.conv_3 = nn.Conv2d(4, 4, 1)
        self.conv_4 = nn.Conv2d(4, 4, 3)  # 71
        self.pool1 = nn.MaxPool2d(8, 8)  # 8
        self.mixed = _Mixed(4, 12)
        self.mixed_1 = nn.Identity()
        self.mixed_2 = nn.Identity()
        self.mixed_3 = nn.Identity()
        self.mixed_4 = nn.Identity()
        self.mixed_5 = nn.Identity()
        self.mixed_6 = _Mixed(12, 16)
        self.mixed_7 = nn.Identity()
        self.mixed_8 = nn.Identity()
        self.mixed_9 = nn.Identity()
        self.mixed_10 = nn.Conv2d(16, 2048, 1)  # pool3 has the real network's 2048 features
        self.pool2 = nn.AdaptiveAvgPool2d(1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.pool1(self.conv_4(self.conv_3(self.pool0(self.conv_2(self.conv_1(self.conv(x)))))))
        x = self.mixed_5(self.mixed_4(self.mixed_3(self.mixed_2(self.mixed_1(self.mixed(x))))))
        x = self.mixed_10(self.mixed_9(self.mixed_8(self.mixed_7(self.mixed_6(x)))))
        return self.pool2(x)


class _StandInInception(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.layers = _Layers()
        self.output = nn.Linear(2048, 1008)
        nn.init.normal_(self.output.bias, std=5.0)  # a large bias, so a softmax that used it would differ


def _level_images(n: int, size: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Images in [-1, 1] exactly on the 256 uint8 levels, and those uint8 values."""
    u8 = torch.randint(0, 256, (n, 3, size, size), generator=torch.Generator().manual_seed(seed))
    return u8.float() / 127.5 - 1, u8.to(torch.uint8)


def _expected(net: _StandInInception, u8: Tensor) -> dict[str, Tensor]:
    """What the features must be, from the stand-in's own forward with a hook on mixed_6.conv."""
    seen: list[Tensor] = []
    hook = net.layers.mixed_6.conv.register_forward_hook(lambda m, i, o: seen.append(o))
    with torch.no_grad():
        pool3 = net.layers((u8.float() - 128) / 128).flatten(1)
    hook.remove()
    return {"pool3": pool3, "mixed_6_conv": seen[0], "probs": (pool3 @ net.output.weight.T).softmax(1)}


def test_inception_feature_set_keys_shapes_and_values() -> None:
    net = _StandInInception()
    x, u8 = _level_images(3, 299)  # 299 px: the clean resize is the identity
    fs = InceptionFeatureSet(resize="clean", network=net)
    assert fs.name == "inception-2015-12-05-clean" and "PIL bicubic" in fs.description
    out = fs(x)
    want = _expected(net, u8)
    assert set(out) == {"pool3", "spatial", "probs"}
    torch.testing.assert_close(out["pool3"], want["pool3"])
    torch.testing.assert_close(out["probs"], want["probs"])  # softmax of pool3 @ W, without the bias
    assert not torch.allclose(out["probs"], net.output(want["pool3"]).softmax(1), atol=1e-3)
    torch.testing.assert_close(out["probs"].sum(1), torch.ones(3))
    conv = want["mixed_6_conv"]  # [B, 9, 8, 8]
    assert out["spatial"].shape == (3, 7 * 8 * 8)
    hwc = out["spatial"].reshape(3, 8, 8, 7)  # flattened in TF's height, width, channel order
    torch.testing.assert_close(hwc.permute(0, 3, 1, 2), conv[:, :7])


def test_inception_feature_set_quantises_to_uint8_and_repeats_grey() -> None:
    net = _StandInInception()
    x, _ = _level_images(2, 299, seed=1)
    fs = InceptionFeatureSet(network=net)
    a, b = fs(x), fs(x + 0.003)  # 0.003 < half a uint8 level (1/127.5): the same image once quantised
    for key in a:
        assert torch.equal(a[key], b[key])
    grey = x[:, :1]
    for key, value in fs(grey).items():
        torch.testing.assert_close(value, fs(grey.expand(-1, 3, -1, -1))[key])


def test_inception_feature_set_runs_a_torchscript_module_and_resizes() -> None:
    net = _StandInInception()
    x, u8 = _level_images(2, 32, seed=2)
    scripted = torch.jit.script(net)  # as clean-fid's inception-2015-12-05.pt: attribute access on submodules
    for resize, resized in (
        ("clean", clean_resize(u8)),
        ("tensorflow", tensorflow_bilinear_resize(u8.float())),
    ):
        out = InceptionFeatureSet(resize=resize, network=scripted)(x)
        with torch.no_grad():
            pool3 = net.layers((resized - 128) / 128).flatten(1)
        torch.testing.assert_close(out["pool3"], pool3)


def test_inception_feature_set_pool3_is_clean_fids(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    """Loaded the default way, through clean-fid, its pool3 equals clean-fid's own "clean" FID features
    (the existing InceptionFeatures, built by cleanfid.features.build_feature_extractor)."""
    import cleanfid.inception_torchscript as ts

    from lzn_lightning.metrics import InceptionFeatures

    scripted = torch.jit.script(_StandInInception())
    monkeypatch.setattr(ts, "check_download_inception", lambda fpath="./": fpath)  # the file "is there"
    monkeypatch.setattr(ts.torch.jit, "load", lambda path: scripted)  # and holds the stand-in
    x, _ = _level_images(2, 40, seed=7)
    ours = InceptionFeatureSet(weights_folder=str(tmp_path))(x)
    torch.testing.assert_close(ours["pool3"], InceptionFeatures()(x))
    assert ours["probs"].shape == (2, 1008) and ours["pool3"].shape == (2, 2048)


def test_clean_resize_is_clean_fids() -> None:
    from cleanfid.resize import build_resizer

    _, u8 = _level_images(2, 32, seed=3)
    got = clean_resize(u8)
    want = np.stack([build_resizer("clean")(img) for img in u8.permute(0, 2, 3, 1).numpy()])
    assert got.shape == (2, 3, 299, 299)
    np.testing.assert_array_equal(got.permute(0, 2, 3, 1).numpy(), want)


def _tf1_bilinear(img: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """TF1 ResizeBilinear (align_corners=False, no half-pixel centres) by loops: src = dst * in / out."""
    c, h, w = img.shape
    res = np.zeros((c, out_h, out_w))
    for i in range(out_h):
        y = i * h / out_h
        y0, fy = int(np.floor(y)), y - np.floor(y)
        y1 = min(y0 + 1, h - 1)
        for j in range(out_w):
            x = j * w / out_w
            x0, fx = int(np.floor(x)), x - np.floor(x)
            x1 = min(x0 + 1, w - 1)
            top = img[:, y0, x0] * (1 - fx) + img[:, y0, x1] * fx
            bottom = img[:, y1, x0] * (1 - fx) + img[:, y1, x1] * fx
            res[:, i, j] = top * (1 - fy) + bottom * fy
    return res


@pytest.mark.parametrize(("h", "w"), [(32, 32), (20, 48), (299, 299)])
def test_tensorflow_resize_is_tf1_bilinear(h: int, w: int) -> None:
    img = torch.rand(1, 3, h, w, generator=torch.Generator().manual_seed(4)) * 255
    got = tensorflow_bilinear_resize(img, 61)[0].double().numpy()
    # float32 sampling coordinates: ~1e-5 px off at 299 px, x 255 per px; a half-pixel mistake is off by tens
    np.testing.assert_allclose(got, _tf1_bilinear(img[0].double().numpy(), 61, 61), atol=0.02)
    same = tensorflow_bilinear_resize(img, h) if h == w else img
    torch.testing.assert_close(same, img, atol=0.02, rtol=0)  # same size: the identity


def test_inception_feature_set_errors() -> None:
    with pytest.raises(ValueError, match="structure of clean-fid"):
        InceptionFeatureSet(network=nn.Linear(2, 2))
    with pytest.raises(ValueError, match="resize"):
        InceptionFeatureSet(resize="bilinear", network=_StandInInception())
    with pytest.raises(ValueError, match="C = 1 or 3"):
        InceptionFeatureSet(network=_StandInInception())(torch.zeros(1, 4, 8, 8))


def test_inception_feature_set_missing_weights_is_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path) -> None:
    import cleanfid.inception_torchscript as ts

    def offline(fpath: str = "./") -> str:
        raise URLError("no network")

    monkeypatch.setattr(ts, "check_download_inception", offline)  # never download in tests
    with pytest.raises(RuntimeError, match=r"inception-2015-12-05\.pt") as err:
        InceptionFeatureSet(weights_folder=str(tmp_path))
    assert "\n" not in str(err.value)


class _StandInCLIP(nn.Module):
    """Maps pixel_values to an output with ``image_embeds``, like CLIPVisionModelWithProjection."""

    def __init__(self) -> None:
        super().__init__()
        self.proj = nn.Linear(3, 5)

    def forward(self, pixel_values: Tensor) -> SimpleNamespace:
        return SimpleNamespace(image_embeds=self.proj(pixel_values.mean((2, 3))))


def test_clip_embeddings_preprocess_and_normalise() -> None:
    clip = CLIPImageEmbeddings(
        model=_StandInCLIP(), image_size=16, mean=(0.5, 0.4, 0.3), std=(0.2, 0.25, 0.3)
    )
    x, u8 = _level_images(4, 16, seed=5)  # already the model's size: the resize is the identity
    mean, std = (
        torch.tensor([0.5, 0.4, 0.3]).view(1, 3, 1, 1),
        torch.tensor([0.2, 0.25, 0.3]).view(1, 3, 1, 1),
    )
    torch.testing.assert_close(clip.preprocess(x), (u8.float() / 255 - mean) / std)
    wide = torch.cat([x[:, :, :, :4] * 0 - 1, x, x[:, :, :, :4] * 0 + 1], dim=3)  # 16 x 24: crop the centre
    torch.testing.assert_close(clip.preprocess(wide), clip.preprocess(x))
    emb = clip(x)["clip"]
    assert emb.shape == (4, 5)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(4))
    assert clip.preprocess(_level_images(2, 40)[0]).shape == (2, 3, 16, 16)


def test_clip_embeddings_without_transformers_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "transformers", None)  # import fails as if not installed
    with pytest.raises(ImportError, match=r"pip install lzn-lightning\[cmmd\]"):
        CLIPImageEmbeddings()


def test_clip_embeddings_missing_model_is_one_line(tmp_path) -> None:
    pytest.importorskip("transformers")
    with pytest.raises(RuntimeError, match="could not load") as err:
        CLIPImageEmbeddings(model_name=str(tmp_path / "no_such_model"))  # never a download
    assert "\n" not in str(err.value)


def test_clip_embeddings_with_a_tiny_transformers_clip() -> None:
    transformers = pytest.importorskip("transformers")
    config = transformers.CLIPVisionConfig(
        hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2, image_size=32,
        patch_size=8, projection_dim=12,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.CLIPVisionModelWithProjection(config)
    emb = CLIPImageEmbeddings(model=model, image_size=32)(_level_images(3, 20)[0])["clip"]
    assert emb.shape == (3, 12)
    torch.testing.assert_close(emb.norm(dim=1), torch.ones(3))


class _DictNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(3, 4, generator=torch.Generator().manual_seed(6)))

    def forward(self, x: Tensor) -> dict[str, Tensor]:
        return {"a": x.mean((2, 3)) @ self.w, "b": x[:, :1, :2, :2]}


def test_feature_sets_of_batches_and_returns_float64() -> None:
    net = _DictNet()
    images = torch.rand(10, 3, 4, 4) * 2 - 1
    whole = feature_sets_of(net, images, batch_size=256)
    batched = feature_sets_of(net, images, batch_size=3)  # 3 does not divide 10
    assert whole["a"].shape == (10, 4) and whole["b"].shape == (10, 4)  # [10, 1, 2, 2] flattened
    for key in ("a", "b"):
        assert batched[key].dtype == np.float64
        np.testing.assert_allclose(batched[key], whole[key], rtol=1e-6)
    with pytest.raises(ValueError, match="dict"):
        feature_sets_of(nn.Flatten(), images)


def test_to_uint8_rgb_rounds_and_clamps() -> None:
    x = torch.tensor([-2.0, -1.0, 0.0, 1.0, 3.0]).view(1, 1, 1, 5)
    u8 = to_uint8_rgb(x)
    assert u8.dtype == torch.uint8 and u8.shape == (1, 3, 1, 5)
    assert u8[0, 0, 0].tolist() == [0, 0, 128, 255, 255]  # (0 + 1) * 127.5 = 127.5 rounds to even 128
