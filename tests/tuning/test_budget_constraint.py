"""An over-budget setting never runs and is recorded as infeasible by its excess cost, so TPE ranks
it below every setting that ran (as a plain pruned trial it sat in TPE's "good" group whenever
fewer trials had completed than the group holds, and the sampler kept proposing such settings)."""

from __future__ import annotations

import optuna
import pytest

from unlearnkit.config import resolve_config
from unlearnkit.tuning.objective import BUDGET, OVER_BUDGET, SET_CONSTRAINT, Objective, constraints, estimate_cost
from unlearnkit.tuning.references import Reference
from unlearnkit.tuning.space import distributions

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
