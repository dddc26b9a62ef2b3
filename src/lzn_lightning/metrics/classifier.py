"""A small CNN classifier trained on the run's own data: FID features and the conditional-sample judge.

The standard Inception network cannot be downloaded on machines without network, and is a poor judge of 8x8
or 28x28 digits anyway; a small CNN trained on the run's own training split is the usual substitute for
MNIST-like data (its penultimate layer gives the FID features, its predictions the conditional accuracy).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lzn_lightning.metrics.accuracy import label_accuracy


class SmallCNN(nn.Module):
    """Three conv blocks (GroupNorm, SiLU), global average pool, linear head; works at any image size >= 4.

    Args:
        channels: Input channels.
        num_classes: Output classes.
        width: Channels of the first block (doubled in the next two).
    """

    def __init__(self, channels: int = 1, num_classes: int = 10, width: int = 32) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(channels, w, 3, padding=1), nn.GroupNorm(8, w), nn.SiLU(),
            nn.Conv2d(w, 2 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 2 * w), nn.SiLU(),
            nn.Conv2d(2 * w, 4 * w, 3, stride=2, padding=1), nn.GroupNorm(8, 4 * w), nn.SiLU(),
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),
        )  # fmt: skip
        self.head = nn.Linear(4 * w, num_classes)
        self.feature_dim = 4 * w

    def embed(self, x: Tensor) -> Tensor:
        """Penultimate features [B, 4*width] of images [B, C, H, W] in [-1, 1]."""
        return self.features(x)

    def forward(self, x: Tensor) -> Tensor:
        """Class logits [B, num_classes]."""
        return self.head(self.features(x))


@dataclass
class TrainedClassifier:
    """A classifier with the accuracy it reached on held-out data (None when none was given)."""

    net: nn.Module
    held_out_accuracy: float | None
    description: str


def train_classifier(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    held_out: tuple[Tensor, Tensor] | None = None,
    epochs: int = 30,
    batch_size: int = 128,
    lr: float = 2e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> TrainedClassifier:
    """Train a :class:`SmallCNN` with Adam and random 1-pixel shifts; report held-out accuracy.

    Args:
        images: Float [N, C, H, W] in [-1, 1].
        labels: Long [N].
        num_classes: Number of classes.
        held_out: Optional (images, labels) to measure accuracy on (e.g. the test split).
        epochs: Passes over the data.
        batch_size: Minibatch size.
        lr: Adam learning rate.
        seed: Seed of initialisation and shuffling.
        device: Where to train.
    """
    # Why leave inference mode: callbacks run inside Lightning's test/validation loops, where tensors made
    # under torch.inference_mode cannot be trained or saved for backward.
    with torch.inference_mode(False), torch.enable_grad():
        images, labels = images.clone(), labels.clone()  # normal tensors (inputs may be inference tensors)
        return _train(images, labels, num_classes, held_out, epochs, batch_size, lr, seed, device)


def _train(
    images: Tensor,
    labels: Tensor,
    num_classes: int,
    held_out: tuple[Tensor, Tensor] | None,
    epochs: int,
    batch_size: int,
    lr: float,
    seed: int,
    device: torch.device | str,
) -> TrainedClassifier:
    g = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = SmallCNN(images.shape[1], num_classes).to(device)
    opt = torch.optim.Adam(net.parameters(), lr=lr)
    n = len(images)
    steps = epochs * max(1, n // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(steps, 1))
    net.train()
    step = 0
    while step < steps:
        for idx in torch.randperm(n, generator=g).split(batch_size):
            if step >= steps or len(idx) < 2:
                break
            x = _shift(images[idx], g).to(device)
            loss = F.cross_entropy(net(x), labels[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            step += 1
    net.eval()
    acc = accuracy(net, *held_out) if held_out is not None else None
    c, h, w = images.shape[1:]
    what = f"SmallCNN trained in-callback on {n} images {c}x{h}x{w} for {epochs} epochs"
    if acc is not None:
        what += f", held-out accuracy {100 * acc:.1f}% on {len(held_out[0])} images"  # type: ignore[index]
    return TrainedClassifier(net, acc, what)


def _shift(x: Tensor, g: torch.Generator) -> Tensor:
    """Random translation by up to one pixel (replicate padding): cheap augmentation for tiny digits."""
    dx, dy = (int(v) for v in torch.randint(-1, 2, (2,), generator=g))
    padded = F.pad(x, (1, 1, 1, 1), mode="replicate")
    h, w = x.shape[-2:]
    return padded[..., 1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w]


@torch.no_grad()
def predict(net: nn.Module, images: Tensor, batch_size: int = 512) -> Tensor:
    """Argmax class [N] of images (on the net's device), on the CPU."""
    device = next(net.parameters()).device
    net.eval()
    return torch.cat(
        [
            net(images[i : i + batch_size].to(device)).argmax(1).cpu()
            for i in range(0, len(images), batch_size)
        ]
    )


@torch.no_grad()
def accuracy(net: nn.Module, images: Tensor, labels: Tensor) -> float:
    """Fraction of images whose predicted class is the label."""
    return label_accuracy(predict(net, images), labels.cpu())
