"""No shape churn: every model a method runs sees at most two input shapes (a full batch and one ragged).

On a GPU with cudnn.benchmark (and under torch.compile) every new input shape is tuned or
compiled again; a method that feeds a model a masked sub-batch (a different size every step)
pays that on most steps. Forward pre-hooks on the original model record the input shapes per
model instance; deep copies (the method's working copy, the frozen original used as a teacher)
carry the hook along, and fresh models (retraining, random teachers) get it from the factory.
"""

from __future__ import annotations

import pytest

from unlearnkit.methods import list_methods, unlearn
from unlearnkit.training.pipeline import load_run

# Small budgets on digits: the shapes, not the result, are under test.
SMALL = {"retrain": {"epochs": 2}}
# Options that take another code path with its own forward passes.
CASES = [(m, SMALL.get(m, {})) for m in list_methods()] + [("ssd", {"alpha_search": True, "probe_samples": 50})]


@pytest.fixture(scope="module")
def digits(digits_run):
    run = load_run(digits_run)
    return run, run.load_model()


def _watch(model, seen: dict):
    """Record every input shape `model` (and any deep copy of it) is called on, per instance."""
    model.register_forward_pre_hook(lambda m, args: seen.setdefault(id(m), set()).add(tuple(args[0].shape)))
    return model


@pytest.mark.parametrize(("method", "hparams"), CASES)
def test_every_model_a_method_runs_sees_at_most_two_input_shapes(digits, method, hparams):
    run, model = digits
    seen: dict[int, set] = {}
    watched = _watch(run.load_model(), seen)
    split = run.split.with_forget("random:0.1")
    out = unlearn(watched, split, method, normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train,
                  model_factory=lambda s: _watch(run.fresh_model(s), seen), seed=0, **hparams)
    assert id(out) in seen, f"{method}: the returned model never ran through a watched forward"
    churn = {i: sorted(shapes) for i, shapes in seen.items() if len(shapes) > 2}
    assert not churn, f"{method}: models saw more than two input shapes: {list(churn.values())}"
