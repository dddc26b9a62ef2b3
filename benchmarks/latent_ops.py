"""Speed and peak memory of the latent ops against a materialising implementation, on CPU.

Measures ``compute_latent`` (forward under ``torch.no_grad`` and forward+backward of
``latents.square().mean()`` into ``anchors``) with ``start=anchors`` (b = n, all rows, one process) for both
solvers, side by side with the reference-style materialising version from
``lzn_lightning.latent.reference``, which builds a [b, n, d] tensor at every velocity evaluation:

* euler: ``euler_forward_direct`` with every velocity call checkpointed (as the authors' Euler flow);
* dpm++: ``dpm_forward_direct`` without checkpointing (as the authors' DPM flow).

Every case runs in a fresh subprocess of this script, so that its peak RSS (``ru_maxrss``) belongs to
that case alone. Peak memory is reported as the peak RSS above the baseline RSS taken after imports and
tensor creation, with the absolute peak RSS next to it. Materialising runs that would not fit are skipped,
not attempted: their memory is estimated from U = b*n*d*4 bytes (no grad ~3 U; euler+checkpointing with
grad ~6 U; dpm++ with grad ~(2*steps+4) U) and their time is extrapolated ~n^2 from the smallest measured
size.

Usage::

    .venv/bin/python benchmarks/latent_ops.py --out docs/performance.md   # full run (what `make bench` does)
    .venv/bin/python benchmarks/latent_ops.py --quick                 # n in {256, 1024}, table only
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import json
import os
import platform
import resource
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from results_md import publish
from worker import report, run_worker

FULL_SIZES = (256, 1024, 2048, 4096, 8192)
QUICK_SIZES = (256, 1024)
SOLVERS = ("euler", "dpm++")
MODES = ("fwd", "fwdbwd")
# (tau_start, tau_end) per solver: the defaults of compute_latent, passed explicitly to both implementations.
TAU_RANGE = {"euler": (1e-4, 1.0), "dpm++": (1e-3, 0.999)}
# The materialising time budget is extrapolated from the smallest measured size; when every requested size is
# larger than this, an extra (unreported) materialising run at this size serves instead.
CALIBRATION_N = 256
# Where a call is cheap: one untimed warm-up call, then the median of REPEATS timed calls (else one call).
CHEAP_MAX_N = {"ours": 1024, "materialising": 256}
REPEATS = 3
MIB = 2**20
GIB = 2**30


@dataclass(frozen=True)
class Case:
    """One measurement: a size, a solver, an implementation and a mode."""

    n: int
    solver: str
    impl: str  # "ours" or "materialising"
    mode: str  # "fwd" (no grad) or "fwdbwd"


@dataclass
class Outcome:
    """The result of one case: measured numbers, or why it was skipped or failed."""

    case: Case
    seconds: float | None = None
    peak_mib: float | None = None  # peak RSS above the baseline
    peak_abs_mib: float | None = None  # absolute peak RSS
    baseline_mib: float | None = None
    sys_share: float | None = None  # fraction of the case's CPU time spent in the kernel
    note: str = ""  # reason for a skip or a failure
    info: dict = field(default_factory=dict)  # torch version and thread count reported by the worker

    @property
    def ok(self) -> bool:
        """Whether the case was measured."""
        return self.seconds is not None


# ----------------------------------------------------------------------------------------------------------
# Worker side: runs one case in its own process.
# ----------------------------------------------------------------------------------------------------------


def _current_rss_mib() -> float:
    """Resident set size of this process right now, in MiB (Linux /proc, falling back to ru_maxrss)."""
    try:
        with open("/proc/self/statm") as f:
            resident_pages = int(f.read().split()[1])
        return resident_pages * os.sysconf("SC_PAGE_SIZE") / MIB
    except (OSError, ValueError, IndexError):
        return _max_rss_mib()


def _max_rss_mib() -> float:
    """Peak resident set size of this process so far, in MiB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _latent_fn(case: Case, steps: int):
    """The function anchors, noise -> latents [n, d] for one case (start = anchors, as in the benchmark)."""
    from lzn_lightning.latent import compute_latent
    from lzn_lightning.latent.reference import dpm_forward_direct, euler_forward_direct

    tau_start, tau_end = TAU_RANGE[case.solver]
    if case.impl == "ours":
        return lambda anchors, noise: compute_latent(
            anchors, anchors, noise, steps=steps, solver=case.solver, eps=tau_start, tau_end=tau_end
        )

    def materialising(anchors, noise):
        x = tau_start * noise + (1.0 - tau_start) * anchors  # the same initial point as compute_latent
        if case.solver == "euler":
            return euler_forward_direct(x, anchors, tau_start, tau_end, steps, checkpointed=True)
        return dpm_forward_direct(x, anchors, tau_start, tau_end, steps)

    return materialising


