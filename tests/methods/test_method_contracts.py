"""What a method's settings promise: a stop level that can trip on a class request, warnings for
settings the chosen optimiser ignores, cost estimates that count what runs, the critic's class
matching, the seed range, and `batch_size` 0 as the recipe's batch everywhere."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from helpers import assert_one_line_error, method_context, run_cli

from unlearnkit.config import TrainConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import get_method, list_methods, make_hparams, unlearn
from unlearnkit.methods.common import FORWARD
from unlearnkit.methods.dualoptim import OPTIMIZERS, OptimizerParams
from unlearnkit.methods.gan import Critic
from unlearnkit.methods.neggrad import _stop_gate, ascent_ce
from unlearnkit.params import search_space

SIZES = {"retain": 36_000, "forget": 4_000, "val": 10_000}
RECIPE = TrainConfig(epochs=15, batch_size=128)




def _unlearn(digits, method, spec="random:0.1", seed=0, **hp):
    run, model = digits
    return unlearn(model, run.split.with_forget(spec), method, normalizer=run.normalizer, runtime=run.runtime,
                   recipe=run.config.train, model_factory=run.fresh_model, seed=seed, **hp)


# ---------------------------------------------------------------- neggrad's stop level on a class request


def test_an_explicit_stop_level_on_a_class_request_watches_the_plain_forget_ce(digits):
    # The ascent's own CE on a class request counts only the samples still predicted as their class,
    # so it never exceeds ~ln(10) here: a level above that could never trip (stop_loss 5 ran the whole
    # budget, like -1). The guard watches the plain CE of the forget batch instead.
    gate, measure = _stop_gate(method_context(digits, "class:3"), 5.0, 64)
    logits = torch.zeros(4, 10)
    logits[:, 0] = 8.0  # no sample predicted as its class 3: the ascent's CE is 0, the plain CE ~8
    y = torch.full((4,), 3)
    assert ascent_ce(logits, y, True).item() == 0.0
    assert measure(logits, y, ascent_ce(logits, y, True)) == pytest.approx(F.cross_entropy(logits, y).item())
    gate.observe(measure(logits, y, ascent_ce(logits, y, True)))
    assert gate.stopped_at is not None and gate.target == 5.0  # its average starts at the first batch's value


@pytest.mark.parametrize("method", ["neggrad", "neggrad+"])
def test_a_class_request_with_a_stop_level_above_ln_k_can_stop_early(digits, method):
    # 4 > ln(10) = 2.30: out of the old gate's reach (it ran all 37 steps); the plain CE gets there in
    # 6 (neggrad) / 11 (neggrad+) steps, measured on 1 and 2 threads.
    hp = {"forget_passes": 5.0, "lr": 0.05, "batch_size": 16, "stop_loss": 4.0}
    if method == "neggrad+":
        hp["alpha"] = 0.5
    report = {}
    run, model = digits
    unlearn(model, run.split.with_forget("class:3"), method, normalizer=run.normalizer, runtime=run.runtime,
            recipe=run.config.train, model_factory=run.fresh_model, seed=0, report=report, **hp)
    assert report["stopped_early"] and 1 < report["steps_run"] <= report["steps_planned"] // 2, report


@pytest.mark.parametrize("value", [-7.0, -1.5])
def test_any_negative_stop_loss_disables_the_guard(value):
    # The docs say "< 0 disables": every negative value is valid and means "never" (not only -1 .. 0).
    for method in ("neggrad", "neggrad+"):
        assert make_hparams(method, {"stop_loss": value}).stop_loss == value
    assert math.isinf(_stop_gate(None, value, 64)[0].target)


# ---------------------------------------------------------------- settings the optimiser ignores


def test_neggrad_with_dualoptim_neither_searches_nor_uses_the_sgd_settings():
    # neggrad's loss has no retain part: under dualoptim only the forget Adam steps, so lr is searched with sgd only.
    space = search_space(get_method("neggrad").Hparams)
    assert space["lr"].search_if == ("optimizer", "sgd") and space["forget_lr"].search_if == ("optimizer", "dualoptim")
    inert = get_method("neggrad")().inert_fields(make_hparams("neggrad", {"optimizer": "dualoptim"}))
    assert set(inert) == {"lr", "weight_decay"}


@pytest.mark.parametrize("method", [m for m in list_methods() if issubclass(get_method(m).Hparams, OptimizerParams)])
def test_a_searched_field_is_searched_only_under_the_optimiser_that_reads_it(method):
    cls = get_method(method)
    space = search_space(cls.Hparams)
    for optimizer in OPTIMIZERS:
        inert = cls().inert_fields(make_hparams(method, {"optimizer": optimizer}))
        for name in inert:
            if name in space:
                ctrl, want = space[name].search_if or (None, None)
                assert ctrl == "optimizer" and want != optimizer, (method, optimizer, name)


def test_setting_a_field_the_optimiser_ignores_warns_in_one_line(digits):
    cases = [
        ("neggrad", {"optimizer": "dualoptim", "lr": 0.01}, ["lr"]),
        ("neggrad", {"optimizer": "dualoptim", "weight_decay": 0.1}, ["weight_decay"]),
        ("neggrad", {"forget_lr": 1e-3}, ["forget_lr"]),
        ("random_label", {"forget_lr": 1e-3}, ["forget_lr"]),
        # Read by the optimiser chosen, or left at the default: no warning.
        ("neggrad", {"optimizer": "dualoptim", "forget_lr": 1e-3}, []),
        ("neggrad+", {"optimizer": "dualoptim", "lr": 0.02}, []),  # neggrad+ has a retain part: its SGD steps
        ("neggrad", {"optimizer": "dualoptim", "weight_decay": 0.0}, []),
    ]
    for method, hp, fields in cases:
        with warnings.catch_warnings(record=True) as got:
            warnings.simplefilter("always")
            _unlearn(digits, method, forget_passes=0.5, **hp)
        messages = [str(w.message) for w in got if issubclass(w.category, UserWarning)]
        assert len(messages) == len(fields), (method, hp, messages)
        for field, msg in zip(fields, messages):
            assert msg.startswith(f"{method}: method.{field}=") and " has no effect: " in msg and "\n" not in msg, msg


CONDITIONAL = [(m, name, spec.search_if) for m in list_methods()
               for name, spec in search_space(get_method(m).Hparams).items() if spec.search_if]


@pytest.mark.parametrize("method, name, condition", CONDITIONAL, ids=[f"{m}.{n}" for m, n, _ in CONDITIONAL])
def test_a_field_searched_only_under_a_condition_is_inert_without_it(method, name, condition):
    """The search_if declaration is also the warning's rule: one statement of where a field matters."""
    cls = get_method(method)
    ctrl, want = condition
    others = [v for v in search_space(cls.Hparams)[ctrl].search if v != want]
    assert others, (method, ctrl)
    assert name not in cls().inert_fields(make_hparams(method, {ctrl: want}))
    for value in others:
        reason = cls().inert_fields(make_hparams(method, {ctrl: value}))[name]
        assert f"method.{ctrl}=" in reason and "\n" not in reason


