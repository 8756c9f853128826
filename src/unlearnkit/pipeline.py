"""The end-to-end pipeline the README's first command runs: train -> forget -> audit."""

from __future__ import annotations

import math
from pathlib import Path

from unlearnkit.cli.tables import print_table
from unlearnkit.config import resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run, list_methods
from unlearnkit.training.pipeline import train


def run_demo(out: Path, *, preset: str = "digits", data: str | None = None, forget: str = "random:0.1",
             methods: str = "all") -> Path:
    """Train the preset, unlearn `forget` with each method (retrain first: the reference), audit all.

    Every unlearned run is audited against the retrained one (its own report.{md,html}); the
    comparison of all of them goes to ``out/report``. Returns the path of the comparison's HTML.
    Re-running with the same `out` reuses finished runs and audits, so an interrupted demo continues.
    """
    from unlearnkit.audit import audit, compare  # noqa: PLC0415  (matplotlib/sklearn: only when auditing)

    chosen = [m for m in list_methods() if m != "retrain"] if methods == "all" else [m.strip() for m in methods.split(",")]
    unknown = [m for m in chosen if m not in list_methods()]
    if unknown:
        raise UnlearnkitError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(list_methods())}")
    cfg = resolve_config(preset, {"data.source": data} if data else None)
    base = out / "original"
    if not (base / "metrics.json").is_file():
        train(cfg, base, resume=(base / "config.json").is_file())
    reference = out / "retrain"
    runs = []
    for method in ["retrain"] + [m for m in chosen if m != "retrain"]:
        target = out / method
        if not (target / "metrics.json").is_file():
            forget_run(base, method, forget, target, resume=target.exists())
        if not (target / "audit.json").is_file():
            # The retrained run is audited too (against nothing): its MIA numbers are what "forgotten" looks like.
            audit(target, reference=None if method == "retrain" else reference, original=base)
        runs.append(target)
    result = compare(runs, out=out / "report")
    rows = [[r.get("run"), _num(r.get("UA")), _num(r.get("RA")), _num(r.get("TA")), _num(r.get("MIA-efficacy")),
             _num(r.get("avg gap")), _num(r.get("unlearn s"), 2)] for r in result["rows"]]
    print_table(f"{preset}: forgetting {forget} (gap = average |difference| to retraining over UA, RA, TA, MIA)",
                ["run", "UA %", "RA %", "TA %", "MIA-efficacy %", "avg gap", "seconds"], rows)
    return Path(result["files"]["report_html"])


def _num(v, digits: int = 2):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)
