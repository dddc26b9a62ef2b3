"""Merge result JSONs of ``benchmarks/quality.py`` (seeds run apart, or a variant run beside the recipe).

    python benchmarks/merge_results.py docs/quality_gen_mnist.json G1.json --out docs/quality_gen_mnist.json

The first JSON gives the run's description (recipe, scorer, machine); every method's runs are concatenated and
sorted by seed. Refused: JSONs of different parts or step counts, and a method with the same seed twice (a
re-run must replace a run on purpose, not be averaged in by accident).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def merge_results(results: list[dict[str, Any]], sources: list[str]) -> dict[str, Any]:
    """One result whose methods hold every input's runs, sorted by seed.

    Raises:
        ValueError: the inputs differ in part or steps, or a method has a seed twice.
    """
    merged = {key: value for key, value in results[0].items() if key != "runs"}
    merged["runs"] = {}
    for result, source in zip(results, sources, strict=True):
        for key in ("part", "steps"):
            if result[key] != merged[key]:
                raise ValueError(
                    f"{source}: {key} {result[key]!r} differs from {sources[0]}'s {merged[key]!r}"
                )
        for method, runs in result["runs"].items():
            kept = merged["runs"].setdefault(method, [])
            twice = {r["seed"] for r in runs} & {r["seed"] for r in kept}
            if twice:
                raise ValueError(f"{source}: {method!r} already has seed(s) {sorted(twice)}")
            kept.extend(runs)
            kept.sort(key=lambda r: r["seed"])
    merged["merged_from"] = [*results[0].get("merged_from", [sources[0]]), *sources[1:]]
    return merged


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "jsons", type=Path, nargs="+", help="quality.py result JSONs, the first one describes the run"
    )
    p.add_argument(
        "--out", type=Path, required=True, help="where the merged JSON goes (may be the first input)"
    )
    args = p.parse_args()
    results = [json.loads(path.read_text()) for path in args.jsons]
    merged = merge_results(results, [str(path) for path in args.jsons])
    args.out.write_text(json.dumps(merged, indent=1))
    print({method: [r["seed"] for r in runs] for method, runs in merged["runs"].items()})


if __name__ == "__main__":
    main()