def test_ssd_warns_for_a_fixed_alpha_its_alpha_search_ignores(digits):
    with pytest.warns(UserWarning, match=r"ssd: method\.alpha=50\.0 has no effect: only method\.alpha_search=false reads it"):
        _unlearn(digits, "ssd", alpha_search=True, alpha=50.0)


def test_the_cli_warns_for_an_ignored_setting(digits_run, tmp_path):
    from unlearnkit.methods import forget_run

    with pytest.warns(UserWarning, match=r"method\.lr=0\.02 has no effect"):
        forget_run(digits_run, "neggrad", "random:0.1", tmp_path / "out",
                   hparams={"method.optimizer": "dualoptim", "method.lr": 0.02, "method.forget_passes": 0.5})


# ---------------------------------------------------------------- cost estimates


def test_bad_teacher_counts_both_teachers_forward_per_sample():
    hp = make_hparams("bad_teacher")
    samples = SIZES["forget"] + round(hp.retain_fraction * SIZES["retain"])
    cost = get_method("bad_teacher")().cost(hp, SIZES, RECIPE)
    assert cost == pytest.approx((1 + 2 * FORWARD) * samples / SIZES["retain"])
    assert round(cost, 2) == 0.69  # docs/methods.md's figure


@pytest.mark.parametrize("method", ["neggrad", "neggrad+"])
def test_a_class_request_costs_no_probe(method):
    cls = get_method(method)()
    whole = {**SIZES, "whole_classes": 1}
    never = cls.cost(make_hparams(method, {"stop_loss": -1.0}), whole, RECIPE)
    for level in (0.0, 2.0):  # the class guard counts predicted samples; an explicit level starts at the first batch
        assert cls.cost(make_hparams(method, {"stop_loss": level}), whole, RECIPE) == pytest.approx(never)
    # A random request still pays both probes at stop_loss 0.
    random = cls.cost(make_hparams(method), SIZES, RECIPE) - cls.cost(make_hparams(method, {"stop_loss": -1.0}), SIZES, RECIPE)
    assert random == pytest.approx(FORWARD * 4096 / SIZES["retain"])


