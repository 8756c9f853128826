"""One trial: run the method on every tuning forget set, audit it against that set's retrained
model, and score it.

The score is the audit's own average gap to retraining (`AuditResult.avg_gap`: mean |method -
retrain| over UA, RA, TA and MIA-efficacy), averaged over the tuning sets. The gap alone rewards
a wrecked model (a gradient-ascent run that drops retain accuracy to 34% can match a retrained
model's forget accuracy better than one that keeps 99.5%), so utility is a constraint: a trial
whose mean RA or TA is more than `margin` points below retraining is infeasible (TPE's
`constraints_func`, and `best` picks among feasible trials only). Over-budget settings never run
and are infeasible too (by their excess cost).
"""

from __future__ import annotations

import math
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError
from unlearnkit.tuning.references import Reference
from unlearnkit.tuning.space import nearest_within_budget, sample

def _has_set_constraint() -> bool:
    import optuna  # noqa: PLC0415

    return hasattr(optuna.trial.Trial, "set_constraint")


SET_CONSTRAINT = _has_set_constraint()

# Why a trial was pruned (user attribute "reason"); only "budget" trials cost nothing and do not
# count towards --trials.
BUDGET, MEDIAN, ERROR = "budget", "median", "error"
OVER_BUDGET = "over_budget"  # constraint (and user attribute) of a budget trial: estimated cost / budget - 1
BUDGET_FIT = "budget fit"  # origin of the in-budget point queued for an over-budget draw
FIT_UNTIL = 3  # ...while fewer trials than this ran with the draw's categorical values


@dataclass
class Objective:
    method: str
    references: list[Reference]
    dists: dict[str, Any]
    fixed: dict[str, Any]  # the non-tunable hyperparameters (paper defaults)
    recipe: Any  # TrainConfig of the originals
    budget_ree: float | None  # None: no budget
    margin: float
    work: Path  # trial run directories (removed after each set)
    data: str | None = None
    # Each trial's audit: RA on a seeded random subset of this many retain samples (0: as many as
    # MIA-efficacy's members; None: full audits); see `audit(retain_limit=...)`.
    retain_limit: int | None = 0
    _cls: Any = field(default=None, repr=False)

    def cost(self, values: dict[str, Any]) -> float | None:
        return estimate_cost(self.method, {**self.fixed, **values}, [r.sizes for r in self.references], self.recipe)

    def __call__(self, trial) -> float:
        import optuna  # noqa: PLC0415

        from unlearnkit.audit import audit  # noqa: PLC0415
        from unlearnkit.methods import forget_run  # noqa: PLC0415

        values = sample(trial, self.method, self.dists, self.fixed)
        cost = self.cost(values)
        trial.set_user_attr("cost_ree", cost)
        trial.set_user_attr("trial_retain", "all" if self.retain_limit is None else self.retain_limit)
        trial.set_user_attr("cost_share", None if cost is None else cost / self.recipe.epochs)
        if self.budget_ree is not None and cost is not None and cost > self.budget_ree:
            trial.set_user_attr("reason", BUDGET)
            # Infeasible, by how much: TPE fills its "good" group with pruned trials whenever fewer
            # trials completed than the group holds, and an over-budget point without a violation
            # sat there beside the best ones, so the sampler kept proposing over-budget settings
            # (121 of them against 8 runs for neggrad on a class, cifar10-cpu). As a violation it
            # ranks below every point that ran, nearest-to-the-budget first.
            over = cost / self.budget_ree - 1.0
            trial.set_user_attr(OVER_BUDGET, over)
            if SET_CONSTRAINT:
                trial.set_constraint(OVER_BUDGET, over)
            # ...but its options may fit with less effort (`queue_budget_fit`).
            changed = queue_budget_fit(trial.study, trial.number, self.dists, values, self.cost, self.budget_ree)
            if changed is not None:
                trial.set_user_attr("fitted_to", changed)
            raise optuna.TrialPruned(f"estimated cost {cost:.3g} REE exceeds the budget of {self.budget_ree:.3g} REE")
        per_set: list[dict[str, Any]] = []
        for i, ref in enumerate(self.references):
            run_dir = self.work / f"trial{trial.number:04d}" / f"set{i}"
            shutil.rmtree(run_dir, ignore_errors=True)
            try:
                forget_run(ref.original, self.method, ref.forget, run_dir, hparams={**self.fixed, **values}, data=self.data)
                result = audit(run_dir, reference=ref.retrain, original=False, data=self.data, write=False, plots=False,
                               retain_limit=self.retain_limit)
            except UnlearnkitError as exc:  # e.g. the method diverged at these settings: a bad point, not a crash
                trial.set_user_attr("reason", ERROR)
                trial.set_user_attr("error", str(exc))
                raise optuna.TrialPruned(f"set {i} ({ref.forget}, seed {ref.seed}): {exc}") from None
            finally:
                shutil.rmtree(run_dir.parent, ignore_errors=True)
            per_set.append(set_row(ref, result.against_retraining))
            trial.set_user_attr("sets", per_set)
            # Prune between forget sets on the running score, penalised like the constraint, so a
            # wrecked model (small gap, lost utility) is not what survives.
            trial.report(penalised(per_set, self.margin), step=i)
            if i + 1 < len(self.references) and trial.should_prune():
                trial.set_user_attr("reason", MEDIAN)
                raise optuna.TrialPruned(f"running score {penalised(per_set, self.margin):.3g} after {i + 1} set(s) is worse than the median")
        summary = summarise(per_set, self.margin)
        for k, v in summary.items():
            trial.set_user_attr(k, v)
        if SET_CONSTRAINT:
            trial.set_constraint("ra_drop", summary["constraints"][0])
            trial.set_constraint("ta_drop", summary["constraints"][1])
        return summary["avg_gap"]


