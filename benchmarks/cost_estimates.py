"""Each method's cost estimate against its measured time, for every method run in a bench store.

Usage: python benchmarks/cost_estimates.py BENCH_DIR

The tuner keeps a search inside its budget with `Method.cost` (estimated REE: retain-epoch
equivalents), while a leaderboard reports wall time as a share of retraining. This prints, per
method run whose retrained reference is in the same store, the estimate, the measured REE (its
`unlearn_seconds` over the reference's seconds per epoch) and their ratio: a ratio well above 1
is an estimate that lets a setting through the budget that costs more than 5% of retraining in
wall time. Measured seconds carry the machine's noise (the same setting on two seeds differed by
up to 1.5x on the 2-core box with two lanes), so read a method across rows, not one row.
"""

from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

from unlearnkit.config import TrainConfig
from unlearnkit.methods.base import get_method, make_hparams


def load(store: Path) -> list[dict]:
    runs = []
    for f in sorted(store.glob("*/run.json")):
        r = json.loads(f.read_text())
        if r.get("method") and "unlearn_seconds" in r:
            r["_dir"] = f.parent
            runs.append(r)
    return runs


def main(bench: Path) -> None:
    runs = load(bench / "store")
    retrain = {(r["forget_spec"], r["seed"], r["parent_model_sha256"]): r for r in runs if r["method"] == "retrain"}
    rows = []
    for r in runs:
        ref = retrain.get((r["forget_spec"], r["seed"], r["parent_model_sha256"]))
        if r["method"] == "retrain" or ref is None:
            continue
        cfg = json.loads((r["_dir"] / "config.json").read_text())
        counts = json.loads((r["_dir"] / "split.json").read_text())["counts"]
        recipe = TrainConfig(**{k: v for k, v in cfg["train"].items() if k in TrainConfig.__dataclass_fields__})
        estimate = get_method(r["method"])().cost(make_hparams(r["method"], r["hparams"]), counts, recipe)
        measured = r["unlearn_seconds"] / (ref["unlearn_seconds"] / recipe.epochs)
        rows.append((r["method"], r["forget_spec"], r["seed"], estimate, measured, r["unlearn_seconds"] / ref["unlearn_seconds"]))
    print("| method | forget | seed | estimated REE | measured REE | measured / estimated | time / retrain |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for m, spec, seed, est, meas, share in sorted(rows):
        ratio = f"{meas / est:.2f}" if est else "—"
        print(f"| {m} | {spec} | {seed} | {est:.2f} | {meas:.2f} | {ratio} | {100 * share:.1f}% |")
    print()
    by_method: dict[str, list[float]] = {}
    for m, _, _, est, meas, _ in rows:
        if est:
            by_method.setdefault(m, []).append(meas / est)
    print("| method | runs | median measured / estimated |")
    print("|---|---:|---:|")
    for m, ratios in sorted(by_method.items()):
        print(f"| {m} | {len(ratios)} | {statistics.median(ratios):.2f} |")


if __name__ == "__main__":
    if len(sys.argv) != 2 or not (Path(sys.argv[1]) / "store").is_dir():
        sys.exit("usage: python benchmarks/cost_estimates.py BENCH_DIR  (a folder with store/, e.g. runs/bench)")
    main(Path(sys.argv[1]))
