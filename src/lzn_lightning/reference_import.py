"""``lzn import-reference``: the paper's released checkpoints as lzn-lightning checkpoints.

The authors' trainers save ``{epoch}-{iteration}.pt`` files holding, per network, a state dict (``encoder``,
``decoder``, ``label_anchor``; keys start with ``model.module.`` when the network was wrapped for distributed
training) and its EMA (``encoder_ema`` ...: ``{"decay", "num_updates", "shadow_params"}``, the shadow
parameters as a list in ``parameters()`` order, trainable parameters only), plus optimiser state we do not
need. The paper's networks here (``encoder: ncsnpp | resnet50_gn``, ``decoder: ncsnpp``,
``LabelModality``) are laid out key for key like theirs, so the import is a prefix strip, a shape check per
tensor and a positional EMA copy. The written checkpoint holds their raw weights as the training weights and
their EMA as ours, so ``lzn sample | classify | embed | test`` use the EMA and ``lzn fit --model.init_from``
continues from both.
"""

from __future__ import annotations

import argparse
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from lzn_lightning.checkpoints import first_line
from lzn_lightning.recipes import recipe_cli

HF_REPO = "microsoft/latent-zoning-networks"
# Key prefixes of a network saved inside its distributed wrapper (the released files) or a bare DDP.
_WRAPPER_PREFIXES = ("model.module.", "module.")
# State-dict entries of the authors' networks that ours do not hold: the NCSN++ decoder's noise-level table
# (``sigmas``) is read only by score-SDE settings that no LZN config uses.
_IGNORED = {"decoder": ("sigmas",)}
# The released files (paths on the authors' model page) and the recipe each was trained as.
RELEASED = {
    "lzn1/case_study_1_cifar10/000002000-000050000.pt": "cifar10_gen",
    "lzn1/case_study_1_afhqcat/000003000-000060000.pt": "afhq_cat_gen",
    "lzn1/case_study_1_celebahq/000002991-000350000.pt": "celebahq_gen",
    "lzn1/case_study_1_lsunbedroom/000000173-002050000.pt": "lsun_bedroom_gen",
    "lzn1/case_study_2/000032051-005000000.pt": "imagenet_repr",
    "lzn1/case_study_3/000008000-000200000.pt": "cifar10_joint",
}


class ReferenceMismatchError(ValueError):
    """A checkpoint that does not fit the recipe (one line, names the first tensor that does not fit)."""


def paper_networks(model: nn.Module) -> Iterator[tuple[str, str, nn.Module, dict[str, str]]]:
    """(their network name, our field, our module, {their key: our key}) for every network the model has."""
    from lzn_lightning.modalities import ImageModality, LabelModality

    for field, modality in model.modalities.items():
        if isinstance(modality, ImageModality):
            if modality.encoder is not None:
                yield "encoder", field, modality.encoder, {}
            if modality.decoder is not None:
                yield "decoder", field, modality.decoder, {}
        elif isinstance(modality, LabelModality):
            yield "label_anchor", field, modality, {"anchor": "anchors"}


def _our_keys(part: str, state: dict[str, Any], rename: dict[str, str]) -> dict[str, Tensor]:
    """Their state dict with the wrapper prefix stripped, ignored entries dropped and names mapped to ours."""
    out = {}
    for key, value in state.items():
        for prefix in _WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key = key[len(prefix) :]
                break
        if key in _IGNORED.get(part, ()):
            continue
        out[rename.get(key, key)] = value
    return out