def queue_budget_fit(study, number: int, dists: dict[str, Any], values: dict[str, Any], cost_of, budget_ree: float,
                     fit_until: float = FIT_UNTIL) -> dict[str, Any] | None:
    """Queue the nearest in-budget point of over-budget draw #`number` as the study's next trial
    (the values it changes; None: none queued).

    Only while fewer than `fit_until` trials ran (or wait to run) with the draw's categorical
    values, and not when the study already holds that point. Only that long: a fit after every skip
    made most trials budget-edge points (digits: up to 28 of 30), which searched no better than
    TPE's own proposals where the best setting lies inside the budget (benchmarks/budget_fit.py,
    which calls this with other `fit_until` values; docs/benchmarks.md).
    """
    import optuna  # noqa: PLC0415

    options = {k: v for k, v in values.items() if isinstance(dists[k], optuna.distributions.CategoricalDistribution)}
    if trials_with(study, options, exclude=number) >= fit_until:
        return None
    fit = nearest_within_budget(dists, values, cost_of, budget_ree)
    if fit is None:
        return None
    study.enqueue_trial(fit, user_attrs={"origin": BUDGET_FIT, "fitted_from": number}, skip_if_exists=True)
    return {k: v for k, v in fit.items() if v != values[k]}


def trials_with(study, options: dict[str, Any], exclude: int | None = None) -> int:
    """Trials of the study that ran, run or wait to run (queued) with these parameter values."""
    from optuna.trial import TrialState  # noqa: PLC0415

    n = 0
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING,
                                                       TrialState.WAITING)):
        if t.number == exclude or t.user_attrs.get("reason") == BUDGET:
            continue
        params = t.params or t.system_attrs.get("fixed_params", {})  # a queued trial has only its fixed values
        n += all(params.get(k) == v for k, v in options.items())
    return n


def parse_trial_retain(value: Any) -> int | None:
    """--trial-retain: N (RA on N retain samples), 0 or auto (MIA-efficacy's member count), all or -1 (full audits)."""
    text = str(value).strip().lower()
    if text in ("all", "-1", "none"):
        return None
    if text == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        n = -2
    if n < 0 or isinstance(value, bool) or (isinstance(value, float) and value != int(value)):
        raise UnlearnkitError(
            f"--trial-retain {value!r} is not a retain sample count: give a whole number >= 0 (0 or auto: as many as "
            "MIA-efficacy's members), or all (-1) for full audits in every trial"
        )
    return n


def trial_eval(limit: int | None, n_retain: list[int], n_test: int) -> str:
    """How trials and the final numbers are evaluated, in words (best.json, report, trials.csv's trial_retain)."""
    k = [min(r, n_test) if limit == 0 else limit for r in n_retain] if limit is not None else n_retain
    if all(a >= r for a, r in zip(k, n_retain)):
        return "trials: full audits; final: full audits"
    of = "/".join(str(r) for r in sorted(set(n_retain)))
    return (f"trials: RA on a seeded random {'/'.join(str(a) for a in sorted(set(k)))} of {of} retain samples (retrained "
            "reference on the same samples; UA, TA and MIA-efficacy as in a full audit); final: full audits")


def estimate_cost(method: str, values: dict[str, Any], sizes: list[dict[str, int]], recipe) -> float | None:
    """Estimated REE of these values on the largest tuning forget set (None: the method does not say)."""
    from unlearnkit.methods.base import get_method, make_hparams  # noqa: PLC0415

    hp = make_hparams(method, values)
    costs = [get_method(method)().cost(hp, n, recipe) for n in sizes]
    return None if any(c is None for c in costs) else max(costs)


def set_row(ref: Reference, against: dict[str, Any]) -> dict[str, Any]:
    g = against["gaps"]
    return {
        "seed": ref.seed, "forget": ref.forget, "avg_gap": against["avg_gap"],
        **{k: g[k]["unlearned"] for k in ("UA", "RA", "TA")}, "MIA": g["MIA-efficacy"]["unlearned"],
        **{f"{k}_retrain": g[k]["retrained"] for k in ("UA", "RA", "TA")}, "MIA_retrain": g["MIA-efficacy"]["retrained"],
        "seconds": against["unlearn_seconds"], "time_ratio": against["time_ratio"],
    }


def _mean(xs: list[float | None]) -> float | None:
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    return sum(xs) / len(xs) if xs else None


def summarise(per_set: list[dict[str, Any]], margin: float) -> dict[str, Any]:
    """Means over the tuning sets; `constraints` <= 0 means feasible (RA, TA within `margin` of retraining)."""
    ra_drop = _mean([r["RA_retrain"] - r["RA"] for r in per_set])
    ta_drop = _mean([r["TA_retrain"] - r["TA"] for r in per_set])
    return {
        "avg_gap": _mean([r["avg_gap"] for r in per_set]),
        "ra_drop": ra_drop, "ta_drop": ta_drop,
        "constraints": [ra_drop - margin, ta_drop - margin],
        "feasible": ra_drop <= margin and ta_drop <= margin,
        "time_ratio": _mean([r["time_ratio"] for r in per_set]),
    }


def penalised(per_set: list[dict[str, Any]], margin: float) -> float:
    s = summarise(per_set, margin)
    return s["avg_gap"] + sum(max(0.0, c) for c in s["constraints"])


def constraints(frozen_trial) -> list[float]:
    """TPE's constraints_func (Optuna < 5): the RA and TA violations, then the budget's (a trial
    pruned for another reason has none of them)."""
    return list(frozen_trial.user_attrs.get("constraints", [0.0, 0.0])) + [frozen_trial.user_attrs.get(OVER_BUDGET, 0.0)]
