"""Images per second per core of each image-file recipe's input pipeline, op by op, on one CPU thread.

JPEGs of ImageNet's typical size (500x375, quality 90, smooth random content so they compress like photos) are
written to a temporary folder, then every sample goes through what a loader worker does for it: decode
(``LoadRGB`` of the recipe's datamodule) and the recipe's transform, each op timed on its own (the two-view
transform runs twice per sample). No download, no GPU.

    python benchmarks/input_pipeline.py                       # prints the table
    python benchmarks/input_pipeline.py --out docs/performance.md # and writes it into its generated section
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from lzn_lightning.data import ImageFolderDataModule, ImageNetDataModule
from lzn_lightning.data.files import LoadRGB
from lzn_lightning.data.photometric import CropFlipView, DeviceView, PhotometricAugment
from lzn_lightning.data.transforms import to_signed

# ImageNet's typical JPEG: about 500x375 (the median train image is 500 px on its long side).
SIZE = (500, 375)


def make_jpegs(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """``n`` photo-like JPEGs: an upsampled coarse random field plus fine noise."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        coarse = rng.uniform(0, 255, (12, 16, 3)).astype(np.uint8)
        base = np.asarray(Image.fromarray(coarse).resize(SIZE, Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(base + rng.normal(0, 8, base.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:03d}.jpg"
        Image.fromarray(pixels).save(path, quality=90)
        paths.append(path)
    return paths


class ToUint8Tensor:
    """The worker half's last geometric step: PIL image -> uint8 tensor (what crosses to the device)."""

    def __call__(self, x: Any) -> Any:
        return v2.functional.pil_to_tensor(x) if isinstance(x, Image.Image) else x


class DrawPhotometric:
    """The worker half's parameter draw; returns the image with them, as the view does."""

    def __init__(self, photometric: PhotometricAugment) -> None:
        self.photometric = photometric

    def __call__(self, x: Any) -> DeviceView:
        return DeviceView(x, self.photometric.draw())


def _ops(transform: Any) -> list[Any]:
    """The ops of a ``v2.Compose`` or of a view's worker half, in order (a single op as itself)."""
    if isinstance(transform, CropFlipView):
        return [*_ops(transform.geometric), ToUint8Tensor(), DrawPhotometric(transform.photometric)]
    return list(transform.transforms) if isinstance(transform, v2.Compose) else [transform]


def _name(op: Any) -> str:
    if isinstance(op, v2.RandomApply):
        return f"RandomApply({'+'.join(type(t).__name__ for t in op.transforms)}, p={op.p})"
    return type(op).__name__


def time_pipeline(paths: list[Path], load: Any, transform: Any, views: int, repeats: int) -> dict[str, float]:
    """Milliseconds per sample of decoding and of each op (summed over ``views`` draws), best pass."""
    ops = _ops(transform)
    best: dict[str, float] = {}
    for _ in range(repeats):
        totals: dict[str, float] = {"decode": 0.0}
        for op in ops:
            totals.setdefault(_name(op), 0.0)
        totals["to [-1, 1]"] = 0.0
        for path in paths:
            start = time.perf_counter()
            image = load(path)
            totals["decode"] += time.perf_counter() - start
            for _ in range(views):
                x = image
                for op in ops:
                    start = time.perf_counter()
                    x = op(x)
                    totals[_name(op)] += time.perf_counter() - start
                if not isinstance(x, DeviceView):  # a device view stays uint8 until the device
                    start = time.perf_counter()
                    to_signed(x)
                    totals["to [-1, 1]"] += time.perf_counter() - start
        per_sample = {k: 1e3 * v / len(paths) for k, v in totals.items()}
        best = per_sample if not best or sum(per_sample.values()) < sum(best.values()) else best
    return best


def pipelines() -> dict[str, tuple[Any, Any, int]]:
    """(loader, transform, views) of each recipe pipeline that reads image files."""
    imagenet = ImageNetDataModule(root="unused", size=224)
    in_workers = ImageNetDataModule(root="unused", size=224, photometric_on_device=False)
    folder = ImageFolderDataModule(root="unused", size=256)
    return {
        "imagenet_repr train (two views), all in the worker": (LoadRGB(None), in_workers.view_transform(), 2),
        "imagenet_repr train (two views), worker half": (LoadRGB(None), imagenet.view_transform(), 2),
        "imagenet_repr eval": (LoadRGB(None), imagenet.eval_transform(), 1),
        "afhq/celebahq/lsun train (256 px)": (LoadRGB(256), folder.train_transform(), 1),
    }


def time_device_half(paths: list[Path], batch: int, repeats: int) -> dict[str, float]:
    """Milliseconds per sample (both views) of imagenet_repr's photometric half on this CPU, batched.

    What the device does with a batch; on a GPU it is a few elementwise passes and one separable convolution,
    on this CPU it is timed only to show what running it outside the workers costs here.
    """
    view = ImageNetDataModule(root="unused", size=224).view_transform()
    load = LoadRGB(None)
    views = [view(load(paths[i % len(paths)])) for i in range(batch)]
    images, params = torch.stack([v.image for v in views]), torch.stack([v.params for v in views])
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        view.photometric(images, params)
        best = min(best, time.perf_counter() - start)
    return {"photometric (jitter, grayscale, blur)": 2e3 * best / batch}  # x2: two views per sample


def cpu_name() -> str:
    """The CPU model (Linux), else the architecture."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def table(results: dict[str, dict[str, float]], n: int) -> str:
    lines = [
        f"Command: `python benchmarks/input_pipeline.py` ({n} JPEGs of {SIZE[0]}x{SIZE[1]}, one CPU thread, "
        f"best of 3 passes); machine: {cpu_name()}, torch {torch.__version__}.",
        "",
        "| pipeline | images/s per core | ms per sample | ms per op (per sample, all views) |",
        "|---|---:|---:|---|",
    ]
    for name, ms in results.items():
        total = sum(ms.values())
        ops = ", ".join(f"{k} {v:.1f}" for k, v in sorted(ms.items(), key=lambda kv: -kv[1]) if v >= 0.05)
        lines.append(f"| {name} | {1e3 / total:.1f} | {total:.1f} | {ops} |")
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch", type=int, default=64, help="batch of the device half's timing")
    p.add_argument("--out", type=Path, default=None, help="write the table into this results file's section")
    args = p.parse_args()
    torch.set_num_threads(1)  # per core: a loader worker is one process on one core
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_jpegs(Path(tmp), args.images)
        results = {
            name: time_pipeline(paths, load, transform, views, args.repeats)
            for name, (load, transform, views) in pipelines().items()
        }
        device = f"imagenet_repr train (two views), device half on this CPU (batch {args.batch})"
        results[device] = time_device_half(paths, args.batch, args.repeats)
    text = table(results, args.images)
    print(text)
    if args.out is not None:
        from results_md import write_section

        write_section(args.out, "input_pipeline", text)


if __name__ == "__main__":
    main()
