"""An over-budget setting never runs and is recorded as infeasible by its excess cost, so TPE ranks
it below every setting that ran (as a plain pruned trial it sat in TPE's "good" group whenever
fewer trials had completed than the group holds, and the sampler kept proposing such settings)."""

from __future__ import annotations

import math

import optuna
import pytest

from unlearnkit.config import resolve_config
from unlearnkit.methods.base import get_method, hparam_defaults, list_methods, make_hparams
from unlearnkit.params import search_space
from unlearnkit.tuning.objective import (
    BUDGET, BUDGET_FIT, FIT_UNTIL, OVER_BUDGET, SET_CONSTRAINT, Objective, constraints, estimate_cost, trials_with,
)
from unlearnkit.tuning.references import Reference
from unlearnkit.tuning.search import _counts, _trial_row
from unlearnkit.tuning.space import distributions, nearest_within_budget, sample

SIZES = {"retain": 1000, "forget": 100, "val": 200, "whole_classes": 0}


def _objective(tmp_path, budget_ree: float) -> Objective:
    recipe = resolve_config("digits", []).train
    ref = Reference(seed=100, forget="random:0.1", original="unused", retrain="unused", sizes=SIZES)
    return Objective("finetune", [ref], distributions("finetune"), {}, recipe, budget_ree, 2.0, tmp_path / "trials")


def test_an_over_budget_trial_is_infeasible_by_its_excess_cost(tmp_path):
    objective = _objective(tmp_path, budget_ree=0.05)  # below finetune's whole search range: every point is over
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.optimize(objective, n_trials=4)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.PRUNED and t.user_attrs["reason"] == BUDGET
        want = estimate_cost("finetune", t.params, [SIZES], objective.recipe) / 0.05 - 1.0
        assert want > 0
        assert t.user_attrs[OVER_BUDGET] == pytest.approx(want)
        assert constraints(t)[-1] == pytest.approx(want)  # the constraints_func path (Optuna < 5)
        if SET_CONSTRAINT:
            assert t.constraints == {OVER_BUDGET: pytest.approx(want)}  # Optuna >= 5: on the trial itself


def test_a_trial_that_ran_has_no_budget_violation():
    ran = optuna.trial.create_trial(value=1.0, user_attrs={"constraints": [0.5, 0.0]})
    assert constraints(ran) == [0.5, 0.0, 0.0]


# --------------------------------------------------------------------------- the nearest in-budget point


def _salun_cost(recipe):
    return lambda values: estimate_cost("salun", values, [SIZES], recipe)


def test_the_nearest_in_budget_point_moves_only_the_cost_carrying_field_to_the_budget():
    recipe = resolve_config("digits", []).train
    dists, cost = distributions("salun", "random"), _salun_cost(recipe)
    drawn = {"optimizer": "dualoptim", "forget_lr": 1e-4, "forget_passes": 4.0, "lr": 0.003, "mask_ratio": 0.5}
    budget = 0.675
    assert cost(drawn) > budget
    fit = nearest_within_budget(dists, drawn, cost, budget)
    # Only the passes moved (lr, masks and the optimiser do not change the cost), to the budget's edge.
    assert {k: v for k, v in fit.items() if v != drawn[k]}.keys() == {"forget_passes"}
    assert cost(fit) <= budget
    assert cost({**fit, "forget_passes": fit["forget_passes"] * 1.001}) > budget
    assert 1.0 < fit["forget_passes"] < 2.0  # dualoptim fits at ~1.35 passes here, sgd at ~2.5


def test_the_nearest_in_budget_point_takes_the_field_that_moves_least_and_knows_both_directions():
    dists = {"a": optuna.distributions.FloatDistribution(0.0, 10.0),
             "b": optuna.distributions.IntDistribution(1, 100),
             "c": optuna.distributions.FloatDistribution(1e-3, 1.0, log=True)}

    def cost(v):  # a and b add cost; a larger c lowers it
        return v["a"] + v["b"] / 10 - math.log10(v["c"])

    drawn = {"a": 5.0, "b": 50, "c": 0.01}  # cost 12
    fit = nearest_within_budget(dists, drawn, cost, 11.0)
    # a: 5 -> 4 (10% of its range); b: 50 -> 40 (10.1%); c: 0.01 -> 0.1 (33% of its log range)
    assert fit == {"a": pytest.approx(4.0), "b": 50, "c": 0.01}
    fit = nearest_within_budget(dists, {"a": 0.0, "b": 50, "c": 0.01}, cost, 6.5)
    assert fit["a"] == 0.0 and fit["c"] == 0.01 and fit["b"] == 45  # an integer field: the largest value that fits
    fit = nearest_within_budget(dists, {"a": 0.0, "b": 1, "c": 0.001}, cost, 2.2)
    assert fit["c"] == pytest.approx(10 ** -2.1, rel=1e-6)  # c rises: the other end of its range fits
    assert nearest_within_budget(dists, {"a": 5.0, "b": 50, "c": 0.01}, cost, 1.0) is None  # no single field fits


