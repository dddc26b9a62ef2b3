"""Evaluation callbacks (sample grids, FID, the paper's generation metrics and table, linear probe, kNN, zone
accuracy, reconstruction) and the training diagnostics LossGradientMix (which loss term drives each parameter
group's gradient) and AdamStepMix (which loss term makes each group's Adam step).

Configure them in a recipe under ``trainer.callbacks`` by short name, e.g. ``- {class_path: ZoneAccuracy,
init_args: {noise_scales: [0.0, 1.0]}}``. Each evaluation callback runs on rank 0 (GenerationMetrics and
ReconstructionL2 share their work out over all ranks) with the EMA weights after validation loops and ``lzn
test``, logs its metrics through the Lightning loggers and prints a line saying what it computed; PaperTable
then sets the paper's numbers beside them. The metric functions they (and the benchmarks) compute live in
:mod:`lzn_lightning.metrics`.
"""

from lzn_lightning.callbacks.adam_step_mix import AdamStepMix
from lzn_lightning.callbacks.anchor_bank import AnchorBank
from lzn_lightning.callbacks.base import EvalCallback, split_data
from lzn_lightning.callbacks.conditional import ConditionalSampleAccuracy
from lzn_lightning.callbacks.fid import FID
from lzn_lightning.callbacks.generation_metrics import GenerationMetrics
from lzn_lightning.callbacks.gradient_mix import LossGradientMix
from lzn_lightning.callbacks.paper_table import PAPER_NUMBERS, PaperTable
from lzn_lightning.callbacks.probe import KNN, LinearProbe
from lzn_lightning.callbacks.reconstruction import ReconstructionL2
from lzn_lightning.callbacks.samples import SampleGrid
from lzn_lightning.callbacks.text_samples import TextSamples
from lzn_lightning.callbacks.zone_accuracy import ZoneAccuracy

__all__ = [
    "FID",
    "KNN",
    "PAPER_NUMBERS",
    "AdamStepMix",
    "AnchorBank",
    "ConditionalSampleAccuracy",
    "EvalCallback",
    "GenerationMetrics",
    "LinearProbe",
    "LossGradientMix",
    "PaperTable",
    "ReconstructionL2",
    "SampleGrid",
    "TextSamples",
    "ZoneAccuracy",
    "split_data",
]
