"""GroupNormResNet: the case-study-2 encoder, key for key like the authors' released checkpoints."""

from __future__ import annotations

import pytest
import torch

from lzn_lightning.nets.resnet_gn import GroupNormResNet

# State-dict keys and shapes of the authors' ResNet-50 (depth 50, width 1, sk 0, head 256 x 2 layers).
FIRST_KEYS = [
    ("net.0.0.weight", (64, 3, 7, 7)),
    ("net.0.1.0.weight", (64,)),
    ("net.0.1.0.bias", (64,)),
    ("net.1.blocks.0.projection.shortcut.weight", (256, 64, 1, 1)),
    ("net.1.blocks.0.projection.bn.0.weight", (256,)),
    ("net.1.blocks.0.projection.bn.0.bias", (256,)),
    ("net.1.blocks.0.net.0.weight", (64, 64, 1, 1)),
    ("net.1.blocks.0.net.1.0.weight", (64,)),
    ("net.1.blocks.0.net.1.0.bias", (64,)),
    ("net.1.blocks.0.net.2.weight", (64, 64, 3, 3)),
    ("net.1.blocks.0.net.3.0.weight", (64,)),
    ("net.1.blocks.0.net.3.0.bias", (64,)),
    ("net.1.blocks.0.net.4.weight", (256, 64, 1, 1)),
    ("net.1.blocks.0.net.5.0.weight", (256,)),
    ("net.1.blocks.0.net.5.0.bias", (256,)),
    ("net.1.blocks.1.net.0.weight", (64, 256, 1, 1)),
]
LAST_KEYS = [
    ("net.4.blocks.2.net.4.weight", (2048, 512, 1, 1)),
    ("net.4.blocks.2.net.5.0.weight", (2048,)),
    ("net.4.blocks.2.net.5.0.bias", (2048,)),
    ("head.layers.0.weight", (2048, 2048)),
    ("head.layers.1.weight", (2048,)),
    ("head.layers.1.bias", (2048,)),
    ("head.layers.3.weight", (256, 2048)),
    ("head.layers.4.weight", (256,)),
    ("head.layers.4.bias", (256,)),
]
NUM_KEYS = 165
NUM_PARAMS = 28_231_232


@pytest.fixture(scope="module")
def resnet50() -> GroupNormResNet:
    torch.manual_seed(0)
    return GroupNormResNet()


def test_parameter_count(resnet50: GroupNormResNet) -> None:
    assert sum(p.numel() for p in resnet50.parameters()) == NUM_PARAMS
    assert resnet50.feature_dim == 2048


def test_state_dict_layout(resnet50: GroupNormResNet) -> None:
    items = [(k, tuple(v.shape)) for k, v in resnet50.state_dict().items()]
    assert len(items) == NUM_KEYS
    assert items[: len(FIRST_KEYS)] == FIRST_KEYS
    assert items[-len(LAST_KEYS) :] == LAST_KEYS
    # parameters() follows the same order (no buffers in this network)
    assert [n for n, _ in resnet50.named_parameters()] == [k for k, _ in items]


def test_zero_inits(resnet50: GroupNormResNet) -> None:
    blocks = [b for stage in list(resnet50.net)[1:] for b in stage.blocks]
    assert len(blocks) == 16
    for block in blocks:
        assert torch.count_nonzero(block.net[5][0].weight) == 0
    assert torch.count_nonzero(resnet50.head.layers[4].bias) == 0
    assert torch.all(resnet50.head.layers[4].weight == 1)


def test_output_shapes(resnet50: GroupNormResNet) -> None:
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    with torch.no_grad():
        assert resnet50.features(x).shape == (2, 2048)
        assert resnet50(x).shape == (2, 256)


def test_checkpointing_is_exact() -> None:
    torch.manual_seed(0)
    plain = GroupNormResNet(out_dim=32, layers=(1, 1, 1, 1), width=32)
    ckpt = GroupNormResNet(out_dim=32, layers=(1, 1, 1, 1), width=32, checkpoint_segments=5)
    # zero-initialised weights would hide errors in the residual branch: perturb every parameter
    with torch.no_grad():
        for p in plain.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ckpt.load_state_dict(plain.state_dict())
    plain.train()
    ckpt.train()
    x = torch.rand(2, 3, 32, 32) * 2 - 1
    ya, yb = plain(x), ckpt(x)
    torch.testing.assert_close(ya, yb, rtol=0, atol=0)
    ya.square().sum().backward()
    yb.square().sum().backward()
    for (name, pa), pb in zip(plain.named_parameters(), ckpt.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, rtol=0, atol=0, msg=name)


def test_bad_channels_raise() -> None:
    net = GroupNormResNet(out_dim=32, layers=(1, 1, 1, 1), width=32)
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net(torch.zeros(2, 1, 32, 32))
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        net.features(torch.zeros(3, 32, 32))


@pytest.mark.parametrize("kwargs", [{"out_dim": 0}, {"width": 48}, {"layers": (3, 4, 6)}, {"head_layers": 0}])
def test_bad_config_raises(kwargs: dict) -> None:
    with pytest.raises(ValueError):
        GroupNormResNet(**kwargs)
