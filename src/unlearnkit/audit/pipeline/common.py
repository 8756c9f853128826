"""What every part of the audit pipeline shares: file names, constants, a step timer, JSON conversion."""

from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from unlearnkit.errors import UnlearnkitError

AUDIT_FILE = "audit.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "audit_plots"
# An audit's figures (PLOTS_DIR/NAME.png): the only files a re-audit removes there, so a new figure is listed here.
PLOT_NAMES = ("histograms", "roc", "per_class")
AUDIT_FORMAT = 1
FPRS = (0.01, 0.001)
PARTS = ("retain", "forget", "val", "test")
ROLES = ("original", "unlearned", "retrained")  # column order everywhere
# The original model is context, not the subject: its retain/val outputs are only needed for
# attacks that balance classes anyway, so they are subsampled to keep a CIFAR audit in budget.
ORIGINAL_SUBSAMPLE = {"retain": 5000, "val": 5000, "test": 5000}
# Inference batch on a CPU: ResNet-18 (width 16) on CIFAR-10 ran at 1130 img/s with batches of 256 and
# 660 img/s with 1024 (1 thread; the activations of a 1024 batch overflow the caches). Accelerators use
# the run's eval_batch_size.
CPU_BATCH = 256


# --------------------------------------------------------------------------- small helpers


class _Timer:
    """Seconds per step (summed when a key repeats), and an optional progress bar over the steps."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.bar = None

    def start_bar(self, total: int) -> None:
        from unlearnkit.training.loop import progress  # noqa: PLC0415

        self.bar = progress(None, total=total, desc="audit", unit="step")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def advance(self, steps: int) -> None:
        """Count steps that were not run (their results came from a cache)."""
        if self.bar is not None:
            self.bar.update(steps)

    @contextmanager
    def __call__(self, key: str, steps: int = 1) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set_description_str(f"audit: {key}", refresh=False)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[key] = round(self.t.get(key, 0.0) + time.perf_counter() - t0, 3)
            if self.bar is not None and steps:
                self.bar.update(steps)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf -> None, tuple -> list."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def check_seed(seed: Any) -> None:
    """A seed is a whole number >= 0 (numpy's generators refuse a negative one, and a float would be truncated)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise UnlearnkitError(f"seed must be a whole number >= 0 (command line: --seed), got {seed!r}; pass e.g. 0")


def _seconds(info: dict, metrics: dict) -> float | None:
    for src in (info, metrics):
        v = src.get("unlearn_seconds")
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def _roc_summary(res: dict, keep_curve: bool = True) -> dict:
    """What audit.json keeps of an attacks.roc_metrics result (the curve downsampled to <= 120 points)."""
    out = {
        "auc": res["auc"],
        "tpr_at_fpr": {f"{f:g}": v for f, v in res["tpr_at_fpr"].items()},
        "best_balanced_accuracy": res["best_balanced_accuracy"],
        "n_members": res["n_members"],
        "n_nonmembers": res["n_nonmembers"],
        "min_resolvable_fpr": res["min_resolvable_fpr"],
    }
    if keep_curve:
        fpr, tpr = np.asarray(res["fpr"]), np.asarray(res["tpr"])
        grid = np.unique(np.concatenate([np.logspace(np.log10(res["min_resolvable_fpr"]), 0, 119), [1.0]]))
        idx = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
        out["roc"] = {"fpr": np.round(grid, 6).tolist(), "tpr": np.round(tpr[np.clip(idx, 0, None)], 6).tolist()}
    return out

