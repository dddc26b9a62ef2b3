"""Float32 accuracy of ``compute_latent`` when two anchors nearly coincide, against float64, ours vs the
direct form.

A field of n = 128 i.i.d. anchors (d = 200) of norm |a| in which anchor 1 lies at ``rel * |a|`` from anchor 0;
start = anchors, 20 steps, default eps. Latent error: the worse of rows 0 and 1 (L2, against plain autograd
through the direct [b, n, d] form in float64). Gradient error: relative L2 error of the whole gradient of a
fixed random read-out ``<z, w>`` with respect to the anchors. Prints a Markdown table.

    python benchmarks/near_duplicates.py
    # the same for the code of another commit:
    PYTHONPATH=<checkout of another commit>/src python benchmarks/near_duplicates.py
"""

from __future__ import annotations

import argparse

import torch

import lzn_lightning
from lzn_lightning.latent.accuracy import _latent, near_duplicate_anchors


def geometry(norm: float, rel: float, n: int, d: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """(anchors [n, d], noise [n, d], read-out w [n, d]) in float64, anchor 1 at ``rel * |a_0|`` from
    anchor 0."""
    g = torch.Generator().manual_seed(seed)
    anchors = near_duplicate_anchors(n, d, norm, g, separations=(rel,))
    noise = torch.randn(n, d, generator=g, dtype=torch.float64)
    readout = torch.randn(n, d, generator=g, dtype=torch.float64)
    return anchors, noise, readout


def latent_and_grad(impl: str, anchors, noise, readout, solver: str, dtype: torch.dtype):  # type: ignore[no-untyped-def]
    a = anchors.to(dtype).requires_grad_(True)
    z = _latent(impl, a, a, noise.to(dtype), solver, 20)
    (grad,) = torch.autograd.grad((z * readout.to(dtype)).sum(), [a])
    return z.detach().double(), grad.double()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])  # the summary, wrapped by argparse
    p.add_argument("--n", type=int, default=128)
    p.add_argument("--d", type=int, default=200)
    args = p.parse_args()
    torch.set_flush_denormal(True)  # the direct form's exp() of huge negative logits (speed only)
    print(f"lzn_lightning from {lzn_lightning.__file__}, torch {torch.__version__}, n={args.n}, d={args.d}")
    print("| \\|a\\| | rel | solver | latent error: ours / direct | anchor-gradient error: ours / direct |")
    print("|---|---|---|---|---|")
    for norm in (14.0, 70.0):
        for rel in (1e-1, 1e-2, 1e-3, 1e-4, 1e-5):
            for solver in ("euler", "dpm++"):
                anchors, noise, readout = geometry(norm, rel, args.n, args.d)
                z64, g64 = latent_and_grad("direct", anchors, noise, readout, solver, torch.float64)
                cells = []
                for impl in ("ours", "direct"):
                    z, g = latent_and_grad(impl, anchors, noise, readout, solver, torch.float32)
                    lat = max(float((z[i] - z64[i]).norm()) for i in (0, 1))
                    cells.append((lat, float((g - g64).norm() / g64.norm())))
                (lo, go), (ld, gd) = cells
                print(
                    f"| {norm:g} | {rel:g} | {solver} | {lo:.2g} / {ld:.2g} | {go:.2g} / {gd:.2g} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()
