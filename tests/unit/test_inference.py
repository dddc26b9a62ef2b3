"""The inference API (generate / classify / embed / reconstruct) and `lzn sample | classify | embed` on a tiny
trained checkpoint."""

from __future__ import annotations

import csv
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from cli_run import run_lzn
from PIL import Image
from tiny_lzn import BANK, LATENT_DIM, NUM_CLASSES, tiny_data, train_tiny

from lzn_lightning import LZNLightningModule
from lzn_lightning.metrics import mean_reconstruction_l2, reconstruction_l2
from lzn_lightning.module import load_for_inference


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, path = train_tiny(tmp_path_factory.mktemp("tiny"))
    return path


@pytest.fixture
def model(ckpt: Path) -> Any:
    return LZNLightningModule.load_from_checkpoint(ckpt, map_location="cpu")


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    data = tiny_data()
    data.setup("test")
    items = [data.test_dataset[i] for i in range(12)]
    return torch.stack([it["image"] for it in items]), torch.stack([it["label"] for it in items])


# ------------------------------------------------------------------------------------------------- loading
def test_checkpoint_loads_with_bank_and_ema(model: Any) -> None:
    assert model.anchor_bank is not None and model.anchor_bank.shape == (BANK, 1, 8, 8)
    assert int(model.ema.num_updates) > 0  # inference has EMA weights to use


def test_bank_is_dropped_or_resized_by_load_state_dict(model: Any) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    fresh = LZNLightningModule(**model.hparams)
    fresh.load_state_dict(state)  # a bank of the checkpoint's size appears
    assert torch.equal(fresh.anchor_bank, model.anchor_bank)
    del state["anchor_bank_image"]
    fresh.load_state_dict(state)  # strict load without a bank removes it
    assert fresh.anchor_bank is None


def test_a_bank_of_a_field_the_model_lacks_is_an_unexpected_key(model: Any) -> None:
    state = {k: v.clone() for k, v in model.state_dict().items()}
    state["anchor_bank_images"] = state.pop("anchor_bank_image")  # "images" is no field of this model
    fresh = LZNLightningModule(**model.hparams)
    with pytest.raises(RuntimeError, match=r"Unexpected key.*anchor_bank_images"):
        fresh.load_state_dict(state)
    assert fresh.load_state_dict(state, strict=False).unexpected_keys == ["anchor_bank_images"]
    assert fresh.anchor_bank is None


def test_routing_says_which_field_does_what(model: Any) -> None:
    routing = model.routing  # built and checked once, with the module
    assert routing.source_field() == routing.decoder_field() == "image"
    assert routing.label_field() == "label"
    assert routing.anchor_classifier("image", "label") is None  # the label flow classifies
    assert routing.trace_steps("label") == 6  # the align term's steps
    with pytest.raises(ValueError, match="'text' is not a field of this model"):
        routing.source_field("text")
    with pytest.raises(ValueError, match="has no encoder"):
        routing.source_field("label")


# --------------------------------------------------------------------------------------------------- generate
def test_generate_shapes_range_and_seed(model: Any) -> None:
    labels = torch.tensor([0, 1, 2, 0, 1])
    a = model.generate(5, labels=labels, seed=3, batch_size=2)
    assert a.shape == (5, 1, 8, 8) and a.dtype == torch.float32 and a.device.type == "cpu"
    assert a.min() >= -1 and a.max() <= 1
    assert torch.equal(a, model.generate(5, labels=labels, seed=3, batch_size=2))
    assert not torch.equal(a, model.generate(5, labels=labels, seed=4, batch_size=2))
    assert model.generate(4).shape == (4, 1, 8, 8)  # unconditional: labels inferred from the latents' zones
    with pytest.raises(ValueError, match="condition has 2 items"):
        model.generate(3, labels=torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="out of range"):
        model.generate(2, labels=torch.tensor([0, NUM_CLASSES]))


def test_inference_uses_ema_weights_and_restores_the_mode(model: Any, images: tuple) -> None:
    x, _ = images
    with model.ema_weights(), torch.no_grad():
        expected = model.modality("image").embed(x)
    live = model.modality("image").embed(x).detach()
    model.train()
    got = model.embed(x)
    assert model.training  # mode restored
    assert torch.allclose(got, expected, atol=1e-6) and not torch.allclose(got, live, atol=1e-6)