def run_case(case: Case, dim: int, steps: int, cheap: bool, seed: int = 0) -> dict:
    """Time one case and measure its peak RSS above the post-setup baseline (call in a fresh process).

    Args:
        case: What to run.
        dim: Latent dimension d.
        steps: Solver steps.
        cheap: One untimed warm-up call, then the median of ``REPEATS`` timed calls (else one timed call).
        seed: Seed for the anchors and the noise.

    Returns:
        A JSON-serialisable dict with seconds, peak_mib, peak_abs_mib, baseline_mib and torch info.
    """
    import torch

    torch.manual_seed(seed)
    anchors = torch.randn(case.n, dim)
    noise = torch.randn(case.n, dim)
    latent_fn = _latent_fn(case, steps)
    if case.mode == "fwdbwd":
        anchors.requires_grad_(True)

    def once() -> None:
        if case.mode == "fwd":
            with torch.no_grad():
                latent_fn(anchors, noise)
        else:
            anchors.grad = None
            latent_fn(anchors, noise).square().mean().backward()

    baseline = _current_rss_mib()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    if cheap:
        once()
    times = []
    for _ in range(REPEATS if cheap else 1):
        start = time.perf_counter()
        once()
        times.append(time.perf_counter() - start)
    peak_abs = _max_rss_mib()
    usage1 = resource.getrusage(resource.RUSAGE_SELF)
    user, system = usage1.ru_utime - usage0.ru_utime, usage1.ru_stime - usage0.ru_stime
    return {
        "seconds": sorted(times)[len(times) // 2],
        "peak_mib": peak_abs - baseline,
        "peak_abs_mib": peak_abs,
        "baseline_mib": baseline,
        "sys_share": system / max(user + system, 1e-9),  # kernel share of CPU time (page faults, mostly)
        "info": {"torch": torch.__version__, "threads": torch.get_num_threads()},
    }


# ----------------------------------------------------------------------------------------------------------
# Driver side: plans the cases, runs each in a subprocess, writes the report. Never imports torch itself.
# ----------------------------------------------------------------------------------------------------------


def estimate_materialising_bytes(case: Case, dim: int, steps: int) -> int:
    """Estimated peak memory of the materialising implementation, in multiples of U = b*n*d*4 bytes.

    Args:
        case: A materialising case (b = n).
        dim: Latent dimension d.
        steps: Solver steps.

    Returns:
        The estimate in bytes.
    """
    unit = case.n * case.n * dim * 4
    if case.mode == "fwd":
        return 3 * unit
    if case.solver == "euler":
        return 6 * unit  # checkpointed: one velocity call's [b, n, d] intermediates live at a time
    return (2 * steps + 4) * unit  # un-checkpointed: every step keeps its [b, n, d] tensors for backward


def run_in_subprocess(case: Case, args: argparse.Namespace, cheap: bool) -> Outcome:
    """Run one case in a fresh Python process and parse its result line.

    Args:
        case: What to run.
        args: The driver's parsed arguments (dim, steps).
        cheap: Whether the worker warms up and takes the median of several calls.

    Returns:
        The outcome; a failed worker (e.g. killed for memory) gives an outcome with a note and no numbers.
    """
    spec = {"n": case.n, "solver": case.solver, "impl": case.impl, "mode": case.mode}
    spec.update(dim=args.dim, steps=args.steps, cheap=cheap)
    result, why = run_worker(__file__, spec)
    if result is None:
        return Outcome(case, note=f"failed ({why[:90]})")
    return Outcome(
        case,
        seconds=result["seconds"],
        peak_mib=result["peak_mib"],
        peak_abs_mib=result["peak_abs_mib"],
        baseline_mib=result["baseline_mib"],
        sys_share=result["sys_share"],
        info=result["info"],
    )


def materialising_skip_reason(
    case: Case, args: argparse.Namespace, calibration: dict[tuple[str, str], Outcome]
) -> str | None:
    """Why a materialising case should not be run (memory or time estimate over budget), or None.

    Args:
        case: A materialising case.
        args: Parsed arguments (max_ref_gib, max_ref_seconds, dim, steps).
        calibration: The smallest measured materialising outcome per (solver, mode).

    Returns:
        A short reason for the table, or None to run it.
    """
    est_bytes = estimate_materialising_bytes(case, args.dim, args.steps)
    if est_bytes > args.max_ref_gib * GIB:
        return f"skipped: est. {est_bytes / GIB:.0f} GiB > {args.max_ref_gib:g} GiB"
    ref = calibration.get((case.solver, case.mode))
    if ref is not None:
        est_seconds = ref.seconds * (case.n / ref.case.n) ** 2
        if est_seconds > args.max_ref_seconds:
            return f"skipped: est. {est_seconds:.0f} s > {args.max_ref_seconds:g} s"
    return None


def run_all(args: argparse.Namespace) -> list[Outcome]:
    """Plan and run every case, printing progress; materialising runs over budget are skipped.

    Args:
        args: Parsed arguments.

    Returns:
        One outcome per (n, solver, impl, mode), in table order.
    """
    calibration: dict[tuple[str, str], Outcome] = {}
    outcomes = []
    sizes = sorted(args.sizes)
    for solver in SOLVERS:
        for mode in MODES:
            if sizes[0] > CALIBRATION_N:  # time budget needs a cheap measured point to extrapolate from
                case = Case(CALIBRATION_N, solver, "materialising", mode)
                out = run_in_subprocess(case, args, cheap=False)
                _log(out, prefix="calibration ")
                if out.ok:
                    calibration[(solver, mode)] = out
    for n in sizes:
        for solver in SOLVERS:
            for impl in ("ours", "materialising"):
                for mode in MODES:
                    case = Case(n, solver, impl, mode)
                    reason = None
                    if impl == "materialising":
                        reason = materialising_skip_reason(case, args, calibration)
                    if reason is not None:
                        out = Outcome(case, note=reason)
                    else:
                        out = run_in_subprocess(case, args, cheap=n <= CHEAP_MAX_N[impl])
                    if impl == "materialising" and out.ok:
                        calibration.setdefault((solver, mode), out)
                    outcomes.append(out)
                    _log(out)
    return outcomes


def _log(out: Outcome, prefix: str = "") -> None:
    c = out.case
    if out.ok:
        result = (
            f"{out.seconds:9.3f} s  peak +{out.peak_mib:8.1f} MiB (abs {out.peak_abs_mib:8.1f} MiB)"
            f"  sys {100 * out.sys_share:3.0f}%"
        )
    else:
        result = out.note
    print(f"{prefix}n={c.n:5d} {c.solver:5s} {c.impl:13s} {c.mode:6s} {result}", flush=True)


def cpu_idle_fraction(seconds: float = 2.0) -> float | None:
    """Fraction of all CPUs' time idle over a short window (Linux /proc/stat), to flag a busy machine."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            values = [int(v) for v in f.readline().split()[1:]]
        return values[3] + values[4], sum(values)  # idle + iowait, total

    try:
        idle0, total0 = sample()
        time.sleep(seconds)
        idle1, total1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return (idle1 - idle0) / max(total1 - total0, 1)


def machine_info(outcomes: list[Outcome]) -> dict[str, str]:
    """CPU model, core count, RAM, torch version and thread count, date, Python version."""
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    ram = "unknown"
    try:
        with open("/proc/meminfo") as f:
            kib = next(int(line.split()[1]) for line in f if line.startswith("MemTotal"))
        ram = f"{kib / 2**20:.1f} GiB"
    except (OSError, StopIteration):
        pass
    info = next((o.info for o in outcomes if o.info), {})
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "ram": ram,
        "torch": info.get("torch", importlib.metadata.version("torch")),
        "threads": str(info.get("threads", "?")),
        "python": platform.python_version(),
        "date": datetime.date.today().isoformat(),
    }


def _ratio(num: float | None, den: float | None) -> str:
    if num is None or den is None or den <= 0:
        return "–"
    return f"{num / den:,.0f}×" if num / den >= 10 else f"{num / den:.1f}×"


def _cells(out: Outcome) -> tuple[str, str]:
    if not out.ok:
        return out.note, ""
    return f"{out.seconds:.3f}", f"{out.peak_mib:,.0f} ({out.peak_abs_mib:,.0f})"


def _find(outcomes: list[Outcome], n: int, solver: str, impl: str, mode: str) -> Outcome | None:
    return next((o for o in outcomes if o.case == Case(n, solver, impl, mode)), None)


def format_table(outcomes: list[Outcome], sizes: list[int]) -> str:
    """Markdown table: one row per (n, solver, impl) and a ratio row where both implementations ran.

    Args:
        outcomes: All outcomes.
        sizes: The benchmarked sizes.

    Returns:
        The table as markdown text.
    """
    rows = [
        "| n | solver | impl | fwd s | fwd peak MiB | fwd+bwd s | fwd+bwd peak MiB |",
        "|---:|---|---|---:|---:|---:|---:|",
    ]
    for n in sorted(sizes):
        for solver in SOLVERS:
            per_impl = {}
            for impl in ("ours", "materialising"):
                fwd, bwd = (_find(outcomes, n, solver, impl, mode) for mode in MODES)
                per_impl[impl] = (fwd, bwd)
                cells = [*_cells(fwd), *_cells(bwd)]
                rows.append(f"| {n} | {solver} | {impl} | " + " | ".join(cells) + " |")
            (ours_f, ours_b), (mat_f, mat_b) = per_impl["ours"], per_impl["materialising"]
            if mat_f.ok or mat_b.ok:
                cells = []
                for ours, mat in ((ours_f, mat_f), (ours_b, mat_b)):
                    both = ours.ok and mat.ok
                    cells += [
                        f"**{_ratio(mat.seconds, ours.seconds)}** faster" if both else "–",
                        f"**{_ratio(mat.peak_mib, ours.peak_mib)}** less" if both else "–",
                    ]
                rows.append(f"| {n} | {solver} | materialising / ours | " + " | ".join(cells) + " |")
    return "\n".join(rows)


def target_lines(outcomes: list[Outcome], dim: int, steps: int, ram_limit_gib: float = 24.0) -> list[str]:
    """Plain statements of whether the issue's targets are met, with the measured numbers.

    Targets: at n=1024 forward+backward >= 50x faster and >= 10x less peak memory than the materialising
    version; at n=8192 forward+backward fits in 24 GiB.

    Args:
        outcomes: All outcomes.
        dim: Latent dimension d (for the memory estimate of a skipped materialising run).
        steps: Solver steps (likewise).
        ram_limit_gib: The memory budget for the n=8192 target.

    Returns:
        Markdown bullet lines.
    """
    lines = []
    for solver in SOLVERS:
        ours = _find(outcomes, 1024, solver, "ours", "fwdbwd")
        mat = _find(outcomes, 1024, solver, "materialising", "fwdbwd")
        label = f"n=1024 {solver} forward+backward"
        if ours is None or mat is None:
            lines.append(f"- {label}: not benchmarked in this run.")
        elif not ours.ok:
            lines.append(f"- {label}: **not measured** — ours did not run ({ours.note}).")
        elif not mat.ok:
            est_mib = estimate_materialising_bytes(mat.case, dim, steps) / MIB
            lines.append(
                f"- {label}: **not measured side by side** — no materialising numbers ({mat.note}), so "
                "the ≥ 50× / ≥ 10× targets cannot be checked here. Ours: "
                f"{ours.seconds:.2f} s, {ours.peak_mib:,.0f} MiB above baseline; against the materialising "
                f"memory *estimate* ({est_mib / 1024:,.0f} GiB) that is "
                f"~{est_mib / ours.peak_mib:,.0f}× less (an estimate, not a measurement)."
            )
        else:
            speed, mem = mat.seconds / ours.seconds, mat.peak_mib / ours.peak_mib
            mem_abs = mat.peak_abs_mib / ours.peak_abs_mib
            lines.append(
                f"- {label}: {speed:,.0f}× faster ({mat.seconds:.1f} s vs {ours.seconds:.2f} s; "
                f"target ≥ 50×: **{'met' if speed >= 50 else 'NOT met'}**); {mem:,.0f}× less peak memory "
                f"above baseline ({mat.peak_mib:,.0f} MiB vs {ours.peak_mib:,.0f} MiB; target ≥ 10×: "
                f"**{'met' if mem >= 10 else 'NOT met'}**; {mem_abs:.1f}× on absolute peak RSS)."
            )
    for solver in SOLVERS:
        ours = _find(outcomes, 8192, solver, "ours", "fwdbwd")
        label = f"n=8192 {solver} forward+backward fits in {ram_limit_gib:g} GiB"
        if ours is None:
            lines.append(f"- {label}: not benchmarked in this run.")
        elif not ours.ok:
            lines.append(f"- {label}: **NOT met** ({ours.note}).")
        else:
            fits = ours.peak_abs_mib < ram_limit_gib * 1024
            lines.append(
                f"- {label}: **{'met' if fits else 'NOT met'}** — absolute peak RSS "
                f"{ours.peak_abs_mib / 1024:.2f} GiB ({ours.peak_mib / 1024:.2f} GiB above baseline), "
                f"{ours.seconds:.1f} s."
            )
    return lines


def _sys_share_range(outcomes: list[Outcome], impl: str) -> str:
    shares = [o.sys_share for o in outcomes if o.ok and o.case.impl == impl and o.sys_share is not None]
    if not shares:
        return "unknown"
    return f"{100 * min(shares):.0f}–{100 * max(shares):.0f}%"


def build_section(
    outcomes: list[Outcome], args: argparse.Namespace, command: str, idle: tuple[float | None, float | None]
) -> str:
    """The full markdown section (between the markers) for docs/performance.md.

    Args:
        outcomes: All outcomes.
        args: Parsed arguments.
        command: The command line to quote.
        idle: CPU idle fraction sampled just before and just after the run (None where unknown).

    Returns:
        The section text including its start and end markers.
    """
    m = machine_info(outcomes)
    idle_text = " / ".join("?" if f is None else f"{100 * f:.0f}%" for f in idle)
    method = (
        f"`compute_latent` with `start=anchors` (b = n), d={args.dim}, {args.steps} steps, float32, "
        "one process. *fwd* runs under `torch.no_grad()`; *fwd+bwd* is the forward plus "
        "`latents.square().mean().backward()` into `anchors` (`requires_grad=True`). *materialising* is "
        "`lzn_lightning.latent.reference`, which builds the [b, n, d] tensor at every velocity evaluation: "
        "euler = `euler_forward_direct` with each velocity call checkpointed, dpm++ = `dpm_forward_direct` "
        "un-checkpointed (both as in the authors' code). Every cell comes from a fresh subprocess and "
        "`time.perf_counter`: one timed call, or where cheap "
        f"(n ≤ {CHEAP_MAX_N['ours']} for ours, n ≤ {CHEAP_MAX_N['materialising']} for materialising) one "
        f"untimed warm-up call and the median of {REPEATS} timed calls. *peak MiB* is the peak RSS "
        "(`ru_maxrss`) above the RSS after imports and tensor creation, with the absolute peak RSS in "
        "parentheses. Materialising runs are skipped when their estimated memory (U = b·n·d·4 bytes; ~3 U "
        f"without grad, ~6 U euler+checkpointing, ~{2 * args.steps + 4} U dpm++ with grad) exceeds "
        f"{args.max_ref_gib:g} GiB or their time extrapolated ~n² from the smallest measured size exceeds "
        f"{args.max_ref_seconds:g} s."
    )
    caveat = (
        "Caveat: these are CPU numbers. With glibc's default allocator every [b, n, d] buffer of the "
        "materialising version (over 32 MiB) is mapped and unmapped per operation, so much of its time goes "
        f"to page faults: kernel time was {_sys_share_range(outcomes, 'materialising')} of its CPU time, "
        f"against {_sys_share_range(outcomes, 'ours')} for ours. An allocator that keeps freed memory (as "
        "the CUDA caching allocator does) would make it several times faster but, with glibc, at a far "
        "higher peak RSS; the speed-ups above are specific to this set-up."
    )
    body = [
        "## Latent ops: speed and peak memory vs a materialising implementation",
        "",
        f"Command: `{command}`",
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['ram']} RAM; torch {m['torch']} "
        f"({m['threads']} threads), Python {m['python']}, glibc malloc defaults; {m['date']}. "
        f"CPU idle just before / after the run: {idle_text}.",
        "",
        method,
        "",
        format_table(outcomes, args.sizes),
        "",
        "Targets (issue, on this CPU):",
        "",
        *target_lines(outcomes, args.dim, args.steps),
        "",
        caveat,
    ]
    return "\n".join(body)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, help="markdown file whose latent_ops section is written/replaced")
    p.add_argument("--quick", action="store_true", help=f"smoke run: n in {QUICK_SIZES}")
    p.add_argument("--sizes", type=int, nargs="+", help=f"sizes n to run (default {FULL_SIZES})")
    p.add_argument("--dim", type=int, default=200, help="latent dimension d")
    p.add_argument("--steps", type=int, default=20, help="solver steps")
    p.add_argument("--max-ref-seconds", type=float, default=300.0, help="time budget per materialising run")
    p.add_argument("--max-ref-gib", type=float, default=18.0, help="memory budget per materialising run")
    p.add_argument("--worker", help=argparse.SUPPRESS)  # internal: JSON spec of one case to run
    args = p.parse_args(argv)
    if args.sizes is None:
        args.sizes = list(QUICK_SIZES if args.quick else FULL_SIZES)
    return args


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark (or, with --worker, one case) and print/write the results."""
    args = parse_args(argv)
    if args.worker:
        spec = json.loads(args.worker)
        case = Case(spec["n"], spec["solver"], spec["impl"], spec["mode"])
        result = run_case(case, spec["dim"], spec["steps"], spec["cheap"])
        report(result)
        return
    command = " ".join([".venv/bin/python", "benchmarks/latent_ops.py", *sys.argv[1:]])
    idle_before = cpu_idle_fraction()
    if idle_before is not None and idle_before < 0.8:
        print(f"warning: CPU only {100 * idle_before:.0f}% idle before the run; timings will be noisy")
    outcomes = run_all(args)
    idle = (idle_before, cpu_idle_fraction())
    section = build_section(outcomes, args, command, idle)
    publish(args.out, "latent_ops", section)


if __name__ == "__main__":
    main()
