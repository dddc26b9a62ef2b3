"""The six paper recipes build the authors' networks: every parameter's name, shape, order and trainability,
and every count, equal the table recorded from the authors' code
(tests/unit/data/paper_network_layout.json.gz: their networks built from configs/lzn1 at full size on a CPU).
Built on the meta device, so nothing is allocated.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch
import yaml
from lzn_lightning.modalities import ImageModality, LabelModality
from torch import nn

from lzn_lightning.modality import Modality

ROOT = Path(__file__).resolve().parents[2]
LAYOUT = json.loads(
    gzip.decompress((Path(__file__).parent / "data" / "paper_network_layout.json.gz").read_bytes())
)
# The three 256 px data sets share one network configuration (the table records AFHQ-Cat's).
SAME_NETWORKS = {"celebahq_gen": "afhq_cat_gen", "lsun_bedroom_gen": "afhq_cat_gen"}
PAPER_RECIPES = [
    "cifar10_gen",
    "cifar10_joint",
    "imagenet_repr",
    "afhq_cat_gen",
    "celebahq_gen",
    "lsun_bedroom_gen",
]
# Ours name the label table ``anchors``; theirs ``anchor``. Their decoder's noise-level table (``sigmas``) is
# not read by any LZN configuration, so ours has none and the import drops it.
RENAMED = {"anchors": "anchor"}
NOT_OURS = {"sigmas"}


def recipe_networks(recipe: str) -> dict[str, nn.Module]:
    """The recipe's networks by the authors' names (encoder, decoder, label_anchor), on the meta device."""
    cfg = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())["model"]
    nets: dict[str, nn.Module] = {}
    with torch.device("meta"):
        for spec in cfg["modalities"].values():
            modality = Modality.from_spec(spec)
            modality.build(cfg["latent_dim"])
            if isinstance(modality, ImageModality):
                nets["encoder"] = modality.encoder
                if modality.decoder is not None:
                    nets["decoder"] = modality.decoder
            elif isinstance(modality, LabelModality):
                nets["label_anchor"] = modality
    return nets


@pytest.mark.parametrize("recipe", PAPER_RECIPES)
def test_recipe_builds_the_authors_networks(recipe: str) -> None:
    expected = LAYOUT["cases"][SAME_NETWORKS.get(recipe, recipe)]
    nets = recipe_networks(recipe)
    assert sorted(nets) == sorted(expected)
    for name, net in nets.items():
        ours = [[RENAMED.get(n, n), list(p.shape), p.requires_grad] for n, p in net.named_parameters()]
        theirs = expected[name]["params"]
        first_diff = next((i for i, (a, b) in enumerate(zip(ours, theirs, strict=False)) if a != b), None)
        assert first_diff is None, (
            f"{recipe} {name}: ours {ours[first_diff]} vs the authors' {theirs[first_diff]}"
        )
        assert len(ours) == len(theirs), f"{recipe} {name}: {len(ours)} parameter tensors vs {len(theirs)}"
        assert sum(p.numel() for p in net.parameters()) == expected[name]["total"]
        buffers = [[n, list(b.shape)] for n, b in net.named_buffers()]
        assert buffers == [b for b in expected[name]["buffers"] if b[0] not in NOT_OURS]


def test_the_table_holds_the_papers_counts() -> None:
    """The recorded totals are the paper's: 49.79 / 61.91 M CIFAR, 87.77 / 65.68 M 256 px, ResNet 28.23 M."""
    cases = LAYOUT["cases"]
    assert round(cases["cifar10_joint"]["encoder"]["total"] / 1e6, 2) == 49.79
    assert round(cases["cifar10_joint"]["decoder"]["total"] / 1e6, 2) == 61.91
    assert round(cases["afhq_cat_gen"]["encoder"]["total"] / 1e6, 2) == 87.77
    assert round(cases["afhq_cat_gen"]["decoder"]["total"] / 1e6, 2) == 65.68
    assert cases["imagenet_repr"]["encoder"]["total"] == 28_231_232