def _check_fits(part: str, module: nn.Module, theirs: dict[str, Tensor], source: str) -> None:
    """Raise ReferenceMismatchError naming the first tensor (our order) missing, extra or of another shape."""
    ours = module.state_dict()
    for key, tensor in ours.items():
        if key not in theirs:
            raise ReferenceMismatchError(
                f"{source} does not fit the recipe: {part}.{key} (expected {list(tensor.shape)}) is missing; "
                "check that --recipe is the one for this file (README: Use the paper's released models)"
            )
        if tuple(theirs[key].shape) != tuple(tensor.shape):
            raise ReferenceMismatchError(
                f"{source} does not fit the recipe: {part}.{key} expected {list(tensor.shape)}, found "
                f"{list(theirs[key].shape)}; check that --recipe is the one for this file"
            )
    extra = [k for k in theirs if k not in ours]
    if extra:
        raise ReferenceMismatchError(
            f"{source} does not fit the recipe: {part}.{extra[0]} {list(theirs[extra[0]].shape)} has no "
            f"place in the recipe's {part} ({len(extra)} such tensors); check that --recipe is the one for "
            "this file"
        )


def _shadow(model: nn.Module, field: str, part: str) -> nn.Module:
    """Our EMA copy of the network ``part`` of modality ``field``."""
    shadow = model.ema.shadow[field]
    return shadow if part == "label_anchor" else getattr(shadow, part)


def _load_ema(part: str, live: nn.Module, shadow: nn.Module, ema: dict[str, Any], source: str) -> None:
    """Copy their EMA list (trainable parameters, ``parameters()`` order) into our shadow copy."""
    named = [(name, p) for name, p in live.named_parameters() if p.requires_grad]
    values = list(ema["shadow_params"])
    if len(values) != len(named):
        raise ReferenceMismatchError(
            f"{source} does not fit the recipe: {part}_ema holds {len(values)} tensors, the recipe's {part} "
            f"has {len(named)} trainable parameters"
        )
    ours = dict(shadow.named_parameters())
    for (name, p), value in zip(named, values, strict=True):
        if tuple(value.shape) != tuple(p.shape):
            raise ReferenceMismatchError(
                f"{source} does not fit the recipe: {part}_ema entry for {part}.{name} expected "
                f"{list(p.shape)}, found {list(value.shape)}"
            )
        with torch.no_grad():
            ours[name].copy_(value)


def load_reference_state(model: nn.Module, ckpt: dict[str, Any], source: str) -> dict[str, Any]:
    """Load an authors' checkpoint dict into ``model`` (raw weights live, EMA into ``model.ema``).

    Everything is checked before anything is written, so a checkpoint that does not fit leaves ``model`` as it
    was.

    Returns:
        What was imported: networks, their EMA update counts, the source's epoch and iteration.
    """
    if getattr(model, "ema", None) is None:
        raise ReferenceMismatchError(
            "the recipe has no EMA (model.ema_decay: null); the released models need one"
        )
    networks = list(paper_networks(model))
    for part, *_ in networks:
        if part not in ckpt:
            raise ReferenceMismatchError(
                f"{source} has no '{part}' network but the recipe builds one; check that --recipe is the one "
                f"for this file (it holds {sorted(k for k in ckpt if isinstance(ckpt[k], dict))})"
            )
    plan = []
    for part, field, module, rename in networks:
        theirs = _our_keys(part, ckpt[part], rename)
        _check_fits(part, module, theirs, source)
        plan.append((part, field, module, theirs))
    if not plan:
        raise ReferenceMismatchError("the recipe builds no network that the released checkpoints hold")
    counts = {}
    for part, field, module, theirs in plan:
        shadow = _shadow(model, field, part)
        ema = ckpt.get(f"{part}_ema")
        module.load_state_dict(theirs)
        shadow.load_state_dict(theirs)  # networks saved without an EMA: the EMA starts at the raw weights
        if ema is not None:
            _load_ema(part, module, shadow, ema, source)
            counts[part] = int(ema.get("num_updates") or 0)
    # Our EMA keeps one update count for all networks; the largest keeps every network's warm-up past its end.
    model.ema.num_updates.fill_(max(counts.values(), default=0))
    return {
        "source": source,
        "networks": [p[0] for p in plan],
        "ema_updates": counts,
        "epoch": ckpt.get("epoch"),
        "iteration": ckpt.get("iteration"),
    }


