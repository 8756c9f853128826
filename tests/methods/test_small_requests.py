"""A deletion request of one or a few samples — the most common one in practice — must not cost accuracy.

Found by running every method on requests no issue named (`random:1`, `random:8`): ssd dampened
the network to forget one sample (digits: test accuracy 97 -> 14), because its forget importance
came from a one-sample batch and its training importance from full batches, whose squared
gradients are up to a batch size smaller. Every method runs here on the digits original, so a
new registry entry is checked automatically.
"""

from __future__ import annotations

import contextlib
from dataclasses import replace
from types import SimpleNamespace

import numpy as np

import pytest
import torch
from torch import nn

from unlearnkit.methods import list_methods, sfron as sfron_module, ssd as ssd_module, unlearn
from unlearnkit.methods.ssd import SSDHparams, fisher_diagonal
from unlearnkit.training.data import Batch
from unlearnkit.training.pipeline import evaluate_parts

# Methods whose accuracy cost does not depend on the request, by design: NoT negates the first
# layer and repairs it within its budget whatever it forgets (docs/methods.md "not").
REQUEST_INDEPENDENT = {"not"}
# ssd at the paper's fixed alpha compares one forget batch's squared gradient — a single draw —
# with the training set's mean, so on a few samples chance alone selects weights (digits,
# `random:5`: 3% of the CNN's weights, test accuracy 97.2 -> 82.7); its per-request alpha search
# ends at the lightest dampening there. docs/methods.md "ssd" gives the figures.
FEW_SAMPLES = {"ssd": {"alpha_search": True}}


def _run(digits, spec: str, method: str, **hparams):
    run, model = digits
    split = run.split.with_forget(spec)
    report: dict = {}
    out = unlearn(model, split, method, normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train,
                  model_factory=run.fresh_model, seed=0, report=report, **hparams)
    loaded = (split, run.normalizer, run.runtime)
    return evaluate_parts(model, loaded, ("test",)), evaluate_parts(out, loaded, ("test",)), report


@pytest.mark.parametrize("method", [m for m in list_methods() if m not in REQUEST_INDEPENDENT and m != "retrain"])
@pytest.mark.parametrize("spec", ["random:1", "random:5"])
def test_a_request_of_a_few_samples_keeps_test_accuracy(digits, method, spec):
    before, after, _ = _run(digits, spec, method, **FEW_SAMPLES.get(method, {}))
    assert after["test_acc"] >= before["test_acc"] - 2.0, (method, spec, before, after)


def test_fisher_at_a_smaller_batch_size_estimates_batches_of_that_size(monkeypatch):
    # A logistic regression on Gaussian inputs: per-sample gradients with a non-zero mean and a
    # known-good spread, 8192 samples, so the only error is the sampling error of 128 batches.
    torch.manual_seed(0)
    x, w = torch.randn(8192, 20), torch.randn(20, 5)
    y = (x @ w + 2 * torch.randn(8192, 5)).argmax(1)
    model = nn.Linear(20, 5)

    class Data:
        def __len__(self):
            return len(y)

    monkeypatch.setattr(ssd_module, "eval_batches", lambda data, ctx, bs: (Batch(x[i:i + bs], y[i:i + bs], None) for i in range(0, len(y), bs)))
    ctx = SimpleNamespace(runtime=SimpleNamespace(autocast=contextlib.nullcontext))
    direct = fisher_diagonal(model, Data(), ctx, 4, "direct")  # 2048 batches of 4
    estimated = fisher_diagonal(model, Data(), ctx, 64, "estimated", as_batch_size=4)  # 128 batches of 64
    plain = fisher_diagonal(model, Data(), ctx, 64, "plain")
    for name in direct:
        d, e, p = (float(f[name].sum()) for f in (direct, estimated, plain))
        assert d > 3 * p, (name, d, p)  # batches of 4 are far noisier than batches of 64 ...
        assert e == pytest.approx(d, rel=0.1), (name, d, e)  # ... and the estimate recovers that
        assert torch.corrcoef(torch.stack([direct[name].flatten(), estimated[name].flatten()]))[0, 1] > 0.8
    # At the batch size it ran at, nothing changes (ssd's and sfron's figures for sets of a batch or more).
    same = fisher_diagonal(model, Data(), ctx, 64, "same", as_batch_size=64)
    assert all(torch.equal(same[n], plain[n]) for n in plain)