# --------------------------------------------------------------------------------------------------- classify
@pytest.mark.parametrize("noise_scale", [None, 0.7])
def test_bank_classification_does_not_depend_on_batch_mates(
    model: Any, images: tuple, noise_scale: Any
) -> None:
    x, _ = images
    others = torch.rand(20, 1, 8, 8, generator=torch.Generator().manual_seed(1)) * 2 - 1
    alone = torch.cat(
        [model.classify(x[i : i + 1], context="bank", noise_scale=noise_scale) for i in range(len(x))]
    )
    together = model.classify(x, context="bank", noise_scale=noise_scale, batch_size=5)
    mixed = model.classify(
        torch.cat([others[:7], x.flip(0), others[7:]]), context="bank", noise_scale=noise_scale
    )
    assert alone.dtype == torch.long and alone.shape == (len(x),)
    assert torch.equal(alone, together)
    assert torch.equal(alone, mixed[7 : 7 + len(x)].flip(0))


def test_default_context_is_the_bank_and_batch_context_is_the_reference(model: Any, images: tuple) -> None:
    x, _ = images
    assert torch.equal(model.classify(x), model.classify(x, context="bank", noise_scale=0.0))
    pred = model.classify(x, context="batch", batch_size=6, noise_scale=1.0)
    assert pred.shape == (len(x),) and int(pred.min()) >= 0 and int(pred.max()) < NUM_CLASSES
    uniform = model.classify(x, class_weights=torch.ones(NUM_CLASSES))
    assert torch.equal(uniform, model.classify(x))
    with pytest.raises(ValueError, match="class_weights"):
        model.classify(x, class_weights=torch.ones(NUM_CLASSES + 1))


def test_without_a_bank_classify_warns_and_uses_the_batch(model: Any, images: tuple) -> None:
    x, _ = images
    model.set_anchor_bank(None)
    with pytest.warns(RuntimeWarning, match="no anchor bank"):
        pred = model.classify(x, context="bank")
    assert torch.equal(pred, model.classify(x, context="batch"))


