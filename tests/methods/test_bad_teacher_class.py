"""bad_teacher on a class request: the teachers' targets lose the forgotten class (`class_removed`).

A random network spreads its output over every class, the forgotten one included, so a student
copying it on the class's samples keeps predicting the class for some of them; a model retrained
without the class predicts it for none. Digits, class 3, the 8-epoch session model.
"""

from __future__ import annotations

import pytest
import torch

from unlearnkit.methods import unlearn
from unlearnkit.training.pipeline import evaluate_parts, load_run

# In the search space. A high temperature flattens the random teacher, so its copy keeps the class's
# 1/10 share: with the paper's targets 41-71% of class 3 stays predicted over seeds 0-2 (1 or 2
# threads alike), with the class removed 0%.
SETTINGS = {"epochs": 2, "lr": 0.05, "retain_fraction": 0.1, "temperature": 4.0}


@pytest.fixture(scope="module")
def digits(digits_run):
    run = load_run(digits_run)
    return run, run.load_model()


def _run(digits, spec, **hp):
    run, model = digits
    split = run.split.with_forget(spec)
    out = unlearn(model, split, "bad_teacher", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train,
                  model_factory=run.fresh_model, seed=0, **SETTINGS, **hp)
    return out, split


def test_the_class_removed_targets_remove_the_class(digits):
    run, model = digits
    removed, split = _run(digits, "class:3")
    paper, _ = _run(digits, "class:3", class_removed=False)
    loaded = (split, run.normalizer, run.runtime)
    before = evaluate_parts(model, loaded, ("retain", "forget"))
    after_removed = evaluate_parts(removed, loaded, ("retain", "forget"))
    after_paper = evaluate_parts(paper, loaded, ("retain", "forget"))
    # The paper's targets leave part of the class; the class-removed ones none of it.
    assert after_paper["forget_acc"] >= 20.0, after_paper
    assert after_removed["forget_acc"] <= 1.0, after_removed
    # Six steps at lr 0.05 on a 1,150-sample set cost retain accuracy either way (paper 89.7, removed 88.6).
    assert after_removed["retain_acc"] >= before["retain_acc"] - 15.0, (before, after_removed)


def test_a_random_request_is_unchanged_by_the_class_option(digits):
    on, _ = _run(digits, "random:0.1")
    off, _ = _run(digits, "random:0.1", class_removed=False)
    for a, b in zip(on.state_dict().values(), off.state_dict().values()):
        assert torch.equal(a, b)
