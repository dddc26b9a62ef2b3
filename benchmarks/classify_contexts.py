"""Speed of ``model.classify`` in its two contexts on this CPU, and of the bank flow at a large bank.

Part 1, the quick start: the recipe's model (``--ckpt``, else the recipe trained ``--train-steps`` steps with
its whole training split as the anchor bank, as the recipe stores it) classifies the recipe's test split (359
digits) in each context, in one process: one untimed first call per context, then ``--repeats`` rounds of one
timed call of each, alternating, so that both see the same machine load. Reported: the medians, their ratio
bank / batch, the first calls, and the bank context with its bank encoded again at every call (what a call
costs after the weights changed: a training step, a new EMA update).

Part 2, a large bank: ``compute_latent(bank, own, 0, self_in_field=True)`` (the bank context's flow, dpm++
with the quick start's 20 steps) for one inference chunk of ``--large-b`` items against a bank of
``--large-n`` random anchors of dimension ``--large-d``, in a fresh subprocess: the median time of
``--large-repeats`` calls after an untimed one, the peak RSS above the RSS after set-up, and the largest
tensor the flow writes.

Usage::

    .venv/bin/python benchmarks/classify_contexts.py --out docs/performance.md   # `make bench-classify`
    .venv/bin/python benchmarks/classify_contexts.py --ckpt <the quick start's last.ckpt>  # + accuracies
    PYTHONPATH=<checkout of another commit>/src .venv/bin/python benchmarks/classify_contexts.py  # that code
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from latent_ops import _current_rss_mib, _max_rss_mib, cpu_idle_fraction, machine_info
from results_md import publish
from worker import report, run_worker

CONTEXTS = ("bank", "batch")
MIB = 2**20


@dataclass
class Timing:
    """Wall and CPU seconds of the calls of one kind (the CPU time of both threads, which the other work on a
    shared machine does not inflate as much as the wall time)."""

    wall: list[float]
    cpu: list[float]

    @property
    def median(self) -> float:
        """Median wall seconds."""
        return statistics.median(self.wall)

    @property
    def median_cpu(self) -> float:
        """Median CPU seconds."""
        return statistics.median(self.cpu)


def timed(fn: Any) -> tuple[float, float, Any]:
    """(wall seconds, CPU seconds, result) of one call of fn()."""
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - wall, time.process_time() - cpu, out


# ----------------------------------------------------------------------------------- part 1: the quick start
def quick_start_model(args: argparse.Namespace) -> tuple[Any, Any, str]:
    """(model, datamodule, description): the checkpoint, or the recipe trained ``--train-steps`` steps."""
    from lzn_lightning import LZNLightningModule
    from lzn_lightning.callbacks import AnchorBank
    from lzn_lightning.recipes import build_run

    quiet = {"logger": False, "progress_bar": False, "model_summary": False, "checkpoints": False}
    if args.ckpt is not None:
        dm = build_run([args.recipe], recipe_callbacks=False, **quiet).datamodule
        model = LZNLightningModule.load_from_checkpoint(args.ckpt, map_location="cpu")
        return model, dm, f"checkpoint `{args.ckpt}`"
    with tempfile.TemporaryDirectory() as root:
        # Only the bank of the recipe's callbacks: the evaluation callbacks would add minutes, and the work of
        # a classify call does not depend on how far the weights trained.
        run = build_run(
            [args.recipe], seed=0, max_steps=args.train_steps, root=root, validation=False,
            recipe_callbacks=False, callbacks=[AnchorBank(num=10**9)], **quiet,
        )  # fmt: skip
        run.fit()
    return run.model, run.datamodule, f"`{args.recipe}` trained {args.train_steps} steps (seed 0)"


def forget_bank_anchors(model: Any) -> None:
    """Drop the encoded bank the inference API keeps between calls (a private attribute of
    ``lzn_lightning.inference.latents``, of ``lzn_lightning.inference`` before it became a package; nothing to
    drop in code that keeps none)."""
    import importlib

    from lzn_lightning import inference

    try:
        inference = importlib.import_module("lzn_lightning.inference.latents")
    except ModuleNotFoundError:  # a commit from before the inference package
        pass
    vars(model).pop(getattr(inference, "_BANK_CACHE", "_no_cache"), None)


def measure_contexts(model: Any, x: Any, repeats: int) -> dict[str, Any]:
    """First calls, then ``repeats`` alternating rounds of: bank, batch, bank with the bank encoded again."""
    import torch

    def call(context: str) -> Any:
        return lambda: model.classify(x, context=context, progress=False)

    bank_items = len(model.anchor_bank_of(model.routing.source_field()))
    first = {c: timed(call(c))[:2] for c in CONTEXTS}
    runs = {name: Timing([], []) for name in (*CONTEXTS, "bank, re-encoded")}
    preds = {}
    for _ in range(repeats):
        for name in runs:
            if name == "bank, re-encoded":
                forget_bank_anchors(model)
            wall, cpu, preds[name] = timed(call(name.split(",")[0]))
            runs[name].wall.append(wall)
            runs[name].cpu.append(cpu)
    threads = torch.get_num_threads()
    return {"first": first, "runs": runs, "preds": preds, "threads": threads, "bank_items": bank_items}


# -------------------------------------------------------------------------------------- part 2: a large bank
def run_large(spec: dict[str, int]) -> dict[str, Any]:
    """Time one bank-context flow of b items against n anchors of dimension d (call in a fresh process)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils._pytree import tree_flatten

    from lzn_lightning.latent import compute_latent

    class LargestOutput(TorchDispatchMode):
        """The shape and dtype of the largest tensor an aten op writes while active."""

        def __init__(self) -> None:
            super().__init__()
            self.largest: tuple[int, tuple[int, ...], str] = (0, (), "")

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):  # type: ignore[no-untyped-def]
            out = func(*args, **(kwargs or {}))
            for t in tree_flatten(out)[0]:
                if isinstance(t, torch.Tensor) and not func.is_view:
                    size = t.numel() * t.element_size()
                    self.largest = max(self.largest, (size, tuple(t.shape), str(t.dtype)))
            return out

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    g = torch.Generator().manual_seed(0)
    bank = torch.randn(spec["n"], spec["d"], generator=g)
    own = torch.randn(spec["b"], spec["d"], generator=g)
    own[0] = bank[0]  # a bank item classified again
    noise = torch.zeros_like(own)

    def flow() -> Any:
        with torch.no_grad():
            return compute_latent(bank, own, noise, steps=spec["steps"], solver="dpm++", self_in_field=True)

    baseline = _current_rss_mib()
    flow()
    times = [timed(flow)[0] for _ in range(spec["repeats"])]
    peak = _max_rss_mib() - baseline
    with LargestOutput() as largest:
        flow()
    return {
        "seconds": statistics.median(times),
        "peak_mib": peak,
        "largest": [largest.largest[0] / MIB, list(largest.largest[1]), largest.largest[2]],
        "threads": torch.get_num_threads(),
    }


