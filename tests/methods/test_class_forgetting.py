"""Class requests: neggrad, neggrad+ and gan remove a whole class; random requests behave as before.

On digits (class 3, 8-epoch model, 2 forget batches per pass) each method runs with settings
inside its declared search space; the retrained reference never predicts the class (forget
accuracy 0), so the class must be gone while retain accuracy stays within a few points.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.methods import get_method, unlearn
from unlearnkit.methods.common import probe_loss
from unlearnkit.methods.gan import attack_features
from unlearnkit.methods.neggrad import CLASS_GONE, _stop_gate, ascent_ce, forget_logits, still_predicted
from unlearnkit.params import search_space
from unlearnkit.training.pipeline import evaluate_parts

from helpers import method_context




# (method, settings, most forget accuracy left, most retain points lost). The settings lie in the
# method's search space (checked below) except neggrad's batch size: at the recipe's 64 one pass
# over class 3 is 2 steps, and neggrad's lr range cannot make 10 steps remove a class without a
# retain term; 16 gives it 37 (on cifar10-cpu one pass is 32 steps of 128).
CASES = [
    ("neggrad+", {"forget_passes": 5.0, "lr": 0.05, "alpha": 0.5}, 5.0, 3.0),
    ("gan", {"forget_passes": 4.0, "lr": 0.01}, 5.0, 3.0),
    # The ascent rule itself (stop_loss -1: the whole budget): with the stop gate, where it stops on
    # this tiny set depends on float summation order (1 thread left 8.5% of the class, 2 threads 23%);
    # the gate has its own test below.
    ("neggrad", {"forget_passes": 5.0, "lr": 0.003, "batch_size": 16, "stop_loss": -1.0}, 10.0, 3.0),
]


@pytest.mark.parametrize(("method", "hp", "max_forget", "max_drop"), CASES)
def test_a_class_request_removes_the_class_and_keeps_retain(digits, method, hp, max_forget, max_drop):
    run, model = digits
    space = search_space(get_method(method).Hparams)
    for name, value in hp.items():
        if name in space:
            s = space[name].search
            assert (value in s) if isinstance(s, list) else s[0] <= value <= s[1], (name, value, s)
    split = run.split.with_forget("class:3")
    out = unlearn(model, split, method, normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train,
                  model_factory=run.fresh_model, seed=0, **hp)
    loaded = (split, run.normalizer, run.runtime)
    before, after = evaluate_parts(model, loaded, ("retain", "forget")), evaluate_parts(out, loaded, ("retain", "forget"))
    assert after["forget_acc"] <= max_forget, (method, before, after)
    assert after["retain_acc"] >= before["retain_acc"] - max_drop, (method, before, after)


def test_the_stop_gate_follows_the_request(digits):
    # Random: the CE gate of before (target = the original's held-out CE, start = its forget CE).
    ctx = method_context(digits, "random:0.1")
    gate, measure = _stop_gate(ctx, 0.0, 64)
    assert gate.target == pytest.approx(probe_loss(ctx, "val", 64))
    assert gate.level == pytest.approx(probe_loss(ctx, "forget", 64))
    logits, y = torch.randn(6, 10), torch.tensor([3, 1, 3, 0, 3, 2])
    assert measure(logits, y, F.cross_entropy(logits, y)) == pytest.approx(F.cross_entropy(logits, y).item())
    # Class: the share of class-3 samples no longer predicted as 3 (other rows ignored), target CLASS_GONE.
    gate, measure = _stop_gate(method_context(digits, "class:3"), 0.0, 64)
    assert gate.target == CLASS_GONE and gate.level == 0.0
    logits = torch.zeros(6, 10)
    logits[[0, 1, 3], [3, 1, 0]] = 5.0  # sample 0 still predicted as 3; samples 2 and 4 are not
    assert measure(logits, y, None) == pytest.approx(2 / 3)
    assert measure(logits, torch.tensor([1, 0, 2, 0, 1, 2]), None) is None  # no class-3 sample: no observation
    for _ in range(6):
        gate.observe(1.0)
    assert gate.stopped_at is not None
    # An explicit level or "never" ignores the request kind.
    assert _stop_gate(method_context(digits, "class:3"), 2.5, 64)[0].target == 2.5
    assert math.isinf(_stop_gate(method_context(digits, "class:3"), -1.0, 64)[0].target)


def test_the_random_request_path_is_the_plain_forward_and_ce():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(5, 8), torch.nn.BatchNorm1d(8), torch.nn.Linear(8, 4)).train()
    x, y = torch.randn(7, 5), torch.randint(0, 4, (7,))
    assert torch.equal(forget_logits(model, x), model(x))
    logits = model(x)
    assert torch.equal(ascent_ce(logits, y, False), F.cross_entropy(logits, y))
    # Class request: samples no longer predicted as their class add nothing to the ascent.
    still = logits.argmax(1) == y
    expected = (F.cross_entropy(logits, y, reduction="none") * still).sum() / len(y)
    assert torch.equal(ascent_ce(logits, y, True), expected)
    # gan: the random request's features are the 12 of before; a class request adds the capped log-odds.
    logits10, y10 = torch.randn(4, 10), torch.tensor([0, 1, 2, 3])
    assert attack_features(logits10, y10).shape == (4, 12)
    odds = attack_features(logits10, y10, log_odds=True)[:, -1]
    others = logits10.clone()
    others[range(4), y10] = float("-inf")
    raw = logits10[range(4), y10] - others.logsumexp(1)
    assert torch.allclose(odds, 9.21 * torch.tanh(raw / 9.21), atol=1e-4)
    removed = logits10.clone()
    removed[:, 0] = float("-inf")
    assert attack_features(removed, torch.zeros(4, dtype=torch.long), log_odds=True)[:, -1].eq(-9.21).all()


def test_neggrad_cost_counts_the_retain_batch_of_a_class_request():
    # A class request forwards a retain batch beside every forget batch: the tuner's budget must see it.
    from unlearnkit.config import resolve_config
    from unlearnkit.methods.base import get_method, make_hparams

    recipe = resolve_config("digits", []).train
    hp = make_hparams("neggrad", {"forget_passes": 2.0, "stop_loss": -1.0})
    sizes = {"retain": 1000, "forget": 100, "val": 200}
    plain = get_method("neggrad")().cost(hp, sizes, recipe)
    whole = get_method("neggrad")().cost(hp, {**sizes, "whole_classes": 1}, recipe)
    assert whole == pytest.approx(2 * plain)


def test_a_class_margin_keeps_a_sample_pushing_until_it_is_that_far_below_another_class(digits):
    # Class logit minus the best other: +1 (predicted), -0.5 (just lost the argmax), -3 (well gone).
    logits = torch.zeros(3, 10)
    logits[0, [3, 1]] = torch.tensor([3.0, 2.0])
    logits[1, [3, 1]] = torch.tensor([1.5, 2.0])
    logits[2, [3, 1]] = torch.tensor([0.0, 3.0])
    y = torch.tensor([3, 3, 3])
    assert still_predicted(logits, y).tolist() == [True, False, False]  # margin 0: the argmax
    assert still_predicted(logits, y, 1.0).tolist() == [True, True, False]
    assert still_predicted(logits, y, 3.5).tolist() == [True, True, True]
    # The ascent counts exactly the samples still pushing; the others add 0 to the batch mean.
    ce = F.cross_entropy(logits, y, reduction="none")
    assert torch.allclose(ascent_ce(logits, y, True, 1.0), (ce[0] + ce[1]) / 3)
    # The guard sees the same samples as removed.
    ctx = method_context(digits, "class:3")
    assert _stop_gate(ctx, 0.0, 64, class_margin=1.0)[1](logits, y, None) == pytest.approx(1 / 3)
    assert _stop_gate(ctx, 0.0, 64)[1](logits, y, None) == pytest.approx(2 / 3)
