"""The end-to-end pipeline the README's first command runs: train -> forget -> audit."""

from __future__ import annotations

import json
import math
from pathlib import Path

from unlearnkit.tables import console, print_table
from unlearnkit.config import RunConfig, flatten, resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run, list_methods
from unlearnkit.training.pipeline import train, with_absolute_paths


# Forgetting a whole class: a model retrained without it cannot recognise it (UA ~100%), while
# the trained model knows it perfectly (UA 0), so every method's distance to retraining shows.
# (On digits a random 10% is a poor demo: the model generalises so well that retraining also
# classifies the forgotten digits correctly, and UA is ~0 for every method and for retraining.)
DEFAULT_FORGET = "class:3"


def run_demo(out: Path, *, preset: str = "digits", data: str | None = None, forget: str = DEFAULT_FORGET,
             methods: str = "all") -> Path:
    """Train the preset, unlearn `forget` with each method (retrain first: the reference), audit all.

    Every unlearned run is audited against the retrained one (its own report.{md,html}); the
    comparison of all of them goes to ``out/report``. Returns the path of the comparison's HTML.
    Re-running with the same `out` reuses finished runs and audits, so an interrupted demo continues;
    a step is reused only if its run directory records the same job (recipe; method, forget set,
    hyperparameters and parent model hash), so a demo of another preset or forget request in the
    same `out` is refused with one line asking for a new --out, never shown under the new title.
    """
    from unlearnkit.audit import audit, compare  # noqa: PLC0415  (matplotlib/sklearn: only when auditing)

    chosen = [m for m in list_methods() if m != "retrain"] if methods == "all" else [m.strip() for m in methods.split(",")]
    unknown = [m for m in chosen if m not in list_methods()]
    if unknown:
        raise UnlearnkitError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(list_methods())}")
    cfg = resolve_config(preset, {"data.source": data} if data else None)
    base = out / "original"
    if (base / "config.json").is_file():
        _check_same_recipe(base, cfg)
    if not (base / "metrics.json").is_file():
        train(cfg, base, resume=(base / "config.json").is_file())
    reference = out / "retrain"
    runs = []
    for method in ["retrain"] + [m for m in chosen if m != "retrain"]:
        target = out / method
        forget_run(base, method, forget, target, reuse=True)  # returns at once when this job is finished there
        if not (target / "audit.json").is_file():
            # The retrained run is audited too (against nothing): its MIA numbers are what "forgotten" looks like.
            audit(target, reference=None if method == "retrain" else reference, original=base)
        runs.append(target)
    result = compare(runs, out=out / "report")
    rows = [[r.get("run"), _num(r.get("UA")), _num(r.get("RA")), _num(r.get("TA")), _num(r.get("MIA-efficacy")),
             _num(r.get("avg gap")), _num(r.get("unlearn s"), 2)] for r in result["rows"]]
    print_table(f"{preset}: forgetting {forget} (gap = average |difference| to retraining over UA, RA, TA, MIA)",
                ["run", "UA %", "RA %", "TA %", "MIA-efficacy %", "avg gap", "seconds"], rows)
    console.print("Good unlearning = every column close to retrain's row: retrain's UA is the target (not 0, not 100), "
                  "avg gap 0 = indistinguishable from retraining.")
    return Path(result["files"]["report_html"])


def _check_same_recipe(base: Path, cfg) -> None:
    """A demo folder's original run is reused only for the same preset, data and settings."""
    saved = flatten(RunConfig.from_dict(json.loads((base / "config.json").read_text())))
    wanted = flatten(with_absolute_paths(cfg))
    for key in wanted:
        if not key.startswith("runtime.") and saved.get(key) != wanted[key]:
            raise UnlearnkitError(
                f"demo: {base} was trained with another recipe ({key}: {saved.get(key)!r} there, {wanted[key]!r} now); "
                "choose a new --out for this preset or data"
            )


def _num(v, digits: int = 2):
    return None if v is None or (isinstance(v, float) and math.isnan(v)) else round(float(v), digits)
