"""``lzn sample | classify | embed``: inference on a trained checkpoint, writing files.

Examples:
    lzn sample   --ckpt_path last.ckpt --num 100 --labels 0,1,2,3,4,5,6,7,8,9 --out grid.png
    lzn sample   --ckpt_path last.ckpt --num 1000 --out samples.npz        # images [N, C, H, W] in [-1, 1]
    lzn classify --ckpt_path last.ckpt --input images.npy --out preds.csv
    lzn embed    --ckpt_path last.ckpt --input my_pngs/ --out emb.npy
    lzn sample   --ckpt_path last.ckpt --prompts prompts.txt --out grid.png   # text -> image, one per line
    lzn sample   --ckpt_path last.ckpt --images x.npy --out captions.csv      # image -> text
    lzn classify --ckpt_path last.ckpt --input texts.txt --out preds.csv      # text -> label

``--input`` is a ``.npy`` of float images [N, C, H, W] in [-1, 1] (the datamodule's layout; [N, H, W] for one
channel) or a folder of image files (searched recursively, sorted by path, converted to the model's channels
and resized + centre-cropped to its size), or, for a model with a text modality, a ``.txt`` file with one text
per line (texts are classified and embedded in batches of ``--batch_size``, each batch its own field). Every
mistake ends with one ``error:`` line and exit status 2; an existing ``--out`` is replaced only with
``--overwrite``. What a file holds is each data type's business: the field's modality reads the inputs
(``read_inputs``, chosen by its ``input_suffixes``) and writes the outputs (``write_outputs``).
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor

from lzn_lightning.user_files import InputError, load_images, npz_columns, write_csv

__all__ = ["InputError", "build_parser", "fail", "load_images", "run_inference_command"]


def fail(name: str, message: str) -> NoReturn:
    """Print ``lzn <name>: error: <message>`` and exit with status 2 (argparse's status for usage errors)."""
    print(f"lzn {name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------------- parsers
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--ckpt_path", required=True,
        help="checkpoint written by `lzn fit` (e.g. .../last.ckpt), a folder `lzn export` wrote, or a Hub "
        "repository of one (owner/name, hf://owner/name)",
    )  # fmt: skip
    p.add_argument(
        "--device", default="auto", help="'auto' (cuda when available), 'cpu', 'cuda', 'cuda:1', ..."
    )
    p.add_argument("--batch_size", type=int, default=256, help="images per batch")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (refused otherwise)")


def build_parser(name: str) -> argparse.ArgumentParser:
    """The argparse parser of one subcommand."""
    p = argparse.ArgumentParser(prog=f"lzn {name}")
    _common(p)
    if name == "sample":
        p.description = (
            "Generate images (a PNG grid, one row per label when labels are given, .npz or .npy), images "
            "from the prompts of a text file, captions of images (.csv or .txt), or, on a model whose "
            "decoder writes text, texts by label (.txt or .csv)."
        )
        p.add_argument("--num", type=int, default=None, help="number of samples N (no --prompts, --images)")
        p.add_argument("--prompts", default=None, help=".txt, one prompt per line: one image per prompt")
        p.add_argument("--images", default=None, help=".npy or folder of images to caption (text decoder)")
        p.add_argument("--temperature", type=float, default=0.0, help="text outputs: 0 greedy, > 0 sampled")
        p.add_argument("--labels", default=None, help="comma-separated class labels, repeated to fill N")
        p.add_argument(
            "--out", required=True,
            help="grid.png | samples.npz (images, labels) | samples.npy; texts: texts.txt | texts.csv",
        )  # fmt: skip
        p.add_argument("--steps", type=int, default=None, help="RF sampler steps (default: the model's)")
        p.add_argument(
            "--method", choices=("euler", "rk45"), default=None, help="RF sampler (default: the model's)"
        )
        p.add_argument("--seed", type=int, default=0, help="seed of the samples")
        p.add_argument(
            "--noise_scale", type=float, default=None,
            help="prior noise of the conditioned latents: 1 spreads them over their zone as in training (the "
            "default with --num), 0 takes the zone centres (the default with --prompts and --images)",
        )  # fmt: skip
        p.add_argument(
            "--nrow", type=int, default=None, help="images per grid row (default: labels or sqrt(N))"
        )
    else:
        p.add_argument(
            "--input", required=True,
            help=".npy of images [N, C, H, W] in [-1, 1], a folder of images, or a .txt, one text per line",
        )  # fmt: skip
        if name == "classify":
            p.description = "Classify images through the label zones; CSV (index, [file,] label) or .npy."
            p.add_argument("--out", required=True, help="preds.csv | preds.npy")
            p.add_argument(
                "--context", choices=("bank", "batch"), default=None,
                help="field of the image latents: the stored bank of training images (default when the "
                "checkpoint has one; batch-independent) or the batch's own images (the reference)",
            )  # fmt: skip
            p.add_argument(
                "--noise_scale", type=float, default=None, help="prior-noise scale (default: per context)"
            )
            p.add_argument("--seed", type=int, default=0, help="seed of the prior noise")
        else:
            p.description = "Embed images (the representation, e.g. the pre-head feature); .npy or .npz."
            p.add_argument("--out", required=True, help="emb.npy | emb.npz (embeddings[, files])")
    return p


# ---------------------------------------------------------------------------------------------------- inputs
def _device(spec: str) -> torch.device:
    if spec == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        device = torch.device(spec)
    except RuntimeError as err:
        raise InputError(f"unknown --device {spec!r} ({err})") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise InputError("--device cuda asked for, but no CUDA device is available")
    return device


def _encoder_fields(model: Any) -> list[str]:
    """The fields that take user data: the encoded field first, then the other instance fields that encode."""
    encoded = model.routing.source_field()
    others = [
        f
        for f in model.field_map
        if f != encoded and model.modality(f).kind == "instance" and model.modality(f).has_encoder
    ]
    return [encoded, *others]


def input_field(model: Any, path: str | Path) -> str:
    """The field whose modality reads ``path`` (its ``input_suffixes``; ``"/"`` for a folder): the encoded
    field first. A file no field reads goes to the encoded field, whose reader says what it takes."""
    path = Path(path)
    suffix = "/" if path.is_dir() else path.suffix.lower()
    fields = _encoder_fields(model)
    for field in fields:
        if suffix in model.modality(field).input_suffixes:
            return field
    if suffix == ".txt":
        if not path.is_file():
            raise InputError(f"input {path} does not exist")
        text_field(model)  # says the model takes no text
    return fields[0]


def text_field(model: Any) -> str:
    """The field of the model's text modality: the first whose modality reads ``.txt`` files."""
    for field in model.field_map:
        if ".txt" in model.modality(field).input_suffixes:
            return field
    raise InputError("this model has no text modality, so it takes no text (see recipes/digits_caption.yaml)")


def _decode_options(model: Any, target: str, args: argparse.Namespace) -> dict[str, Any]:
    """The sampler options of the command line that the target modality's ``decode`` takes by name
    (``steps`` / ``method`` for images, ``temperature`` for text)."""
    given = {
        "steps": getattr(args, "steps", None),
        "method": getattr(args, "method", None),
        "temperature": getattr(args, "temperature", None),
    }
    accepted = inspect.signature(model.modality(target).decode).parameters
    return {name: value for name, value in given.items() if name in accepted}


# --------------------------------------------------------------------------------------------------- outputs
def _check_out(out: Path, allowed: tuple[str, ...], overwrite: bool) -> None:
    if out.suffix.lower() not in allowed:
        raise InputError(f"--out {out} must end in one of {', '.join(allowed)}")
    if out.exists() and not overwrite:
        raise InputError(f"--out {out} already exists; pass --overwrite to replace it")
    out.parent.mkdir(parents=True, exist_ok=True)


def _parse_labels(text: str | None, num: int) -> Tensor | None:
    if text is None:
        return None
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v != ""]
    except ValueError:
        raise InputError(f"--labels must be comma-separated integers, got {text!r}") from None
    if not values:
        raise InputError("--labels is empty")
    reps = -(-num // len(values))  # ceil: labels repeat to fill N
    return torch.tensor(values * reps, dtype=torch.long)[:num]


# --------------------------------------------------------------------------------------------------- commands
def _captions(model: Any, args: argparse.Namespace) -> str:
    out = Path(args.out)
    field = text_field(model)
    target = model.modality(field)
    _check_out(out, target.output_suffixes, args.overwrite)
    image_field = model.routing.source_field()
    images, columns = model.modality(image_field).read_inputs(args.images)
    # Zone centres (noise 0): a caption describes the image, not a random point of its zone.
    captions = model.generate(
        condition={image_field: images}, target=field, noise_scale=_noise(args, 0.0),
        batch_size=args.batch_size, seed=args.seed, **_decode_options(model, field, args),
    )  # fmt: skip
    return f"wrote {target.write_outputs(captions, out, columns, name='caption')} to {out}"


def _sample(model: Any, args: argparse.Namespace) -> str:
    if (args.prompts is not None) + (args.images is not None) + (args.num is not None) != 1:
        raise InputError("give exactly one of --num (with optional --labels), --prompts or --images")
    if args.images is not None:
        return _captions(model, args)
    out = Path(args.out)
    target = model.routing.decoder_field()
    writer = model.modality(target)
    _check_out(out, writer.output_suffixes, args.overwrite)
    options = _decode_options(model, target, args)
    if args.prompts is not None:
        field = text_field(model)
        tokens, _ = model.modality(field).read_inputs(args.prompts)
        # Zone centres (noise 0), as for captions: the item a prompt's zone stands for.
        outputs = model.generate(
            condition={field: tokens}, target=target, noise_scale=_noise(args, 0.0),
            batch_size=args.batch_size, seed=args.seed, **options,
        )  # fmt: skip
        labels = None
    else:
        if args.num < 1:
            raise InputError(f"--num must be >= 1, got {args.num}")
        labels = _parse_labels(args.labels, args.num)
        outputs = model.generate(
            args.num, labels=labels, noise_scale=_noise(args, 1.0), batch_size=args.batch_size,
            seed=args.seed, **options,
        )  # fmt: skip
    distinct = len(set(args.labels.split(","))) if args.labels else 0
    nrow = args.nrow or (distinct if 0 < distinct <= len(outputs) else None)  # one row per label
    columns = {"label": labels.tolist()} if labels is not None else {}
    return f"wrote {writer.write_outputs(outputs, out, columns, nrow=nrow)} to {out}"


def _noise(args: argparse.Namespace, default: float) -> float:
    if args.noise_scale is not None and args.noise_scale < 0:
        raise InputError(f"--noise_scale must be >= 0, got {args.noise_scale}")
    return default if args.noise_scale is None else args.noise_scale


def _classify(model: Any, args: argparse.Namespace) -> str:
    out = Path(args.out)
    _check_out(out, (".csv", ".npy"), args.overwrite)
    field = input_field(model, args.input)
    data, columns = model.modality(field).read_inputs(args.input)
    if model.anchor_bank_of(field) is None and args.context != "batch":
        print(
            f"lzn classify: note: {args.ckpt_path} has no anchor bank of {field!r}, so each item is "
            "classified through the field of its batch (labels depend on the batch-mates; see AnchorBank)",
            file=sys.stderr,
        )
        args.context = "batch"
    preds = model.classify(
        data, field=field, context=args.context, noise_scale=args.noise_scale, batch_size=args.batch_size,
        seed=args.seed,
    ).numpy()  # fmt: skip
    if out.suffix.lower() == ".npy":
        np.save(out, preds)
    else:
        write_csv(out, "label", [int(y) for y in preds], columns)
    return f"wrote {len(preds)} labels to {out}"


def _embed(model: Any, args: argparse.Namespace) -> str:
    out = Path(args.out)
    _check_out(out, (".npy", ".npz"), args.overwrite)
    field = input_field(model, args.input)
    data, columns = model.modality(field).read_inputs(args.input)
    emb = model.embed(data, field=field, batch_size=args.batch_size).numpy()
    if out.suffix.lower() == ".npz":
        np.savez(out, embeddings=emb, **npz_columns(columns))
    else:
        np.save(out, emb)
    return f"wrote embeddings {list(emb.shape)} to {out}"


COMMANDS = {"sample": _sample, "classify": _classify, "embed": _embed}


def run_inference_command(name: str, argv: list[str]) -> None:
    """Run ``lzn <name> <argv>``; a user error prints one ``error:`` line and exits with status 2.

    Args:
        name: ``"sample"``, ``"classify"`` or ``"embed"``.
        argv: The arguments after the subcommand.
    """
    if name not in COMMANDS:
        fail(name, f"unknown command; choose one of {', '.join(COMMANDS)}")
    args = build_parser(name).parse_args(argv)
    from lzn_lightning.module import load_for_inference

    try:
        device = _device(args.device)
        if args.batch_size < 1:
            raise InputError(f"--batch_size must be >= 1, got {args.batch_size}")
        model = load_for_inference(args.ckpt_path, map_location=device)
        message = COMMANDS[name](model, args)
    except (InputError, FileNotFoundError, ValueError) as err:
        if os.environ.get("LZN_DEBUG"):
            raise
        fail(name, str(err))
    print(message)
