"""GPU benchmark of one representation-learning latent step at the ImageNet recipe's size.

The case of docs/design/lzn.md §2.3 / §7.3 on one rank of an 8-GPU job: b=1024 local rows, n=8192
gathered anchors, d=256; 20 forward Euler steps (view-1 anchors -> latents), then 20 reverse Euler steps
through the view-2 anchors with the log-form alignment loss, forward and backward. Reported against the
float32 GEMM roofline measured in the same process (the latent ops run in true fp32, TF32 off, by design),
and against the materialising reference form where it fits in GPU memory.

Usage (needs a CUDA device; prints a markdown section, optionally writes it into a results file):

    python benchmarks/latent_ops_gpu.py --out docs/performance.md
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path

import torch
from results_md import write_section

from lzn_lightning.latent import alignment_loss, compute_latent, trace_back
from lzn_lightning.latent.reference import euler_forward_direct


def _timed(fn, repeats: int) -> tuple[float, float]:
    """(median seconds, peak GiB allocated) of ``fn`` after one warm-up call."""
    fn()
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    times = []
    for _ in range(repeats):
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    peak = (torch.cuda.max_memory_allocated() - base) / 2**30
    return statistics.median(times), peak


def fp32_gemm_tflops(b: int, n: int, d: int) -> float:
    """Achieved TFLOP/s of the op's own GEMM shape ([b, d] x [d, n]) in true fp32 (TF32 off)."""
    torch.backends.cuda.matmul.allow_tf32 = False
    q, k = torch.randn(b, d, device="cuda"), torch.randn(n, d, device="cuda")
    reps = 50
    sec, _ = _timed(lambda: [q @ k.T for _ in range(reps)], 3)
    return 2 * b * n * d * reps / sec / 1e12


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--b", type=int, default=1024)
    p.add_argument("--n", type=int, default=8192)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--out", type=Path)
    p.add_argument("--json", type=Path, help="also write the raw numbers as JSON")
    args = p.parse_args()
    b, n, d, s = args.b, args.n, args.d, args.steps
    g = torch.Generator(device="cuda").manual_seed(0)
    view1 = torch.randn(n, d, device="cuda", generator=g)
    view2 = view1 + 0.3 * torch.randn(n, d, device="cuda", generator=g)  # two "views": nearby anchors
    noise = 0.45 * torch.randn(b, d, device="cuda", generator=g)
    targets = torch.arange(b, device="cuda")

    def forward_only() -> None:
        with torch.no_grad():
            z = compute_latent(view1, view1[:b], noise, steps=s, solver="euler")
            trace_back(z, view2, steps=s, targets=targets)

    def train_step() -> None:
        a1, a2 = view1.clone().requires_grad_(True), view2.clone().requires_grad_(True)
        z = compute_latent(a1, a1[:b], noise, steps=s, solver="euler")
        _, logp = trace_back(z, a2, steps=s, targets=targets)
        alignment_loss(logp, cutoff=0.2, form="log").backward()

    results: dict[str, float | str] = {}
    results["fwd_s"], results["fwd_gib"] = _timed(forward_only, args.repeats)
    results["fwdbwd_s"], results["fwdbwd_gib"] = _timed(train_step, args.repeats)
    tflops = fp32_gemm_tflops(b, n, d)
    results["gemm_tflops"] = tflops
    bnd = b * n * d
    # GEMM FLOPs per evaluation of the field: forward = logits (2bnd) + P @ A (2bnd); backward recomputes the
    # logits (2bnd) and needs four more GEMMs of the same size (grad_m A^T, P^T grad_m, dL^T q, dL k: 8bnd).
    nfe = 2 * s
    results["fwd_gemm_tflop"] = 4 * bnd * nfe / 1e12
    results["fwdbwd_gemm_tflop"] = 14 * bnd * nfe / 1e12
    results["fwd_roofline_s"] = results["fwd_gemm_tflop"] / tflops
    results["fwdbwd_roofline_s"] = results["fwdbwd_gemm_tflop"] / tflops

    # The materialising form, forward latents only (20 Euler steps, no grad): U = b*n*d*4 bytes per tensor.
    def reference_forward() -> None:
        with torch.no_grad():
            x = 1e-4 * noise + (1 - 1e-4) * view1[:b]
            euler_forward_direct(x, view1, 1e-4, 1.0, s, checkpointed=False)

    def ours_forward_latent() -> None:
        with torch.no_grad():
            compute_latent(view1, view1[:b], noise, steps=s, solver="euler")

    results["ours_latent_fwd_s"], results["ours_latent_fwd_gib"] = _timed(ours_forward_latent, args.repeats)
    try:
        results["ref_latent_fwd_s"], results["ref_latent_fwd_gib"] = _timed(reference_forward, 2)
    except torch.OutOfMemoryError:
        results["ref_latent_fwd_s"] = "out of memory"
    torch.cuda.empty_cache()
    with torch.no_grad():  # agreement of the two forms at this size (relative L2 of the latents)
        x0 = 1e-4 * noise + (1 - 1e-4) * view1[:b]
        try:
            ref = euler_forward_direct(x0, view1, 1e-4, 1.0, s, checkpointed=False)
            ours = compute_latent(view1, view1[:b], noise, steps=s, solver="euler")
            results["rel_err_vs_ref"] = float((ours - ref).norm() / ref.norm())
        except torch.OutOfMemoryError:
            results["rel_err_vs_ref"] = "out of memory"

    props = torch.cuda.get_device_properties(0)
    machine = (
        f"{props.name} ({props.total_memory / 2**30:.0f} GiB), torch {torch.__version__}, "
        f"CUDA {torch.version.cuda}, Python {platform.python_version()}"
    )
    r = results
    lines = [
        "## Latent ops on a GPU: one ImageNet-recipe latent step per rank",
        "",
        f"Command: `python benchmarks/latent_ops_gpu.py --out docs/performance.md` (b={b}, n={n}, d={d}, "
        f"{s} forward Euler + {s} reverse Euler steps, log-form alignment loss; median of {args.repeats} "
        "after a warm-up; peak = `torch.cuda.max_memory_allocated` above the inputs).",
        "",
        f"Machine: {machine}. All latent maths in true fp32 (TF32 off), as in every run of the package.",
        "",
        "| what | time | peak GPU memory | fp32 GEMM roofline | of roofline |",
        "|---|---:|---:|---:|---:|",
        f"| forward latents + trace-back (no grad) | {r['fwd_s'] * 1e3:.1f} ms | {r['fwd_gib']:.2f} GiB "
        f"| {r['fwd_roofline_s'] * 1e3:.1f} ms | {r['fwd_roofline_s'] / r['fwd_s']:.0%} |",
        f"| forward + backward (training step of the latent ops) | {r['fwdbwd_s'] * 1e3:.1f} ms "
        f"| {r['fwdbwd_gib']:.2f} GiB | {r['fwdbwd_roofline_s'] * 1e3:.1f} ms "
        f"| {r['fwdbwd_roofline_s'] / r['fwdbwd_s']:.0%} |",
        "",
        f"Roofline: GEMM FLOPs only (4·b·n·d per field evaluation forward, 14·b·n·d forward+backward; "
        f"{r['fwd_gemm_tflop']:.2f} and {r['fwdbwd_gemm_tflop']:.2f} TFLOP) at the {tflops:.1f} TFLOP/s "
        f"that a [{b}, {d}] x [{d}, {n}] fp32 matmul reached in the same process.",
        "",
    ]
    if isinstance(r["ref_latent_fwd_s"], float):
        lines.append(
            f"Side by side, forward latents only ({s} Euler steps, no grad): ours "
            f"{r['ours_latent_fwd_s'] * 1e3:.1f} ms / {r['ours_latent_fwd_gib']:.2f} GiB, materialising "
            f"[b, n, d] form {r['ref_latent_fwd_s'] * 1e3:.1f} ms / {r['ref_latent_fwd_gib']:.2f} GiB "
            f"({r['ref_latent_fwd_s'] / r['ours_latent_fwd_s']:.1f}x faster, "
            f"{r['ref_latent_fwd_gib'] / max(r['ours_latent_fwd_gib'], 1e-9):.0f}x less memory); relative L2 "
            f"difference of the latents {r['rel_err_vs_ref']:.1e}."
        )
    else:
        lines.append(f"Materialising form at this size: {r['ref_latent_fwd_s']}.")
    section = "\n".join(lines)
    print(section)
    if args.json:
        args.json.write_text(json.dumps(results, indent=1))
    if args.out:
        write_section(args.out, "latent_ops_gpu", section)


if __name__ == "__main__":
    main()
