"""Hyperparameter search against retrained references, and the tuned defaults that ship.

- `tune(...)` (`unlearnkit tune`): an Optuna search (seeded TPE, median pruning between tuning
  forget sets, SQLite storage so a killed search resumes and processes share it) for one method
  and one scenario kind, scored by the audit's average gap to retraining under a cost budget and
  an RA/TA margin; writes best.json, trials.csv and report.{md,html} into its folder.
- `unlearnkit.tuning.defaults.resolve(method, config, forget_spec)`: the tuned entry that applies
  to a run (same preset and recipe hash, same scenario kind), or the paper defaults, with its source.

Tuning seeds start at 100 (`scenarios.FIRST_TUNING_SEED`): the bench and leaderboards evaluate on
seeds 0, 1, 2, ..., so a default is never scored on the forget sets it was tuned on.
"""

from __future__ import annotations

from typing import Any

__all__ = ["tune", "resolve"]


def __getattr__(name: str) -> Any:
    # Lazy: `forget_run` imports the defaults lookup, which must not pull in Optuna or matplotlib.
    if name == "tune":
        from unlearnkit.tuning.search import tune  # noqa: PLC0415

        return tune
    if name == "resolve":
        from unlearnkit.tuning.defaults import resolve  # noqa: PLC0415

        return resolve
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