@pytest.mark.parametrize("method", ["ssd", "sfron"])
@pytest.mark.parametrize("count", [1, 5])
def test_a_forget_set_smaller_than_a_batch_is_compared_at_its_own_size(digits, monkeypatch, method, count):
    calls: list[tuple[int, int | None]] = []
    real = ssd_module.fisher_diagonal

    def spy(model, data, ctx, batch_size, desc, as_batch_size=None):
        calls.append((min(batch_size, len(data)), as_batch_size))
        return real(model, data, ctx, batch_size, desc, as_batch_size)

    monkeypatch.setattr(ssd_module, "fisher_diagonal", spy)
    monkeypatch.setattr(sfron_module, "fisher_diagonal", spy)
    _run(digits, f"random:{count}", method)
    forget, train = calls
    assert forget == (count, None) and train[1] == count and train[0] > count, calls


def test_ssd_alpha_search_lets_one_sample_stay_right_like_a_model_that_never_saw_it(digits):
    # A model that never saw the sample gets it right with the held-out accuracy (~97% here): the
    # one-sample probe's target rounds up to 1, so the search keeps the lightest dampening.
    before, after, report = _run(digits, "random:1", "ssd", alpha_search=True)
    assert report["forget_accuracy_target"] == 1.0 and report["alpha"] == SSDHparams().alpha_ceiling, report
    assert after["test_acc"] >= before["test_acc"] - 1.0, (before, after)


def _small_requests(digits, count: int, draws: int = 8):
    run, _ = digits
    rng = np.random.default_rng(1)
    for t in range(draws):
        yield replace(run.split, forget_idx=np.sort(rng.choice(run.split.train_idx, count, replace=False)), forget_spec=f"ids:{t}")


def _test_drops(digits, splits, method: str = "ssd", **hparams) -> list[float]:
    run, model = digits
    kw = dict(normalizer=run.normalizer, runtime=run.runtime, recipe=run.config.train, model_factory=run.fresh_model, seed=0)
    before = evaluate_parts(model, run, ("test",))["test_acc"]
    return [before - evaluate_parts(unlearn(model, split, method, **kw, **hparams), (split, run.normalizer, run.runtime), ("test",))["test_acc"]
            for split in splits]


def test_ssd_at_the_paper_alpha_keeps_test_accuracy_over_one_sample_requests(digits):
    # Eight one-sample requests. With I_D at the recipe's batch size (64) the mean loss was 22.8
    # points and the worst 83.6; at the forget set's size, at most 0.6 in eight.
    drops = _test_drops(digits, _small_requests(digits, 1))
    assert sum(drops) / len(drops) <= 1.0 and max(drops) <= 3.0, drops


@pytest.mark.parametrize("count", [5, 20])
def test_ssd_alpha_search_keeps_test_accuracy_over_small_requests(digits, count):
    # A forget sample the original gets wrong has a large gradient, so at a fixed alpha a few-sample
    # request that holds one still dampens thousands of weights (digits, five samples, one at p=0.3:
    # 5,365 of 28,842, test accuracy -83); the search stops at the ceiling there, as such a
    # request is already at held-out accuracy. Before the one-sample rounding and the fixed-size
    # held-out estimate, these requests lost up to 1.7 (five samples) and 2.8 points (twenty).
    drops = _test_drops(digits, _small_requests(digits, count), alpha_search=True)
    assert max(drops) <= 1.0, drops


def _record_forget_terms(monkeypatch, module, describe=lambda item: len(item[0].y)) -> list[tuple]:
    """(describe(step item), forget part of the loss) for every step of `module`'s training loop whose
    loss has a forget part; by default the item is a (forget batch, retain batch) pair and its
    description the forget batch's size."""
    steps: list[tuple] = []
    real_run_epoch = module.run_epoch

    def run_epoch(model, trainer, stream, loss_fn, *args, **kwargs):
        def recorded(model, item):
            out = loss_fn(model, item)
            loss = out[0] if isinstance(out, tuple) else out
            if loss.forget is not None:
                steps.append((describe(item), float(torch.as_tensor(loss.forget).detach())))
            return out
        return real_run_epoch(model, trainer, stream, recorded, *args, **kwargs)

    monkeypatch.setattr(module, "run_epoch", run_epoch)
    return steps