def resolve_checkpoint(name: str, offline: bool) -> Path:
    """A local file, or a file of the authors' model page by its path there (fetched into the HF cache)."""
    path = Path(name)
    if path.is_file():
        return path
    if path.suffix != ".pt" or path.is_absolute() or name.startswith("."):
        raise FileNotFoundError(f"checkpoint {name} does not exist")
    from huggingface_hub import constants, hf_hub_download

    saved = constants.HF_HUB_OFFLINE
    # lzn sets HF_HUB_OFFLINE=1 by default (for timm's lookups); a fetch the user asks for is meant
    constants.HF_HUB_OFFLINE = offline
    try:
        return Path(hf_hub_download(HF_REPO, name, local_files_only=offline))
    except Exception as err:
        where = "the local Hugging Face cache (offline)" if offline else f"huggingface.co/{HF_REPO}"
        raise FileNotFoundError(
            f"{name} is neither a local file nor found in {where}: {first_line(err)}"
        ) from None
    finally:
        constants.HF_HUB_OFFLINE = saved


def read_reference(path: Path) -> dict[str, Any]:
    """torch.load an authors' checkpoint (tensors and plain containers only)."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"{path} is not a readable PyTorch checkpoint ({first_line(err)})") from None
    if not isinstance(ckpt, dict) or not any(k in ckpt for k in ("encoder", "decoder", "label_anchor")):
        raise ValueError(
            f"{path} is not one of the paper's checkpoints (no encoder, decoder or label_anchor)"
        )
    return ckpt


def _build(recipe: Path, overrides: list[str]) -> nn.Module:
    """The recipe's model, built by the same parser as ``lzn fit``."""
    if not recipe.is_file():
        raise FileNotFoundError(f"recipe {recipe} does not exist")
    return recipe_cli(["--config", str(recipe), *overrides]).model


def write_checkpoint(model: nn.Module, out: Path, info: dict[str, Any]) -> None:
    """Write a weights-only Lightning checkpoint of ``model`` (``load_for_inference``, ``--ckpt_path``)."""
    import lightning.pytorch as pl

    trainer = pl.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.strategy.connect(model)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    trainer.save_checkpoint(tmp, weights_only=True)
    ckpt = torch.load(tmp, map_location="cpu", weights_only=True)
    ckpt["lzn_import"] = info
    torch.save(ckpt, tmp)
    os.replace(tmp, out)


def main(argv: list[str], offline: bool) -> None:
    """``lzn import-reference --recipe ... --checkpoint ... --out ...``."""
    p = argparse.ArgumentParser(
        prog="lzn import-reference",
        description="Turn one of the paper's released checkpoints into an lzn-lightning checkpoint of a "
        "recipe. "
        "Other arguments are recipe overrides, as for lzn fit (--config overlay.yaml, --model.a=b).",
        epilog="released files (huggingface.co/microsoft/latent-zoning-networks) and their recipes:\n"
        + "\n".join(f"  {name}  ->  recipes/{recipe}.yaml" for name, recipe in RELEASED.items()),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--recipe", type=Path, required=True, help="the recipe the file was trained as (recipes/*.yaml)"
    )
    p.add_argument("--checkpoint", required=True, help="an authors' .pt file, or its path on the model page")
    p.add_argument("--out", type=Path, required=True, help="the .ckpt to write")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    # anything else is a recipe override, as for lzn fit (e.g. --config overlay.yaml, --model.latent_dim=12)
    args, overrides = p.parse_known_args(argv)
    if args.out.exists() and not args.overwrite:
        raise ValueError(f"{args.out} exists; pass --overwrite to replace it")
    path = resolve_checkpoint(args.checkpoint, offline)
    ckpt = read_reference(path)
    model = _build(args.recipe, overrides)
    info = load_reference_state(model, ckpt, str(args.checkpoint))
    info["recipe"] = str(args.recipe)
    write_checkpoint(model, args.out, info)
    nets = ", ".join(info["networks"])
    print(
        f"wrote {args.out}: {nets} from {args.checkpoint} (iteration {info['iteration']}, EMA updates "
        f"{info['ema_updates']})"
    )
