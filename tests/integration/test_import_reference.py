"""`lzn import-reference`: authors'-layout checkpoints of the paper recipes (at tiny widths) become lzn
checkpoints that inference, `lzn sample | classify | embed | test` and `lzn fit --model.init_from` use; files
that do not fit end in one line naming the first tensor, and nothing is written.

The fixtures (tests/overrides/authors_checkpoint.py) are written in the layout of the authors' trainers
(networks under ``model.module.``, EMA lists in ``parameters()`` order, the decoder's ``sigmas`` buffer,
optimiser and scheduler state). That the layout is the authors' own is checked against their code by
tests/unit/test_paper_networks.py (names and shapes) and by the scratch comparison in docs/performance.md
(outputs).
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from authors_checkpoint import EMA_UPDATES, authors_checkpoint
from cli_run import run_lzn
from tiny_recipe import tiny_override

from lzn_lightning.cli import main
from lzn_lightning.module import load_for_inference
from lzn_lightning.reference_import import paper_networks, resolve_checkpoint

ROOT = Path(__file__).resolve().parents[2]


def _both(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``lzn argv``."""
    code, out, err = run_lzn(argv, capsys)
    return code, out + err


def _import(
    recipe: Path, ckpt: Path, out: Path, folder: Path, capsys: pytest.CaptureFixture
) -> tuple[int, str]:
    tiny = tiny_override(recipe, folder)
    argv = [
        "import-reference",
        "--recipe",
        str(recipe),
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--config",
        str(tiny),
    ]
    return _both(argv, capsys)


def _assert_same(module: torch.nn.Module, expected: dict[str, torch.Tensor]) -> None:
    for name, value in module.state_dict().items():
        torch.testing.assert_close(value, expected[name], rtol=0, atol=0, msg=lambda m, n=name: f"{n}: {m}")


def _assert_holds(model: torch.nn.Module, weights: dict) -> None:
    """Live weights = their raw weights; the EMA copy = their EMA (the frozen Fourier matrix: raw); our one
    EMA update count = the largest of theirs."""
    parts = []
    for part, field, module, _ in paper_networks(model):
        raw, ema = weights[part]
        shadow = model.ema.shadow[field] if part == "label_anchor" else getattr(model.ema.shadow[field], part)
        _assert_same(module, raw)
        _assert_same(shadow, ema)
        parts.append(part)
    assert int(model.ema.num_updates) == max(EMA_UPDATES[p] for p in parts)


def _assert_inference_uses_their_ema(model: torch.nn.Module, weights: dict) -> None:
    """Inside ``model.inference()`` every network (the label anchor table too) holds their EMA, after it their
    raw weights again: what the authors' evaluation swaps in (generation_trainer.py:249-268)."""
    networks = list(paper_networks(model))
    with model.inference():
        for part, field, module, _ in networks:
            _assert_same(module, weights[part][1])
            if part == "label_anchor":  # the table inference reads, not only the parameter behind it
                table = model.modality(field).anchor_table()
                torch.testing.assert_close(table, weights[part][1]["anchors"], rtol=0, atol=0)
    for part, _, module, _ in networks:
        _assert_same(module, weights[part][0])


