"""Per-image cost of the ImageNet linear probe's encoder on this machine, and the protocol's cost from it.

Times the imagenet_repr ResNet-50's pre-head forward (what LinearProbeModule runs under no_grad for every
training image, and CachedFeatures runs once per image) at 224 px on random images, then multiplies out the
paper's protocol (300 epochs of the 1,281,167 training images, the 50,000 validation images after each epoch)
and the cached variant (one pass over both splits). The loader's per-image costs are not timed here: they come
from benchmarks/input_pipeline.py (docs/performance.md#input-pipeline-of-the-image-file-recipes-per-core).

    python benchmarks/probe_cost.py --images 8 --batch 4 --threads 1
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch
from lzn_lightning.modalities import ImageModality

TRAIN, VAL, EPOCHS = 1_281_167, 50_000, 300  # ImageNet-1k split sizes; the paper's probe epochs


def forward_ms_per_image(images: int, batch: int, device: str) -> tuple[float, float]:
    """Best-of-2 milliseconds per image of the ResNet-50's pre-head forward at 224 px: (wall, CPU time of this
    process). On a shared machine the CPU time is the one to trust (wall includes waiting for a core)."""
    modality = ImageModality(channels=3, size=224, encoder="resnet50_gn", decoder=None)
    modality.build(256)
    modality.eval().to(device)
    x = torch.rand(batch, 3, 224, 224, device=device) * 2 - 1
    best, best_cpu = float("inf"), float("inf")
    with torch.no_grad():
        modality.trunk_features(x)  # warm-up
        for _ in range(2):
            if device == "cuda":
                torch.cuda.synchronize()
            start, start_cpu = time.perf_counter(), time.process_time()
            for _ in range(max(1, images // batch)):
                modality.trunk_features(x)
            if device == "cuda":
                torch.cuda.synchronize()
            done = max(1, images // batch) * batch
            best = min(best, (time.perf_counter() - start) / done)
            best_cpu = min(best_cpu, (time.process_time() - start_cpu) / done)
    return best * 1000, best_cpu * 1000


def main() -> None:
    """Print the per-image time and the protocol's totals."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, default=8, help="images timed per pass")
    p.add_argument("--batch", type=int, default=4, help="images per forward")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--device", default="cpu")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    wall, ms = forward_ms_per_image(args.images, args.batch, args.device)
    full = ms * (EPOCHS * TRAIN + EPOCHS * VAL) / 1000 / 3600
    cached = ms * (TRAIN + VAL) / 1000 / 3600
    load = os.getloadavg()[0]
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, device "
          f"{args.device}, {args.threads} thread(s), batch {args.batch}, load {load:.1f}")  # fmt: skip
    print(f"ResNet-50 pre-head forward, 224 px: {ms:.1f} ms CPU time per image ({wall:.1f} ms wall)")
    unit = f"hours of {args.threads} {args.device} thread(s)" if args.device == "cpu" else "device-hours"
    print(f"full protocol (300 x (train + val) forwards): {full:,.0f} {unit}")
    print(f"cached variant (one forward per image): {cached:,.1f} {unit}")


if __name__ == "__main__":
    main()