def _encoded_rows(model: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """The number of items each call of the image modality's ``encode`` takes, as calls happen."""
    m = model.modality("image")
    rows: list[int] = []
    encode = m.encode

    def counting(x: torch.Tensor) -> torch.Tensor:
        rows.append(len(x))
        return encode(x)

    monkeypatch.setattr(m, "encode", counting)
    return rows


def test_bank_anchors_are_encoded_once_while_nothing_changes(
    model: Any, images: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = images
    rows = _encoded_rows(model, monkeypatch)
    first = model.latents(x)
    assert sum(rows) == BANK + len(x)
    rows.clear()
    assert torch.equal(model.latents(x), first)  # the EMA weights were swapped in again: same values
    assert torch.equal(model.classify(x), model.classify(x, context="bank", noise_scale=0.0))
    assert sum(rows) == 3 * len(x)  # the items only, never the bank again


def test_bank_anchors_are_encoded_again_when_weights_or_items_change(
    model: Any, ckpt: Path, images: tuple, monkeypatch: pytest.MonkeyPatch
) -> None:
    x, _ = images
    model.latents(x)
    rows = _encoded_rows(model, monkeypatch)

    def nudge(m: Any) -> None:  # an EMA update, written through .data (which no version counter sees)
        for p in m.ema.shadow.parameters():
            p.data.mul_(1.01)

    nudge(model)
    fresh = LZNLightningModule.load_from_checkpoint(ckpt, map_location="cpu")
    nudge(fresh)
    assert torch.equal(model.latents(x), fresh.latents(x))
    assert rows == [BANK, len(x)]
    rows.clear()
    model.set_anchor_bank(x[:5])
    model.latents(x)
    model.anchor_bank_of("image").mul_(0.5)  # in place
    model.latents(x)
    assert rows == [5, len(x)] * 2
    assert torch.equal(model.latents(x, batch_size=4), model.latents(x, batch_size=4))
    # A new batch size: the bank (5 items) once in its chunks, then the 12 items in theirs at each call.
    assert rows[4:] == [4, 1, 4, 4, 4, 4, 4, 4]


def test_wrong_image_shape_is_a_clear_error(model: Any) -> None:
    with pytest.raises(ValueError, match=r"expects images \[B, 1, 8, 8\]"):
        model.classify(torch.zeros(2, 3, 8, 8))


# ----------------------------------------------------------------------------------------- embed, reconstruct
def test_embed_is_per_image(model: Any, images: tuple) -> None:
    x, _ = images
    e = model.embed(x, batch_size=5)
    assert e.shape == (len(x), LATENT_DIM) and e.dtype == torch.float32
    assert torch.allclose(e[:3], model.embed(x[:3]), atol=1e-5)


def test_reconstruct(model: Any, images: tuple) -> None:
    x, y = images
    r = model.reconstruct(x, labels=y, context="batch", batch_size=len(x))
    assert r.shape == x.shape and r.min() >= -1 and r.max() <= 1
    err = reconstruction_l2(x, r)
    assert 0 < err < reconstruction_l2(x, -x)  # better than the negated image
    assert model.reconstruct(x[:2]).shape == (2, 1, 8, 8)  # labels from classify, bank context


def test_mean_reconstruction_l2_averages_one_field_per_noise_seed(model: Any, images: tuple) -> None:
    x, y = images
    mean, last = mean_reconstruction_l2(model, x, 3, seed=5, labels=y, context="batch")
    runs = [model.reconstruct(x, labels=y, context="batch", batch_size=len(x), seed=s) for s in (5, 6, 7)]
    assert abs(mean - sum(reconstruction_l2(x, r) for r in runs) / 3) < 1e-6
    torch.testing.assert_close(last, runs[-1])


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_api_on_gpu(ckpt: Path, images: tuple) -> None:
    x, _ = images
    m = LZNLightningModule.load_from_checkpoint(ckpt, map_location="cuda")
    assert torch.equal(
        m.classify(x), LZNLightningModule.load_from_checkpoint(ckpt, map_location="cpu").classify(x)
    )
    assert m.generate(3, labels=torch.tensor([0, 1, 2]), seed=0).device.type == "cpu"


# ------------------------------------------------------------------------------------------------------ CLI
def test_lzn_sample_png_and_npz(ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    png = tmp_path / "grid.png"
    code, out, _ = run_lzn(
        ["sample", "--ckpt_path", str(ckpt), "--num", "6", "--labels", "0,1,2", "--out", str(png)], capsys
    )
    assert code == 0 and "wrote 6 samples" in out
    assert Image.open(png).size == (3 * 9 + 1, 2 * 9 + 1)  # 3 per row (one per label), 8 px + 1 px padding
    npz = tmp_path / "s.npz"
    code, _, _ = run_lzn(
        ["sample", "--ckpt_path", str(ckpt), "--num", "5", "--labels", "2,0", "--out", str(npz)], capsys
    )
    data = np.load(npz)
    assert code == 0 and data["images"].shape == (5, 1, 8, 8) and data["labels"].tolist() == [2, 0, 2, 0, 2]
    assert data["images"].min() >= -1 and data["images"].max() <= 1


def test_lzn_classify_and_embed_npy(
    ckpt: Path, images: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    x, _ = images
    np.save(tmp_path / "x.npy", x.numpy())
    code, _, _ = run_lzn(
        [
            "classify",
            "--ckpt_path",
            str(ckpt),
            "--input",
            str(tmp_path / "x.npy"),
            "--out",
            str(tmp_path / "p.csv"),
        ],
        capsys,
    )
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    model = load_for_inference(ckpt)
    assert code == 0 and rows[0] == ["index", "label"] and len(rows) == len(x) + 1
    assert [int(r[1]) for r in rows[1:]] == model.classify(x).tolist()
    code, _, _ = run_lzn(
        [
            "embed",
            "--ckpt_path",
            str(ckpt),
            "--input",
            str(tmp_path / "x.npy"),
            "--out",
            str(tmp_path / "e.npy"),
        ],
        capsys,
    )
    assert code == 0 and np.load(tmp_path / "e.npy").shape == (len(x), LATENT_DIM)


def test_lzn_classify_folder_of_images(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "imgs"
    (folder / "sub").mkdir(parents=True)
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(folder / "a.png")
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(folder / "sub" / "b.png")  # RGB, 16 px: converted
    code, out, _ = run_lzn(
        ["classify", "--ckpt_path", str(ckpt), "--input", str(folder), "--out", str(tmp_path / "p.csv")],
        capsys,
    )
    rows = list(csv.reader((tmp_path / "p.csv").open()))
    assert code == 0, out
    assert rows[0] == ["index", "file", "label"] and [r[1] for r in rows[1:]] == ["a.png", "sub/b.png"]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing_ckpt", "does not exist"),
        ("garbage_ckpt", "not a readable PyTorch checkpoint"),
        ("truncated_ckpt", "not a readable PyTorch checkpoint, it may be truncated"),
        ("foreign_ckpt", "not an lzn-lightning model checkpoint"),
        ("wrong_shape", r"shape \[4, 3, 8, 8\]; this model takes images \[N, 1, 8, 8\]"),
        ("out_of_range", "images must be in \\[-1, 1\\]"),
        ("nan_pixels", r"values in \[nan, nan\]|values in \[0, nan\]"),
        ("text_file", "this model has no text modality, so it takes no text"),
        ("text_as_npy", "cannot read .* as .npy"),
        ("bad_out", "must end in one of"),
        ("existing_out", "already exists; pass --overwrite"),
    ],
)
def test_cli_errors_are_one_line(
    case: str, message: str, ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ck, x, out = str(ckpt), tmp_path / "x.npy", str(tmp_path / "p.csv")
    np.save(x, np.zeros((4, 1, 8, 8), np.float32))
    if case == "missing_ckpt":
        ck = str(tmp_path / "nope.ckpt")
    elif case == "garbage_ckpt":
        (tmp_path / "g.ckpt").write_bytes(b"not a checkpoint")
        ck = str(tmp_path / "g.ckpt")
    elif case == "truncated_ckpt":
        (tmp_path / "t.ckpt").write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
        ck = str(tmp_path / "t.ckpt")
    elif case == "foreign_ckpt":
        torch.save({"state_dict": {}, "hyper_parameters": {"lr": 1}}, tmp_path / "f.ckpt")
        ck = str(tmp_path / "f.ckpt")
    elif case == "wrong_shape":
        np.save(x, np.zeros((4, 3, 8, 8), np.float32))
    elif case == "out_of_range":
        np.save(x, np.full((4, 1, 8, 8), 255, np.float32))
    elif case == "nan_pixels":
        np.save(x, np.full((4, 1, 8, 8), np.nan, np.float32))
    elif case == "text_file":
        x = tmp_path / "notes.txt"
        x.write_text("these are not images\n")
    elif case == "text_as_npy":
        x.write_text("these are not images\n")
    elif case == "bad_out":
        out = str(tmp_path / "p.txt")
    elif case == "existing_out":
        Path(out).write_text("index,label\n0,1\n")
    before = Path(out).read_bytes() if Path(out).exists() else None
    code, _, err = run_lzn(["classify", "--ckpt_path", ck, "--input", str(x), "--out", out], capsys)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lzn classify: error:"), err
    assert re.search(message, lines[0]), lines[0]
    assert (Path(out).read_bytes() if Path(out).exists() else None) == before  # nothing written or replaced


def test_existing_output_is_replaced_only_with_overwrite(
    ckpt: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "grid.png"
    args = ["sample", "--ckpt_path", str(ckpt), "--num", "2", "--out", str(out)]
    assert run_lzn(args, capsys)[0] == 0
    first = out.read_bytes()
    assert run_lzn([*args, "--seed", "1"], capsys)[0] == 2 and out.read_bytes() == first
    assert run_lzn([*args, "--seed", "1", "--overwrite"], capsys)[0] == 0 and out.read_bytes() != first


def test_plain_rf_baseline_generates_and_reconstructs() -> None:
    """A model without an encoder (the RF baseline) has no latents; sampling and RF inversion still work."""
    model = LZNLightningModule(
        modalities={"image": {"class_path": "ImageModality",
                              "init_args": {"encoder": None, "decoder": {"name": "unet", "width": 8},
                                            "sample_steps": 2}}},
        latent_dim=8, latent_from=None,
    )  # fmt: skip
    x = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0)) * 2 - 1
    assert model.generate(2, seed=0).shape == (2, 1, 8, 8)
    recon = model.reconstruct(x)
    assert recon.shape == x.shape and bool((recon.abs() <= 1).all())
    with pytest.raises(ValueError, match="no instance field with an encoder"):
        model.embed(x)
