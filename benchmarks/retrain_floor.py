"""The average gap's noise floor: how far two exact retrainings (other initial seeds, the same
original, split and forget set) lie from each other, beside the methods on the same forget set.

Each model is audited once against the first retraining (its UA, RA, TA and MIA-efficacy are its
own: they do not depend on the reference), then every pair's average gap is the mean of the four
absolute differences — the audit's `avg_gap`, which the script checks against the audit's own
value for every model audited against the first retraining.

    python benchmarks/retrain_floor.py OUT RETRAIN_RUN RETRAIN_RUN [RETRAIN_RUN ...] [--methods RUN ...]

OUT receives floor.json and floor.md; the runs get their audit.json (audit with --no-plots).
`unlearnkit bench --retrain-floor` gives the same row inside a leaderboard.
"""

from __future__ import annotations

import argparse
import itertools
import json
import math
from pathlib import Path

import numpy as np

from unlearnkit.audit import audit
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import atomic_write_text

KEYS = ("UA", "RA", "TA", "MIA")


def gap(a: dict, b: dict) -> float:
    return float(np.mean([abs(a[k] - b[k]) for k in KEYS]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("out")
    p.add_argument("retrains", nargs="+", help="retrain runs of one forget set (different --seed)")
    p.add_argument("--methods", nargs="*", default=[], help="method runs of the same forget set")
    args = p.parse_args()
    if len(args.retrains) < 2:
        raise SystemExit("retrain_floor.py: give at least two retrain runs of the same forget set")
    first = args.retrains[0]
    summaries = {}
    for run in [*args.retrains, *args.methods]:
        result = audit(run, reference=first, plots=False)
        summaries[run] = {k: result.summary[k] for k in (*KEYS, "avg_gap")}
        # Our pair arithmetic must be the audit's own avg_gap for the pairs the audit computed.
        if not math.isclose(gap(summaries[run], summaries[first]), result.summary["avg_gap"], abs_tol=1e-9):
            raise SystemExit(f"retrain_floor.py: the pair gap of {run} differs from its audit's avg_gap "
                             f"{result.summary['avg_gap']}; the audit's definition changed, update gap()")
    floor = {f"{Path(a).name} vs {Path(b).name}": gap(summaries[a], summaries[b])
             for a, b in itertools.combinations(args.retrains, 2)}
    methods = {Path(m).name: {Path(r).name: gap(summaries[m], summaries[r]) for r in args.retrains} for m in args.methods}
    record = {"models": {Path(r).name: s for r, s in summaries.items()}, "retrain_pairs": floor,
              "floor_mean": float(np.mean(list(floor.values()))), "methods": methods}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "floor.json", json.dumps(record, indent=2) + "\n")
    lines = ["| model | UA | RA | TA | MIA-eff. |", "|---|---:|---:|---:|---:|"]
    lines += [f"| {Path(r).name} | " + " | ".join(f"{s[k]:.2f}" for k in KEYS) + " |" for r, s in summaries.items()]
    lines += ["", "| pair | avg gap |", "|---|---:|"] + [f"| {k} | {v:.2f} |" for k, v in floor.items()]
    lines += [f"| mean (the floor) | {record['floor_mean']:.2f} |"]
    if methods:
        lines += ["", "| method | " + " | ".join(f"gap to {Path(r).name}" for r in args.retrains) + " | mean |",
                  "|---|" + "---:|" * (len(args.retrains) + 1)]
        lines += [f"| {m} | " + " | ".join(f"{g:.2f}" for g in gs.values()) + f" | {np.mean(list(gs.values())):.2f} |"
                  for m, gs in methods.items()]
    atomic_write_text(out / "floor.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    try:
        main()
    except UnlearnkitError as e:  # a run that is missing, or of another forget set: one line, as the CLI
        raise SystemExit(f"retrain_floor.py: {e}") from None
