"""The flat ``ImageModality`` arguments of checkpoints written before the networks took their own arguments.

Until issue 34, ``ImageModality`` took about thirty flat arguments (``encoder_width``, ``decoder_arch``,
``decoder: false`` ...) shared by its networks. Checkpoints and exports store the modality's init args, so
:func:`from_flat` turns such a spec into today's ``encoder``/``decoder`` dicts; ``Modality.from_spec`` applies
it (``ImageModality.upgrade_init_args``) whenever a stored spec is rebuilt. The old defaults are filled in, so
the networks come out exactly as the old code built them.
"""

from __future__ import annotations

from typing import Any

# The old constructor's defaults for the arguments that are gone (or changed meaning).
_OLD_DEFAULTS: dict[str, Any] = {
    "encoder": "tower",
    "encoder_width": 32,
    "encoder_ch_mult": (1, 2),
    "encoder_blocks": 1,
    "head_channels": 20,
    "head_hidden": 200,
    "head_min_resolution": 1,
    "head_max_resolution": None,
    "small_input": True,
    "encoder_dropout": 0.0,
    "decoder": True,
    "decoder_arch": "unet",
    "decoder_width": 32,
    "decoder_ch_mult": (1, 2),
    "decoder_blocks": 1,
    "attn_resolutions": (),
    "decoder_dropout": 0.0,
    "fir": False,
    "progressive": False,
    "time_embedding": "positional",
    "scale_by_sigma": False,
}
_GONE = set(_OLD_DEFAULTS) - {"encoder", "decoder"}


def is_flat(init_args: dict[str, Any]) -> bool:
    """Whether ``init_args`` are in the old flat form."""
    return (
        bool(_GONE & init_args.keys())
        or isinstance(init_args.get("decoder"), bool)
        or init_args.get("encoder") == "none"
    )


def from_flat(init_args: dict[str, Any]) -> dict[str, Any]:
    """Old flat ``ImageModality`` init args as today's (unchanged when they are not flat).

    Args:
        init_args: A stored spec's ``init_args``.

    Returns:
        The same model's init args with ``encoder`` and ``decoder`` as ``{name, **own arguments}`` (None for
        ``encoder: none`` and ``decoder: false``).
    """
    if not is_flat(init_args):
        return dict(init_args)
    a = _OLD_DEFAULTS | init_args
    out = {k: v for k, v in init_args.items() if k not in _OLD_DEFAULTS}
    out["encoder"] = _encoder(a, int(init_args.get("size", 8)))
    out["decoder"] = _decoder(a) if a["decoder"] else None
    if a["encoder"] != "tower":  # the old code ended only the tower's anchors with anchor_norm
        out.pop("anchor_norm", None)
    return out


def _encoder(a: dict[str, Any], size: int) -> str | dict[str, Any] | None:
    name = a["encoder"]
    trunk = {
        "width": a["encoder_width"],
        "ch_mult": list(a["encoder_ch_mult"]),
        "num_res_blocks": a["encoder_blocks"],
        "head_channels": a["head_channels"],
        "head_hidden": a["head_hidden"],
        "dropout": a["encoder_dropout"],
    }
    lo, hi = a["head_min_resolution"], a["head_max_resolution"]
    if name == "none":
        return None
    if name == "tower":  # the old code left the tower's attention at its own default
        return {"name": "tower", **trunk, "head_min_resolution": lo, "head_max_resolution": hi}
    if name == "ncsnpp":
        every = [size // 2**level for level in range(len(trunk["ch_mult"]))]
        heads = [r for r in every if r >= lo and (hi is None or r <= hi)]
        attn = list(a["attn_resolutions"])
        paper = {"attn_resolutions": attn, "fir": a["fir"], "progressive": a["progressive"]}
        return {"name": "ncsnpp", **trunk, **paper, "head_resolutions": heads}
    if name == "resnet50_gn":  # the old code passed only the channels and the latent size
        return "resnet50_gn"
    return {"name": name, "head_hidden": a["head_hidden"], "small_input": a["small_input"]}


def _decoder(a: dict[str, Any]) -> dict[str, Any]:
    net = {
        "name": a["decoder_arch"],
        "width": a["decoder_width"],
        "ch_mult": list(a["decoder_ch_mult"]),
        "num_res_blocks": a["decoder_blocks"],
        "attn_resolutions": list(a["attn_resolutions"]),
        "dropout": a["decoder_dropout"],
    }
    if a["decoder_arch"] == "ncsnpp":
        net |= {k: a[k] for k in ("fir", "progressive", "time_embedding", "scale_by_sigma")}
    return net
