"""A run records the method's own cost estimate for its request, and a tuned entry used far outside
its budget says so: methods that pass over the forget set cost more on a larger request (on the
`cifar10-cpu` original, salun's random entry: 3.7% of retraining at `random:0.1`, 33% at `random:0.5`)."""

from __future__ import annotations

import json
import warnings

import pytest

from unlearnkit.methods import forget_run, get_method, list_methods, make_hparams
from unlearnkit.methods.api import _warn_if_over_budget, estimated_cost
from unlearnkit.methods.common import request_sizes
from unlearnkit.training.pipeline import load_run

ENTRY = "digits/random/finetune@dd5f5d5e"  # a shipped entry, tuned under a 7% budget


@pytest.mark.parametrize("method", list_methods())
def test_the_estimate_is_the_methods_cost_over_the_recipes_epochs(digits, method):
    run, _ = digits
    split = run.split.with_forget("random:0.1")
    hp = make_hparams(method, {})
    sizes = {name: len(split.part(name).labels) for name in ("retain", "forget", "val")} | {"whole_classes": 0}
    ree = get_method(method)().cost(hp, sizes, run.config.train)
    estimate = estimated_cost(get_method(method), hp, split, run.config.train)
    if ree is None:
        assert estimate is None
    else:
        assert estimate == {"ree": round(ree, 4), "share_of_retraining": round(ree / run.config.train.epochs, 4)}


def test_a_class_request_is_estimated_on_the_path_it_takes(digits):
    # neggrad takes another path on a class request (each forget batch with a retain batch, no loss
    # probes): the estimate must see the class (the sizes the tuner's budget reads, `request_sizes`),
    # not only the counts, which price the random-request path.
    run, _ = digits
    split = run.split.with_forget("class:3")
    assert request_sizes(split)["whole_classes"] == 1
    hp = make_hparams("neggrad", {})
    counts_only = {name: len(split.part(name).labels) for name in ("retain", "forget", "val")}
    assert estimated_cost(get_method("neggrad"), hp, split, run.config.train)["ree"] == pytest.approx(
        get_method("neggrad")().cost(hp, request_sizes(split), run.config.train), abs=1e-4)
    assert get_method("neggrad")().cost(hp, request_sizes(split), run.config.train) != pytest.approx(
        get_method("neggrad")().cost(hp, counts_only, run.config.train), abs=1e-3)


def test_a_tuned_source_carries_the_budget_its_entry_was_tuned_within():
    from unlearnkit.config import resolve_config
    from unlearnkit.tuning import defaults

    cfg = resolve_config("digits", {})
    values, source = defaults.resolve("finetune", cfg, "random:0.1")
    entry = next(e for e in defaults.entries("digits") if e["id"] == source["entry"])
    assert source["kind"] == "tuned" and source["budget"] == entry["budget"] == 0.07


def test_a_forget_pass_method_costs_more_on_a_larger_request(digits):
    run, _ = digits
    hp = make_hparams("salun", {})
    small, large = (estimated_cost(get_method("salun"), hp, run.split.with_forget(s), run.config.train)["ree"]
                    for s in ("random:0.1", "random:0.5"))
    assert large > 4 * small


def _warned(share: float, source: dict) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _warn_if_over_budget("finetune", "random:0.5", 575, {"ree": 1.0, "share_of_retraining": share}, source)
    return [str(w.message) for w in caught]


def test_a_tuned_entry_far_over_its_budget_warns_in_one_line():
    tuned = {"kind": "tuned", "entry": ENTRY, "budget": 0.07, "fields": {"epochs": "tuned", "lr": "tuned"}}
    (message,) = _warned(0.30, tuned)
    assert ENTRY in message and "7%" in message and "30%" in message and "575 samples" in message and "\n" not in message
    assert _warned(0.10, tuned) == []  # within 1.5x the budget: the estimate's own error
    assert _warned(0.30, {"kind": "paper", "reason": "no entry", "fields": {}}) == []  # no budget was promised
    assert _warned(0.30, {**tuned, "fields": {"epochs": "set", "lr": "tuned"}}) == []  # the user chose the work


def test_forget_records_the_estimate_in_metrics_json(digits_run, tmp_path):
    out = tmp_path / "ft"
    forget_run(digits_run, "finetune", "random:0.1", out)
    metrics = json.loads((out / "metrics.json").read_text())
    run = load_run(digits_run)
    hp = make_hparams("finetune", json.loads((out / "run.json").read_text())["hparams"])
    assert metrics["estimated_cost"] == estimated_cost(get_method("finetune"), hp, run.split.with_forget("random:0.1"), run.config.train)
