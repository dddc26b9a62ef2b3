"""Unit tests of the image networks and the rectified-flow utilities (tiny sizes, CPU)."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor, nn

from lzn_lightning.nets import AnchorTower, LatentUNet, TimmAnchorEncoder, rf_invert, rf_loss, rf_sample
from lzn_lightning.nets.blocks import num_groups

# (size, ch_mult, attn_resolutions): digits, MNIST (28 -> 14 -> 7), CIFAR.
SHAPES = [(8, (1, 2), ()), (28, (1, 2, 2), (7,)), (32, (1, 2, 2, 2), (16,))]


def _perturb(module: nn.Module, scale: float = 0.05) -> None:
    """Add noise to every parameter, so that zero-initialised layers no longer block signals or gradients."""
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn_like(p))


def _tiny_unet(size: int = 8, **kwargs: object) -> LatentUNet:
    defaults: dict[str, object] = {
        "width": 8,
        "ch_mult": (1, 2),
        "num_res_blocks": 1,
        "attn_resolutions": (4,),
    }
    defaults.update(kwargs)
    return LatentUNet(1, size, 6, **defaults)  # type: ignore[arg-type]


def _tiny_tower(size: int = 8, **kwargs: object) -> AnchorTower:
    defaults: dict[str, object] = {
        "width": 8,
        "ch_mult": (1, 2),
        "num_res_blocks": 1,
        "attn_resolutions": (4,),
        "head_channels": 4,
        "head_hidden": 16,
    }
    defaults.update(kwargs)
    return AnchorTower(1, size, 6, **defaults)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------- U-Net


@pytest.mark.parametrize("resblock_updown", [False, True])
@pytest.mark.parametrize(("size", "ch_mult", "attn"), SHAPES)
def test_unet_output_shape(
    size: int, ch_mult: tuple[int, ...], attn: tuple[int, ...], resblock_updown: bool
) -> None:
    net = LatentUNet(
        3,
        size,
        5,
        num_classes=10,
        width=8,
        ch_mult=ch_mult,
        num_res_blocks=1,
        attn_resolutions=attn,
        resblock_updown=resblock_updown,
    )
    x = torch.randn(2, 3, size, size)
    out = net(x, torch.rand(2), torch.randn(2, 5), torch.tensor([0, 9]))
    assert out.shape == x.shape
    # The output conv is zero-initialised, so a fresh net predicts zero velocity.
    assert torch.count_nonzero(out) == 0
    assert torch.isfinite(out).all()


def test_unet_256_shape() -> None:
    net = LatentUNet(3, 256, 4, width=4, ch_mult=(1, 1, 1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(16,))
    _perturb(net)
    out = net(torch.randn(1, 3, 256, 256), torch.rand(1), torch.randn(1, 4))
    assert out.shape == (1, 3, 256, 256)
    assert torch.isfinite(out).all()


def test_unet_label_and_latent_conditioning_change_output() -> None:
    net = _tiny_unet(num_classes=3).eval()
    _perturb(net)
    x, t, z = torch.randn(2, 1, 8, 8), torch.rand(2), torch.randn(2, 6)
    base = net(x, t, z, torch.tensor([0, 1]))
    assert not torch.allclose(base, net(x, t, z, torch.tensor([2, 2])))
    assert not torch.allclose(base, net(x, t, torch.randn(2, 6), torch.tensor([0, 1])))
    assert not torch.allclose(base, net(x, torch.rand(2), z, torch.tensor([0, 1])))
    # None means "zero" latent / "no class".
    assert torch.equal(net(x, t, None, None), net(x, t, torch.zeros(2, 6), None))
    # Per-sample conditioning: changing sample 1's label leaves sample 0 unchanged.
    other = net(x, t, z, torch.tensor([0, 2]))
    torch.testing.assert_close(other[0], base[0])
    assert not torch.allclose(other[1], base[1])


def test_unet_without_latent_conditioning_ignores_latent() -> None:
    net = _tiny_unet(latent_conditioning=False).eval()
    _perturb(net)
    x, t = torch.randn(2, 1, 8, 8), torch.rand(2)
    torch.testing.assert_close(net(x, t, torch.randn(2, 6)), net(x, t, None))


def test_unet_scalar_time_broadcasts() -> None:
    net = _tiny_unet().eval()
    _perturb(net)
    x, z = torch.randn(3, 1, 8, 8), torch.randn(3, 6)
    torch.testing.assert_close(net(x, torch.tensor(0.3), z), net(x, torch.full((3,), 0.3), z))


def test_unet_every_parameter_gets_gradient_from_rf_loss() -> None:
    net = _tiny_unet(num_classes=2, attn_resolutions=(8, 4))
    _perturb(net)
    x1 = torch.rand(4, 1, 8, 8) * 2 - 1
    latent = torch.randn(4, 6, requires_grad=True)
    loss = rf_loss(net, x1, latent, torch.tensor([0, 1, 0, 1]))
    loss.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not missing
    assert latent.grad is not None and torch.count_nonzero(latent.grad) > 0


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"size": 30, "ch_mult": (1, 2, 2)}, "divisible"),
        ({"size": 8, "ch_mult": ()}, "ch_mult"),
        ({"size": 8, "num_res_blocks": 0}, "num_res_blocks"),
        ({"size": 8, "width": 2}, "width"),
    ],
)
def test_unet_rejects_bad_architecture(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _tiny_unet(**kwargs)


def test_unet_rejects_bad_inputs() -> None:
    net = _tiny_unet(num_classes=3)
    x, t, z = torch.randn(2, 1, 8, 8), torch.rand(2), torch.randn(2, 6)
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 8, 8\]"):
        net(torch.randn(2, 3, 8, 8), t, z)
    with pytest.raises(ValueError, match=r"x must be"):
        net(torch.randn(2, 1, 16, 16), t, z)
    with pytest.raises(ValueError, match="t must be"):
        net(x, torch.rand(3), z)
    with pytest.raises(ValueError, match="latent must be"):
        net(x, t, torch.randn(2, 5))
    with pytest.raises(ValueError, match="labels must be"):
        net(x, t, z, torch.tensor([0, 1, 2]))
    with pytest.raises(ValueError, match="num_classes=0"):
        _tiny_unet()(x, t, z, torch.tensor([0, 1]))


# ----------------------------------------------------------------------------------------------- tower


@pytest.mark.parametrize("resblock_updown", [False, True])
@pytest.mark.parametrize(("size", "ch_mult", "attn"), SHAPES)
def test_tower_output_shape_and_heads(
    size: int, ch_mult: tuple[int, ...], attn: tuple[int, ...], resblock_updown: bool
) -> None:
    tower = AnchorTower(
        3,
        size,
        7,
        width=8,
        ch_mult=ch_mult,
        num_res_blocks=2,
        attn_resolutions=attn,
        head_channels=4,
        head_hidden=16,
        resblock_updown=resblock_updown,
    )
    out = tower(torch.rand(3, 3, size, size) * 2 - 1)
    assert out.shape == (3, 7)
    assert torch.isfinite(out).all()
    levels = len(ch_mult)
    # input conv + every ResBlock + every downsample + the middle block
    assert len(tower.heads) == 1 + 2 * levels + (levels - 1) + 1
    assert tower.head_resolutions[0] == size
    assert tower.head_resolutions[-1] == size // 2 ** (levels - 1)


def test_tower_head_resolution_filter() -> None:
    tower = AnchorTower(
        1, 32, 4, width=8, ch_mult=(1, 1, 1, 1), num_res_blocks=1, attn_resolutions=(), head_channels=2,
        head_hidden=8, head_min_resolution=8, head_max_resolution=16,
    )  # fmt: skip
    # resolutions 32, 16, 8, 4: only the 16 (ResBlock + downsample output) and 8 maps keep heads
    assert tower.head_resolutions == [16, 16, 8, 8]
    assert tower(torch.randn(2, 1, 32, 32)).shape == (2, 4)
    with pytest.raises(ValueError, match="no feature map"):
        _tiny_tower(head_min_resolution=16)


def test_tower_every_head_and_parameter_gets_gradient() -> None:
    tower = _tiny_tower(attn_resolutions=(8, 4))
    anchors = tower(torch.rand(4, 1, 8, 8) * 2 - 1)
    anchors.pow(2).sum().backward()
    for head in tower.heads:  # at initialisation already
        assert all(p.grad is not None and torch.count_nonzero(p.grad) > 0 for p in head.parameters())
    tower.zero_grad()
    _perturb(tower)
    tower(torch.rand(4, 1, 8, 8) * 2 - 1).pow(2).sum().backward()
    missing = [n for n, p in tower.named_parameters() if p.grad is None or torch.count_nonzero(p.grad) == 0]
    assert not missing


def test_tower_features_are_the_pooled_deepest_map() -> None:
    torch.manual_seed(0)
    tower = _tiny_tower()
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    feats = tower.features(x)
    _, mid = tower.path(x)
    assert feats.shape == (3, tower.path.out_channels)
    torch.testing.assert_close(feats, mid.mean(dim=(2, 3)))
    assert not torch.allclose(feats[0], feats[1])  # depends on the image
    with pytest.raises(ValueError):
        tower.features(torch.zeros(2, 3, 8, 8))


def test_tower_rejects_bad_inputs() -> None:
    tower = _tiny_tower()
    with pytest.raises(ValueError, match=r"x must be \[B, 1, 8, 8\]"):
        tower(torch.randn(2, 3, 8, 8))
    with pytest.raises(ValueError, match=r"x must be"):
        tower(torch.randn(2, 1, 8))
    with pytest.raises(ValueError, match="divisible"):
        _tiny_tower(size=28, ch_mult=(1, 1, 1, 1))


# ------------------------------------------------------------------------------------------- rectified flow


class _ConstantVelocity(nn.Module):
    """v = x1 - x0 everywhere: the exact velocity of the straight line from x0 to x1."""

    def __init__(self, x0: Tensor, x1: Tensor) -> None:
        super().__init__()
        self.v = x1 - x0
        self.calls = 0

    def forward(self, x: Tensor, t: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        assert t.shape == (x.shape[0],)
        self.calls += 1
        return self.v.clone()


class _SmoothToy(nn.Module):
    """A smooth, non-linear, latent- and time-dependent velocity field."""

    def forward(self, x: Tensor, t: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        assert latent is not None
        shift = latent.mean(dim=1)[:, None, None, None]  # [B, 1, 1, 1]
        t4 = t[:, None, None, None]  # [B, 1, 1, 1]
        return torch.tanh(0.8 * x + t4) - 0.3 * x * torch.cos(2.0 * t4) + 0.5 * shift


@pytest.mark.parametrize("method", ["euler", "rk45"])
def test_rf_sample_and_invert_are_exact_on_the_straight_line(method: str) -> None:
    x0, x1, t_min = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4), 1e-3
    net = _ConstantVelocity(x0, x1)
    start = t_min * x1 + (1 - t_min) * x0  # the straight line's point at t_min
    torch.testing.assert_close(rf_sample(net, start, None, steps=7, method=method), x1, rtol=0, atol=1e-5)
    # From the raw noise (the reference's convention): x0 + (1 - t_min)(x1 - x0).
    torch.testing.assert_close(
        rf_sample(net, x0, None, steps=7, method=method), x0 + (1 - t_min) * (x1 - x0), rtol=0, atol=1e-5
    )
    torch.testing.assert_close(rf_invert(net, x1, None, steps=7, method=method), x0, rtol=0, atol=1e-5)


def test_rf_euler_uses_requested_number_of_steps() -> None:
    x0, x1 = torch.randn(2, 1, 2, 2), torch.randn(2, 1, 2, 2)
    net = _ConstantVelocity(x0, x1)
    rf_sample(net, x0, None, steps=5)
    rf_invert(net, x1, None, steps=3)
    assert net.calls == 8


@pytest.mark.parametrize(
    ("method", "steps", "t_min", "atol"),
    [("euler", 1000, 1e-3, 5e-3), ("rk45", 1, 1e-3, 5e-3), ("rk45", 1, 0.0, 2e-4)],
)
def test_rf_invert_then_sample_round_trips(method: str, steps: int, t_min: float, atol: float) -> None:
    net = _SmoothToy()
    x1, latent = torch.rand(4, 1, 6, 6) * 2 - 1, torch.randn(4, 3)
    x0 = rf_invert(net, x1, latent, steps=steps, method=method, t_min=t_min)
    assert not torch.allclose(x0, x1, atol=0.1)  # the inversion really moved the state
    back = rf_sample(net, x0, latent, steps=steps, method=method, t_min=t_min)
    # Residual error: the solver's (Euler O(1/steps), RK45 ~tol), plus O(t_min) from the reference's
    # straight-line conversion at t_min (measured: 2.2e-3 Euler-1000, 1.0e-3 RK45, 2.7e-5 RK45 at t_min=0).
    torch.testing.assert_close(back, x1, rtol=0, atol=atol)


def test_rf_sample_runs_without_grad() -> None:
    net = _tiny_unet()
    out = rf_sample(net, torch.randn(2, 1, 8, 8), torch.randn(2, 6), steps=2)
    assert not out.requires_grad


def test_rf_loss_matches_manual_computation() -> None:
    x1, t_min = torch.randn(5, 2, 3, 3), 0.1

    def zero_net(x: Tensor, t: Tensor, latent: Tensor | None, labels: Tensor | None) -> Tensor:
        assert t.shape == (5,) and bool(((t >= t_min) & (t < 1)).all())
        return torch.zeros_like(x)

    loss = rf_loss(zero_net, x1, None, generator=torch.Generator().manual_seed(3), t_min=t_min)
    gen = torch.Generator().manual_seed(3)
    torch.rand(5, generator=gen)  # t, drawn first
    x0 = torch.randn(x1.shape, generator=gen)
    torch.testing.assert_close(loss, ((x1 - x0) ** 2).mean())
    assert loss.dim() == 0
    # Same generator seed, same loss.
    again = rf_loss(zero_net, x1, None, generator=torch.Generator().manual_seed(3), t_min=t_min)
    assert torch.equal(loss, again)


def test_rf_rejects_bad_arguments() -> None:
    net, x = _tiny_unet(), torch.randn(2, 1, 8, 8)
    with pytest.raises(ValueError, match="unknown method"):
        rf_sample(net, x, None, method="heun")
    with pytest.raises(ValueError, match="steps"):
        rf_invert(net, x, None, steps=0)
    with pytest.raises(ValueError, match="t_min"):
        rf_loss(net, x, None, t_min=1.0)


# ----------------------------------------------------------------------------------------------- timm


@pytest.fixture(scope="module")
def resnet18_encoder() -> TimmAnchorEncoder:
    return TimmAnchorEncoder("resnet18", channels=1, out_dim=32, head_hidden=64, small_input=True)


def test_timm_encoder_shapes_and_group_norm(resnet18_encoder: TimmAnchorEncoder) -> None:
    enc = resnet18_encoder
    x = torch.rand(3, 1, 8, 8) * 2 - 1
    assert enc.feature_dim == 512
    assert enc.features(x).shape == (3, 512)
    anchors = enc(x)
    assert anchors.shape == (3, 32)
    assert not any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in enc.modules())
    assert any(isinstance(m, nn.GroupNorm) for m in enc.trunk.modules())
    # small_input: 3x3 stride-1 stem, no max-pool.
    assert enc.trunk.conv1.stride == (1, 1) and enc.trunk.conv1.kernel_size == (3, 3)
    assert isinstance(enc.trunk.maxpool, nn.Identity)
    # The final GroupNorm (identity affine at init) normalises each group of anchor dims.
    groups = anchors.detach().view(3, enc.head[-1].num_groups, -1)  # [B, G, out_dim/G]
    torch.testing.assert_close(groups.mean(-1), torch.zeros(groups.shape[:2]), atol=1e-4, rtol=0)


def test_timm_encoder_maps_input_to_unit_range(resnet18_encoder: TimmAnchorEncoder) -> None:
    x = torch.rand(2, 1, 8, 8) * 2 - 1
    torch.testing.assert_close(resnet18_encoder.features(x), resnet18_encoder.trunk(x * 0.5 + 0.5))


def test_timm_encoder_rejects_bad_inputs(resnet18_encoder: TimmAnchorEncoder) -> None:
    with pytest.raises(ValueError, match=r"x must be \[B, 1, H, W\]"):
        resnet18_encoder(torch.randn(2, 3, 8, 8))


def test_timm_encoder_deep_stem_and_batchnorm_option() -> None:
    enc = TimmAnchorEncoder(
        "test_resnet", channels=3, out_dim=16, head_hidden=32, group_norm=False, small_input=True
    )
    assert enc.trunk.conv1[0].stride == (1, 1)
    assert any(isinstance(m, nn.BatchNorm2d) for m in enc.modules())
    assert enc(torch.randn(2, 3, 8, 8)).shape == (2, 16)


def test_timm_encoder_small_input_needs_resnet() -> None:
    with pytest.raises(ValueError, match="needs a timm ResNet"):
        TimmAnchorEncoder("test_vit", group_norm=False, small_input=True)


# ----------------------------------------------------------------------------------------------- helpers


@pytest.mark.parametrize(
    ("channels", "expected"), [(128, 32), (64, 16), (32, 8), (4, 1), (3, 1), (96, 24), (20, 5)]
)
def test_num_groups_divides_channels(channels: int, expected: int) -> None:
    assert num_groups(channels) == expected
    assert channels % num_groups(channels) == 0
