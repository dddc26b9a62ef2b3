"""``lzn check-data``: decode every image file a recipe reads, in parallel, and list the broken ones.

A truncated JPEG, an empty file or a non-image with an image extension otherwise stops a long run at the step
that first draws it (or, with ``skip_bad_files``, is skipped silently but for a warning). Run this once before
a long run: it opens every file of the train, validation and test splits fully (a truncated JPEG opens and
fails only when decoded) and prints each unreadable file with the reason.
"""

from __future__ import annotations

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor
from typing import Any

from tqdm import tqdm

from lzn_lightning.data.files import check_image_file
from lzn_lightning.recipes import recipe_cli

# Files per task sent to a worker process: large enough that the round trip is negligible next to decoding.
_CHUNK = 64


def dataset_files(datamodule: Any) -> list[str]:
    """Every image file of the datamodule's train, validation and test datasets (each once, in order)."""
    datamodule.setup(None)
    seen: dict[str, None] = {}
    for ds in (datamodule.train_dataset, datamodule.val_dataset, datamodule.test_dataset):
        for f in getattr(ds, "files", ()):
            seen.setdefault(str(f), None)
    return list(seen)


def scan(files: list[str], workers: int) -> list[tuple[str, str]]:
    """(file, reason) for every file that does not decode, in ``files`` order; a progress bar on stderr."""
    if workers <= 1:
        return _collect(files, map(check_image_file, files))
    with ProcessPoolExecutor(max_workers=workers) as pool:
        return _collect(files, pool.map(check_image_file, files, chunksize=_CHUNK))


def _collect(files: list[str], reasons: Any) -> list[tuple[str, str]]:
    progress = tqdm(reasons, total=len(files), unit="file", desc="decoding")
    return [(f, reason) for f, reason in zip(files, progress, strict=True) if reason is not None]


def main(argv: list[str]) -> int:
    """``lzn check-data --config <recipe> [overrides]``; the exit status is 1 if any file is broken."""
    p = argparse.ArgumentParser(
        prog="lzn check-data",
        description="Decode every image file a recipe reads (train, validation, test) and list the "
        "unreadable ones. Other arguments are as for lzn fit (--config recipes/X.yaml, "
        "--data.init_args.root=...).",
    )
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="decoding processes")
    args, recipe_args = p.parse_known_args(argv)
    if "--config" not in recipe_args:
        raise ValueError("lzn check-data needs the recipe: --config recipes/<recipe>.yaml")
    datamodule = recipe_cli(recipe_args).datamodule
    files = dataset_files(datamodule)
    if not files:
        name = type(datamodule).__name__
        print(f"{name} reads no image files (its data is built in memory): nothing to check")
        return 0
    start = time.perf_counter()
    bad = scan(files, args.workers)
    seconds = time.perf_counter() - start
    for f, reason in bad:
        print(f"unreadable: {f} ({reason})")
    print(f"checked {len(files)} files in {seconds:.1f} s: {len(bad)} unreadable")
    return 1 if bad else 0