def test_an_over_budget_draw_queues_its_nearest_in_budget_point_once(tmp_path):
    objective = _objective(tmp_path, budget_ree=0.5)  # finetune's cost is its epochs (0.2-2.0)
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    study.enqueue_trial({"epochs": 1.5, "lr": 0.02, "weight_decay": 5e-4})
    study.optimize(objective, n_trials=1)
    (skipped,) = study.get_trials(states=(optuna.trial.TrialState.PRUNED,))
    assert skipped.state == optuna.trial.TrialState.PRUNED and skipped.user_attrs["reason"] == BUDGET
    assert skipped.user_attrs["fitted_to"] == {"epochs": pytest.approx(0.5)}
    nxt = study.ask()  # the next trial of any worker is the fitted point, the rest of the draw unchanged
    assert sample(nxt, "finetune", objective.dists, {}) == {"epochs": pytest.approx(0.5), "lr": 0.02, "weight_decay": 5e-4}
    assert nxt.user_attrs == {"origin": BUDGET_FIT, "fitted_from": skipped.number}
    # A second draw that fits to the same point does not queue it again.
    study.tell(nxt, 1.0)
    study.enqueue_trial({"epochs": 1.5, "lr": 0.02, "weight_decay": 5e-4}, skip_if_exists=False)
    study.optimize(objective, n_trials=1)
    assert [t.state for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))] == []
    # The report counts the fits that ran (the over-budget draws themselves are not runs).
    assert _counts(study)["budget_fits"] == 1
    assert _trial_row(nxt_frozen := study.trials[nxt.number])["origin"] == f"{BUDGET_FIT} of #{skipped.number}"
    assert nxt_frozen.state == optuna.trial.TrialState.COMPLETE


def _ran(study, dists, **params):
    study.add_trial(optuna.trial.create_trial(params=params, distributions={k: dists[k] for k in params}, value=1.0))


def test_a_fit_is_queued_only_while_few_trials_ran_with_the_draws_options(tmp_path):
    recipe = resolve_config("digits", []).train
    ref = Reference(seed=100, forget="random:0.1", original="unused", retrain="unused", sizes=SIZES)
    dists = distributions("salun", "random")
    objective = Objective("salun", [ref], dists, {}, recipe, 0.675, 2.0, tmp_path / "trials")
    study = optuna.create_study(sampler=optuna.samplers.TPESampler(seed=0))
    base = {"forget_lr": 1e-4, "lr": 0.003, "mask_ratio": 0.5}
    for i in range(FIT_UNTIL):  # SGD has run FIT_UNTIL times; dualoptim never
        _ran(study, dists, optimizer="sgd", forget_passes=1.0 + i / 10, lr=0.003, mask_ratio=0.5)

    def waiting():
        return [t.system_attrs["fixed_params"] for t in study.get_trials(states=(optuna.trial.TrialState.WAITING,))]

    study.enqueue_trial({"optimizer": "sgd", "forget_passes": 5.0, **base})
    study.optimize(objective, n_trials=1)
    assert waiting() == []  # TPE has seen SGD run: the skip alone is its information
    study.enqueue_trial({"optimizer": "dualoptim", "forget_passes": 5.0, **base})
    study.optimize(objective, n_trials=1)
    (fit,) = waiting()  # dualoptim never ran: its nearest in-budget point waits
    assert fit["optimizer"] == "dualoptim" and 1.0 <= fit["forget_passes"] < 2.0
    assert estimate_cost("salun", fit, [SIZES], recipe) <= 0.675
    assert trials_with(study, {"optimizer": "dualoptim"}) == 1  # the queued fit counts, so skips do not pile up fits


@pytest.mark.parametrize("method", [m for m in list_methods() if not get_method(m).exact and search_space(get_method(m).Hparams)])
def test_every_methods_over_budget_draws_fit_inside_their_ranges_or_get_none(method):
    """Registry-wide: a fit is a valid point of the space within the budget, never an error."""
    recipe = resolve_config("cifar10-cpu", []).train
    sizes = [{"retain": 36000, "forget": 4000, "val": 4000, "whole_classes": 0}]
    dists = distributions(method, "random")
    fixed = {k: v for k, v in hparam_defaults(method).items() if k not in dists}

    def cost(values):
        return estimate_cost(method, {**fixed, **values}, sizes, recipe)

    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    draws = [sample(study.ask(), method, dists, fixed) for _ in range(60)]
    costs = [cost(v) for v in draws]
    if any(c is None for c in costs) or len(set(costs)) == 1:
        pytest.skip(f"{method}'s cost does not depend on its searched fields here: no draw is over a budget that one fits")
    budget = sorted(costs)[len(costs) // 2]  # about half the draws are over it
    fitted = 0
    for values, c in zip(draws, costs):
        if c <= budget:
            continue
        fit = nearest_within_budget(dists, values, cost, budget)
        if fit is None:  # only when no numeric field reaches the budget from either end of its range
            for k, d in dists.items():
                if k in values and not isinstance(d, optuna.distributions.CategoricalDistribution):
                    assert cost({**values, k: d.low}) > budget and cost({**values, k: d.high}) > budget, k
            continue
        fitted += 1
        assert cost(fit) <= budget
        assert fit.keys() == values.keys() and sum(fit[k] != values[k] for k in values) == 1
        for k, v in fit.items():
            assert dists[k]._contains(dists[k].to_internal_repr(v)), (k, v)
        make_hparams(method, {**fixed, **fit})  # valid as a whole
    # No fit at all is right only when no numeric field moves the cost (ssd: only its alpha search does).
    numeric = [k for k, d in dists.items() if not isinstance(d, optuna.distributions.CategoricalDistribution)]
    moves = any(cost({**v, k: dists[k].low}) != cost({**v, k: dists[k].high}) for v in draws for k in numeric if k in v)
    assert fitted > 0 or not moves
