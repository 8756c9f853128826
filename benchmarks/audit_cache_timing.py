"""Seconds of `unlearnkit audit RUN --reference REF` with a cold and then warm caches.

Usage: python benchmarks/audit_cache_timing.py RUN REF [CACHE_DIR]

Three audits into one fresh cache folder (numbers only: no plots, no files):

* cold: everything computed (forward passes and every attack of the three models);
* warm, own forwards: the original's and the reference's results (and logits) come from the caches,
  the unlearned model's logits are deleted first, so its forward passes and attacks (its
  MIA-efficacy SVC above all) are computed: a bench's next method audit, or the audit of a run
  that `unlearnkit forget` made on another machine;
* warm: the unlearned model's logits cached too, as `unlearnkit forget` leaves them: only its
  attacks are computed.

Prints wall and CPU (user + sys of this process) seconds, the per-step timings of each, and
whether the three audits' numbers are identical.
"""

import os
import sys
import tempfile
import time

RUN, REF = sys.argv[1], sys.argv[2]
os.environ["UNLEARNKIT_CACHE"] = sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="audit-cache-")
os.environ.setdefault("UNLEARNKIT_QUIET", "1")

from unlearnkit.audit import audit  # noqa: E402
from unlearnkit.audit.pipeline.caches import _logits_cache  # noqa: E402
from unlearnkit.audit.pipeline.common import PARTS  # noqa: E402
from unlearnkit.training.pipeline import load_run  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def drop_own_logits() -> None:
    lr = load_run(RUN)
    for part in PARTS:
        path = _logits_cache(lr, part, lr.split.part(part).ids)
        if path is not None:
            path.unlink(missing_ok=True)


numbers = []
for label in ("cold", "warm, own forwards", "warm"):
    if label == "warm, own forwards":
        drop_own_logits()
    w, c = time.perf_counter(), cpu()
    result = audit(RUN, reference=REF, write=False, plots=False)  # the numbers; plots and report cost the same either way
    w, c = time.perf_counter() - w, cpu() - c
    d = result.to_dict()
    numbers.append({k: v for k, v in d.items() if k not in ("timings", "created")})
    steps = {k: v for k, v in result.timings.items() if v >= 0.05}
    print(f"{label}: {w:.1f} s wall, {c:.1f} s CPU; steps over 0.05 s: {steps}", flush=True)
print("numbers identical in all three:", all(n == numbers[0] for n in numbers))
