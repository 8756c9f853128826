"""The bench as a graph of jobs, each stored once under a content key.

original (per seed) -> retrain (per seed x scenario) -> each method -> audit.
A job's key hashes everything that determines its output (dataset fingerprint, recipe,
seed, parent's key, method, hyperparameters, forget spec), so a second bench — or a crashed
one run again — finds finished jobs in the store and does only the rest.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.config import RunConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import get_method, hparam_defaults, list_methods, make_hparams
from unlearnkit.tuning.defaults import resolve as resolve_defaults

# Rough cost of each job in units of one original training run: used for the plan's estimate.
# Approximate methods target <= 10% of a retrain; an audit is a few forward passes.
RELATIVE_COST = {"original": 1.0, "retrain": 0.9, "method": 0.08, "audit": 0.05}

# The leaderboard row of `--retrain-floor`: a second exact retraining (another initial seed, the
# same original, split and forget set) audited against the reference. Its average gap is what a
# perfect method scores on this recipe — the gap's noise floor — so a target below it cannot be met.
FLOOR_ROW = "retrain (other seed)"


@dataclass(frozen=True)
class Job:
    id: str  # human-readable: "method/random:0.1/finetune/seed1"
    kind: str  # original | retrain | method | audit
    key: str  # content key: the store folder name
    spec: dict[str, Any]  # everything the runner needs (JSON-serialisable)
    deps: tuple[str, ...] = ()  # ids of jobs whose outputs this one reads
    num_cpus: int = 1
    num_gpus: float = 0.0

    @property
    def cost(self) -> float:
        return RELATIVE_COST[self.kind]


@dataclass
class Plan:
    jobs: dict[str, Job] = field(default_factory=dict)
    store: Path = Path("store")
    config: dict[str, Any] = field(default_factory=dict)

    def add(self, job: Job) -> Job:
        self.jobs[job.id] = job
        return job

    def path(self, job: Job) -> Path:
        return self.store / f"{job.kind}-{job.key}"

    def order(self) -> list[Job]:
        """Jobs in dependency order (dependencies always come first)."""
        seen: dict[str, Job] = {}

        def visit(job: Job) -> None:
            if job.id in seen:
                return
            for d in job.deps:
                visit(self.jobs[d])
            seen[job.id] = job

        for job in self.jobs.values():
            visit(job)
        return list(seen.values())


def content_key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def parse_methods(text: str) -> list[str]:
    """`--methods` of bench: `all` or comma-separated names; repeats are kept once (they are the same jobs).

    retrain is always run (it is the reference), so it is dropped here; a list with nothing else is an error.
    """
    names = [m for m in list_methods() if m != "retrain"] if text.strip() == "all" else [t.strip() for t in text.split(",") if t.strip()]
    for name in names:
        get_method(name)  # one-line error listing valid methods
    names = list(dict.fromkeys(n for n in names if n != "retrain"))
    if not names:
        raise UnlearnkitError(f"--methods {text!r} names no method to compare with retraining (which every bench runs); "
                              "give one or more, e.g. --methods finetune,scrub, or --methods all")
    return names


def parse_scenarios(text: str) -> list[str]:
    """`--forget` of bench: scenarios separated by commas.

    A comma also separates the classes of one scenario (`class:3,5`, `subclass:baby,boy:0.5`), so a
    new scenario starts only where a forget-spec kind follows the comma (`random:0.1,class:3,5` is
    two scenarios). Repeated scenarios are kept once: they would be the same jobs.
    """
    from unlearnkit.data.splits import FORGET_SPECS  # noqa: PLC0415

    kinds = "|".join(re.escape(k) for k in FORGET_SPECS)
    parts = re.split(rf",(?=\s*(?:{kinds}):)", text)
    return list(dict.fromkeys(p.strip() for p in parts if p.strip()))


def build_plan(
    cfg: RunConfig,
    fingerprint: str,
    *,
    methods: list[str],
    scenarios: list[str],
    seeds: int | list[int],
    store: Path,
    hparams: dict[str, dict[str, Any]] | None = None,
    score_models: int = 0,
    retrain_floor: bool = False,
    num_cpus: int = 1,
    num_gpus: float = 0.0,
) -> Plan:
    """Every job of the grid. `score_models` >= 2 adds, for seed 0, that many method/retrain
    runs with different method seeds on the same original and forget set — the N unlearned
    and N retrained models that the competition's per-example epsilon score compares.
    `retrain_floor` adds, for every seed and scenario, a retrain with method seed 1 (the same job
    as the score's first replica) audited against the reference: the `FLOOR_ROW` of the leaderboard."""
    seed_list = list(range(seeds)) if isinstance(seeds, int) else list(seeds)  # a list: e.g. the tuner's seeds 100, 101, ...
    if not seed_list:
        raise UnlearnkitError(f"--seeds must be >= 1, got {seeds}")
    if not scenarios:
        raise UnlearnkitError("--forget needs at least one scenario, e.g. random:0.1,class:0")
    hparams = hparams or {}
    plan = Plan(store=store, config={"recipe": cfg.recipe(), "fingerprint": fingerprint, "methods": methods,
                                     "scenarios": scenarios, "seeds": seeds, "score_models": score_models,
                                     **({"retrain_floor": True} if retrain_floor else {})})
    res = {"num_cpus": num_cpus, "num_gpus": num_gpus}
    for seed in seed_list:
        # bf16 and fp32 train different weights, though the recipe (what --resume checks) leaves precision out.
        recipe = {**cfg.recipe(), "seed": seed, "precision": cfg.runtime.precision}
        original = plan.add(Job(
            f"original/seed{seed}", "original", content_key({"fingerprint": fingerprint, "recipe": recipe}),
            {"config": {**cfg.to_dict(), "seed": seed}, "seed": seed}, **res,
        ))
        for scenario in scenarios:
            method_seeds = range(max(score_models, 1)) if seed == 0 else range(1)
            for mseed in method_seeds:
                suffix = f"seed{seed}" + (f"-m{mseed}" if mseed else "")
                ref = _unlearn_job(plan, original, "retrain", scenario, seed, mseed, suffix, {}, res)
                for method in methods:
                    job = _unlearn_job(plan, original, method, scenario, seed, mseed, suffix, hparams.get(method, {}), res,
                                       tuned=resolve_defaults(method, cfg, scenario)[0])
                    if mseed == 0:
                        _audit_job(plan, job, ref, original, scenario, method, suffix, res)
                if mseed == 0:
                    _audit_job(plan, ref, ref, original, scenario, "retrain", suffix, res)
                    reference = ref
            if retrain_floor:
                twin = _unlearn_job(plan, original, "retrain", scenario, seed, 1, f"seed{seed}-m1", {}, res)
                _audit_job(plan, twin, reference, original, scenario, FLOOR_ROW, f"seed{seed}", res)
    return plan


def _unlearn_job(plan: Plan, original: Job, method: str, scenario: str, seed: int, mseed: int, suffix: str,
                 overrides: dict[str, Any], res: dict[str, Any], tuned: dict[str, Any] | None = None) -> Job:
    # The key holds the hyperparameters the run will use: paper defaults, the tuned entry that
    # forget_run applies for this recipe and scenario (a new entry re-runs the method), --set values.
    hp = {**hparam_defaults(method), **(tuned or {}), **{k.removeprefix("method."): v for k, v in overrides.items()}}
    kind = "retrain" if method == "retrain" else "method"
    revision = get_method(method).revision  # only from 1 on, so keys of unrevised methods stay as they were
    key = content_key({"parent": original.key, "method": method, "hparams": hp, "forget": scenario, "method_seed": mseed,
                       **({"revision": revision} if revision else {})})
    return plan.add(Job(
        f"{kind}/{scenario}/{method}/{suffix}", kind, key,
        {"method": method, "forget": scenario, "hparams": overrides, "seed": seed, "method_seed": mseed,
         "scenario": scenario, "resolved": dataclasses.asdict(make_hparams(method, hp))},
        deps=(original.id,), **res,
    ))


def _audit_job(plan: Plan, target: Job, reference: Job, original: Job, scenario: str, method: str, suffix: str,
               res: dict[str, Any]) -> Job:
    key = content_key({"target": target.key, "reference": reference.key, "original": original.key})
    label = "retrain-floor" if method == FLOOR_ROW else method  # job ids name log files: no spaces
    return plan.add(Job(
        f"audit/{scenario}/{label}/{suffix}", "audit", key,
        {"method": method, "scenario": scenario, "seed": target.spec["seed"]},
        deps=(target.id, reference.id, original.id), **res,
    ))