def measure_large(args: argparse.Namespace) -> dict[str, Any]:
    """``run_large`` in a fresh subprocess of this script, so that its peak RSS is that flow's alone."""
    spec = {"n": args.large_n, "d": args.large_d, "b": args.large_b, "steps": args.large_steps}
    spec |= {"repeats": args.large_repeats, "threads": args.threads or 0}
    result, why = run_worker(__file__, spec)
    if result is None:
        raise RuntimeError(f"the large-bank worker failed ({why})")
    return {**spec, **result}  # the worker's thread count wins


# ------------------------------------------------------------------------------------------------ report
def contexts_table(result: dict[str, Any]) -> list[str]:
    """Markdown rows: each kind of call's first call, median wall and CPU time, and its ratio to the batch
    context's."""
    runs = result["runs"]
    batch = runs["batch"]
    rows = [
        "| call | first call, s | median s (wall) | / batch | median CPU s | / batch |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for name, t in runs.items():
        first = f"{result['first'][name][0]:.3f}" if name in result["first"] else "–"
        wall = f"{t.median:.3f} | **{t.median / batch.median:.2f}x**"
        cpu = f"{t.median_cpu:.3f} | {t.median_cpu / batch.median_cpu:.2f}x"
        rows.append(f"| {name} | {first} | {wall} | {cpu} |")
    return rows


def source_dir(module_file: str) -> str:
    """The package's folder, relative to this checkout when it is inside it (else as it is: a PYTHONPATH
    checkout of another commit)."""
    folder = Path(module_file).resolve().parent
    root = Path(__file__).resolve().parents[1]
    return str(folder.relative_to(root)) if folder.is_relative_to(root) else str(folder)


def build_section(
    args: argparse.Namespace,
    command: str,
    model_text: str,
    contexts: dict[str, Any],
    labels: Any,
    large: dict[str, Any],
    idle: tuple[float | None, float | None],
) -> str:
    """The markdown section (between the markers) for docs/performance.md."""
    import lzn_lightning

    m = machine_info([])
    idle_text = " / ".join("?" if f is None else f"{100 * f:.0f}%" for f in idle)
    accuracy = "Accuracies: with `--ckpt` of a trained model."
    if args.ckpt is not None:
        preds = contexts["preds"]
        acc = {c: 100 * float((preds[c] == labels).float().mean()) for c in CONTEXTS}
        agree = 100 * float((preds["bank"] == preds["batch"]).float().mean())
        accuracy = (
            f"Test accuracy: bank {acc['bank']:.2f}%, batch {acc['batch']:.2f}%; the two contexts give the "
            f"same label to {agree:.1f}% of the images."
        )
    ratio = contexts["runs"]["bank"].median / contexts["runs"]["batch"].median
    bank_mib = large["n"] * large["d"] * 4 / MIB
    per_step = large["seconds"] / large["steps"]
    size, shape, dtype = large["largest"]
    body = [
        "## Classification: bank context vs batch context",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; torch {m['torch']} "
        f"({contexts['threads']} threads), Python {m['python']}; {m['date']}; lzn_lightning from "
        f"`{source_dir(lzn_lightning.__file__)}`. CPU idle just before / after the run: {idle_text} (on a "
        "shared machine the alternating rounds give both contexts the same load).",
        "",
        f"Model: {model_text}; bank of {contexts['bank_items']:,} items. `model.classify` on the "
        f"{len(labels)} test images, one process, default batch size (256): one untimed first call per "
        f"context, then {args.repeats} rounds of one call of each kind, alternating; medians. *bank, "
        "re-encoded* drops the encoded bank the inference API keeps before each call (the cost of a call "
        "after the weights changed).",
        "",
        *contexts_table(contexts),
        "",
        f"Bank / batch: **{ratio:.2f}x** (target: at most 1.5x). {accuracy}",
        "",
        f"Large bank: one chunk of b = {large['b']} items against n = {large['n']:,} anchors of d = "
        f"{large['d']} ({bank_mib:.0f} MiB of float32), `compute_latent(..., solver='dpm++', "
        f"steps={large['steps']}, self_in_field=True)` under `torch.no_grad()`, {large['threads']} threads, "
        f"in a fresh subprocess: **{large['seconds']:.2f} s** per flow ({per_step:.3f} s per step; median "
        f"of {large['repeats']} after an untimed call), peak RSS "
        f"**{large['peak_mib']:,.0f} MiB** above the RSS after set-up. Largest tensor written: "
        f"{shape} {dtype.removeprefix('torch.')} ({size:,.0f} MiB); one [b, n] float64 block is "
        f"{large['b'] * large['n'] * 8 / MIB:,.0f} MiB, a [b, n, d] float32 difference "
        f"{large['b'] * large['n'] * large['d'] * 4 / MIB:,.0f} MiB.",
    ]
    return "\n".join(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="markdown file whose classify_contexts section is (re)written")
    p.add_argument("--recipe", type=Path, default=Path("recipes/digits_joint.yaml"), help="the quick start")
    p.add_argument("--ckpt", type=Path, help="a trained checkpoint of the recipe (else: train --train-steps)")
    # Why 20 by default: the work of a classify call does not depend on the weights; a few steps give the EMA
    # weights inference uses. Accuracies are only meaningful for a fully trained model (--ckpt).
    p.add_argument("--train-steps", type=int, default=20, help="training steps without --ckpt")
    p.add_argument("--repeats", type=int, default=7, help="timed rounds of the quick-start part")
    p.add_argument("--threads", type=int, help="torch threads (default: torch's, one per core)")
    p.add_argument("--large-n", type=int, default=50_000, help="bank size of the large-bank part")
    p.add_argument("--large-d", type=int, default=200, help="latent dimension of the large-bank part")
    p.add_argument("--large-b", type=int, default=256, help="items per chunk (classify's default batch size)")
    p.add_argument("--large-steps", type=int, default=20, help="flow steps of the large-bank part")
    p.add_argument("--large-repeats", type=int, default=3, help="timed flows of the large-bank part")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of the large-bank flow
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    """Run both parts and print (with --out also write) the section."""
    args = parse_args(argv)
    if args.worker:
        report(run_large(json.loads(args.worker)))
        return
    command = " ".join([".venv/bin/python", "benchmarks/classify_contexts.py", *sys.argv[1:]])
    idle_before = cpu_idle_fraction()
    if idle_before is not None and idle_before < 0.8:
        print(f"warning: CPU only {100 * idle_before:.0f}% idle before the run; timings will be noisy")
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    model, dm, model_text = quick_start_model(args)
    from lzn_lightning.callbacks.base import dataset_tensors

    dm.setup(None)
    x, labels = dataset_tensors(dm.test_dataset)
    contexts = measure_contexts(model, x, args.repeats)
    for row in contexts_table(contexts):
        print(row)
    large = measure_large(args)
    print(json.dumps(large))
    idle = (idle_before, cpu_idle_fraction())
    section = build_section(args, command, model_text, contexts, labels, large, idle)
    publish(args.out, "classify_contexts", section)


if __name__ == "__main__":
    main()