@pytest.mark.parametrize("count", [5, 64, 70])
def test_gan_pushes_each_forget_sample_as_hard_in_a_small_batch_as_in_a_full_one(digits, monkeypatch, count):
    # A forget set smaller than a batch is one batch of its own size; gan's adversarial term is a
    # mean over it, so before the weighting each of n samples was pushed bs/n times harder (on
    # cifar10-cpu, eight samples cost 2.3 points of test accuracy in two steps).
    from unlearnkit.methods import gan as gan_module

    critic_means = []
    real_call = gan_module.Critic.__call__

    def call(self, features):
        out = real_call(self, features)
        if features.requires_grad:  # the generator's term, not the critic's own steps
            critic_means.append(float(out.detach().mean()))
        return out

    monkeypatch.setattr(gan_module.Critic, "__call__", call)
    steps = _record_forget_terms(monkeypatch, gan_module)
    run, _ = digits
    _run(digits, f"random:{count}", "gan", n_critic=1)
    bs, weight = run.config.train.batch_size, gan_module.GanHparams().adv_weight
    assert len(critic_means) == len(steps), "one generator term per step"
    pushed = [(n, f, m) for (n, f), m in zip(steps, critic_means) if f != 0.0]
    assert pushed, "the critic never told the forget batch apart: nothing was pushed"
    for n, f, m in pushed:
        assert n == min(count, bs)
        assert f == pytest.approx(weight * -m * n / bs, rel=1e-5, abs=1e-7), (n, f, m)


@pytest.mark.parametrize("count", [5, 64])
def test_loss_match_pulls_each_forget_sample_as_hard_in_a_small_batch_as_in_a_full_one(digits, monkeypatch, count):
    from unlearnkit.methods import loss_match as lm

    huber_means = []
    real_huber = lm.F.huber_loss

    def huber(*args, **kwargs):
        out = real_huber(*args, **kwargs)
        huber_means.append(float(out.detach().mean()))
        return out

    monkeypatch.setattr(lm.F, "huber_loss", huber)
    forget_terms = _record_forget_terms(monkeypatch, lm)
    run, _ = digits
    _run(digits, f"random:{count}", "loss_match")
    bs, weight = run.config.train.batch_size, lm.LossMatchHparams().match_weight
    assert forget_terms and len(huber_means) == len(forget_terms)
    for (n, f), m in zip(forget_terms, huber_means):  # a random request: every sample's match term is the Huber pull
        assert n == min(count, bs) and f == pytest.approx(weight * m * n / bs, rel=1e-5, abs=1e-8), (n, f, m)


@pytest.mark.parametrize("count", [5, 64, 70])
def test_sfron_pushes_each_forget_sample_as_hard_in_a_small_batch_as_in_a_full_one(digits, monkeypatch, count):
    # sfron's forget term is a weighted mean over the forget batch (weights summing to 1), so a
    # set of n < bs samples was pushed bs/n times harder per sample than a full batch: one step
    # at the full alpha cost up to 2.2 test points on `random:5` (docs/methods.md "sfron").
    ces: list[tuple[int, float]] = []
    real_ascent = sfron_module.adaptive_ascent

    def ascent(logits, labels, lam):
        out = real_ascent(logits, labels, lam)
        ces.append((len(labels), float(out.detach())))
        return out

    monkeypatch.setattr(sfron_module, "adaptive_ascent", ascent)
    terms = _record_forget_terms(monkeypatch, sfron_module, lambda item: item[2])  # (alpha_t, forget part) of each forget step
    run, _ = digits
    _run(digits, f"random:{count}", "sfron")
    bs = run.config.train.batch_size
    assert terms and len(terms) == len(ces), (terms, ces)
    for (alpha_t, f), (n, ce) in zip(terms, ces):
        assert n == min(count, bs) and alpha_t > 0
        assert f == pytest.approx(-alpha_t * ce * n / bs, rel=1e-5, abs=1e-8), (n, alpha_t, ce, f)


