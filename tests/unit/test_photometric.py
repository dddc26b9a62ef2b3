"""The device half of SimCLR views (lzn_lightning.data.photometric): the same ops and the same parameter
distribution as the torchvision pipeline it replaces, and the datamodule plumbing around it."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from lzn_lightning.data import ImageFolderDataModule, ImageNetDataModule
from lzn_lightning.data.photometric import (
    FACTORS,
    GRAY,
    JITTER,
    ORDER,
    PARAMS_SUFFIX,
    SIGMA,
    CropFlipView,
    PhotometricAugment,
    finish_device_views,
)

N = 4000  # draws per distribution test: a 0.8 rate is then known to +-0.006 (1 sigma)


def _torchvision_view(x: torch.Tensor, row: torch.Tensor, kernel: int) -> torch.Tensor:
    """One view's photometric ops with torchvision's own kernels, as the worker pipeline applies them."""
    ops = (F.adjust_brightness, F.adjust_contrast, F.adjust_saturation, F.adjust_hue)
    x = x.float() / 255
    if row[JITTER] > 0.5:
        for op in row[ORDER].long().tolist():
            x = ops[op](x, float(row[FACTORS][op]))
    if row[GRAY] > 0.5:
        x = F.rgb_to_grayscale(x, num_output_channels=3)
    if row[SIGMA] > 0:
        x = F.gaussian_blur(x, [kernel, kernel], [float(row[SIGMA])] * 2)
    return (x * 2 - 1).clamp(-1, 1)


@pytest.mark.parametrize("blur_p", [1.0, 0.5])
def test_batched_device_ops_equal_torchvision_per_sample(blur_p: float) -> None:
    aug = PhotometricAugment(blur_kernel=23, blur_p=blur_p)
    torch.manual_seed(1)
    b = 96  # enough that every op lands in every order position for some sample
    colours = torch.rand(b, 3, 1, 1) * 255
    images = (colours + 40 * torch.randn(b, 3, 40, 40)).clamp(0, 255).to(torch.uint8)
    params = torch.stack([aug.draw() for _ in range(b)])
    out = aug(images, params)
    assert out.dtype == torch.float32 and out.shape == images.shape
    worst = max(float((_torchvision_view(images[i], params[i], 23) - out[i]).abs().max()) for i in range(b))
    # Why 2e-3: below a quarter of one uint8 level (2/255 in [-1, 1]); kornia's grayscale weighs red 0.299
    # where torchvision's weighs 0.2989, and the hue round trip differs in float rounding.
    assert worst < 2e-3
    # The comparison sees a wrong factor: scaling one sample's brightness changes its output.
    changed = params.clone()
    i = int(((params[:, JITTER] > 0.5) & (params[:, SIGMA] > 0)).nonzero()[0])
    changed[i, FACTORS.start] *= 1.2
    assert float((aug(images, changed)[i] - out[i]).abs().max()) > 2e-2


def test_an_empty_selection_and_one_channel_images_pass() -> None:
    aug = PhotometricAugment()
    params = torch.stack([aug.draw() for _ in range(4)])
    params[:, JITTER] = params[:, GRAY] = params[:, SIGMA] = 0  # nothing selected for any op
    images = torch.randint(0, 256, (4, 3, 30, 30), dtype=torch.uint8)
    torch.testing.assert_close(aug(images, params), images.float() / 127.5 - 1)
    gray = torch.randint(0, 256, (4, 1, 30, 30), dtype=torch.uint8)  # blur only
    assert aug(gray, torch.stack([aug.draw() for _ in range(4)])).shape == (4, 1, 30, 30)
    with pytest.raises(ValueError, match="uint8 images"):
        aug(images.float(), params)


def _draws(aug: PhotometricAugment, n: int) -> torch.Tensor:
    torch.manual_seed(0)
    return torch.stack([aug.draw() for _ in range(n)])


def _torchvision_params(n: int, hue: float = 0.2) -> dict[str, np.ndarray]:
    torch.manual_seed(1)
    jitter = v2.ColorJitter(0.8, 0.8, 0.8, hue)
    blur = v2.GaussianBlur(23, sigma=(0.1, 2.0))
    rows = [jitter.make_params([]) for _ in range(n)]
    out = {
        k: np.array([r[f"{k}_factor"] for r in rows]) for k in ("brightness", "contrast", "saturation", "hue")
    }
    out["sigma"] = np.array([blur.make_params([])["sigma"][0] for _ in range(n)])
    return out


def _bernoulli_ok(draws: torch.Tensor, p: float) -> bool:
    """Whether the rate of ``draws`` is within 4.5 standard errors of ``p``."""
    n = len(draws)
    return abs(float(draws.float().mean()) - p) <= 4.5 * (p * (1 - p) / n) ** 0.5 + 1e-12


@pytest.mark.parametrize("blur_p", [1.0, 0.5])
def test_parameter_distribution_is_the_torchvision_pipelines(blur_p: float) -> None:
    rows = _draws(PhotometricAugment(blur_p=blur_p), N)
    reference = _torchvision_params(N)
    # Rates: RandomApply(ColorJitter, p=0.8), RandomGrayscale(p=0.2), the blur's p.
    assert _bernoulli_ok(rows[:, JITTER], 0.8) and _bernoulli_ok(rows[:, GRAY], 0.2)
    blurred = rows[:, SIGMA] > 0
    assert _bernoulli_ok(blurred, blur_p)
    # Factors and sigma: two-sample KS against torchvision's own draws; ranges exact.
    for k, name in enumerate(("brightness", "contrast", "saturation", "hue")):
        ours = rows[:, FACTORS][:, k].numpy()
        assert stats.ks_2samp(ours, reference[name]).pvalue > 1e-3, name
    assert rows[:, FACTORS][:, :3].min() >= 0.2 and rows[:, FACTORS][:, :3].max() <= 1.8
    assert rows[:, FACTORS][:, 3].abs().max() <= 0.2
    sigma = rows[blurred, SIGMA].numpy()
    assert stats.ks_2samp(sigma, reference["sigma"]).pvalue > 1e-3
    assert sigma.min() >= 0.1 and sigma.max() <= 2.0
    # The order of the four ops: each of the 24 permutations equally likely (torchvision's randperm(4)).
    perms = list(itertools.permutations(range(4)))
    counts = np.zeros(len(perms))
    for order in rows[:, ORDER].long().tolist():
        counts[perms.index(tuple(order))] += 1
    assert stats.chisquare(counts).pvalue > 1e-3


def test_the_distribution_test_sees_a_wrong_hue_range() -> None:
    ours = _draws(PhotometricAugment(), N)[:, FACTORS][:, 3].numpy()
    assert stats.ks_2samp(ours, _torchvision_params(N, hue=0.1)["hue"]).pvalue < 1e-6


def test_applied_rates_match_the_drawn_ones() -> None:
    """On a red-and-black image: grayscale shows as equal channels, the blur as a change at the sharp edge."""
    aug = PhotometricAugment(blur_p=0.5)
    n = 1000
    image = torch.zeros(n, 3, 24, 24, dtype=torch.uint8)
    image[:, 0, :, :12] = 255  # red left half, black right half
    params = _draws(aug, n)
    params[:, JITTER] = 0  # a strong jitter can also wash the image out to equal channels (white)
    out = aug(image, params)
    spread = out.amax(dim=1) - out.amin(dim=1)  # [n, H, W]: 0 where all three channels are equal
    gray = spread.amax(dim=(1, 2)) < 1e-6
    assert _bernoulli_ok(gray, 0.2) and torch.equal(gray, params[:, GRAY] > 0.5)
    no_blur = params.clone()
    no_blur[:, SIGMA] = 0
    blurred = (aug(image, no_blur) - out).abs().amax(dim=(1, 2, 3)) > 1e-3
    # Why 0.4: below ~0.3 a Gaussian puts under 0.4% of its weight on the neighbouring pixel, so the blur
    # may not show (in torchvision either); from 0.4 it puts 4%.
    visible = (params[:, SIGMA] == 0) | (params[:, SIGMA] >= 0.4)
    assert _bernoulli_ok(params[:, SIGMA] > 0, 0.5)
    assert torch.equal(blurred[visible], params[visible, SIGMA] > 0)


def _image_folder(root: Path, classes: int = 2, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for c in range(classes):
        (root / f"c{c}").mkdir(parents=True)
        for i in range(per_class):
            pixels = rng.integers(0, 256, (20, 26, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / f"c{c}" / f"{i}.png")
    return root


def test_datamodule_serves_uint8_views_that_the_transfer_hook_finishes(tmp_path: Path) -> None:
    root = _image_folder(tmp_path / "train")
    dm = ImageFolderDataModule(root=str(root), size=16, two_views=True, batch_size=4)
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.uint8 and batch["image" + PARAMS_SUFFIX].shape == (4, 11)
    done = dm.on_after_batch_transfer(batch, 0)
    assert set(done) == {"image", "image_view2", "label"}
    for key in ("image", "image_view2"):
        assert done[key].dtype == torch.float32 and done[key].shape == (4, 3, 16, 16)
        assert -1 <= float(done[key].min()) and float(done[key].max()) <= 1
    classic = ImageFolderDataModule(
        root=str(root), size=16, two_views=True, batch_size=4, photometric_on_device=False
    )
    plain = next(iter(classic.train_dataloader()))
    assert set(plain) == {"image", "image_view2", "label"} and plain["image"].dtype == torch.float32
    assert classic.on_after_batch_transfer(plain, 0) is plain


def test_imagenet_views_use_the_papers_blur_and_the_worker_half_by_default() -> None:
    dm = ImageNetDataModule(root="unused", size=224)
    view = dm.view_transform()
    assert isinstance(view, CropFlipView) and dm.device_augment() is view.photometric
    assert view.photometric.blur_p == 1.0 and view.photometric.blur_kernel == 23
    assert ImageNetDataModule(root="unused", photometric_on_device=False).device_augment() is None


def test_parameters_without_an_augment_are_an_error() -> None:
    batch = {"image": torch.zeros(2, 3, 4, 4, dtype=torch.uint8), "image" + PARAMS_SUFFIX: torch.zeros(2, 11)}
    with pytest.raises(ValueError, match="carry photometric parameters"):
        finish_device_views(batch, None)
