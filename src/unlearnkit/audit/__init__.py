"""Audit an unlearned model: accuracy, membership-inference attacks, closeness to retraining.

The math lives in small numpy modules (``scores``, ``attacks``, ``lira``, ``rmia``, ``epsilon``,
``divergence``); the pipeline that runs models over run directories and writes the report is
``pipeline`` (plus ``refs`` for the reference-model pool, ``report`` and ``plots``).

Public API (imported lazily, so ``import unlearnkit.audit.scores`` stays numpy-only)::

    from unlearnkit.audit import audit, compare, forgetting_score, build_refs, load_refs
    result = audit("runs/finetune", reference="runs/retrain")   # writes audit.json + report.{md,html}
    result.to_dict()["against_retraining"]["avg_gap"]
"""

from __future__ import annotations

from typing import Any

__all__ = ["AuditResult", "audit", "compare", "forgetting_score", "build_refs", "load_refs", "RefPool"]

_LAZY = {
    "AuditResult": "pipeline", "audit": "pipeline", "compare": "pipeline", "forgetting_score": "pipeline",
    "build_refs": "refs", "load_refs": "refs", "RefPool": "refs",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib  # noqa: PLC0415

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(list(globals()) + list(_LAZY))
