"""Seconds of a full audit against a tuning trial's audit (`unlearnkit tune --trial-retain auto`).

Usage: python benchmarks/trial_retain_timing.py RUN [REPEATS]

RUN is an unlearned run (e.g. `unlearnkit forget BASE --method neggrad --forget random:0.1`).
Both audits compute everything from scratch (logit and result caches off, no reference, no
original, numbers only), so the difference is what the retain subsample saves:

* full: RA on every retain sample; MIA-efficacy on its |test| members;
* auto (`retain_limit=0`): RA on exactly MIA-efficacy's members, so the retain forward covers
  |test| samples instead of |retain|.

Prints wall and CPU (user + sys of this process) seconds per audit and its largest steps, and
checks that UA, TA and MIA-efficacy agree (they must: only RA's sample changes).
"""

import os
import sys
import time

os.environ["UNLEARNKIT_LOGIT_CACHE"] = "0"
os.environ["UNLEARNKIT_RESULT_CACHE"] = "0"
os.environ.setdefault("UNLEARNKIT_QUIET", "1")

from unlearnkit.audit import audit  # noqa: E402

RUN = sys.argv[1]
REPEATS = int(sys.argv[2]) if len(sys.argv) > 2 else 1


def cpu() -> float:
    t = os.times()
    return t.user + t.system


results = {}
for repeat in range(REPEATS):
    for label, limit in (("full", None), ("auto", 0)):
        w, c = time.perf_counter(), cpu()
        result = audit(RUN, original=False, write=False, plots=False, retain_limit=limit)
        w, c = time.perf_counter() - w, cpu() - c
        steps = {k: round(v, 1) for k, v in sorted(result.timings.items(), key=lambda kv: -kv[1]) if v >= 0.5}
        print(f"{label} (repeat {repeat}): {w:.1f} s wall, {c:.1f} s CPU; steps over 0.5 s: {steps}", flush=True)
        results[label] = result
full, auto = results["full"], results["auto"]
print("accuracy full:", full.accuracy["unlearned"])
print("accuracy auto:", auto.accuracy["unlearned"])
same = (full.mia_efficacy == auto.mia_efficacy
        and all(full.accuracy["unlearned"][k] == auto.accuracy["unlearned"][k] for k in ("ua", "test_acc")))
print("UA, TA and MIA-efficacy identical:", same)
