"""A common offset of all anchors: the representation loss does not see it, float32 does.

The flow x_tau = (1 - tau) a + tau eps is translation-covariant: shifting every anchor of both views by one
vector c shifts the state at tau by (1 - tau) c, leaves the latents (tau = 1) and every zone posterior
unchanged, so the alignment loss of ``fashion_repr`` has exactly zero gradient along c. This script measures
that at the geometry of a ``fashion_repr`` batch (b = 128, d = 64, anchors spread ~4.5 around their mean, the
second view's anchors nearby, prior noise 0.45, Euler 20 steps both ways, log form, cutoff 0.2) for growing
offsets |c|: the loss and its gradient in float32 and float64 against float64 at offset 0, and the gradient
component along c (the one a common-offset parameter, such as the last layer's bias, receives).

    python experiments/anchor_offset_precision.py --offsets 0 2 14 58 200 --seeds 5

Prints a Markdown table (medians over the seeds). Result and reading: docs/notes/2026-12-07-fashion-repr.md.
"""

from __future__ import annotations

import argparse
import statistics

import torch

from lzn_lightning.latent import alignment_loss, compute_latent, trace_back

B, D = 128, 64  # fashion_repr's batch and latent size
SPREAD = 4.5  # RMS distance of an anchor from the batch's mean anchor, as logged near step 600
VIEW_GAP = 0.6  # second view's anchors: the first's plus noise of 0.6 x the spread (nearby, not equal)
NOISE = 0.45  # the recipe's flow noise_scale


def loss_and_grad(a1: torch.Tensor, a2: torch.Tensor, noise: torch.Tensor, dtype: torch.dtype):
    """Loss, gradient w.r.t. both views' anchors [2B, D] and latents, as float64 tensors."""
    x1 = a1.to(dtype).requires_grad_()
    x2 = a2.to(dtype).requires_grad_()
    z = compute_latent(x1, x1, noise.to(dtype), steps=20, solver="euler")
    _, logp = trace_back(z, x2, steps=20, targets=torch.arange(len(a1)))
    loss = alignment_loss(logp, cutoff=0.2, form="log")
    g1, g2 = torch.autograd.grad(loss, (x1, x2))
    return loss.double(), torch.cat([g1, g2]).double(), z.double()


def measure(offset: float, seed: int) -> dict[str, float]:
    g = torch.Generator().manual_seed(seed)
    scale = SPREAD / D**0.5  # per-dimension std giving an RMS distance of SPREAD
    a1 = torch.randn(B, D, generator=g, dtype=torch.float64) * scale
    a2 = a1 + VIEW_GAP * scale * torch.randn(B, D, generator=g, dtype=torch.float64)
    noise = NOISE * torch.randn(B, D, generator=g, dtype=torch.float64)
    direction = torch.randn(D, generator=g, dtype=torch.float64)
    direction /= direction.norm()
    ref_loss, ref_grad, ref_z = loss_and_grad(a1, a2, noise, torch.float64)
    shift = offset * direction
    out = {}
    for name, dtype in (("f64", torch.float64), ("f32", torch.float32)):
        loss, grad, z = loss_and_grad(a1 + shift, a2 + shift, noise, dtype)
        out[f"{name} |dloss|"] = abs(loss - ref_loss).item()
        out[f"{name} grad rel err"] = ((grad - ref_grad).norm() / ref_grad.norm()).item()
        out[f"{name} latent rel err"] = ((z - ref_z).norm() / ref_z.norm()).item()
        along = grad.sum(0).dot(direction).abs()  # d loss / d c: what a common-offset parameter receives
        out[f"{name} |grad along c| / |grad|"] = (along / ref_grad.norm()).item()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--offsets", type=float, nargs="+", default=[0.0, 2.0, 14.0, 58.0, 200.0])
    p.add_argument("--seeds", type=int, default=5)
    args = p.parse_args()
    rows = {o: [measure(o, s) for s in range(args.seeds)] for o in args.offsets}
    keys = list(next(iter(rows.values()))[0])
    print(f"| offset |c| | {' | '.join(keys)} |")
    print("|---:|" + "---:|" * len(keys))
    for offset, runs in rows.items():
        cells = [f"{statistics.median(r[k] for r in runs):.1e}" for k in keys]
        print(f"| {offset:g} | {' | '.join(cells)} |")


if __name__ == "__main__":
    main()
