"""loss_match: per-sample targets from held-out losses, rank by rank within a class; a hinge for a forgotten class."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from unlearnkit.methods import unlearn
from unlearnkit.methods.loss_match import class_hinge, rank_targets
from unlearnkit.training.pipeline import load_run


@pytest.fixture(scope="module")
def digits(digits_run):
    run = load_run(digits_run)
    return run, run.load_model()


def test_targets_keep_each_class_rank_order_and_take_that_class_held_out_quantiles():
    forget_loss = torch.tensor([0.3, 0.01, 2.0, 0.1, 0.05, 0.7])
    forget_y = torch.tensor([0, 0, 0, 1, 1, 2])
    held_loss = torch.tensor([0.2, 0.4, 1.0, 3.0, 5.0, 6.0, 9.0])
    held_y = torch.tensor([0, 0, 0, 0, 1, 1, 1])
    t = rank_targets(forget_loss, forget_y, held_loss, held_y)
    # Class 0: forget ranks 1 (0.01), 2 (0.3), 3 (2.0) take class 0's held-out quantiles 1/6, 1/2, 5/6.
    pool0 = held_loss[:4]
    assert torch.allclose(t[[1, 0, 2]], torch.quantile(pool0, torch.tensor([1 / 6, 0.5, 5 / 6])))
    # Class 1's pool is its own (5, 6, 9): the lower forget loss gets the lower target.
    assert torch.allclose(t[[4, 3]], torch.quantile(torch.tensor([5.0, 6.0, 9.0]), torch.tensor([0.25, 0.75])))
    # Class 2 has no held-out sample: the median of all held-out losses.
    assert t[5] == pytest.approx(torch.quantile(held_loss, 0.5).item())
    # Monotone within each class: a sample learned more confidently never gets a higher target.
    for c in range(3):
        m = forget_y == c
        order = torch.argsort(forget_loss[m])
        assert torch.all(t[m][order].diff() >= 0)


def test_the_class_hinge_is_zero_once_the_class_logit_is_margin_below_the_best_other():
    logits = torch.zeros(3, 5)
    logits[0, [2, 1]] = torch.tensor([3.0, 2.0])  # class 2 leads by 1
    logits[1, [2, 1]] = torch.tensor([1.5, 2.0])  # 0.5 below
    logits[2, [2, 1]] = torch.tensor([0.0, 3.0])  # 3 below
    y = torch.tensor([2, 2, 2])
    assert class_hinge(logits, y, 0.0).tolist() == pytest.approx([1.0, 0.0, 0.0])
    assert class_hinge(logits, y, 1.0).tolist() == pytest.approx([2.0, 0.5, 0.0])


def _losses(model, run, split, part):
    model.eval()
    p = split.part(part)
    x = run.normalizer(torch.as_tensor(p.images), False)
    with torch.no_grad():
        return F.cross_entropy(model(x), torch.as_tensor(p.labels), reduction="none")


def test_a_random_request_raises_the_losses_of_the_samples_below_their_target_and_keeps_retain(digits):
    run, model = digits
    split = run.split.with_forget("random:0.1")
    forget, held = split.part("forget"), split.part("val")
    before, held_loss = _losses(model, run, split, "forget"), _losses(model, run, split, "val")
    targets = rank_targets(before, torch.as_tensor(forget.labels), held_loss, torch.as_tensor(held.labels))
    need = targets - before
    far = need > need.median()  # the half of the forget set furthest below its held-out target

    def rise(match_weight):
        out = unlearn(model, split, "loss_match", normalizer=run.normalizer, runtime=run.runtime,
                      recipe=run.config.train, model_factory=run.fresh_model, seed=0, forget_passes=5.0, lr=0.01,
                      match_weight=match_weight)
        after = _losses(out, run, split, "forget")
        return out, after, after - before

    # Measured (1 and 2 threads): the far half's loss rises by 0.060-0.069, the near half's falls by
    # 0.015-0.022; the mean moves from 0.062 toward the held-out 0.134 (0.081-0.088) without passing it.
    out, after, change = rise(10.0)
    assert change[far].mean() > 0.03 and change[far].mean() > change[~far].mean() + 0.03, (change[far].mean(), change[~far].mean())
    assert before.mean() + 0.2 * (held_loss.mean() - before.mean()) < after.mean() < held_loss.mean()
    # The match term does it: at its smallest searched weight the far half does not rise (-0.005).
    assert rise(0.1)[2][far].mean() < 0.01
    retain = split.part("retain")
    with torch.no_grad():
        acc = (out(run.normalizer(torch.as_tensor(retain.images), False)).argmax(1) == torch.as_tensor(retain.labels))
    assert acc.float().mean() >= 0.97  # measured 98.9% (original 99.1-99.3%)


def test_a_class_request_removes_the_class(digits):
    run, model = digits
    split = run.split.with_forget("class:3")
    out = unlearn(model, split, "loss_match", normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train,
                  model_factory=run.fresh_model, seed=0, forget_passes=5.0, lr=0.01, match_weight=3.0, class_margin=2.0)
    out.eval()
    p = split.part("forget")
    with torch.no_grad():
        pred = out(run.normalizer(torch.as_tensor(p.images), False)).argmax(1)
    assert (pred == 3).float().mean() <= 0.05
