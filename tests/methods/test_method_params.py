"""Every registered method's hyperparameter declarations: valid ranges, search ranges, refusals and cost.

Parametrised over the registry, so a new method is checked the moment it is registered.
"""

from __future__ import annotations

import dataclasses
import math
import typing

import pytest

from unlearnkit.config import TrainConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run, get_method, list_methods, make_hparams
from unlearnkit.params import check_search_space, spec_of

# cifar10-cpu: 10% random forget set of the 40k members, 10k held out, a 15-epoch recipe of batch 128.
CIFAR10_CPU_SIZES = {"retain": 36_000, "forget": 4_000, "val": 10_000}
CIFAR10_CPU_RECIPE = TrainConfig(epochs=15, batch_size=128)
BUDGET = 0.05 * CIFAR10_CPU_RECIPE.epochs  # REE: 5% of retraining

# Defaults above the 5% budget, each with its reason; the test fails if one of them gets under it
# (then delete the entry) or goes past 10% of retraining.
OVER_BUDGET = {
    "retrain": "exact unlearning: it *is* the retraining cost",
    "finetune": "its paper default, one epoch over retain (1 REE, 6.7%); its search range (0.2-2 epochs) reaches below 5%",
    "l1_sparse": "its paper default, 0.8 retain passes + the L1 term (0.84 REE, 5.6%); the cifar10-cpu entries (tuned) fit 5%",
}


# Numeric fields whose every finite value is valid, each with its reason (the test below checks all others declare a range).
UNBOUNDED = {
    ("neggrad", "stop_loss"): "> 0 a CE level, 0 the request's own level, and any value < 0 disables the guard",
    ("neggrad+", "stop_loss"): "as neggrad's",
}


def _numeric_fields(cls) -> list[dataclasses.Field]:
    hints = typing.get_type_hints(cls)
    return [f for f in dataclasses.fields(cls) if hints[f.name] in (int, float)]


def _lower_bounded(cls) -> list[tuple[str, float, bool]]:
    """(name, bound, strict) for every numeric field with a lower bound."""
    out = []
    for f in _numeric_fields(cls):
        s = spec_of(f)
        if s.ge is not None or s.gt is not None:
            out.append((f.name, s.gt if s.gt is not None else s.ge, s.gt is not None))
    return out


@pytest.mark.parametrize("method", list_methods())
def test_every_numeric_field_declares_a_valid_range_and_searches_inside_it(method):
    cls = get_method(method).Hparams
    for f in _numeric_fields(cls):
        s = spec_of(f)
        bounded = s.choices is not None or any(b is not None for b in (s.ge, s.gt, s.le, s.lt))
        assert bounded != ((method, f.name) in UNBOUNDED), f"{method}.{f.name} has no valid range (or is listed in UNBOUNDED but has one)"
        if s.search is not None and isinstance(s.search, tuple):
            assert s.violation(s.search[0]) is None and s.violation(s.search[1]) is None
    check_search_space(cls, method)  # raises TypeError on a search range outside the valid range
    make_hparams(method)  # the defaults are valid


@pytest.mark.parametrize("method", list_methods())
def test_non_finite_and_below_range_values_are_refused_with_one_line_naming_the_field(method):
    cls = get_method(method).Hparams
    fields = _lower_bounded(cls)
    assert fields or not _numeric_fields(cls), f"{method} has numeric fields but none is bounded below"
    hints = typing.get_type_hints(cls)
    for name, bound, strict in fields:
        below = bound if strict else bound - 1
        bad = [below] + ([math.nan, math.inf, -math.inf] if hints[name] is float else [])
        if bound >= 0:
            bad.append(-1)
        for value in bad:
            with pytest.raises(UnlearnkitError) as err:
                make_hparams(method, {f"method.{name}": value})
            msg = str(err.value)
            assert msg.startswith(f"method.{name}=") and "out of range" in msg and "\n" not in msg, msg


@pytest.mark.parametrize("method", list_methods())
def test_cost_at_the_defaults_is_within_the_budget(method):
    cls = get_method(method)
    cost = cls().cost(make_hparams(method), CIFAR10_CPU_SIZES, CIFAR10_CPU_RECIPE)
    assert cost is not None and cost > 0, f"{method} has no cost estimate"
    if method in OVER_BUDGET:
        assert cost > BUDGET, f"{method} is within the budget now ({cost:.3f} REE): drop it from OVER_BUDGET"
        assert cls.exact or cost <= 2 * BUDGET, (method, cost)
    else:
        assert cost <= BUDGET, f"{method} costs {cost:.3f} REE at its defaults, over {BUDGET} (5% of retraining)"


@pytest.mark.parametrize("method", list_methods())
def test_cost_is_not_lower_for_a_larger_forget_set(method):
    # Retain fixed, forget doubled: no method gets cheaper (fixed caps such as probes may keep it level).
    cls = get_method(method)
    hp = make_hparams(method)
    small = cls().cost(hp, CIFAR10_CPU_SIZES, CIFAR10_CPU_RECIPE)
    big = cls().cost(hp, {**CIFAR10_CPU_SIZES, "forget": 8_000}, CIFAR10_CPU_RECIPE)
    assert big >= small, (method, small, big)


@pytest.mark.parametrize(("method", "key", "value"), [
    ("retrain", "epochs", -3), ("gan", "n_critic", 0), ("finetune", "epochs", 0), ("not", "layers", 0),
    ("sfron", "forget_freq", 0), ("scrub", "optimizer", "adam"),
])
def test_known_bad_values_are_refused(method, key, value):
    with pytest.raises(UnlearnkitError, match=rf"^method\.{key}=.* is out of range"):
        make_hparams(method, {key: value})


@pytest.mark.parametrize("method", list_methods())
def test_a_bad_value_fails_before_any_output_exists(digits_run, tmp_path, method):
    name, bound, strict = _lower_bounded(get_method(method).Hparams)[0]
    out = tmp_path / "out"
    with pytest.raises(UnlearnkitError, match=rf"method\.{name}="):
        forget_run(digits_run, method, "random:0.1", out, hparams={name: bound - 1})
    assert not out.exists()
