"""benchmarks/quality.py variants (lzn fit overrides, typos refused), benchmarks/merge_results.py and the
experiments' tools (experiments/)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from quality import OVERLAYS, Recipe, methods_of, variant_name

RECIPE = Path(__file__).parents[2] / "recipes" / "mnist_joint.yaml"


def test_variants_reach_model_keys_nested_keys_and_data_and_name_the_method(tmp_path: Path) -> None:
    overlay = tmp_path / "cutoff.yaml"
    overlay.write_text("model:\n  align:\n    - {source: image, target: label, cutoff: 0.3}\n")
    overrides = ["--model.decoder_weight=0.1", "--model.flow.noise_scale", "0.5", "--config", str(overlay),
                 "--data.init_args.batch_size=256"]  # fmt: skip
    recipe = Recipe(RECIPE, overrides)
    model, data = (run := recipe.run()).model, run.datamodule
    assert model.decoder_weight == 0.1  # not in the recipe: a module default, still settable
    assert (model.flow.solver, model.flow.steps, model.flow.noise_scale) == ("dpm++", 20, 0.5)
    # The list item changes one key; its other keys stay.
    assert model.align[0].cutoff == 0.3 and model.align[0].form == "log" and model.align[0].steps == 100
    assert data.batch_size == 256
    named = ["model.decoder_weight=0.1", "model.flow.noise_scale=0.5", f"config={overlay}"]
    assert variant_name(overrides) == ", ".join([*named, "data.init_args.batch_size=256"])
    # A baseline gets the variant too, before its overlay (which then rewrites the objective).
    (ce_overlay,) = methods_of("joint")["supervised CE, same encoder"]
    assert ce_overlay == OVERLAYS / "supervised_ce.yaml"
    ce = recipe.run([ce_overlay]).model
    assert ce.decoder_weight == 0.1 and ce.align[0].form == "ce" and ce.align[0].cutoff == 0.2


BAD = ["--model.flow.nosie_scale=0.5", "--trainer.nope.x=1", "--model.latent_dim.x=1", "--model.seed"]


@pytest.mark.parametrize("override", BAD)
def test_bad_variants_stop(override: str, capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit):  # a typo would otherwise run the plain recipe under a variant's name
        Recipe(RECIPE, [override]).run()
    assert "error" in capsys.readouterr().err.lower()


def _result(part: str = "gen", steps: int = 400, **runs: list[int]) -> dict:
    return {
        "part": part,
        "steps": steps,
        "runs": {m: [{"seed": s, "fid": s / 10} for s in seeds] for m, seeds in runs.items()},
    }


def test_merge_concatenates_runs_by_seed_and_refuses_mismatches() -> None:
    from merge_results import merge_results

    merged = merge_results([_result(rf=[0], lzn=[0]), _result(rf=[2, 1], variant=[0])], ["a.json", "b.json"])
    assert {m: [r["seed"] for r in runs] for m, runs in merged["runs"].items()} == {
        "rf": [0, 1, 2], "lzn": [0], "variant": [0],
    }  # fmt: skip
    assert merged["merged_from"] == ["a.json", "b.json"] and merged["steps"] == 400
    with pytest.raises(ValueError, match="'rf' already has seed"):
        merge_results([_result(rf=[0, 1]), _result(rf=[1])], ["a.json", "b.json"])
    with pytest.raises(ValueError, match="steps 800 differs"):
        merge_results([_result(rf=[0]), _result(steps=800, rf=[1])], ["a.json", "b.json"])


def test_plot_curves_draws_log_scale_and_prints_the_points(tmp_path: Path, monkeypatch, capsys) -> None:
    import plot_curves
    from PIL import Image

    csv_path = tmp_path / "metrics.csv"
    csv_path.write_text("epoch,step,train/health/grad_norm/image.encoder,val/zone_acc\n"
                        "0,24,0.5,\n0,49,,0.9\n1,74,20.0,\n")  # fmt: skip
    out = tmp_path / "g.png"
    metric = "train/health/grad_norm/image.encoder"
    argv = ["plot_curves.py", f"cut={csv_path}", "--metric", metric, "--log-y", "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    plot_curves.main()
    printed = capsys.readouterr().out
    assert "| cut | 25 | 0.5000 |" in printed and "| cut | 75 | 20.0000 |" in printed  # steps 1-based
    assert "| cut | 50 |" not in printed  # the row without the metric is skipped
    assert Image.open(out).size[0] > 100

    monkeypatch.setattr(sys, "argv", ["plot_curves.py", f"acc={csv_path}::val/zone_acc", "--out", str(out)])
    plot_curves.main()  # a run's own metric after "::"
    assert "| acc | 50 | 0.9000 |" in capsys.readouterr().out

    monkeypatch.setattr(sys, "argv", [*argv[:3], "train/nothing", "--out", str(out)])
    with pytest.raises(SystemExit, match="has no 'train/nothing' values"):
        plot_curves.main()


def test_table_names_the_seeds_of_a_variant_run_on_fewer_of_them() -> None:
    from quality_tables import markdown_table

    run = {"n_test": 10, "fit_seconds": 1.0}
    result = {
        "part": "joint",
        "runs": {
            "LZN joint (recipe)": [
                {"seed": s, "test_accuracy": a, **run} for s, a in ((0, 0.9), (1, 0.8), (2, 0.85))
            ],
            "LZN joint (x=1)": [{"seed": 0, "test_accuracy": 0.7, **run}],
            "LZN joint (x=2)": [{"seed": s, "test_accuracy": 0.6, **run} for s in (0, 1)],
            "supervised CE, same encoder": [],  # listed, but no run finished
        },
    }
    table = markdown_table(result)
    assert "| method (3 seeds) |" in table
    assert "| supervised CE, same encoder (no finished run) | – | – |" in table
    assert "| LZN joint (recipe) | 85.00 ± 4.08 |" in table
    assert "| LZN joint (x=1) (seed 0 only) | 70.00 |" in table
    assert "| LZN joint (x=2) (seeds 0, 1 only) | 60.00 ± 0.00 |" in table
    assert "Per seed" not in table  # the JSON keeps them; results.md shows mean ± std
    listed = markdown_table(result, per_seed_values=True)
    assert listed.startswith(table)
    assert "- LZN joint (recipe), test accuracy (%): 90.00, 80.00, 85.00" in listed


def test_plot_sweep_reads_each_runs_value_at_the_asked_step(tmp_path: Path, monkeypatch, capsys) -> None:
    import plot_sweep
    from PIL import Image

    runs = {}
    for field, (early, late) in {64: (0.80, 0.90), 128: (0.85, 0.95)}.items():
        runs[field] = tmp_path / f"b{field}.csv"
        runs[field].write_text(f"epoch,step,zone_acc\n0,399,{early}\n1,799,{late}\n")
    out = tmp_path / "sweep.png"
    pairs = [f"{f}={p}" for f, p in runs.items()]
    argv = ["plot_sweep.py", "--series", "800 steps", *pairs, "--series", "400 steps", *pairs,
            "--at-step", "400", "--xlabel", "field size", "--log-x", "--out", str(out)]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    plot_sweep.main()
    printed = capsys.readouterr().out
    assert "| 800 steps | 64 | 800 | 0.9000 |" in printed and "| 800 steps | 128 | 800 | 0.9500 |" in printed
    assert "| 400 steps | 64 | 400 | 0.8000 |" in printed and "| 400 steps | 128 | 400 | 0.8500 |" in printed
    assert Image.open(out).size[0] > 100

    monkeypatch.setattr(sys, "argv", [*argv[:4], "--at-step", "600", *argv[-5:]])
    with pytest.raises(SystemExit, match=r"no 'zone_acc' value at step 600; it has steps \[400, 800\]"):
        plot_sweep.main()
    monkeypatch.setattr(
        sys, "argv", ["plot_sweep.py", "--series", "no pairs", "--xlabel", "x", "--out", str(out)]
    )
    with pytest.raises(SystemExit):
        plot_sweep.main()
    assert "needs X=PATH pairs" in capsys.readouterr().err


def test_classification_modes_measures_the_asked_contexts_on_the_recipes_data(tmp_path: Path) -> None:
    import classification_modes
    from tiny_lzn import train_tiny

    data_args = {"num_samples": 48, "num_test_samples": 24, "num_classes": 3, "image_shape": [1, 8, 8]}
    overrides = ["--data=SyntheticDataModule", *(f"--data.{k}={v}" for k, v in data_args.items())]
    data = classification_modes.datamodule(RECIPE, overrides)
    assert type(data).__name__ == "SyntheticDataModule"  # from the recipe's class_path, not hard-wired digits
    model, _ = train_tiny(tmp_path)
    result = classification_modes.measure(
        model, data, seeds=2, fields=("all", 8), banks=(8, "all"), noises=(0.0,)
    )
    rows = result["rows"]
    data.setup("fit")
    n_train = len(data.train_dataset)
    assert [(r["context"], r["field"], r["noise"]) for r in rows] == [
        ("batch", 24, 0.0), ("batch", 8, 0.0), ("bank", 8, 0.0), ("bank", n_train, 0.0)]  # fmt: skip
    assert all(0.0 <= r["acc_mean"] <= 1.0 and r["seeds"] == 2 for r in rows)
    # a bank context labels an image whatever its batch-mates; a whole-test-set field is one field either way
    assert [r["stable_under_reshuffle"] for r in rows if r["context"] == "bank"] == [1.0, 1.0]

    train_rows = classification_modes.measure(
        model, data, 1, fields=(), banks=("all",), noises=(0.0,), split="train"
    )
    assert [(r["context"], r["field"]) for r in train_rows["rows"]] == [("bank", n_train)]


def test_log_window_averages_a_step_window_per_run_and_per_group(tmp_path: Path, monkeypatch, capsys) -> None:
    import log_window

    runs = []
    for name, values in (("a0", "1.0,3.0,100.0"), ("a1", "2.0,4.0,100.0"), ("b0", "5.0,5.0,5.0")):
        path = tmp_path / f"{name}.csv"
        v = values.split(",")
        # logged at steps 24, 49, 74 (1-based 25, 50, 75); one row without the metric (a validation row)
        path.write_text(
            f"epoch,step,train/grad_norm,val/x\n0,24,{v[0]},\n0,49,{v[1]},\n0,49,,0.5\n0,74,{v[2]},\n"
        )
        runs.append(path)
    argv = ["log_window.py", "--steps", "25:50", "--metric", "train/grad_norm", "--groups",
            f"a, seed 0={runs[0]}", f"a, seed 1={runs[1]}", f"b, seed 0={runs[2]}"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    log_window.main()
    printed = capsys.readouterr().out
    # Step 75's 100.0 is outside the window; the validation row is skipped.
    assert "| a, seed 0 | 2 | 2 |" in printed and "| a, seed 1 | 3 | 2 |" in printed
    assert "| **a, mean of 2 runs** | 2.5 | |" in printed
    assert "b, mean" not in printed  # a group of one run gets no group row

    monkeypatch.setattr(sys, "argv", [*argv[:2], "80:90", *argv[3:]])
    with pytest.raises(SystemExit, match=r"no 'train/grad_norm' values at steps 80\.\.90"):
        log_window.main()
    monkeypatch.setattr(sys, "argv", [*argv[:2], "25-50", *argv[3:]])
    with pytest.raises(SystemExit, match="expected A:B"):
        log_window.main()


def test_repr_table_has_a_row_per_feature_set_and_the_raw_pixel_baseline() -> None:
    from quality_tables import markdown_table

    def run(seed: int, anchors: float, trunk: float) -> dict:
        return {"seed": seed, "linear_probe": anchors, "knn": anchors - 0.1, "linear_probe_trunk": trunk,
                "knn_trunk": trunk - 0.1, "fit_seconds": 10.0}  # fmt: skip

    result = {
        "part": "repr",
        "raw_pixels_linear_probe": 0.8,
        "raw_pixels_knn": 0.81,
        "runs": {"LZN (recipe)": [run(0, 0.9, 0.7), run(1, 0.8, 0.5)], "random": [run(0, 0.6, 0.3)]},
    }
    lines = markdown_table(result).splitlines()
    assert (
        lines[0] == "| method (2 seeds) | linear probe (%) | 20-NN (%) | fit s/run |"
    )  # raw pixels: no seed
    assert lines[2] == "| raw pixels (no encoder) | 80.00 | 81.00 | 0 |"
    assert lines[3] == "| LZN (recipe), anchors | 85.00 ± 5.00 | 75.00 ± 5.00 | 10 |"
    assert lines[4] == "| LZN (recipe), pre-head | 60.00 ± 10.00 | 50.00 ± 10.00 | 10 |"
    assert lines[5] == "| random, anchors (seed 0 only) | 60.00 | 50.00 | 10 |"
    assert lines[6] == "| random, pre-head (seed 0 only) | 30.00 | 20.00 | 10 |"


DIGITS_REPR = Path(__file__).parents[2] / "recipes" / "digits_repr.yaml"


def _weights_score(model, name: str, seed: int) -> dict:
    """A scorer that sees the weights a repr score sees (EMA, eval mode): their sum and norm, and the mode."""
    import torch

    with model.inference():
        weights = torch.cat([p.double().flatten() for p in model.modalities.parameters()])
        training = model.training
    return {"sum": float(weights.sum()), "norm": float(weights.norm()), "training": training}


def test_score_at_scores_the_fit_at_its_steps_as_the_shorter_fits_end(tmp_path: Path) -> None:
    import argparse
    import json

    from quality import new_result, run_methods

    recipe, methods = Recipe(DIGITS_REPR, ["--data.init_args.batch_size=32"]), {"LZN (recipe)": []}

    def benchmark(steps: int, score_at: list[int] | None) -> dict:
        out = tmp_path / f"{steps}.json"
        args = argparse.Namespace(score_at=score_at, log=False, root=tmp_path / "runs", out_json=out)
        result = new_result("repr", DIGITS_REPR, steps, 0.0, _weights_score, methods)
        run_methods(recipe, methods, range(1), _weights_score, result, args, steps)
        on_disk = json.loads(out.read_text())
        assert "in_progress" not in on_disk  # the run finished: its points moved into it
        (run,) = on_disk["runs"]["LZN (recipe)"]
        return run

    curve = benchmark(4, [2])
    assert sorted(curve["at_steps"], key=int) == ["2", "4"]
    assert curve["at_steps"]["4"]["sum"] == curve["sum"]  # the last point is the fit's own score
    assert curve["at_steps"]["2"]["training"] is False  # scored in eval mode, EMA weights ...
    assert curve["at_steps"]["2"]["norm"] != curve["norm"]  # ... of the model at step 2, not the end
    short = benchmark(2, None)
    assert "at_steps" not in short
    # The model at step 2 of a 4-step fit is the model a 2-step fit ends with (constant rate after warm-up,
    # per-step seeding, scoring under a forked RNG), to the last bit.
    assert (curve["at_steps"]["2"]["sum"], curve["at_steps"]["2"]["norm"]) == (short["sum"], short["norm"])


BAD_SCORE_AT = [["--part", "gen", "--score-at", "2"], ["--part", "repr", "--score-at", "0"]]


@pytest.mark.parametrize("argv", BAD_SCORE_AT)
def test_score_at_refuses_other_parts_and_steps_outside_the_fit(argv, monkeypatch, capsys) -> None:
    import quality

    cmd = ["quality.py", "--recipe", str(DIGITS_REPR), "--steps", "4", "--out-json", "x.json", *argv]
    monkeypatch.setattr(sys, "argv", cmd)
    with pytest.raises(SystemExit):
        quality.main()
    assert "--score-at" in capsys.readouterr().err


def test_steps_table_has_a_column_per_scored_step() -> None:
    from quality_tables import steps_table

    def point(anchors: float) -> dict:
        return {"linear_probe": anchors, "knn": anchors - 0.1, "linear_probe_trunk": anchors - 0.2,
                "knn_trunk": anchors - 0.3}  # fmt: skip

    curve = {"seed": 0, **point(0.9), "fit_seconds": 1.0, "at_steps": {"600": point(0.8), "1200": point(0.9)}}
    result = {"part": "repr", "runs": {"LZN (recipe)": [curve], "random": [{"seed": 0, **point(0.5)}]}}
    assert steps_table(result).splitlines() == [
        "| method (1 seed), linear probe / 20-NN (%) | step 600 | step 1200 |",
        "|---|---:|---:|",
        "| LZN (recipe), anchors | 80.00 / 70.00 | 90.00 / 80.00 |",
        "| LZN (recipe), pre-head | 60.00 / 50.00 | 70.00 / 60.00 |",
    ]
    assert steps_table({"part": "repr", "runs": {"random": [{"seed": 0, **point(0.5)}]}}) is None


def test_plot_steps_draws_each_curve_and_the_untrained_references(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    import json

    import plot_steps
    from PIL import Image

    def point(v: float) -> dict:
        return {"linear_probe": v, "knn": v - 0.1}

    lzn = {"seed": 0, **point(0.8), "fit_seconds": 9.0, "at_steps": {"600": point(0.7), "1200": point(0.8)}}
    curve = tmp_path / "curve.json"
    curve.write_text(json.dumps({"part": "repr", "recipe": "r.yaml", "raw_pixels_linear_probe": 0.85,
                                 "raw_pixels_knn": 0.86, "runs": {"LZN": [lzn]}}))  # fmt: skip
    plain = tmp_path / "plain.json"
    random_init = {"seed": 0, **point(0.75), "fit_seconds": 0.0}
    plain.write_text(
        json.dumps({"part": "repr", "runs": {"random": [random_init], "LZN": [{**lzn, "seed": 1}]}})
    )
    out = tmp_path / "steps.png"
    argv = ["plot_steps.py", str(curve), "--also", str(plain), "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    plot_steps.main()
    printed = capsys.readouterr().out
    assert "linear probe, anchors (%), LZN: 600: 70.00, 1200: 80.00" in printed
    assert "20-NN, anchors (%), raw pixels: 86.00" in printed
    assert "linear probe, anchors (%), random: 75.00" in printed  # untrained methods of --also only
    assert printed.count("linear probe, anchors (%), LZN") == 1
    assert Image.open(out).size[0] > 100
    monkeypatch.setattr(sys, "argv", ["plot_steps.py", str(plain), "--out", str(out)])
    plain.write_text(json.dumps({"part": "repr", "recipe": "r.yaml", "runs": {"random": [random_init]}}))
    with pytest.raises(SystemExit, match="no run has at_steps"):
        plot_steps.main()