@pytest.mark.parametrize("count", [5, 20])
def test_sfron_paper_defaults_keep_test_accuracy_over_small_requests(digits, count):
    # Eight requests each (one test sample is 0.28 points). With the forget term at the small
    # batch's own mean, each request took one full-strength ascent step on its few samples: worst
    # 2.2 (five samples) and 3.9 points (twenty), means 0.6-1.1; at a full batch's share, worst 1.4
    # and means at most 0.31 (one and two torch threads).
    drops = _test_drops(digits, _small_requests(digits, count), "sfron")
    assert max(drops) <= 1.5 and sum(drops) / len(drops) <= 0.4, drops


@pytest.mark.parametrize("count", [5, 64])
def test_scrub_pushes_each_forget_sample_as_hard_in_a_small_batch_as_in_a_full_one(digits, monkeypatch, count):
    # scrub's max step ascends the mean teacher-student KL over the forget batch; a set smaller than
    # a batch was pushed bs/n times harder per sample (digits, five samples: up to 2.5 test points).
    from unlearnkit.methods import scrub as scrub_module

    kls: list[torch.Tensor] = []
    real_kl = scrub_module.distill_kl

    def kl(*args, **kwargs):
        out = real_kl(*args, **kwargs)
        if kwargs.get("per_sample"):  # the max step's term, not the min step's distillation
            kls.append(out.detach().clamp(max=scrub_module.ScrubHparams().kl_cap or float("inf")))
        return out

    monkeypatch.setattr(scrub_module, "distill_kl", kl)
    terms = _record_forget_terms(monkeypatch, scrub_module, lambda batch: len(batch.y))
    run, _ = digits
    _run(digits, f"random:{count}", "scrub")
    bs = run.config.train.batch_size
    assert terms and len(terms) == len(kls), (len(terms), len(kls))
    for (n, f), k in zip(terms, kls):
        assert n == len(k) == min(count, bs)
        assert f == pytest.approx(-float(k.mean()) * len(k) / bs, rel=1e-5, abs=1e-8), (len(k), f)


def test_scrub_paper_defaults_keep_test_accuracy_over_five_sample_requests(digits):
    # Eight requests of five samples (one test sample is 0.28 points): with the max step at the
    # small batch's own mean, worst 2.5 and mean 0.52 (two torch threads; 1.7 and 0.52 with one);
    # at a full batch's share, worst 0.56 and mean 0.07 (both).
    drops = _test_drops(digits, _small_requests(digits, 5), "scrub")
    assert max(drops) <= 1.0 and sum(drops) / len(drops) <= 0.3, drops


@pytest.mark.parametrize("count, hparams, expected", [
    (5, {}, 32),  # one batch: the floor (was 200 steps, 200 passes over the same five samples)
    (300, {}, 40),  # five batches of 64: 8 passes
    (300, {"critic_warmup": 20}, 20),  # the step cap binds first (cifar10-cpu's 4,000-sample requests: 200)
    (300, {"critic_warmup_passes": 2.0, "critic_warmup_min": 0}, 10),
    (300, {"critic_warmup": 0}, 0),
])
def test_gan_warms_its_critic_up_for_a_bounded_number_of_passes_over_the_forget_set(digits, monkeypatch, count, hparams, expected):
    # A critic trained for hundreds of passes over a few forget samples learns them, and its push
    # then lowers every output's confidence: cifar10-cpu `random:0.02` lost up to 6.1 test points.
    from unlearnkit.methods import gan as gan_module

    calls = {"critic": 0, "at_first_step": None}
    real_step, real_epoch = gan_module.Critic.step, gan_module.run_epoch

    def step(self, fake, labels):
        calls["critic"] += 1
        return real_step(self, fake, labels)

    def run_epoch(*args, **kwargs):
        calls["at_first_step"] = calls["critic"]
        return real_epoch(*args, **kwargs)

    monkeypatch.setattr(gan_module.Critic, "step", step)
    monkeypatch.setattr(gan_module, "run_epoch", run_epoch)
    run, _ = digits
    assert run.config.train.batch_size == 64
    _run(digits, f"random:{count}", "gan", forget_passes=0.1, **hparams)
    assert calls["at_first_step"] == expected
