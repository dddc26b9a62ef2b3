"""The paper's numbers beside those ``lzn test`` computed: one table printed, one JSON next to the checkpoint.

:data:`PAPER_NUMBERS` is the one place the paper's numbers live in this package. Each comes from a table the
authors published: the abstract and the model card on huggingface.co/microsoft/latent-zoning-networks
(CIFAR-10 FID; the AFHQ-Cat table; the 94.47% accuracy), the rebuttal's CMMD table, and the rebuttal's
ablation table on u for case study 3 (the u = 20 row, the released model's setting). A metric the paper does
not report for a recipe has no entry (the table leaves it blank). The paper does not say which sampler gave
its numbers; the authors' README points to the EMA + RK45 samples, so the table sets them beside the ``rk45``
column.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from lzn_lightning.callbacks.base import EvalCallback


@dataclass(frozen=True)
class PaperNumber:
    """One number of the paper: RF+LZN (the released model), the RF baseline (None: not reported), and where
    it is printed."""

    lzn: float
    rf: float | None
    source: str


_CARD = "abstract and model card"
_AFHQ = "model card, AFHQ-Cat table"
_CMMD = "authors' rebuttal, CMMD table"
_CS3 = "authors' rebuttal, ablation on u (u = 20, the released model)"

# {recipe: {metric: PaperNumber}}; metric names as the callbacks log them, without the sampler.
PAPER_NUMBERS: dict[str, dict[str, PaperNumber]] = {
    "cifar10_gen": {
        "fid": PaperNumber(2.59, 2.76, _CARD),
        "cmmd": PaperNumber(0.0355, 0.0360, _CMMD),
    },
    "cifar10_joint": {
        "fid": PaperNumber(2.40, 2.47, _CS3),
        "sfid": PaperNumber(3.99, 4.05, _CS3),
        "inception_score": PaperNumber(9.88, 9.77, _CS3),
        "precision": PaperNumber(0.71, 0.71, _CS3),
        "recall": PaperNumber(0.58, 0.58, _CS3),
        "recon_l2": PaperNumber(0.38, 0.69, _CS3),
        "zone_acc": PaperNumber(0.9447, None, "abstract and model card (94.47%)"),
        "cmmd": PaperNumber(0.0229, 0.0253, _CMMD),
    },
    "afhq_cat_gen": {
        "fid": PaperNumber(5.68, 6.08, _AFHQ),
        "sfid": PaperNumber(49.32, 49.60, _AFHQ),
        "inception_score": PaperNumber(1.96, 1.80, _AFHQ),
        "precision": PaperNumber(0.87, 0.86, _AFHQ),
        "recall": PaperNumber(0.30, 0.28, _AFHQ),
        "recon_l2": PaperNumber(10.29, 17.92, _AFHQ),
        "cmmd": PaperNumber(0.3376, 0.5145, _CMMD),
    },
    "celebahq_gen": {"cmmd": PaperNumber(0.4901, 1.0276, _CMMD)},
    "lsun_bedroom_gen": {"cmmd": PaperNumber(0.4843, 0.5218, _CMMD)},
}
# The rows of a case study's table, in the paper's order (the accuracy row only where there is a classifier).
ROWS = ("fid", "sfid", "inception_score", "precision", "recall", "cmmd", "recon_l2", "zone_acc")
# The rows logged per sampler (``fid/rk45``); the others are one number (``zone_acc``).
PER_SAMPLER = ROWS[:-1]


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    return f"{value:.4g}"


def table_rows(recipe: str, metrics: dict[str, float]) -> tuple[list[str], list[list[str]]]:
    """(column names, rows) of the Markdown table: one row per metric, one column per sampler, the paper's
    RF+LZN and RF numbers and their source."""
    samplers: list[str] = []
    for name in metrics:
        if "/" in name and name.split("/", 1)[0] in PER_SAMPLER and name.split("/", 1)[1] not in samplers:
            samplers.append(name.split("/", 1)[1])
    paper = PAPER_NUMBERS.get(recipe, {})
    samplers = samplers or [""]
    header = ["metric", *(s or "value" for s in samplers), "paper RF+LZN", "paper RF", "paper source"]
    rows = []
    for metric in ROWS:
        values = [metrics.get(f"{metric}/{s}" if s else metric) for s in samplers]
        if all(v is None for v in values):
            values = [metrics.get(metric)] + [None] * (len(samplers) - 1)
        if all(v is None for v in values) and metric not in paper:
            continue
        p = paper.get(metric)
        cells = [_fmt(v) if v is not None else "not computed" for v in values]
        rows.append(
            [metric, *cells, _fmt(p.lzn if p else None), _fmt(p.rf if p else None), p.source if p else ""]
        )
    return header, rows


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub Markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


class PaperTable(pl.Callback):
    """After ``lzn test``: the metrics of the recipe's evaluation callbacks beside the paper's numbers.

    Put it after the evaluation callbacks in the recipe (callbacks run in list order). On rank 0 it prints one
    Markdown table (a row per metric, a column per sampler, the paper's RF+LZN and RF numbers) and writes
    everything to a JSON file: ``<checkpoint>.eval.json`` next to the tested checkpoint (``lzn test
    --ckpt_path x.ckpt`` -> ``x.ckpt.eval.json``), or ``eval.json`` in the run's folder without one.

    Args:
        recipe: The recipe's name, the key of its numbers in :data:`PAPER_NUMBERS` (e.g. ``cifar10_gen``).
        json_path: Where to write the JSON (None: as above).
    """

    def __init__(self, recipe: str, json_path: str | None = None) -> None:
        if recipe not in PAPER_NUMBERS:
            raise ValueError(f"recipe must be one of {sorted(PAPER_NUMBERS)}, got {recipe!r}")
        self.recipe = recipe
        self.json_path = json_path
        self.written: Path | None = None
        self._started = 0.0

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._started = time.monotonic()

    def _json_path(self, trainer: pl.Trainer) -> Path:
        if self.json_path:
            return Path(self.json_path)
        ckpt = getattr(trainer, "ckpt_path", None)
        if ckpt:
            return Path(f"{ckpt}.eval.json")
        return Path(trainer.log_dir or trainer.default_root_dir) / "eval.json"

    def on_test_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.global_rank != 0:
            return
        evals = [cb for cb in trainer.callbacks if isinstance(cb, EvalCallback) and cb.on_test]  # type: ignore[attr-defined]
        metrics: dict[str, float] = {}
        for cb in evals:
            metrics |= cb.last
        header, rows = table_rows(self.recipe, metrics)
        table = markdown_table(header, rows)
        # print, not a log record: the table is the command's result, on stdout whatever the logging set-up
        tested = trainer.ckpt_path or "the model"
        print(f"\n[PaperTable] {self.recipe}: lzn test of {tested} beside the paper\n{table}")
        paper = {k: vars(v) for k, v in PAPER_NUMBERS[self.recipe].items()}
        record: dict[str, Any] = {
            "recipe": self.recipe,
            "checkpoint": str(trainer.ckpt_path) if trainer.ckpt_path else None,
            "metrics": metrics,
            "paper": paper,
            "protocol": {type(cb).__name__: cb.last_what for cb in evals},
            "seconds": round(time.monotonic() - self._started, 1),
            "table": table,
        }
        path = self._json_path(trainer)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(record, indent=2))
        self.written = path
        print(f"[PaperTable] wrote {path}", flush=True)
