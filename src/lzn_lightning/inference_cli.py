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
``--overwrite``.
"""

from __future__ import annotations

import argparse
import csv
import math
import os
import sys
from pathlib import Path
from typing import Any, NoReturn

import numpy as np
import torch
from torch import Tensor

from lzn_lightning.inference import LZNInference

# Why: pixel values written by float32 code can overshoot [-1, 1] by rounding; anything beyond is a scaling bug.
_RANGE_TOLERANCE = 1e-3


class InputError(ValueError):
    """A user mistake that the CLI reports in one line."""


def fail(name: str, message: str) -> NoReturn:
    """Print ``lzn <name>: error: <message>`` and exit with status 2 (argparse's status for usage errors)."""
    print(f"lzn {name}: error: {message}", file=sys.stderr)
    raise SystemExit(2)


# ---------------------------------------------------------------------------------------------------- parsers
def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--ckpt_path", required=True, help="checkpoint written by `lzn fit` (e.g. .../last.ckpt)")
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


def _image_spec(model: Any) -> tuple[int, int]:
    m = model.modality(LZNInference(model).source_field())
    return int(getattr(m, "channels", 0)), int(getattr(m, "size", 0))


def load_images(path: str | Path, channels: int, size: int) -> tuple[Tensor, list[str] | None]:
    """Images [N, C, H, W] in [-1, 1] from a .npy or a folder, plus the file names for a folder.

    Raises:
        InputError: Missing input, wrong shape or range, no image files.
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"input {path} does not exist")
    if path.is_dir():
        return _load_folder(path, channels, size)
    if path.suffix.lower() != ".npy":
        raise InputError(f"input {path} must be a .npy file or a folder of images")
    try:
        array = np.load(path, allow_pickle=False)
    except Exception as err:
        raise InputError(f"cannot read {path} as .npy ({err})") from None
    if array.ndim == 3 and channels == 1:
        array = array[:, None]  # [N, H, W] -> [N, 1, H, W]
    expected = f"[N, {channels}, {size}, {size}]"
    if array.ndim != 4 or array.shape[1:] != (channels, size, size):
        hint = (
            " (channels last? use array.transpose(0, 3, 1, 2))"
            if array.ndim == 4 and array.shape[-1] == channels
            else ""
        )
        raise InputError(
            f"{path} holds an array of shape {list(array.shape)}; this model takes images {expected}{hint}"
        )
    if not np.issubdtype(array.dtype, np.number) or array.size == 0:
        raise InputError(
            f"{path} must hold a non-empty numeric array, got dtype {array.dtype}, size {array.size}"
        )
    lo, hi = float(array.min()), float(array.max())
    if lo < -1 - _RANGE_TOLERANCE or hi > 1 + _RANGE_TOLERANCE or not math.isfinite(lo + hi):
        raise InputError(
            f"{path} has values in [{lo:.3g}, {hi:.3g}]; images must be in [-1, 1] (uint8: x / 127.5 - 1)"
        )
    return torch.from_numpy(array.astype(np.float32)).clamp(-1, 1), None


def _load_folder(folder: Path, channels: int, size: int) -> tuple[Tensor, list[str]]:
    from PIL import Image
    from torchvision.transforms.v2 import functional as F

    from lzn_lightning.data.files import list_images

    files = list_images(folder)
    if not files:
        raise InputError(f"no image files under {folder}")
    if channels not in (1, 3):
        raise InputError(f"folder input needs a 1- or 3-channel model, this one has {channels} channels")
    images = []
    for f in files:
        try:
            with Image.open(f) as im:
                im = im.convert("L" if channels == 1 else "RGB")
                x = F.pil_to_tensor(im)  # [C, h, w] uint8
        except Exception as err:
            raise InputError(f"cannot read image {f} ({err})") from None
        if tuple(x.shape[1:]) != (size, size):
            x = F.center_crop(F.resize(x, size, antialias=True), [size, size])  # shorter side, then centre
        images.append(x.float() / 127.5 - 1.0)
    return torch.stack(images), [str(f.relative_to(folder)) for f in files]


def text_field(model: Any) -> str:
    """The field of the model's text modality (one with ``tokenize``)."""
    for field in model.field_map:
        if hasattr(model.modality(field), "tokenize"):
            return field
    raise InputError("this model has no text modality, so it takes no text (see recipes/digits_caption.yaml)")


def load_texts(path: str | Path, model: Any) -> tuple[str, Tensor, list[str]]:
    """``(text field, token ids [N, L], lines)`` of a UTF-8 text file with one text per line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"input {path} does not exist")
    field = text_field(model)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as err:
        raise InputError(f"{path} is not UTF-8 text ({err.reason})") from None
    while lines and not lines[-1].strip():
        lines.pop()  # a trailing newline is not a text
    if not lines:
        raise InputError(f"{path} holds no text")
    modality = model.modality(field)
    rows = []
    for n, line in enumerate(lines, start=1):
        try:
            rows.append(modality.tokenize([line]))
        except ValueError as err:
            raise InputError(f"{path} line {n}: {str(err).replace('text 0 ', 'the text ')}") from None
    return field, torch.cat(rows), lines


def _is_text(path: str) -> bool:
    return Path(path).suffix.lower() == ".txt"


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
    _check_out(out, (".csv", ".txt"), args.overwrite)
    field = text_field(model)
    images, files = load_images(args.images, *_image_spec(model))
    image_field = LZNInference(model).source_field()
    # Zone centres (noise 0): a caption describes the image, not a random point of its zone.
    captions = model.generate(
        condition={image_field: images}, target=field, noise_scale=_noise(args, 0.0),
        batch_size=args.batch_size, seed=args.seed, temperature=args.temperature,
    )  # fmt: skip
    _write_texts(out, captions, "caption", {"file": files} if files else {})
    return f"wrote {len(captions)} captions to {out}"


def _write_texts(out: Path, texts: list[str], name: str, columns: dict[str, list[Any]]) -> None:
    """One text per line (.txt), or a CSV: index, the other ``columns``, then the texts under ``name``."""
    if out.suffix.lower() == ".txt":
        out.write_text("".join(t + "\n" for t in texts), encoding="utf-8")
        return
    with out.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", *columns, name])
        w.writerows([i, *(values[i] for values in columns.values()), t] for i, t in enumerate(texts))


def _sample(model: Any, args: argparse.Namespace) -> str:
    from torchvision.utils import save_image

    if (args.prompts is not None) + (args.images is not None) + (args.num is not None) != 1:
        raise InputError("give exactly one of --num (with optional --labels), --prompts or --images")
    if args.images is not None:
        return _captions(model, args)
    out = Path(args.out)
    if args.num is not None and _writes_text(model):
        return _sample_texts(model, args, out)
    _check_out(out, (".png", ".jpg", ".npz", ".npy"), args.overwrite)
    if args.prompts is not None:
        field, tokens, lines = load_texts(args.prompts, model)
        # Zone centres (noise 0), as for captions: the image a prompt's zone stands for.
        images = model.generate(
            condition={field: tokens}, noise_scale=_noise(args, 0.0), batch_size=args.batch_size,
            seed=args.seed, steps=args.steps, method=args.method,
        )  # fmt: skip
        labels, args.num = None, len(lines)
    else:
        if args.num < 1:
            raise InputError(f"--num must be >= 1, got {args.num}")
        labels = _parse_labels(args.labels, args.num)
        images = model.generate(
            args.num,
            labels=labels,
            noise_scale=_noise(args, 1.0),
            batch_size=args.batch_size,
            steps=args.steps,
            method=args.method,
            seed=args.seed,
        )  # [N, C, H, W] in [-1, 1]
    if out.suffix.lower() in (".png", ".jpg"):
        distinct = len(set(args.labels.split(","))) if args.labels else 0
        nrow = args.nrow or (distinct if 0 < distinct <= args.num else math.ceil(math.sqrt(args.num)))
        save_image((images + 1) / 2, out, nrow=nrow, padding=1, pad_value=1.0)
    elif out.suffix.lower() == ".npz":
        extra = {"labels": labels.numpy()} if labels is not None else {}
        np.savez(out, images=images.numpy(), **extra)
    else:
        np.save(out, images.numpy())
    return f"wrote {args.num} samples {list(images.shape[1:])} to {out}"


def _noise(args: argparse.Namespace, default: float) -> float:
    if args.noise_scale is not None and args.noise_scale < 0:
        raise InputError(f"--noise_scale must be >= 0, got {args.noise_scale}")
    return default if args.noise_scale is None else args.noise_scale


def _writes_text(model: Any) -> bool:
    """Whether the model's decoder (``generate``'s default target) is a text modality."""
    return hasattr(model.modality(LZNInference(model).decoder_field()), "tokenize")


def _sample_texts(model: Any, args: argparse.Namespace, out: Path) -> str:
    """``lzn sample --num N [--labels ...]`` on a model that writes text: a line per text (.txt) or a CSV."""
    _check_out(out, (".txt", ".csv"), args.overwrite)
    if args.num < 1:
        raise InputError(f"--num must be >= 1, got {args.num}")
    labels = _parse_labels(args.labels, args.num)
    texts = model.generate(
        args.num, labels=labels, noise_scale=_noise(args, 1.0), batch_size=args.batch_size, seed=args.seed,
        temperature=args.temperature,
    )  # fmt: skip
    _write_texts(out, texts, "text", {"label": labels.tolist()} if labels is not None else {})
    return f"wrote {len(texts)} texts to {out}"


def _classify(model: Any, args: argparse.Namespace) -> str:
    out = Path(args.out)
    _check_out(out, (".csv", ".npy"), args.overwrite)
    if _is_text(args.input):
        field, data, lines = load_texts(args.input, model)
        files = None
    else:
        field = LZNInference(model).source_field()
        data, files = load_images(args.input, *_image_spec(model))
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
    if _is_text(args.input):
        return _write_text_labels(out, lines, preds)
    if out.suffix.lower() == ".npy":
        np.save(out, preds)
    else:
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "file", "label"] if files else ["index", "label"])
            for i, label in enumerate(preds):
                w.writerow([i, files[i], int(label)] if files else [i, int(label)])
    return f"wrote {len(preds)} labels to {out}"


def _write_text_labels(out: Path, lines: list[str], preds: Any) -> str:
    if out.suffix.lower() == ".npy":
        np.save(out, preds)
    else:
        with out.open("w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["index", "text", "label"])
            w.writerows([i, line, int(y)] for i, (line, y) in enumerate(zip(lines, preds, strict=True)))
    return f"wrote {len(preds)} labels to {out}"


def _embed_texts(model: Any, args: argparse.Namespace, out: Path) -> str:
    field, tokens, lines = load_texts(args.input, model)
    emb = model.embed(tokens, field=field, batch_size=args.batch_size).numpy()
    if out.suffix.lower() == ".npz":
        np.savez(out, embeddings=emb, texts=np.array(lines))
    else:
        np.save(out, emb)
    return f"wrote embeddings {list(emb.shape)} to {out}"


def _embed(model: Any, args: argparse.Namespace) -> str:
    out = Path(args.out)
    _check_out(out, (".npy", ".npz"), args.overwrite)
    if _is_text(args.input):
        return _embed_texts(model, args, out)
    images, files = load_images(args.input, *_image_spec(model))
    emb = model.embed(images, batch_size=args.batch_size).numpy()
    if out.suffix.lower() == ".npz":
        np.savez(out, embeddings=emb, **({"files": np.array(files)} if files else {}))
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
