"""Float32 accuracy of the latent ops' values and gradients at training geometry, against float64.

For every case of ``lzn_lightning.latent.accuracy`` (b = n = 256, d in {32, 200}, anchor scale
0.15 / 1 / 10, default eps) prints and optionally writes to docs/performance.md the relative L2 error of the
output and the worst relative error over the gradients w.r.t. every input, for three float32
implementations:

* ours: the package's O(b·n) ops;
* separate row term: the same ops with the softmax-mean backward ``P * (G - <g, m>)``, the row term taken from
  the mean m = P a (a different reduction than G = g a^T), as the package did before the fix; on near-one-hot
  rows the two terms differ only by rounding. Kept here only as the comparison;
* direct: plain autograd through the materialising [b, n, d] form.

    python benchmarks/gradient_accuracy.py --out docs/performance.md
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import torch
from results_md import write_section
from torch import Tensor

from lzn_lightning.latent import accuracy as acc
from lzn_lightning.latent import posterior

SCALES = (0.15, 1.0, 10.0)
DIMS = (32, 200)


def separate_row_term_logit_grad(p: Tensor, grad_m: Tensor, k: Tensor) -> Tensor:
    """``P * (G - <g, m>)`` with m = P k from its own GEMM: exact in real arithmetic, noise on one-hot
    rows."""
    g_a = grad_m @ k.T  # [c, n]
    row_dot = (grad_m * (p @ k)).sum(dim=1, keepdim=True)  # [c, 1]
    return p * (g_a - row_dot)


def cases() -> list[acc.Case]:
    out = [acc.compute_latent_case(s, 256, d, sc) for s in ("euler", "dpm++") for d in DIMS for sc in SCALES]
    out += [acc.trace_back_case(256, 256, d, sc, w) for w in (False, True) for d in DIMS for sc in SCALES]
    out += [acc.two_view_case(d, sc, "log") for d in DIMS for sc in SCALES]
    out += [acc.joint_label_case(d, sc, f) for f in ("prob", "log") for d in DIMS for sc in SCALES]
    return out


def worst_grad(errors: dict[str, float]) -> tuple[float, str]:
    key = max((k for k in errors if k.startswith("grad_")), key=lambda k: errors[k])
    return errors[key], key.removeprefix("grad_")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--out", type=Path, help="markdown file whose gradient_accuracy section is written/replaced"
    )
    p.add_argument("--only", default="", help="run only cases whose name contains this")
    args = p.parse_args()
    torch.set_flush_denormal(True)  # direct form: exp() of -1e6 logits; no compared value changes
    start = time.perf_counter()
    rows = []
    for case in cases():
        if args.only not in case.name:
            continue
        exact = acc.evaluate(case, "ours", torch.float64)
        ours = acc.relative_errors(acc.evaluate(case, "ours", torch.float32), exact)
        direct = acc.relative_errors(acc.evaluate(case, "direct", torch.float32), exact)
        fixed = posterior._softmax_mean_logit_grad
        posterior._softmax_mean_logit_grad = separate_row_term_logit_grad
        try:
            before = acc.relative_errors(acc.evaluate(case, "ours", torch.float32), exact)
        finally:
            posterior._softmax_mean_logit_grad = fixed
        g_ours, worst = worst_grad(ours)
        row = (
            f"| {case.name} | {ours['out0']:.1e} | {direct['out0']:.1e} | {g_ours:.1e} ({worst}) | "
            f"{worst_grad(before)[0]:.1e} | {worst_grad(direct)[0]:.1e} |"
        )
        rows.append(row)
        print(row, flush=True)
    body = "\n".join([
        "## Float32 gradients of the latent ops at training geometry",
        "",
        "Command: `python benchmarks/gradient_accuracy.py --out docs/performance.md` "
        f"({time.perf_counter() - start:.0f} s). Machine: {platform.processor() or platform.machine()}, "
        f"{torch.get_num_threads()} threads, torch {torch.__version__}.",
        "",
        "Relative L2 error against the float64 evaluation of our ops (which equals plain autograd through "
        "the direct form in float64 to 1e-7, `tests/unit/test_latent_gradients.py`). b = n = 256 (label "
        "zones: 10), default eps (euler 1e-4, dpm++ 1e-3), anchors of per-dimension scale 0.15 / 1 / 10. "
        "*grad* is the worst input (named) of a fixed random projection of the output. *separate row term* "
        "is the softmax-mean backward `P * (G - <g, m>)` with the row term from the mean, as the package "
        "computed it before the fix; *direct* is plain autograd through the materialising [b, n, d] form in "
        "float32. `make test` bounds ours by 5x direct.",
        "",
        "| case | value, ours | value, direct | grad, ours "
        "| grad, separate row term (before the fix) | grad, direct |",
        "|---|---:|---:|---:|---:|---:|",
        *rows,
    ])  # fmt: skip
    if args.out:
        write_section(args.out, "gradient_accuracy", body)


if __name__ == "__main__":
    main()
