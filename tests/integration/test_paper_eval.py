"""`lzn test` of the paper's generation and joint recipes computes the paper's table the paper's way.

Each recipe's released model is stood in for by an authors'-layout checkpoint of its tiny model
(tests/overrides/authors_checkpoint.py) imported with `lzn import-reference`; its evaluation callbacks keep
their classes and protocol (samplers, EMA, training images, real labels) but run on 8 images with stand-in
feature networks (tests/overrides/tiny_recipe.py, tests/overrides/stand_in_features.py), since the Inception
and CLIP weights cannot be downloaded here.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
import yaml
from authors_checkpoint import authors_checkpoint
from cli_run import run_lzn
from stand_in_features import StandInCLIP, StandInInception
from tiny_recipe import tiny_override

import lzn_lightning.callbacks.generation_metrics as generation_metrics
from lzn_lightning.callbacks import PAPER_NUMBERS, GenerationMetrics, ReconstructionL2
from lzn_lightning.callbacks.paper_table import table_rows
from lzn_lightning.metrics import mean_reconstruction_l2
from lzn_lightning.recipes import build_run

ROOT = Path(__file__).resolve().parents[2]
RECIPES = ["cifar10_gen", "cifar10_joint", "afhq_cat_gen", "celebahq_gen", "lsun_bedroom_gen"]
GENERATION = ("fid", "sfid", "inception_score", "precision", "recall", "cmmd")
SAMPLERS = ("rk45", "euler10")


# The authors' sample counts (as many as real training images; docs/guide.md#check-the-papers-numbers).
PAPER_SAMPLES = {
    "cifar10_gen": 50000, "cifar10_joint": 50000, "afhq_cat_gen": 5120, "celebahq_gen": 29952,
    "lsun_bedroom_gen": 29952,
}  # fmt: skip


@pytest.mark.parametrize("recipe", RECIPES)
def test_the_recipe_declares_the_papers_protocol_for_lzn_test_only(recipe: str) -> None:
    spec = yaml.safe_load((ROOT / "recipes" / f"{recipe}.yaml").read_text())
    callbacks = {cb["class_path"]: cb.get("init_args", {}) for cb in spec["trainer"]["callbacks"]}
    gen = callbacks["GenerationMetrics"]
    assert gen["num_samples"] == PAPER_SAMPLES[recipe] and gen["samplers"] == ["rk45", "euler10"]
    assert "feature_network" not in gen and "cmmd" not in gen  # Inception; CMMD when its extra is there
    built = GenerationMetrics(**gen)
    assert built.every_n_validations == 0 and built.on_test and built.real_split == "train"
    rec = callbacks["ReconstructionL2"]
    assert rec["repeats"] == 20 and rec["num_samples"] == (2000 if recipe.startswith("cifar") else 256)
    assert rec["every_n_validations"] == 0
    assert ("ZoneAccuracy" in callbacks) == (recipe == "cifar10_joint")
    assert list(callbacks)[-1] == "PaperTable" and callbacks["PaperTable"]["recipe"] == recipe


def _imported(recipe: str, folder: Path, capfd: pytest.CaptureFixture) -> Path:
    """The recipe's tiny model as `lzn import-reference` makes it from an authors'-layout file."""
    path = ROOT / "recipes" / f"{recipe}.yaml"
    ckpt, _ = authors_checkpoint(path, folder)
    out = folder / "m.ckpt"
    argv = ["import-reference", "--recipe", str(path), "--checkpoint", str(ckpt), "--out", str(out)]
    code, so, se = run_lzn([*argv, "--config", str(tiny_override(path, folder))], capfd)
    assert code == 0, so + se
    return out


def _expected_metrics(recipe: str) -> set[str]:
    names = {f"{m}/{s}" for m in GENERATION for s in SAMPLERS} | {"recon_l2/euler10"}  # (tiny: Euler only)
    return names | ({"zone_acc"} if recipe == "cifar10_joint" else set())


# One paper recipe in the fast suite (the cheapest, ~7 s), all five in `make test-slow` (~20 s each).
TABLE_CASES = [r if r == "celebahq_gen" else pytest.param(r, marks=pytest.mark.slow) for r in RECIPES]


@pytest.mark.parametrize("recipe", TABLE_CASES)
def test_lzn_test_prints_and_writes_the_papers_table(recipe: str, tmp_path: Path, capfd) -> None:
    ckpt = _imported(recipe, tmp_path, capfd)
    path = ROOT / "recipes" / f"{recipe}.yaml"
    argv = [
        "test",
        "--config",
        str(path),
        "--config",
        str(tiny_override(path, tmp_path)),
        "--ckpt_path",
        str(ckpt),
    ]
    code, out, err = run_lzn([*argv, f"--trainer.default_root_dir={tmp_path}"], capfd)
    text = out + err
    assert code == 0, text
    record = json.loads((tmp_path / "m.ckpt.eval.json").read_text())  # next to the checkpoint
    assert _expected_metrics(recipe) <= set(record["metrics"]), sorted(record["metrics"])
    assert all(np.isfinite(v) for v in record["metrics"].values())
    assert record["paper"] == {k: vars(v) for k, v in PAPER_NUMBERS[recipe].items()}
    assert record["checkpoint"] == str(ckpt)
    # the protocol the recipe states: both samplers, EMA weights, training images, real labels if conditional
    what = record["protocol"]["GenerationMetrics"]
    assert "rk45, euler10" in what and "EMA weights" in what and "real train images" in what
    assert ("conditioned on the real images labels" in what) == (recipe == "cifar10_joint")
    # one printed table: a row per metric of the case study, a column per sampler, the paper's number beside
    table = [line for line in text.splitlines() if line.startswith("| ")]
    assert table[0].startswith("| metric | rk45 | euler10 | paper RF+LZN | paper RF |"), table
    rows = {line.split(" | ")[0][2:]: line for line in table[1:]}
    assert set(GENERATION) | {"recon_l2"} <= set(rows), rows
    for metric, paper in PAPER_NUMBERS[recipe].items():
        cells = rows[metric].split(" | ")
        assert cells[3] == f"{paper.lzn:.4g}", rows[metric]
        key = metric if metric == "zone_acc" else f"{metric}/rk45"
        assert cells[1] == (f"{record['metrics'][key]:.4g}" if key in record["metrics"] else "not computed")
    for metric, line in rows.items():  # where the paper gives no number, the cell stays blank
        if metric not in PAPER_NUMBERS[recipe]:
            assert line.split(" | ")[3] == "", line


def _tiny_run(folder: Path, **callback_args):
    """The tiny cifar10_joint run as `lzn test` builds it; its GenerationMetrics set to ``callback_args``."""
    path = ROOT / "recipes" / "cifar10_joint.yaml"
    folder.mkdir(parents=True, exist_ok=True)
    run = build_run([path, tiny_override(path, folder)], logger=False, checkpoints=False)
    cb = next(c for c in run.trainer.callbacks if isinstance(c, GenerationMetrics))
    for k, v in callback_args.items():
        setattr(cb, k, v)
    return run, cb


def test_real_features_are_cached_reused_and_invalidated_by_the_key(tmp_path: Path) -> None:
    run, cb = _tiny_run(tmp_path, samplers=("euler10",))
    trainer = SimpleNamespace(datamodule=run.datamodule)
    first, what = cb.compute(trainer, run.model)
    assert "inception, clip computed and cached" in what
    files = sorted((tmp_path / "real_features").glob("*.npz"))
    assert len(files) == 2  # one per feature network
    again, what = cb.compute(trainer, run.model)
    assert "all read from the cache" in what and again == first
    # the cached features are what the second run reads: change them and the metrics change
    inception = next(f for f in files if "pool3" in np.load(f).files)
    arrays = dict(np.load(inception))
    arrays["pool3"] = arrays["pool3"] + 1.0
    np.savez(inception, **arrays)
    moved, what = cb.compute(trainer, run.model)
    assert "all read from the cache" in what and moved["fid/euler10"] > first["fid/euler10"] + 1
    # another count, another feature network: other keys, computed again
    cb.num_samples = 6
    _, what = cb.compute(trainer, run.model)
    assert "inception, clip computed and cached" in what
    cb.feature_network = StandInInception(seed=5)
    _, what = cb.compute(trainer, run.model)
    assert "inception computed and cached" in what and "clip" not in what.split("computed")[0]
    assert len(list((tmp_path / "real_features").glob("*.npz"))) == 5


def test_missing_inception_weights_end_in_one_line_saying_what_to_do(
    tmp_path: Path, capfd, monkeypatch
) -> None:
    class Offline(torch.nn.Module):
        def __init__(self, *args, **kwargs) -> None:
            raise RuntimeError("<urlopen error [Errno -3] Temporary failure in name resolution>")

    monkeypatch.setattr(generation_metrics, "InceptionFeatureSet", Offline)
    ckpt = _imported("cifar10_gen", tmp_path, capfd)
    path = ROOT / "recipes" / "cifar10_gen.yaml"
    overlay = yaml.safe_load(tiny_override(path, tmp_path).read_text())
    for spec in overlay["trainer"]["callbacks"]:
        if spec["class_path"] == "GenerationMetrics":
            spec["init_args"]["feature_network"] = "inception"  # the recipe's default
    (tmp_path / "inception.yaml").write_text(yaml.safe_dump(overlay))
    argv = [
        "test",
        "--config",
        str(path),
        "--config",
        str(tmp_path / "inception.yaml"),
        "--ckpt_path",
        str(ckpt),
    ]
    code, out, err = run_lzn([*argv, f"--trainer.default_root_dir={tmp_path}"], capfd)
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert code == 2 and len(errors) == 1, out + err
    assert "Inception weights could not be loaded" in errors[0] and "feature_network" in errors[0]


def test_cmmd_is_off_without_the_clip_extra_unless_asked(monkeypatch) -> None:
    class NoExtra(torch.nn.Module):
        def __init__(self, *args, **kwargs) -> None:
            raise ImportError("CMMD's CLIP embeddings need transformers: pip install lzn-lightning[cmmd]")

    monkeypatch.setattr(generation_metrics, "CLIPImageEmbeddings", NoExtra)
    net, why = GenerationMetrics()._clip(torch.device("cpu"))
    assert net is None and "pip install" in why
    with pytest.raises(ValueError, match="cmmd: true needs CLIP"):
        GenerationMetrics(cmmd=True)._clip(torch.device("cpu"))
    assert GenerationMetrics(clip_network=StandInCLIP())._clip(torch.device("cpu"))[0] is not None
    with pytest.raises(ValueError, match="euler<steps>"):
        GenerationMetrics(samplers=("heun",))


def test_reconstruction_decoded_in_parts_is_the_whole_batch_reconstruction(tmp_path: Path) -> None:
    run, _ = _tiny_run(tmp_path)
    model = run.model
    images, labels = torch.rand(4, 1, 8, 8) * 2 - 1, torch.tensor([0, 3, 3, 7])
    whole, _ = mean_reconstruction_l2(model, images, 1, 5, labels=labels, context="batch", steps=3)
    parts = ReconstructionL2(decode_batch_size=1).l2(model, images, labels, 5, steps=3)
    assert parts == pytest.approx(whole, rel=1e-5) and whole > 0


def test_the_paper_table_leaves_unknown_numbers_blank() -> None:
    header, rows = table_rows("celebahq_gen", {"fid/rk45": 7.0, "cmmd/rk45": 0.5})
    by_metric = {r[0]: r for r in rows}
    assert header[1] == "rk45" and by_metric["fid"][2] == "" and by_metric["cmmd"][2] == "0.4901"
    header, rows = table_rows("cifar10_joint", {"fid/rk45": 3.0, "zone_acc": 0.9})
    by_metric = {r[0]: r for r in rows}
    assert by_metric["zone_acc"][1:3] == ["0.9", "0.9447"] and by_metric["sfid"][1] == "not computed"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_worker(rank: int, world: int, port: int, folder: str, out: dict) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        run, cb = _tiny_run(
            Path(folder) / f"tiny{rank}",
            samplers=("euler10",),
            batch_size=4,
            cache_dir=str(Path(folder) / str(rank)),
        )
        trainer = SimpleNamespace(datamodule=run.datamodule)
        metrics, _ = cb.compute(trainer, run.model)
        again, what = cb.compute(trainer, run.model)  # rank 0 reads the cache, the others get its labels
        assert again == metrics and (rank != 0 or "all read from the cache" in what)
        recon = ReconstructionL2(num_samples=4, repeats=4, samplers=("euler10",))
        metrics |= recon.compute(trainer, run.model)[0]
        out[rank] = metrics
    finally:
        dist.destroy_process_group()


@pytest.mark.ddp
@pytest.mark.slow  # ~60 s on a 2-core machine: each spawned rank imports torch and Lightning again
@pytest.mark.timeout(300)
def test_two_ranks_share_the_samples_and_give_the_single_process_numbers(tmp_path: Path) -> None:
    run, cb = _tiny_run(
        tmp_path / "tiny", samplers=("euler10",), batch_size=4, cache_dir=str(tmp_path / "single")
    )
    trainer = SimpleNamespace(datamodule=run.datamodule)
    single, _ = cb.compute(trainer, run.model)
    single |= ReconstructionL2(num_samples=4, repeats=4, samplers=("euler10",)).compute(trainer, run.model)[0]
    out = mp.Manager().dict()
    mp.spawn(_rank_worker, args=(2, _free_port(), str(tmp_path), out), nprocs=2, join=True)
    assert set(out[0]) == set(single) and set(out[1]) == {"recon_l2/euler10"}  # rank 0 computes the metrics
    for name, value in single.items():
        assert out[0][name] == pytest.approx(value, rel=1e-4, abs=1e-6), name
