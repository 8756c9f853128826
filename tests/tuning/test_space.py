"""Conditional search spaces: a field that has no effect in a trial is not sampled."""

from __future__ import annotations

import optuna
import pytest

from unlearnkit.methods.base import hparam_defaults
from unlearnkit.tuning.space import conditions, default_point, distributions, sample


def _points(fixed: dict, n: int = 24) -> list[dict]:
    dists = distributions("ssd")
    dists = {k: d for k, d in dists.items() if k not in fixed}
    rest = {k: v for k, v in hparam_defaults("ssd").items() if k not in dists}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    points = []
    for _ in range(n):
        trial = study.ask()
        points.append(sample(trial, "ssd", dists, {**rest, **fixed}))
        study.tell(trial, 0.0)
    return points


def test_ssd_declares_alpha_and_slack_under_its_alpha_search():
    assert conditions("ssd") == {"alpha": ("alpha_search", False), "accuracy_slack": ("alpha_search", True)}


def test_only_the_fields_a_trial_uses_are_sampled():
    points = _points({})
    assert {p["alpha_search"] for p in points} == {False, True}, "both branches should be drawn in 24 trials"
    for p in points:
        assert ("alpha" in p) == (not p["alpha_search"]), p
        assert ("accuracy_slack" in p) == p["alpha_search"], p
        assert "dampening" in p


@pytest.mark.parametrize("on", [False, True])
def test_a_fixed_controlling_field_decides_every_trial(on):
    for p in _points({"alpha_search": on}, n=6):
        assert ("alpha" in p) == (not on) and ("accuracy_slack" in p) == on


def test_the_paper_defaults_trial_holds_only_active_fields():
    point = default_point("ssd", distributions("ssd"))
    assert point == {"alpha": 10.0, "dampening": 1.0, "alpha_search": False}


def test_a_start_point_may_not_set_a_field_its_own_condition_switches_off():
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.tuning.space import start_point

    dists = distributions("ssd")
    assert start_point("ssd", dists, {"alpha_search": "true", "accuracy_slack": "0.05"}) == {
        "alpha_search": True, "accuracy_slack": 0.05}
    with pytest.raises(UnlearnkitError, match=r"^--start alpha: 'ssd' searches 'alpha' only with alpha_search=False"):
        start_point("ssd", dists, {"alpha_search": "true", "alpha": "5"})


def test_a_start_point_keeps_the_paper_defaults_of_the_fields_it_leaves_out():
    # Partial, the point's other fields would be drawn by the sampler: scrub's optimiser, temperature
    # and weights were TPE's in the first cifar10-cpu start trial, not the paper's.
    from unlearnkit.methods import hparam_defaults
    from unlearnkit.tuning.space import filled_start, start_point

    dists = distributions("scrub")
    given = start_point("scrub", dists, {"retain_fraction": "0.08"})
    full = filled_start("scrub", dists, given)
    defaults = hparam_defaults("scrub")
    # forget_lr is searched only with optimizer=dualoptim; the paper's optimiser is sgd.
    assert set(full) == set(dists) - {"forget_lr"}
    assert full["retain_fraction"] == 0.08
    assert all(full[k] == defaults[k] for k in full if k != "retain_fraction")
    # Conditions follow the merged point: switching ssd's alpha search on drops the fixed alpha
    # and takes accuracy_slack's default.
    ssd = distributions("ssd")
    on = filled_start("ssd", ssd, start_point("ssd", ssd, {"alpha_search": "true"}))
    assert on == {"dampening": 1.0, "alpha_search": True, "accuracy_slack": hparam_defaults("ssd")["accuracy_slack"]}


def test_a_start_point_that_switches_dualoptim_on_takes_the_forget_lr_default():
    from unlearnkit.tuning.space import filled_start, start_point

    dists = distributions("scrub")
    full = filled_start("scrub", dists, start_point("scrub", dists, {"optimizer": "dualoptim"}))
    assert full["optimizer"] == "dualoptim" and full["forget_lr"] == hparam_defaults("scrub")["forget_lr"]


@pytest.mark.parametrize("method", ["loss_match", "neggrad"])
def test_a_class_margin_is_searched_for_class_requests_only(method):
    # On a random forget set no sample's class is gone, so the margin changes nothing: a random
    # search that sampled it would spend TPE's trials on a dead dimension.
    assert "class_margin" in distributions(method, "class")
    assert "class_margin" not in distributions(method, "random")
    assert "class_margin" not in distributions(method, "class-share")  # a share keeps its class: no sample's class is gone
    assert "class_margin" in distributions(method)  # no kind: the whole declared space


def test_a_start_point_names_the_kind_a_field_is_searched_for():
    from unlearnkit.errors import UnlearnkitError
    from unlearnkit.tuning.space import start_point

    with pytest.raises(UnlearnkitError, match=r"'loss_match' searches 'class_margin' only for class requests"):
        start_point("loss_match", distributions("loss_match", "random"), {"class_margin": "2"})
    assert start_point("loss_match", distributions("loss_match", "class"), {"class_margin": "2"}) == {"class_margin": 2.0}


def test_forget_lr_is_sampled_only_in_dualoptim_trials():
    dists = distributions("salun", "random")
    rest = {k: v for k, v in hparam_defaults("salun").items() if k not in dists}
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = set()
    for _ in range(16):
        trial = study.ask()
        point = sample(trial, "salun", dists, rest)
        assert ("forget_lr" in point) == (point["optimizer"] == "dualoptim")
        seen.add(point["optimizer"])
        study.tell(trial, 0.0)
    assert seen == {"sgd", "dualoptim"}


def test_a_tuned_entry_becomes_a_trial_of_its_tunable_fields_or_none_when_outside_todays_ranges():
    """`entry_point`: what a search queues to try the entry a run takes today (search.`_shipped_entry_trial`)."""
    from unlearnkit.tuning.space import entry_point

    dists = distributions("salun", "class-share")
    defaults = hparam_defaults("salun")
    # An SGD entry that also recorded a forget_lr: that field is off with SGD, so the trial leaves it out.
    point = entry_point("salun", dists, {"optimizer": "sgd", "forget_lr": 2e-4, "forget_passes": 1.5, "lr": 0.003})
    assert point["optimizer"] == "sgd" and point["forget_passes"] == 1.5 and point["lr"] == 0.003
    assert "forget_lr" not in point
    assert point["mask_ratio"] == defaults["mask_ratio"]  # not in the entry: its paper default
    on = entry_point("salun", dists, {"optimizer": "dualoptim", "forget_lr": 2e-4})
    assert on["forget_lr"] == 2e-4
    low, high = dists["lr"].low, dists["lr"].high
    assert entry_point("salun", dists, {"lr": high * 2}) is None and entry_point("salun", dists, {"lr": low / 2}) is None
    # A field the kind does not search (a class margin on a share of a class) is not part of the trial.
    assert "class_margin" not in entry_point("loss_match", distributions("loss_match", "class-share"), {"class_margin": 2.0})
