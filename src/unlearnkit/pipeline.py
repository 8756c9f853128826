"""The end-to-end pipeline the README's first command runs: train -> forget -> audit."""

from __future__ import annotations

from pathlib import Path

from unlearnkit.cli.tables import print_table
from unlearnkit.config import resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run, list_methods
from unlearnkit.training.pipeline import train


def run_demo(out: Path, *, preset: str = "digits", data: str | None = None, forget: str = "random:0.1",
             methods: str = "all") -> Path:
    """Train the preset, unlearn `forget` with each method (retrain first: the reference), audit all.

    Re-running with the same `out` reuses finished runs, so an interrupted demo continues.
    """
    chosen = [m for m in list_methods() if m != "retrain"] if methods == "all" else [m.strip() for m in methods.split(",")]
    unknown = [m for m in chosen if m not in list_methods()]
    if unknown:
        raise UnlearnkitError(f"unknown method {unknown[0]!r} in --methods; choose from: {', '.join(list_methods())}")
    cfg = resolve_config(preset, {"data.source": data} if data else None)
    base = out / "original"
    if not (base / "metrics.json").is_file():
        train(cfg, base, resume=(base / "config.json").is_file())
    rows = []
    for method in ["retrain"] + [m for m in chosen if m != "retrain"]:
        target = out / method
        if not (target / "metrics.json").is_file():
            forget_run(base, method, forget, target, resume=target.exists())
        from unlearnkit.runs import read_json  # noqa: PLC0415

        m = read_json(target / "metrics.json", "metrics")
        rows.append([method, m.get("retain_acc"), m.get("forget_acc"), m.get("test_acc"),
                     m.get("forget_mean_confidence"), m.get("unlearn_seconds")])
    print_table(f"{preset}: forgetting {forget}", ["method", "retain acc %", "forget acc %", "test acc %",
                                                  "forget confidence", "seconds"], rows)
    return out
