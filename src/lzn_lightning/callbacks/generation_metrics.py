"""FID, sFID, Inception score, precision, recall and CMMD of generated images, the paper's way.

The protocol of the authors' evaluation (their ``evaluate.py``, ``lzn/metric/``; the paper's Appendix C.3):

* as many generated images as real ones (CIFAR-10 50,000 = the whole training set; AFHQ-Cat 5,120; CelebA-HQ
  and LSUN-Bedroom 29,952), against the **training** images under the evaluation transform (no flip);
* the EMA weights, every sampler the paper reports (``"rk45"``: adaptive, rtol = atol = 1e-5; ``"euler10"``:
  10 Euler steps), each from the same noise;
* a class-conditional model is asked for the labels of the real images, so both sets have one class mix;
* the metrics of :mod:`lzn_lightning.metrics` on one set of features per image: FID on Inception pool3,
  sFID on its spatial ``mixed_6/conv`` features, Inception score from its softmax (splits of 5,000),
  precision/recall with k = 3 on pool3, CMMD on CLIP image embeddings.

On several devices every rank generates its share (fixed chunks of ``batch_size`` images, chunk ``c`` seeded
by ``(seed, c)`` and dealt round-robin, so the images do not depend on the number of ranks) and the features
are all-gathered; rank 0 computes the metrics. The real features are computed once per data set, split, count
and feature network and kept on disk (:class:`~lzn_lightning.callbacks.real_features.RealFeatureCache`).
"""

from __future__ import annotations

import re
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from lzn_lightning import distributed
from lzn_lightning.callbacks.base import EvalCallback
from lzn_lightning.callbacks.real_features import (
    RealFeatureCache,
    chunk_loader,
    clean_split,
    dataset_key,
    network_id,
    subset_indices,
)
from lzn_lightning.metrics import (
    CLIPImageEmbeddings,
    InceptionFeatureSet,
    cmmd,
    feature_sets_of,
    frechet_distance,
    inception_score,
    manifold_radii,
    precision_recall,
    spatial_frechet_distance,
)
from lzn_lightning.metrics.feature_sets import CMMD_CLIP_MODEL

# What each metric is named in the logs, the table and the JSON (then "/<sampler>").
METRICS = ("fid", "sfid", "inception_score", "precision", "recall", "cmmd")
# Why 1_000_003: a prime stride keeps (seed, chunk) pairs from colliding for any realistic sample count.
_SEED_STRIDE = 1_000_003
# Why 5000: the split size of the Inception score in the evaluator the paper used (cm_metrics.py).
IS_SPLIT = 5000
# Why 3: the k of the k-NN manifolds of precision/recall in that evaluator (Kynkaanniemi et al. 2019).
PR_K = 3


def parse_sampler(name: str) -> tuple[str, int | None]:
    """``"rk45"`` -> ("rk45", None); ``"euler10"`` -> ("euler", 10); ``"euler"`` -> ("euler", None: the image
    modality's ``sample_steps``)."""
    match = re.fullmatch(r"(rk45|euler)(\d*)", name)
    if match is None or (match[1] == "rk45" and match[2]):
        raise ValueError(f"a sampler is 'rk45', 'euler' or 'euler<steps>' (e.g. 'euler10'), got {name!r}")
    return match[1], int(match[2]) if match[2] else None


def first_line(err: BaseException) -> str:
    """The first line of an error's message (download errors can run over many lines)."""
    text = str(err).strip()
    return text.splitlines()[0] if text else ""


