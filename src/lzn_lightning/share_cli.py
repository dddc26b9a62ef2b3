"""``lzn export`` and ``lzn push-to-hub``: share a trained (or imported) model.

Examples:
    lzn export --ckpt_path runs/digits_joint/lightning_logs/version_0/checkpoints/last.ckpt --out digits/
    lzn export --ckpt_path last.ckpt --part encoder --format torchscript --out encoder.pt
    lzn push-to-hub --ckpt_path last.ckpt --repo me/digits-joint --private
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from lzn_lightning.encoder_export import FORMATS


def _share_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--log_dir", type=Path, default=None,
        help="the run's log folder (config.yaml, metrics.csv) for the card; default: the folder above the "
        "checkpoint's checkpoints/ folder",
    )  # fmt: skip
    p.add_argument("--license", default="mit", help="the card's license field (a Hugging Face license id)")


def export_parser() -> argparse.ArgumentParser:
    """The parser of ``lzn export``."""
    p = argparse.ArgumentParser(
        prog="lzn export",
        description="Write a trained model as a Hugging Face-style folder (EMA weights as .safetensors, the "
        "model spec, the anchor banks, a README.md model card), or its encoder alone as a file plain PyTorch "
        "loads (--part encoder).",
    )
    p.add_argument("--ckpt_path", required=True, help="checkpoint of `lzn fit` or `lzn import-reference`")
    p.add_argument("--out", type=Path, required=True, help="the folder (--part all) or file (--part encoder)")
    p.add_argument(
        "--part", choices=("all", "encoder"), default="all",
        help="all: the whole model as a folder; encoder: the image encoder alone, lzn embed's features",
    )  # fmt: skip
    p.add_argument(
        "--format", choices=tuple(FORMATS), default="torchscript",
        help="--part encoder: torchscript (.pt, torch.jit.load) or export (.pt2, torch.export.load)",
    )  # fmt: skip
    p.add_argument("--field", default=None, help="--part encoder: the field (default: the encoded field)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    _share_options(p)
    return p


def export_main(argv: list[str]) -> None:
    """``lzn export``."""
    args = export_parser().parse_args(argv)
    if args.part == "encoder":
        from lzn_lightning.encoder_export import export_encoder
        from lzn_lightning.module import load_for_inference

        if args.out.exists() and not args.overwrite:
            raise ValueError(f"--out {args.out} already exists; pass --overwrite to replace it")
        print(export_encoder(load_for_inference(args.ckpt_path), args.out, args.format, args.field))
        return
    from lzn_lightning.export import export_checkpoint

    out = export_checkpoint(args.ckpt_path, args.out, args.log_dir, args.license, args.overwrite)
    print(f"wrote {out}: {', '.join(sorted(p.name for p in out.iterdir()))}")


def push_parser() -> argparse.ArgumentParser:
    """The parser of ``lzn push-to-hub``."""
    p = argparse.ArgumentParser(
        prog="lzn push-to-hub",
        description="Export a checkpoint (as lzn export does) and upload the folder to a Hugging Face model "
        "repository, created if it does not exist (the token of `hf auth login` or HF_TOKEN).",
    )
    p.add_argument(
        "--ckpt_path", required=True,
        help="checkpoint of `lzn fit` or `lzn import-reference`, or a folder lzn export wrote",
    )  # fmt: skip
    p.add_argument("--repo", required=True, help="the Hub repository, owner/name")
    p.add_argument("--private", action="store_true", help="create the repository private")
    p.add_argument("--commit_message", default="Upload an lzn-lightning model", help="the commit's message")
    _share_options(p)
    return p


def push_main(argv: list[str], offline: bool) -> None:
    """``lzn push-to-hub``."""
    from lzn_lightning.export import export_checkpoint
    from lzn_lightning.hub import push_folder
    from lzn_lightning.pretrained import _REPO_ID, read_config

    args = push_parser().parse_args(argv)
    if not _REPO_ID.fullmatch(args.repo):
        raise ValueError(f"--repo must be a Hub repository id owner/name, got {args.repo!r}")
    source = Path(args.ckpt_path)
    with tempfile.TemporaryDirectory(prefix="lzn-push-") as tmp:
        if source.is_dir():
            read_config(source, str(source))  # an export folder: uploaded as it is
            folder = source
        else:
            folder = export_checkpoint(
                source, Path(tmp) / "model", args.log_dir, args.license, repo_id=args.repo
            )
        url = push_folder(folder, args.repo, args.private, args.commit_message, offline)
    print(f"pushed {folder.name if folder == source else source} to {args.repo}: {url}")
