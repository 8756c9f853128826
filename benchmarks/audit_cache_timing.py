"""Seconds of `unlearnkit audit RUN --reference REF` with a cold and then a warm cache.

Usage: python benchmarks/audit_cache_timing.py RUN REF [CACHE_DIR]

The first audit computes everything (forward passes, every attack of the three models) into a fresh
cache folder; the second is what a bench's next method audit against the same original and reference
costs once the unlearned model's logits are cached too: the original's and the reference's numbers
come from the result cache, the unlearned model's attacks (its MIA-efficacy SVC above all) are computed.
Prints wall and CPU seconds and the per-step timings of both (numbers only: no plots, no files).
"""

import os
import sys
import tempfile
import time

RUN, REF = sys.argv[1], sys.argv[2]
os.environ["UNLEARNKIT_CACHE"] = sys.argv[3] if len(sys.argv) > 3 else tempfile.mkdtemp(prefix="audit-cache-")
os.environ.setdefault("UNLEARNKIT_QUIET", "1")

import torch  # noqa: E402

from unlearnkit.audit import audit  # noqa: E402

torch.set_num_threads(1)
for label in ("cold", "warm"):
    w, c = time.perf_counter(), time.process_time()
    result = audit(RUN, reference=REF, write=False, plots=False)  # the numbers; plots and report cost the same either way
    w, c = time.perf_counter() - w, time.process_time() - c
    steps = {k: v for k, v in result.timings.items() if v >= 0.05}
    print(f"{label}: {w:.1f} s wall, {c:.1f} s CPU; steps over 0.05 s: {steps}", flush=True)
