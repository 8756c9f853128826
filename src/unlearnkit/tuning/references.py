"""The tuning forget sets' originals and retrained references, built (once) in a bench store.

Each tuning seed gets its own original model and, for its forget set, its own retrained model:
the same content-keyed jobs as `unlearnkit bench` (bench/plan.py), so a second search — of
another method, or resumed — finds them in the store and trains nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from unlearnkit.bench.executors import run_local, run_ray
from unlearnkit.bench.plan import Plan, build_plan
from unlearnkit.config import RunConfig
from unlearnkit.errors import UnlearnkitError


@dataclass(frozen=True)
class Reference:
    seed: int
    forget: str  # the forget spec of this tuning set
    original: str  # run directories in the store (absolute)
    retrain: str
    sizes: dict[str, int]  # retain / forget / val sample counts (for cost estimates)


def tuning_plan(cfg: RunConfig, fingerprint: str, pairs: list[tuple[int, str]], store: Path, *,
                methods: list[str] | None = None, hparams: dict[str, dict[str, Any]] | None = None,
                num_cpus: int | None = None) -> Plan:
    """One bench plan over (seed, forget spec) pairs (the bench's grid is seeds x scenarios;
    here each seed has its own forget set).

    Jobs get the bench's resources (num_cpus None: every CPU of this process, or one per GPU):
    a job sets torch's thread count to its num_cpus, so 1 here trained the references on one
    core of a 2-core machine and left the trials after them single-threaded too.
    """
    from unlearnkit.training.runtime import available_cpus, cuda_available  # noqa: PLC0415

    gpus = 1.0 if cuda_available() else 0.0
    if num_cpus is None:
        num_cpus = 1 if gpus else available_cpus()
    plan = Plan(store=store, config={"recipe": cfg.recipe(), "fingerprint": fingerprint, "methods": methods or [],
                                     "scenarios": sorted({s for _, s in pairs}), "seeds": [s for s, _ in pairs]})
    for seed, spec in pairs:
        part = build_plan(cfg, fingerprint, methods=methods or [], scenarios=[spec], seeds=[seed], store=store,
                          hparams=hparams, num_cpus=num_cpus, num_gpus=gpus)
        for job in part.jobs.values():
            if not (job.kind == "audit" and job.spec["method"] == "retrain"):  # the reference against itself: not needed
                plan.add(job)
    return plan


def execute(plan: Plan, data: str, executor: str = "local", ray_address: str | None = None) -> dict[str, dict[str, Any]]:
    results = run_ray(plan, data=data, address=ray_address) if executor == "ray" else run_local(plan, data=data)
    for r in results.values():
        if r["status"] == "failed":
            raise UnlearnkitError(f"tuning job {r['id']} failed; see its log {r['log']}")
    return results


def build_references(cfg: RunConfig, fingerprint: str, pairs: list[tuple[int, str]], sizes: list[dict[str, int]],
                     store: Path, executor: str = "local", ray_address: str | None = None) -> list[Reference]:
    plan = tuning_plan(cfg, fingerprint, pairs, store)
    execute(plan, cfg.data.source, executor, ray_address)
    out = []
    for (seed, spec), n in zip(pairs, sizes):
        original = plan.path(plan.jobs[f"original/seed{seed}"]).resolve()
        retrain = plan.path(plan.jobs[f"retrain/{spec}/retrain/seed{seed}"]).resolve()
        out.append(Reference(seed, spec, str(original), str(retrain), n))
    return out