# The ResNet-50 of imagenet_repr takes ~6 s a case to build and compare: `make test-slow`.
@pytest.mark.parametrize(
    "recipe", ["cifar10_joint", "afhq_cat_gen", pytest.param("imagenet_repr", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize(
    "wrapped", [True, pytest.param(False, marks=pytest.mark.slow)], ids=["wrapped", "plain"]
)
def test_import_holds_raw_and_ema_weights(recipe: str, wrapped: bool, tmp_path: Path, capsys) -> None:
    path = ROOT / "recipes" / f"{recipe}.yaml"
    ckpt, weights = authors_checkpoint(path, tmp_path, wrapped=wrapped)
    code, out = _import(path, ckpt, tmp_path / "m.ckpt", tmp_path, capsys)
    assert code == 0, out
    assert "wrote" in out and "iteration 5000" in out
    model = load_for_inference(tmp_path / "m.ckpt")
    _assert_holds(model, weights)
    _assert_inference_uses_their_ema(model, weights)
    # each network's own count, in the command's output and in the checkpoint's record of the import
    counts = {part: EMA_UPDATES[part] for part, *_ in paper_networks(model)}
    assert f"EMA updates {counts}" in out, out
    assert torch.load(tmp_path / "m.ckpt", weights_only=True)["lzn_import"]["ema_updates"] == counts
    image = model.modality("image")
    x = torch.rand(3, image.channels, image.size, image.size) * 2 - 1
    with model.inference():  # the EMA weights: encode equals the encoder with their EMA list loaded
        anchors = image.encode(x)
    encoder = image.encoder
    saved = {k: v.clone() for k, v in encoder.state_dict().items()}
    encoder.load_state_dict(weights["encoder"][1])
    with torch.no_grad():
        torch.testing.assert_close(anchors, encoder.eval()(x), rtol=0, atol=0)
    encoder.load_state_dict(saved)


@pytest.mark.slow  # ~25 s: samples, classifies, embeds and tests a CIFAR-10-size paper network on CPU
def test_the_imported_model_samples_classifies_embeds_and_tests(tmp_path: Path, capsys) -> None:
    recipe = ROOT / "recipes" / "cifar10_joint.yaml"
    ckpt, _ = authors_checkpoint(recipe, tmp_path)
    model_ckpt = tmp_path / "m.ckpt"
    assert _import(recipe, ckpt, model_ckpt, tmp_path, capsys)[0] == 0
    ck = str(model_ckpt)
    code, out = _both(
        ["sample", "--ckpt_path", ck, "--num", "4", "--labels", "3", "--out", str(tmp_path / "s.npy")], capsys
    )
    assert code == 0, out
    images = np.load(tmp_path / "s.npy")
    assert images.shape == (4, 1, 8, 8) and np.abs(images).max() <= 1
    code, out = _both(
        ["classify", "--ckpt_path", ck, "--input", str(tmp_path / "s.npy"), "--out", str(tmp_path / "p.csv")],
        capsys,
    )
    assert code == 0, out
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert len(rows) == 5 and all(0 <= int(r[-1]) < 10 for r in rows[1:])
    code, out = _both(
        ["embed", "--ckpt_path", ck, "--input", str(tmp_path / "s.npy"), "--out", str(tmp_path / "e.npy")],
        capsys,
    )
    assert code == 0, out
    assert np.load(tmp_path / "e.npy").shape[0] == 4
    tiny = str(tiny_override(recipe, tmp_path))
    code, out = _both(
        [
            "test",
            "--config",
            str(recipe),
            "--config",
            tiny,
            "--ckpt_path",
            ck,
            f"--trainer.default_root_dir={tmp_path}",
        ],
        capsys,
    )
    assert code == 0, out


def test_fit_starts_from_an_imported_model(tmp_path: Path, capsys) -> None:
    recipe = ROOT / "recipes" / "cifar10_gen.yaml"
    ckpt, weights = authors_checkpoint(recipe, tmp_path)
    model_ckpt = tmp_path / "m.ckpt"
    assert _import(recipe, ckpt, model_ckpt, tmp_path, capsys)[0] == 0
    tiny = str(tiny_override(recipe, tmp_path))
    cli = main(
        [
            "fit",
            "--config",
            str(recipe),
            "--config",
            tiny,
            "--model.init_from",
            str(model_ckpt),
            "--trainer.max_steps=1",
            f"--trainer.default_root_dir={tmp_path}",
        ]
    )
    assert cli is not None
    model = cli.model
    # the imported EMA (its count: the largest of the networks') went on by one step
    assert int(model.ema.num_updates) == max(EMA_UPDATES["encoder"], EMA_UPDATES["decoder"]) + 1
    # one Adam step moves each weight by at most ~lr; the imported weights are O(1)
    raw = weights["encoder"][0]
    moved = max(
        float((p.detach() - raw[n]).abs().max())
        for n, p in model.modality("image").encoder.named_parameters()
    )
    assert moved < 1e-2


def test_a_checkpoint_of_another_recipe_is_refused_naming_the_tensor(tmp_path: Path, capsys) -> None:
    joint = ROOT / "recipes" / "cifar10_joint.yaml"
    ckpt, _ = authors_checkpoint(joint, tmp_path)
    out_file = tmp_path / "m.ckpt"
    code, out = _import(ROOT / "recipes" / "cifar10_gen.yaml", ckpt, out_file, tmp_path, capsys)
    # cifar10_gen's decoder takes no one-hot label: its first embedding layer is 10 inputs narrower
    assert code == 2 and "decoder.all_modules.0.weight expected [32, 16], found [32, 26]" in out, out
    assert len([ln for ln in out.splitlines() if ln.startswith("error:")]) == 1
    assert not out_file.exists()
    code, out = _import(
        joint,
        authors_checkpoint(ROOT / "recipes" / "cifar10_gen.yaml", tmp_path)[0],
        out_file,
        tmp_path,
        capsys,
    )
    assert code == 2 and "has no 'label_anchor' network" in out, out
    assert not out_file.exists()


def test_broken_files_and_short_ema_lists_are_refused(tmp_path: Path, capsys) -> None:
    recipe = ROOT / "recipes" / "cifar10_gen.yaml"
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    code, out = _import(recipe, garbage, tmp_path / "m.ckpt", tmp_path, capsys)
    assert code == 2 and "not a readable PyTorch checkpoint" in out, out
    ckpt, _ = authors_checkpoint(recipe, tmp_path)
    state = torch.load(ckpt, weights_only=True)
    state["encoder_ema"]["shadow_params"] = state["encoder_ema"]["shadow_params"][:-1]
    torch.save(state, ckpt)
    code, out = _import(recipe, ckpt, tmp_path / "m.ckpt", tmp_path, capsys)
    assert code == 2 and "encoder_ema holds" in out, out
    assert not (tmp_path / "m.ckpt").exists()
    code, out = _import(recipe, tmp_path / "nowhere.pt", tmp_path / "m.ckpt", tmp_path, capsys)
    assert code == 2 and "does not exist" in out, out


def test_a_model_page_path_resolves_from_the_local_cache_offline(tmp_path: Path, monkeypatch) -> None:
    from huggingface_hub import constants

    name = "lzn1/case_study_3/000008000-000200000.pt"
    commit = "0" * 40
    repo = tmp_path / "hub" / "models--microsoft--latent-zoning-networks"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(commit)
    cached = repo / "snapshots" / commit / name
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"weights")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_checkpoint(name, offline=True).read_bytes() == b"weights"
    with pytest.raises(FileNotFoundError, match="local Hugging Face cache"):
        resolve_checkpoint("lzn1/case_study_2/000032051-005000000.pt", offline=True)


def test_lzn_help_lists_import_reference(capsys) -> None:
    main(["--help"])
    assert "import-reference" in capsys.readouterr().out