class GenerationMetrics(EvalCallback):
    """The paper's image-generation table: FID, sFID, IS, precision, recall and CMMD per sampler.

    Logs ``<metric>/<sampler>`` for every metric of :data:`METRICS` and every sampler (e.g. ``fid/rk45``,
    ``precision/euler10``); CMMD only when it runs (see ``cmmd``).

    Args:
        num_samples: Real training images (all when the split is smaller, else a seeded random subset), and
            as many generated images per sampler. The paper: CIFAR-10 50,000, AFHQ-Cat 5,120, CelebA-HQ and
            LSUN-Bedroom 29,952.
        samplers: RF samplers, each reported: ``"rk45"``, ``"euler<steps>"`` (the paper: rk45 and euler10).
        feature_network: ``"inception"`` (:class:`~lzn_lightning.metrics.InceptionFeatureSet`: clean-fid's
            2015-12-05 InceptionV3, the network of every number in the paper; clean-fid downloads its weights
            once) or an ``nn.Module`` mapping images in [-1, 1] to ``{"pool3": [B, D], "spatial": [B, S],
            "probs": [B, K]}`` (e.g. a stand-in offline).
        inception_resize: How the Inception input is resized to 299 px: ``"clean"`` (clean-fid's PIL
            bicubic, the FID the authors' code computes) or ``"tensorflow"`` (the TF graph's bilinear resize,
            as the consistency-models evaluator behind the paper's sFID, IS, precision and recall does). One
            pass serves all the metrics, so one of the two differs from the paper's pipeline.
        cmmd: Compute CMMD: True (error if it cannot), False, or None: when a CLIP network is available
            (``clip_network`` a module, or the ``clip`` extra installed).
        clip_network: ``"clip"`` (:class:`~lzn_lightning.metrics.CLIPImageEmbeddings`) or an ``nn.Module``
            mapping images in [-1, 1] to ``{"clip": [B, D]}``.
        real_split: Split of the real images (the paper: ``"train"``).
        batch_size: Images generated per call (also the chunk dealt to a rank).
        feature_batch_size: Images per feature-network batch.
        cache_dir: Folder of the real-feature cache (None: ``$LZN_CACHE_DIR/real_features`` or
            ``~/.cache/lzn_lightning/real_features``).
        seed: Seed of the real subset and of the samples.
        progress: Show a progress bar on rank 0.
        every_n_validations: Run after every n-th validation loop during fit (0: never during fit).
        on_test: Run at the end of ``lzn test``.
    """

    runs_on_all_ranks = True

    def __init__(
        self,
        num_samples: int = 50000,
        samplers: tuple[str, ...] = ("rk45", "euler10"),
        feature_network: str | nn.Module = "inception",
        inception_resize: str = "clean",
        cmmd: bool | None = None,
        clip_network: str | nn.Module = "clip",
        real_split: str = "train",
        batch_size: int = 500,
        feature_batch_size: int = 250,
        cache_dir: str | None = None,
        seed: int = 0,
        progress: bool = True,
        every_n_validations: int = 0,
        on_test: bool = True,
    ) -> None:
        super().__init__(every_n_validations, on_test)
        if num_samples < 2:
            raise ValueError(f"num_samples must be >= 2, got {num_samples}")
        if batch_size < 1 or feature_batch_size < 1:
            raise ValueError("batch_size and feature_batch_size must be >= 1")
        if not samplers:
            raise ValueError("samplers must name at least one sampler, e.g. [rk45, euler10]")
        for name in samplers:
            parse_sampler(name)
        if isinstance(feature_network, str) and feature_network != "inception":
            raise ValueError(f"feature_network must be 'inception' or an nn.Module, got {feature_network!r}")
        if isinstance(clip_network, str) and clip_network != "clip":
            raise ValueError(f"clip_network must be 'clip' or an nn.Module, got {clip_network!r}")
        self.num_samples = num_samples
        self.samplers = tuple(samplers)
        if inception_resize not in ("clean", "tensorflow"):
            raise ValueError(f"inception_resize must be 'clean' or 'tensorflow', got {inception_resize!r}")
        self.feature_network = feature_network
        self.inception_resize = inception_resize
        self.cmmd = cmmd
        self.clip_network = clip_network
        self.real_split = real_split
        self.batch_size = batch_size
        self.feature_batch_size = feature_batch_size
        self.cache_dir = cache_dir
        self.seed = seed
        self.progress = progress

    # ------------------------------------------------------------------------------------ feature networks
    def _inception(self, device: torch.device) -> nn.Module:
        if isinstance(self.feature_network, nn.Module):
            return self.feature_network.to(device).eval()
        try:
            net = InceptionFeatureSet(device=device, resize=self.inception_resize).eval()
        except Exception as err:  # a download error, a missing file: say what to do in one line
            raise ValueError(
                "GenerationMetrics: clean-fid's Inception weights could not be loaded "
                f"({type(err).__name__}: {first_line(err)}); run once on a machine "
                "with network (clean-fid keeps them in its cache), or give feature_network an nn.Module (a "
                "stand-in: its numbers are not the paper's)"
            ) from err
        # what identifies its features in the cache: hashing the 95 MB of weights on every run would cost more
        net.cache_id = f"clean-fid inception-2015-12-05.pt, {self.inception_resize} resize"
        return net

    def _clip(self, device: torch.device) -> tuple[nn.Module | None, str]:
        """(CLIP network or None, why CMMD is not computed)."""
        if self.cmmd is False:
            return None, "CMMD off (cmmd: false)"
        if isinstance(self.clip_network, nn.Module):
            return self.clip_network.to(device).eval(), ""
        try:
            net = CLIPImageEmbeddings(CMMD_CLIP_MODEL, device=device).eval()
            net.cache_id = f"CLIPImageEmbeddings {CMMD_CLIP_MODEL}"
            return net, ""
        except ImportError as err:
            if self.cmmd:
                raise ValueError(f"GenerationMetrics: cmmd: true needs CLIP ({err})") from err
            return None, f"CMMD not computed: {err}"
        except Exception as err:
            raise ValueError(
                "GenerationMetrics: the CLIP network of CMMD could not be loaded "
                f"({type(err).__name__}: {err}); run once with network, or set cmmd: false"
            ) from err

    # ---------------------------------------------------------------------------------------- the protocol
    def compute(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> tuple[dict[str, float], str]:
        """Features of the real images (cached) and of ``num_samples`` images per sampler; metrics on rank
        0."""
        m: Any = pl_module
        device = m.device
        image_key = m.routing.source_field() if m.latent_from else m.routing.decoder_field()
        dm = trainer.datamodule
        dataset = clean_split(dm, self.real_split)
        indices = subset_indices(len(dataset), self.num_samples, self.seed)  # type: ignore[arg-type]
        n = len(indices)
        rank, world = distributed.rank(), distributed.world_size()
        chunk = min(self.batch_size, -(-n // world))  # every rank gets at least one chunk
        starts = list(range(0, n, chunk))
        mine = starts[rank::world]  # chunk starts of this rank, dealt round-robin
        rows = torch.tensor([i for s in mine for i in range(s, min(s + chunk, n))], dtype=torch.long)

        nets: dict[str, nn.Module] = {"inception": self._inception(device)}
        clip, no_cmmd = self._clip(device)
        if clip is not None:
            nets["clip"] = clip
        cache = RealFeatureCache(self.cache_dir)
        data_key = dataset_key(dm, dataset, indices, self.real_split, self.seed, image_key)
        keys = {name: {**data_key, "feature_network": network_id(net)} for name, net in nets.items()}

        work = len(rows) * len(self.samplers)
        # rank 0 reads the cache; the other ranks learn only what is missing and the real labels
        found = {name: cache.load(key) for name, key in keys.items()} if rank == 0 else {}
        missing: list[str] = distributed.broadcast_object(  # type: ignore[assignment]
            [name for name in keys if found.get(name) is None] if rank == 0 else None
        )
        cached_labels = next((a["labels"] for a in found.values() if a is not None), None)
        if len(missing) < len(keys):
            cached_labels = distributed.broadcast_object(cached_labels)
        bar = tqdm(
            total=work + (len(rows) if missing else 0), desc="GenerationMetrics", unit="image",
            disable=not (self.progress and rank == 0), leave=False,
        )  # fmt: skip
        with bar:
            real, labels = self._real(
                found, cached_labels, missing, nets, dataset, indices, rows, chunk, dm, image_key, bar, device
            )
            if rank == 0:
                for name in missing:
                    cache.save(keys[name], {**real[name], "labels": labels})
            conditional = m.routing.label_field(required=False) is not None and bool((labels >= 0).all())
            fake = {
                s: self._fake(m, s, nets, mine, chunk, n, labels if conditional else None, rows, bar, device)
                for s in self.samplers
            }
        metrics: dict[str, float] = {}
        if rank == 0:
            radii = manifold_radii(
                real["inception"]["pool3"], k=PR_K
            )  # the real manifold, once for all samplers
            for sampler, feats in fake.items():
                metrics |= {f"{k}/{sampler}": v for k, v in self.scores(real, feats, radii).items()}
        cached = "all read from the cache" if not missing else f"{', '.join(missing)} computed and cached"
        what = (
            f"{n} generated per sampler ({', '.join(self.samplers)}; EMA weights; "
            f"{'conditioned on the real images labels' if conditional else 'unconditional'}; "
            f"{world} rank(s)) vs {n} real {self.real_split} images (evaluation transform, features {cached} "
            f"in {cache.folder}); features: {network_id(nets['inception'])}"
            + (f"; CMMD on {network_id(nets['clip'])}" if "clip" in nets else f"; {no_cmmd}")
        )
        return metrics, what

    @staticmethod
    def scores(
        real: dict[str, dict[str, np.ndarray]],
        fake: dict[str, dict[str, np.ndarray]],
        real_radii: np.ndarray | None = None,
    ) -> dict[str, float]:
        """The metrics of one sampler from real and generated features, each ``{network: {feature set:
        [N, D]}}`` (``real_radii``: the real pool3 manifold's, when already computed)."""
        r, f = real["inception"], fake["inception"]
        precision, recall = precision_recall(r["pool3"], f["pool3"], k=PR_K, real_radii=real_radii)
        out = {
            "fid": frechet_distance(r["pool3"], f["pool3"]),
            "sfid": spatial_frechet_distance(r["spatial"], f["spatial"]),
            "inception_score": inception_score(f["probs"], split_size=min(IS_SPLIT, len(f["probs"]))),
            "precision": precision,
            "recall": recall,
        }
        if "clip" in real and "clip" in fake:
            out["cmmd"] = cmmd(real["clip"]["clip"], fake["clip"]["clip"])
        return out

    def _real(
        self,
        found: dict[str, Any],
        cached_labels: Any,
        missing: list[str],
        nets: dict[str, nn.Module],
        dataset: Any,
        indices: list[int],
        rows: Tensor,
        chunk: int,
        dm: Any,
        image_key: str,
        bar: tqdm,
        device: torch.device,
    ) -> tuple[dict[str, dict[str, np.ndarray]], Tensor]:
        """(real features per network, on rank 0; labels [N], -1 for unlabelled images, on every rank):
        ``found`` (rank 0's cache hits) and the features of the ``missing`` networks, computed over the
        ranks."""
        real = {
            name: {k: v for k, v in arrays.items() if k != "labels"}
            for name, arrays in found.items()
            if arrays is not None
        }
        if not missing:
            return real, torch.as_tensor(cached_labels).long()
        my_indices = [indices[int(i)] for i in rows]
        loader = chunk_loader(dataset, my_indices, chunk, int(getattr(dm, "num_workers", 0) or 0))
        parts: dict[str, dict[str, list[Tensor]]] = {name: {} for name in missing}
        my_labels: list[Tensor] = []
        for batch in loader:
            images = batch[image_key].float()
            my_labels.append(batch["label"].long() if "label" in batch else torch.full((len(images),), -1))
            for name in missing:
                for k, v in feature_sets_of(nets[name], images, self.feature_batch_size).items():
                    parts[name].setdefault(k, []).append(torch.from_numpy(v).float())
            bar.update(len(images))
        labels = self._gathered(torch.cat(my_labels), rows, device)
        for name in missing:
            real[name] = {
                k: self._gathered(torch.cat(v), rows, device).numpy() for k, v in parts[name].items()
            }
        return real, labels

    def _fake(
        self,
        m: Any,
        sampler: str,
        nets: dict[str, nn.Module],
        mine: list[int],
        chunk: int,
        n: int,
        labels: Tensor | None,
        rows: Tensor,
        bar: tqdm,
        device: torch.device,
    ) -> dict[str, dict[str, np.ndarray]]:
        """Generated features per network of this sampler, all-gathered in sample order (in full on every
        rank)."""
        method, steps = parse_sampler(sampler)
        parts: dict[str, dict[str, list[Tensor]]] = {name: {} for name in nets}
        for start in mine:
            stop = min(start + chunk, n)
            y = labels[start:stop] if labels is not None else None
            images = m.generate(
                stop - start, labels=y, seed=self.seed * _SEED_STRIDE + start // chunk,
                batch_size=stop - start, progress=False, method=method, steps=steps,
            )  # fmt: skip
            for name, net in nets.items():
                for k, v in feature_sets_of(net, images, self.feature_batch_size).items():
                    parts[name].setdefault(k, []).append(torch.from_numpy(v).float())
            bar.update(stop - start)
        return {
            name: {k: self._gathered(torch.cat(v), rows, device).numpy() for k, v in sets.items()}
            for name, sets in parts.items()
        }

    @staticmethod
    def _gathered(mine: Tensor, rows: Tensor, device: torch.device) -> Tensor:
        """This rank's rows ``mine`` (global row numbers ``rows``) and every other rank's, in row order."""
        values = distributed.gather_rows(mine, device)
        where = distributed.gather_rows(rows, device)
        out = torch.empty_like(values)
        out[where] = values
        return out
