"""Does the search explore every option of a categorical field when some draws exceed the budget?

`unlearnkit tune` skips a draw whose estimated cost exceeds the budget and records it as a
constraint violation; it also queues the draw's nearest in-budget point
(`tuning.space.nearest_within_budget`) while fewer than `FIT_UNTIL` trials ran with the draw's
categorical values. This script compares that rule with skipping only and with a fit after every
skip on synthetic objectives, so that hundreds of searches take seconds: the method's real
search space and cost model
(`Method.cost` on a recipe's sizes), the search's own sampler (`tuning.search.make_sampler`, paper
defaults queued first, as `tune` does), and a score that stands in for the audit's gap:

- `edge`: the longer a method unlearns the lower the gap, up to the budget (what the shipped
  searches show: their best trials sit near the budget's edge);
- `middle`: the best cost is half the budget (a method that overshoots when it runs longer);

plus |log10(lr / 3e-3)|, and 0.3 for the worse option of `optimizer` (`dualoptim` best, or `sgd`
best). Lower is better; 0 is the optimum.

    python benchmarks/budget_fit.py [--methods salun,neggrad+,scrub,finetune] [--searches 12] [--trials 40]
"""

from __future__ import annotations

import argparse
import math
import statistics
import warnings

import optuna

from unlearnkit.config import resolve_config
from unlearnkit.methods.base import hparam_defaults
from unlearnkit.tuning.objective import BUDGET, FIT_UNTIL, OVER_BUDGET, estimate_cost, queue_budget_fit
from unlearnkit.tuning.search import ESTIMATE_MARGIN, MAX_BUDGET_SKIPS_PER_TRIAL, make_sampler
from unlearnkit.tuning.space import default_point, distributions, sample


RECIPE = resolve_config("cifar10-cpu", []).train  # only its epochs and batch size enter the cost estimates
SIZES = [{"forget": 4000, "retain": 36000, "val": 4000, "whole_classes": 0}]  # random:0.1 of cifar10-cpu's 40,000
BUDGET_REE = 0.05 * RECIPE.epochs * (1 - ESTIMATE_MARGIN)  # --budget 0.05, as the search computes it
RULES = {"none": 0, "all": math.inf, "few": FIT_UNTIL}  # fit_until of queue_budget_fit


def score(landscape: str, best_option: str, values: dict, cost: float) -> float:
    s = abs(math.log10(values["lr"] / 3e-3)) if "lr" in values else 0.0
    s += (1 - cost / BUDGET_REE) if landscape == "edge" else abs(cost / BUDGET_REE - 0.5)
    if "optimizer" in values:
        s += 0.0 if values["optimizer"] == best_option else 0.3
    return s


def search(method: str, landscape: str, best_option: str, fit: str, seed: int, trials: int) -> tuple[float, int, int]:
    """(best score, trials run, draws skipped by the budget) of one search."""
    dists = distributions(method, "random")
    fixed = {k: v for k, v in hparam_defaults(method).items() if k not in dists}

    def cost(v):
        return estimate_cost(method, {**fixed, **v}, SIZES, RECIPE)

    study = optuna.create_study(direction="minimize", sampler=make_sampler(seed, trials))
    study.enqueue_trial(default_point(method, dists))
    ran = skipped = 0
    best = math.inf
    while ran < trials and skipped < MAX_BUDGET_SKIPS_PER_TRIAL * trials:  # where the search gives up too
        trial = study.ask()
        values = sample(trial, method, dists, fixed)
        c = cost(values)
        if c > BUDGET_REE:
            trial.set_constraint(OVER_BUDGET, c / BUDGET_REE - 1)
            trial.set_user_attr("reason", BUDGET)
            study.tell(trial, state=optuna.trial.TrialState.PRUNED)
            skipped += 1
            queue_budget_fit(study, trial.number, dists, values, cost, BUDGET_REE, fit_until=RULES[fit])
            continue
        y = score(landscape, best_option, values, c)
        trial.set_constraint("ra_drop", -1.0)
        trial.set_constraint("ta_drop", -1.0)
        study.tell(trial, y)
        ran += 1
        best = min(best, y)
    return best, ran, skipped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", default="salun,neggrad+,scrub,finetune")
    ap.add_argument("--searches", type=int, default=12, help="searches (sampler seeds 0..N-1) per cell")
    ap.add_argument("--trials", type=int, default=40)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
    print(f"{args.searches} searches of {args.trials} run trials per cell; budget {BUDGET_REE:.3g} REE; "
          "best score: mean / worst (0 = optimum)\n")
    print("| method | landscape | best option | skip only | + nearest in-budget point after every skip | "
          f"... while < {FIT_UNTIL} trials ran with its options (the search's rule) |")
    print("|---|---|---|---:|---:|---:|")
    for method in args.methods.split(","):
        has_optimizer = "optimizer" in distributions(method, "random")
        for landscape in ("edge", "middle"):
            for best_option in (("dualoptim", "sgd") if has_optimizer else ("—",)):
                cells = []
                for fit in RULES:
                    bests = [search(method, landscape, best_option, fit, s, args.trials)[0] for s in range(args.searches)]
                    cells.append(f"{statistics.mean(bests):.3f} / {max(bests):.2f}")
                print(f"| {method} | {landscape} | {best_option} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
