"""A tuning trial's cheaper audit (`audit(retain_limit=N)`, `unlearnkit tune --trial-retain N`):
RA on a seeded random retain subset, everything else exactly a full audit's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from helpers import assert_one_line_error, audit_numbers, run_cli

from unlearnkit.audit import audit
from unlearnkit.audit.attacks import mia_member_positions
from unlearnkit.audit.pipeline import model_outputs
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run
from unlearnkit.training.data import stream_seed
from unlearnkit.tuning.objective import parse_trial_retain, trial_eval

LEAN = {"original": False, "write": False, "plots": False}


@pytest.fixture(scope="module")
def runs(digits_run, tmp_path_factory):
    base = tmp_path_factory.mktemp("trial-eval")
    forget_run(digits_run, "finetune", "random:0.1", base / "ft")
    forget_run(digits_run, "retrain", "random:0.1", base / "rt")
    return SimpleNamespace(ft=base / "ft", rt=base / "rt", full=audit(base / "ft", reference=base / "rt", **LEAN))



def _subset(n_retain: int, k: int, seed: int = 0) -> np.ndarray:
    """The documented rule: a seeded random k of the retain positions (stream "audit-retain-limit")."""
    rng = np.random.default_rng(stream_seed(seed, "audit-retain-limit"))
    return np.sort(rng.choice(n_retain, size=k, replace=False))


def _acc(run, positions) -> float:
    logits, labels = model_outputs(run, ("retain",))["retain"]
    return float(100.0 * (logits.argmax(1)[positions] == labels[positions]).mean())


def test_a_limit_covering_the_retain_set_is_a_full_audit(runs):
    n = runs.full.accuracy["unlearned"]["n"]["retain"]
    for limit in (n, n + 1, 10**9):
        assert audit_numbers(audit(runs.ft, reference=runs.rt, retain_limit=limit, **LEAN)) == audit_numbers(runs.full)


@pytest.mark.parametrize("limit", [0, 200])
def test_ra_is_on_exactly_the_subset_and_everything_else_is_the_full_audits(runs, limit):
    full = runs.full
    n = full.accuracy["unlearned"]["n"]["retain"]
    n_test = full.accuracy["unlearned"]["n"]["test"]
    k = min(n, n_test) if limit == 0 else limit
    assert k < n  # the digits split has more retain than test samples: the limit bites
    sub = audit(runs.ft, reference=runs.rt, retain_limit=limit, **LEAN)
    # auto (0): RA on exactly MIA-efficacy's members, a seeded random |test| of retain; N: its own random N
    positions = mia_member_positions(n, n_test, seed=0) if limit == 0 else _subset(n, k)
    assert len(positions) == k and not np.array_equal(positions, np.arange(k))  # random, not the dataset's (class-sorted) first samples
    for role, run in (("unlearned", runs.ft), ("retrained", runs.rt)):  # the reference on the SAME samples
        acc = sub.accuracy[role]
        assert acc["retain_acc"] == pytest.approx(_acc(run, positions), abs=1e-12)
        assert acc["n"]["retain"] == k and acc["retain_subsample"] == {"n": k, "of": n, "how": "seeded random subset"}
        for key in ("ua", "forget_acc", "test_acc", "val_acc"):
            assert acc[key] == full.accuracy[role][key], key
        assert sub.mia_efficacy[role] == full.mia_efficacy[role]  # same members (the first |test| retain), same SVC
        assert sub.threshold_attacks[role] == full.threshold_attacks[role]
    g, fg = sub.against_retraining["gaps"], full.against_retraining["gaps"]
    assert g["RA"]["gap"] == pytest.approx(abs(_acc(runs.ft, positions) - _acc(runs.rt, positions)), abs=1e-12)
    for key in ("UA", "TA", "MIA-efficacy"):
        assert g[key] == fg[key]
    # The report says so (audit.json's notes; report.md prints them).
    assert any(f"RA is on a seeded random subset of {k} of {n} retain samples" in note for note in sub.notes)
    assert not any("RA is on" in note for note in full.notes)


def test_the_reference_results_are_cached_per_subset(runs, monkeypatch):
    from unlearnkit.audit.pipeline import per_model

    calls = []
    real = per_model._mia_efficacy
    monkeypatch.setattr(per_model, "_mia_efficacy", lambda *a, **kw: calls.append(1) or real(*a, **kw))
    first = audit(runs.ft, reference=runs.rt, retain_limit=150, **LEAN)
    assert len(calls) == 2  # the unlearned model, then the reference on this subset
    again = audit(runs.ft, reference=runs.rt, retain_limit=150, **LEAN)
    assert len(calls) == 3 and again.accuracy == first.accuracy  # the reference's numbers came from the cache
    other = audit(runs.ft, reference=runs.rt, retain_limit=151, **LEAN)
    assert len(calls) == 5  # another subset is another cache entry (never the 150-sample one)
    assert other.accuracy["retrained"]["n"]["retain"] == 151


@pytest.mark.parametrize("bad", [-5, -1, 2.5, "abc", True])
def test_a_bad_retain_limit_is_a_user_error(runs, bad):
    with pytest.raises(UnlearnkitError, match=r"^retain_limit must be None .* got"):
        audit(runs.ft, reference=runs.rt, retain_limit=bad, **LEAN)


@pytest.mark.parametrize(("text", "value"), [("auto", 0), ("0", 0), ("10000", 10000), ("all", None), ("-1", None), (-1, None), (None, None), (7, 7)])
def test_trial_retain_parses(text, value):
    assert parse_trial_retain(text) == value


@pytest.mark.parametrize("bad", ["-5", "abc", "1.5", ""])
def test_bad_trial_retain_is_one_line_exit_2_and_writes_nothing(capsys, tmp_path, cache_dir, bad):
    code, _, err = run_cli(capsys, "tune", "--set", "train.epochs=3", "--method", "finetune", "--trials", "2",
                           "--trial-retain", bad, "--out", tmp_path / "t")
    assert_one_line_error(code, err, r"--trial-retain .* is not a retain sample count: give a whole number >= 0")
    assert not (tmp_path / "t").exists() and not (tmp_path / "tune-store").exists()


def test_the_evaluation_mode_in_words():
    assert trial_eval(0, [45000], 10000).startswith("trials: RA on a seeded random 10000 of 45000 retain samples")
    assert trial_eval(0, [45000], 10000).endswith("final: full audits")
    assert trial_eval(None, [45000], 10000) == "trials: full audits; final: full audits"
    assert trial_eval(50000, [45000], 10000) == "trials: full audits; final: full audits"