def test_no_probe_runs_on_a_class_request(digits, monkeypatch):
    from unlearnkit.methods import neggrad

    calls = []
    monkeypatch.setattr(neggrad, "probe_loss", lambda *a, **k: calls.append(a[1]) or 1.0)
    _stop_gate(method_context(digits, "class:3"), 0.0, 64)
    _stop_gate(method_context(digits, "class:3"), 2.0, 64)
    assert calls == []
    _stop_gate(method_context(digits, "random:0.1"), 0.0, 64)
    assert calls == ["forget", "val"]


# ---------------------------------------------------------------- gan's critic


def _critic(labels, num_classes=10, seed=0):
    real = labels.float()[:, None].repeat(1, 3)  # feature = the sample's class
    return Critic(3, 8, 1e-3, 10.0, real, labels, seed=seed, num_classes=num_classes)


@pytest.mark.parametrize("absent", [9, 1])
def test_a_class_missing_from_the_real_pool_is_matched_with_every_class(absent):
    present = [c for c in range(10) if c != absent]
    labels = torch.tensor(present).repeat_interleave(5)
    got = _critic(labels).real_batch(torch.full((2000,), absent))[:, 0].long()
    assert sorted(set(got.tolist())) == present  # the documented rule: any class, not the last present one


def test_with_every_class_in_the_pool_the_matching_draws_are_unchanged():
    # The old rule (counts up to the largest label, labels clamped) on a full pool: the same draws.
    labels = torch.arange(10).repeat_interleave(torch.arange(1, 11))
    fake = torch.randint(0, 10, (500,), generator=torch.Generator().manual_seed(0))
    new = _critic(labels, seed=7)
    gen = torch.Generator().manual_seed(7 % 2**63)
    order = torch.argsort(labels, stable=True)
    counts = torch.bincount(labels, minlength=int(labels.max()) + 1)
    offsets = torch.cumsum(counts, 0) - counts
    for _ in range(3):
        y = fake.clamp_max(len(counts) - 1)
        u = torch.rand(len(y), generator=gen)
        pos = torch.where(counts[y] > 0, offsets[y] + (u * counts[y]).long(), (u * len(order)).long())
        old = labels.float()[:, None].repeat(1, 3)[order[pos]]
        assert torch.equal(new.real_batch(fake), old)


# ---------------------------------------------------------------- seeds and batch sizes


def test_a_seed_torch_cannot_take_is_a_one_line_error(digits_run, tmp_path, capsys):
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "forget", digits_run, "--method", "finetune", "--forget", "random:5", "--out", out,
                           "--seed", 2**64)
    assert_one_line_error(code, err, r"--seed 18446744073709551616 is too large: torch takes seeds from 0 to 18446744073709551615")
    assert not out.exists()


def test_the_python_api_refuses_a_seed_torch_cannot_take(digits):
    with pytest.raises(UnlearnkitError, match=r"^seed 18446744073709551616 is too large: .*0 to 18446744073709551615"):
        _unlearn(digits, "finetune", epochs=0.2, seed=2**64)
    with pytest.raises(UnlearnkitError, match=r"^seed -1 is negative"):  # as --seed
        _unlearn(digits, "finetune", epochs=0.2, seed=-1)
    assert _unlearn(digits, "finetune", epochs=0.2, seed=2**64 - 1) is not None  # the largest 64-bit seed runs


def test_finetune_batch_size_0_is_the_recipes_batch_and_256_is_unchanged(digits, monkeypatch):
    from unlearnkit.methods import finetune

    seen = []
    real = finetune.steps_per_epoch
    monkeypatch.setattr(finetune, "steps_per_epoch", lambda n, bs: seen.append(bs) or real(n, bs))
    assert make_hparams("finetune").batch_size == 256
    _unlearn(digits, "finetune", epochs=0.2, batch_size=0)
    _unlearn(digits, "finetune", epochs=0.2)
    assert seen == [digits[0].config.train.batch_size, 256]
