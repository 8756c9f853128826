"""`unlearnkit tune`: bad input, a tiny end-to-end search on digits, resume after a kill, export."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest
from helpers import assert_one_line_error, run_cli

from unlearnkit.config import resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import get_method
from unlearnkit.methods import base as methods_base
from unlearnkit.methods.base import Method, register_method
from unlearnkit.tuning import defaults
from unlearnkit.tuning.search import ESTIMATE_MARGIN, tune

# A short recipe keeps references and trials to seconds; its own recipe hash keeps it apart from
# the shipped digits entries.
RECIPE = ["train.epochs=3"]
FAST = {"sets": 2, "budget": 0.5, "heartbeat": 5}  # 0.5 x 3 epochs = 1.5 REE: finetune with 1 epoch


def _cfg():
    return resolve_config("digits", RECIPE)


@pytest.fixture()
def no_space_method(monkeypatch):
    @dataclass
    class Hp:
        lr: float = 0.1

    class Fixed(Method):
        name = "fixed_for_test"
        summary = "test only"
        paper = "none"
        Hparams = Hp

    monkeypatch.setattr(methods_base, "_METHODS", dict(methods_base._METHODS))  # removed again after the test
    register_method(Fixed)
    return "fixed_for_test"


@pytest.mark.parametrize(("extra", "pattern"), [
    (["--method", "nope"], r"unknown method 'nope'"),
    (["--method", "retrain"], r"method 'retrain' is exact retraining"),
    (["--method", "finetune", "--trials", "0"], r"--trials must be >= 1"),
    (["--method", "finetune", "--forget", "poison"], r"unknown scenario kind 'poison'"),
    (["--method", "finetune", "--forget", "ids:x.txt"], r"ids: requests use the random entry"),
    (["--method", "finetune", "--forget", "class:3"], r"tune for the kind, not one class"),
    (["--method", "finetune", "--forget", "class:0.5"], r"or --forget class-share:0.5 for that share of one class"),
    (["--method", "finetune", "--forget", "class-share:1"], r"class-share:1: the tuning kind takes the share of one class"),
    (["--method", "finetune", "--forget", "class-share:cat"], r"in \(0, 1\), e.g. class-share:0.5"),
    (["--method", "finetune", "--forget", "random:2"], r"fraction of the members in \(0, 1\)"),
    (["--method", "finetune", "--seed-start", "2"], r"tuning seeds must be >= 100; seeds 0-99 are evaluation seeds"),
    (["--method", "finetune", "--budget", "0.05"], r"none of .* sampled settings fits the cost budget of 0.135 REE"),
    (["--method", "finetune", "--start", "nope=1"], r"method 'finetune' has no hyperparameter 'nope'"),
    (["--method", "finetune", "--start", "batch_size=64"], r"--start batch_size: 'finetune' does not search 'batch_size' \(fixed\)"),
    (["--method", "loss_match", "--forget", "random", "--start", "class_margin=2"],
     r"--start class_margin: 'loss_match' searches 'class_margin' only for class requests"),
    (["--method", "finetune", "--start", "epochs=5"], r"--start epochs=5.0 lies outside its search range"),
    (["--method", "finetune", "--start", "epochs"], r"--start 'epochs': write KEY=VALUE pairs"),
    (["--method", "finetune", "--start", ","], r"--start is empty"),
    (["--method", "finetune", "--start", "lr=fast"], r"method\.lr"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, cache_dir, extra, pattern):
    args = ["tune", "--set", "train.epochs=3", "--trials", "2", "--out", tmp_path / "t", *extra]
    code, _, err = run_cli(capsys, *args)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "t").exists() and not (tmp_path / "tune-store").exists()


def test_a_method_without_a_search_space_is_refused(capsys, tmp_path, no_space_method):
    code, _, err = run_cli(capsys, "tune", "--method", no_space_method, "--trials", "2", "--out", tmp_path / "t")
    assert_one_line_error(code, err, r"declares no search space")


@pytest.fixture(scope="module")
def search(tmp_path_factory, cache_dir):
    """2 trials, then the same search asked for 4: only 2 more run."""
    root = tmp_path_factory.mktemp("tune")
    first = tune(_cfg(), "finetune", "class", root / "ft", trials=2, **FAST)
    second = tune(_cfg(), "finetune", "class", root / "ft", trials=4, **FAST)
    return root, first, second


def test_tiny_search_end_to_end_and_resume(search):
    root, first, second = search
    assert first.ran == 2 and first.counts["counted"] == 2
    assert second.ran == 2 and second.counts["counted"] == 4
    # Trial 0 is the paper defaults; every complete trial is scored against its retrained reference.
    assert second.rows[0]["origin"] == "paper defaults"
    out = root / "ft"
    for name in ("study.db", "best.json", "trials.csv", "report.md", "report.html", "plots/history.png"):
        assert (out / name).is_file(), name
    assert not list((out / "trials").glob("*"))  # trial run directories are temporary
    best = json.loads((out / "best.json").read_text())
    assert best["settings"]["seeds"] == [100, 101] and best["settings"]["forget_sets"] == ["class:0", "class:1"]
    md = (out / "report.md").read_text()
    assert "## Choice and trade-off" in md and "Trade-off:" in md
    fits = sum(r["origin"].startswith("budget fit") and r["reason"] != "budget" for r in second.rows)
    assert f"; {fits} of the trials that ran were budget fits" in md
    assert len((out / "trials.csv").read_text().splitlines()) == 1 + len(second.rows)
    # The references live in the shared bench store: a second search trains nothing new.
    store = root / "tune-store" / "store"
    assert len(list(store.glob("original-*"))) == 2 and len(list(store.glob("retrain-*"))) == 2
    if second.best is not None:
        final = second.best["final"]
        assert [r["seed"] for r in final] == [100, 101]
        assert all((p := __import__("pathlib").Path(r["run"])).is_dir() and (p / "report.html").is_file() for r in final)
        assert second.best["ra_drop"] <= 2.0 and second.best["ta_drop"] <= 2.0


def test_the_objective_is_the_audits_gap_with_the_utility_constraint(search):
    _, _, second = search
    # The search keeps ESTIMATE_MARGIN of the 50% budget free for the estimates' error.
    limit = 0.5 * (1 - ESTIMATE_MARGIN)
    assert second.settings["budget_ree"] == pytest.approx(limit * second.settings["retrain_ree"])
    for r in second.rows:
        if r["state"] == "complete":
            assert r["feasible"] == (r["ra_drop"] <= 2.0 and r["ta_drop"] <= 2.0)
            assert r["avg_gap"] >= 0 and r["cost_share"] <= limit
        elif r["reason"] == "budget":
            assert r["cost_share"] > limit and r["avg_gap"] is None


def test_start_points_run_after_the_paper_defaults_once_per_study(search):
    root, _, _ = search
    start = {"epochs": "0.5", "lr": "0.01"}
    first = tune(_cfg(), "finetune", "class", root / "ft-start", trials=2, starts=[start], **FAST)
    assert [r["origin"] for r in first.rows[:2]] == ["paper defaults", "--start"]
    assert first.rows[1]["param:epochs"] == 0.5 and first.rows[1]["param:lr"] == 0.01
    # The fields the point leaves out run at their paper defaults, not at the sampler's draw.
    assert first.rows[1]["param:weight_decay"] == first.rows[0]["param:weight_decay"]
    again = tune(_cfg(), "finetune", "class", root / "ft-start", trials=3, starts=[start], **FAST)
    assert [r["origin"] for r in again.rows].count("--start") == 1, "a rerun of the same command queues its start again"


def _random_entry(values: dict) -> dict:
    rhash = defaults.recipe_hash(_cfg())
    return {"id": defaults.entry_id("finetune", "digits", "random", rhash), "method": "finetune", "preset": "digits",
            "kind": "random", "forget": "random:0.1", "recipe_hash": rhash, "values": values, "seeds": [100],
            "command": "unlearnkit tune --method finetune", "objective": {"avg_gap": 1.0}}


def test_a_search_tries_the_entry_its_kind_takes_today_right_after_the_paper_defaults(search, tmp_path, monkeypatch):
    """A first class-share search has no entry of its own: it tries the random entry that class shares
    take today (the fallback), so what it exports is never worse on its tuning sets; an entry whose
    values left today's ranges is not tried."""
    root, _, _ = search
    monkeypatch.setattr(defaults, "DEFAULTS_DIR", tmp_path)
    entry = _random_entry({"epochs": 0.7, "lr": 0.03})
    defaults.write_entry(entry)
    res = tune(_cfg(), "finetune", "class-share:0.5", root / "ft-share", trials=2, **FAST)
    assert res.settings["kind"] == "class-share" and res.settings["forget_sets"] == ["class:0:0.5", "class:1:0.5"]
    assert [r["origin"] for r in res.rows[:2]] == ["paper defaults", f"tuned entry {entry['id']}"]
    assert res.rows[1]["param:epochs"] == 0.7 and res.rows[1]["param:lr"] == 0.03
    assert res.rows[1]["param:weight_decay"] == res.rows[0]["param:weight_decay"]  # left out: its paper default
    defaults.write_entry(_random_entry({"epochs": 5.0, "lr": 0.03}))  # epochs is searched in [0.2, 2] now
    res = tune(_cfg(), "finetune", "class-share:0.5", root / "ft-share-old", trials=1, **FAST)
    assert not any(r["origin"].startswith("tuned entry") for r in res.rows)


def test_an_entry_equal_to_the_paper_defaults_is_tried_once_and_named_as_the_incumbent(search, tmp_path, monkeypatch):
    root, _, _ = search
    monkeypatch.setattr(defaults, "DEFAULTS_DIR", tmp_path)
    entry = _random_entry({"epochs": 1.0, "lr": 0.02, "weight_decay": 5e-4})  # finetune's paper defaults
    defaults.write_entry(entry)
    res = tune(_cfg(), "finetune", "class-share:0.5", root / "ft-share-paper", trials=2, **FAST)
    origins = [r["origin"] for r in res.rows]
    assert origins[0] == f"paper defaults (= tuned entry {entry['id']})"
    assert not any(o.startswith("tuned entry") for o in origins)  # not queued a second time
    if res.best is not None and res.best["number"] != 0:  # the pick is weighed against it in full audits
        assert res.best["incumbent"]["incumbent"] == 0 and res.best["incumbent"]["entry"] == entry["id"]


def test_other_settings_in_the_same_folder_are_refused(search):
    root, _, _ = search
    with pytest.raises(UnlearnkitError, match=r"holds a search with other settings \(margin"):
        tune(_cfg(), "finetune", "class", root / "ft", trials=4, margin=5.0, **FAST)


def test_a_study_of_an_older_method_revision_is_not_resumed(search, monkeypatch):
    # A code change that alters a method's results raises its revision (sfron, scrub and ssd on
    # 2026-11-29): the study's trials scored the older code, so mixing new trials into it would
    # let TPE and the best-trial pick compare two algorithms. Checked before anything runs.
    from unlearnkit.methods import get_method

    root, _, _ = search
    monkeypatch.setattr(get_method("finetune"), "revision", get_method("finetune").revision + 1)
    with pytest.raises(UnlearnkitError, match=r"holds a search with other settings \(method_revision: None, now 1\)"):
        tune(_cfg(), "finetune", "class", root / "ft", trials=4, **FAST)


def test_an_interrupted_trial_does_not_corrupt_the_study(search, monkeypatch):
    """Ctrl-C in the middle of a trial: that trial is marked failed; the rerun continues the search."""
    import unlearnkit.methods as methods

    root, _, _ = search
    real, calls = methods.forget_run, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 1:  # inside the next trial, before its first forget set is scored
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(methods, "forget_run", interrupted)
    with pytest.raises(KeyboardInterrupt):
        tune(_cfg(), "finetune", "class", root / "ft", trials=5, **FAST)
    monkeypatch.setattr(methods, "forget_run", real)
    again = tune(_cfg(), "finetune", "class", root / "ft", trials=5, **FAST)
    assert again.counts["failed"] >= 1 and again.counts["counted"] == 5
    assert [r["number"] for r in again.rows] == list(range(len(again.rows)))


def test_export_writes_an_entry_that_forget_runs_pick_up(search, tmp_path, monkeypatch):
    root, _, second = search
    if second.best is None:
        pytest.skip("no feasible trial in this tiny search")
    monkeypatch.setattr(defaults, "DEFAULTS_DIR", tmp_path)
    res = tune(_cfg(), "finetune", "class", root / "ft", trials=4, export=True, command="unlearnkit tune ...", **FAST)
    assert res.ran == 0
    entry = json.loads((tmp_path / "digits.json").read_text())["entries"][0]
    assert entry["values"] == second.best["values"] and entry["seeds"] == [100, 101]
    assert entry["recipe_hash"] == defaults.recipe_hash(_cfg()) and entry["command"] == "unlearnkit tune ..."
    assert entry["method_revision"] == get_method("finetune").revision  # the code its trials ran
    values, source = defaults.resolve("finetune", _cfg(), "class:7")
    assert values == entry["values"] and source["kind"] == "tuned" and source["entry"] == entry["id"]


def _counted(folder) -> int:
    """Trials that ran in the study of a search folder (read straight from its SQLite file)."""
    import optuna

    study = optuna.load_study(study_name="tune", storage=f"sqlite:///{folder / 'study.db'}")
    return sum(t.state.name == "COMPLETE" or (t.state.name == "PRUNED" and t.user_attrs.get("reason") != "budget")
               for t in study.trials)


def test_parallel_processes_share_the_study(search):
    """--jobs 2: two spawned processes draw trials from the one SQLite study until the count is reached."""
    root, _, _ = search
    before = _counted(root / "ft")
    res = tune(_cfg(), "finetune", "class", root / "ft", trials=before + 2, jobs=2, **FAST)
    assert res.counts["counted"] >= before + 2 and res.counts["running"] == 0
    assert [r["number"] for r in res.rows] == list(range(len(res.rows)))


def test_ray_tasks_share_the_study(search):
    pytest.importorskip("ray")
    root, _, _ = search
    before = _counted(root / "ft")
    res = tune(_cfg(), "finetune", "class", root / "ft", trials=before + 1, executor="ray", **FAST)
    assert res.counts["counted"] >= before + 1 and res.counts["running"] == 0


def test_trials_use_a_retain_subsample_and_the_final_numbers_are_full_audits(search):
    """The default --trial-retain (auto): trials' RA on a seeded random |test| of the retain samples;
    the best setting's final audits (report, best.json, what --export writes) are full audits."""
    from unlearnkit.audit import audit

    root, _, second = search
    out = root / "ft"
    best = json.loads((out / "best.json").read_text())
    assert best["settings"]["trial_retain"] == 0
    assert best["settings"]["evaluation"].startswith("trials: RA on a seeded random ")
    assert best["settings"]["evaluation"].endswith("final: full audits")
    assert f"Evaluation: {best['settings']['evaluation']}." in (out / "report.md").read_text()
    header = (out / "trials.csv").read_text().splitlines()[0].split(",")
    assert "trial_retain" in header and all(r["trial_retain"] in (0, "all") for r in second.rows)
    if second.best is None:
        pytest.skip("no feasible trial in this tiny search")
    store = root / "tune-store" / "store"
    for row in second.best["final"]:
        assert row["evaluation"].startswith("full audit (RA on all ")
        summary = json.loads(next(p for p in store.glob("audit-*/summary.json")
                                  if json.loads(p.read_text())["target"] == row["run"]).read_text())
        acc = summary["audit"]["accuracy"]["unlearned"]
        assert "retain_subsample" not in acc and "retain_subsample" not in summary["audit"]["accuracy"]["retrained"]
        full = audit(row["run"], reference=summary["reference"], original=False, write=False, plots=False)
        assert acc["n"]["retain"] == full.accuracy["unlearned"]["n"]["retain"]
        assert row["RA"] == full.accuracy["unlearned"]["retain_acc"] and row["RA_retrain"] == full.accuracy["retrained"]["retain_acc"]
        # and a trial's audit of the same run would have used a subsample
        trial = audit(row["run"], reference=summary["reference"], original=False, write=False, plots=False, retain_limit=0)
        assert trial.accuracy["unlearned"]["n"]["retain"] < acc["n"]["retain"]


def test_a_resumed_search_may_lower_its_budget_but_not_raise_it(search, tmp_path):
    """A tighter --budget on a finished search runs nothing new and never picks a trial above it."""
    import shutil  # noqa: PLC0415

    root, _, second = search
    study = tmp_path / "ft"
    shutil.copytree(root / "ft", study)  # the fixture's study stays as it was for the other tests
    shares = sorted({r["cost_share"] for r in second.rows if r["state"] == "complete"})
    assert len(shares) >= 2, shares  # the paper defaults and at least one sampled point differ in cost
    lower = (shares[0] + shares[-1]) / 2 / (1 - ESTIMATE_MARGIN)  # the search's limit: halfway between them
    fast = {**FAST, "budget": lower}
    tighter = tune(_cfg(), "finetune", "class", study, trials=4, store=root / "tune-store", **fast)
    assert tighter.ran == 0
    limit = lower * (1 - ESTIMATE_MARGIN)
    fits = [r for r in tighter.rows if r["state"] == "complete" and r["feasible"] and r["cost_share"] <= limit]
    if fits:
        assert tighter.best["avg_gap"] == min(r["avg_gap"] for r in fits)
        assert tighter.best["cost_share"] <= limit
    else:
        assert tighter.best is None
    assert tighter.settings["budget"] == lower
    with pytest.raises(UnlearnkitError, match=r"may lower its budget but not raise it"):
        tune(_cfg(), "finetune", "class", study, trials=4, store=root / "tune-store", **{**FAST, "budget": 0.6})


def test_the_recorded_command_names_the_store_a_rerun_needs():
    import argparse  # noqa: PLC0415
    import shlex  # noqa: PLC0415

    from unlearnkit.cli.tune_command import _command_line  # noqa: PLC0415

    args = argparse.Namespace(preset="cifar10-cpu", data="d.tar.gz", method="ssd", forget="class", trials=8, sets=1,
                              seed_start=100, budget=0.05, margin=2.0, trial_retain="auto", overrides=[], starts=["alpha=3"],
                              store="/runs/tune-store", out="/runs/tune/ssd", export=True)
    words = shlex.split(_command_line(args))
    assert words[words.index("--store") + 1] == "/runs/tune-store" and words[-1] == "--export"
    assert "--store" not in shlex.split(_command_line(argparse.Namespace(**{**vars(args), "store": None})))


def test_the_class_share_kind_defaults_to_half_a_class_and_draws_a_different_class_per_tuning_seed():
    from unlearnkit.tuning.scenarios import parse_kind

    kind, arg = parse_kind("class-share")
    assert (kind.name, arg) == ("class-share", "0.5")
    classes = tuple("abcdefghij")
    assert [kind.spec(arg, s, classes) for s in (100, 101, 109, 110)] == ["class:0:0.5", "class:1:0.5", "class:9:0.5", "class:0:0.5"]
    assert parse_kind("class-share:0.25")[1] == "0.25"


def _two_trial_study(incumbent_gap: float, challenger_gap: float, incumbent_origin: str | None = None):
    """A study with the shipped entry's trial (#0) and a new trial (#1) whose trial score is lower."""
    import optuna
    from optuna.distributions import FloatDistribution

    from unlearnkit.tuning.search import SHIPPED

    study = optuna.create_study()
    study.set_user_attr("settings", {"budget_ree": 1.0})
    for number, (lr, value, origin) in enumerate([(0.01, incumbent_gap, incumbent_origin or SHIPPED), (0.02, challenger_gap, "TPE")]):
        attrs = {"feasible": True, "cost_ree": 0.5, "ra_drop": 0.1, "ta_drop": 0.1, "origin": origin,
                 **({"entry": "digits/random/finetune@x"} if number == 0 else {})}
        study.add_trial(optuna.trial.create_trial(params={"lr": lr}, distributions={"lr": FloatDistribution(1e-3, 1.0)},
                                                  value=value, user_attrs=attrs))
    return study


@pytest.mark.parametrize(("incumbent_full", "challenger_full", "kept"), [
    (2.47, 2.40, True),   # the pick gains 0.07 < REPLACE_MIN_GAIN in full audits: the shipped entry stays
    (2.47, 2.30, False),  # gains 0.17: it replaces the entry
    (2.47, 2.60, True),   # the pick's trial score flattered it: worse in full audits
])
def test_a_search_replaces_the_shipped_entry_only_when_full_audits_show_a_real_gain(incumbent_full, challenger_full, kept):
    from unlearnkit.tuning.report import incumbent_lines
    from unlearnkit.tuning.search import REPLACE_MIN_GAIN, TuneResult, _keep_incumbent, _pick

    assert REPLACE_MIN_GAIN == 0.1
    study = _two_trial_study(2.46, 2.40)
    best = {**_pick(study.trials[1])}
    full = {0.01: incumbent_full, 0.02: challenger_full}

    def final(values):
        return [{"avg_gap": full[values["lr"]], "RA": 90.0, "RA_retrain": 91.0, "TA": 84.0, "TA_retrain": 85.0}]

    best["final"] = final(best["values"])
    result = TuneResult(out=None, settings={}, ran=2, counts={}, best=best, default=None, lowest=_pick(study.trials[1]))
    _keep_incumbent(study, result, final, margin=2.0)
    assert result.best["number"] == (0 if kept else 1)
    assert result.best["final"][0]["avg_gap"] == (incumbent_full if kept else challenger_full)
    assert result.best["incumbent"] == {"challenger": 1, "challenger_avg_gap": challenger_full, "incumbent": 0,
                                        "incumbent_avg_gap": incumbent_full, "min_gain": 0.1,
                                        "entry": "digits/random/finetune@x", "kept": kept}
    text = " ".join(incumbent_lines(result.best, result.lowest))
    if kept:
        assert (f"Kept the entry this search started from, digits/random/finetune@x (trial #0): in full audits on the tuning sets it scores "
                f"{incumbent_full:.2f} against {challenger_full:.2f} for the best new trial (#1)") in text
        assert "Trade-off: the lowest trial score, 2.40 (#1), was not chosen: the entry it started from was kept (above)." in text
    else:
        assert f"Replaces the entry this search started from, digits/random/finetune@x (trial #0): full audits on the tuning sets {incumbent_full:.2f} -> {challenger_full:.2f}" in text


def test_a_shipped_entry_outside_the_margin_in_full_audits_is_not_kept():
    from unlearnkit.tuning.search import TuneResult, _keep_incumbent, _pick

    study = _two_trial_study(2.46, 2.40)
    best = {**_pick(study.trials[1]), "final": [{"avg_gap": 2.45, "RA": 90.0, "RA_retrain": 91.0, "TA": 84.0, "TA_retrain": 85.0}]}

    def final(values):  # the incumbent's full audit loses 3 RA points: outside the 2-point margin
        return [{"avg_gap": 2.40, "RA": 88.0, "RA_retrain": 91.0, "TA": 84.0, "TA_retrain": 85.0}]

    result = TuneResult(out=None, settings={}, ran=2, counts={}, best=best, default=None, lowest=None)
    _keep_incumbent(study, result, final, margin=2.0)
    assert result.best["number"] == 1 and result.best["incumbent"]["kept"] is False


def test_the_paper_defaults_trial_that_is_the_shipped_entry_is_the_incumbent():
    from unlearnkit.tuning.search import TuneResult, _keep_incumbent, _pick

    study = _two_trial_study(2.46, 2.40, incumbent_origin="paper defaults")  # the entry's values are the paper's
    best = {**_pick(study.trials[1]), "final": [{"avg_gap": 2.45, "RA": 90.0, "RA_retrain": 91.0, "TA": 84.0, "TA_retrain": 85.0}]}

    def final(values):
        return [{"avg_gap": 2.47, "RA": 90.0, "RA_retrain": 91.0, "TA": 84.0, "TA_retrain": 85.0}]

    result = TuneResult(out=None, settings={}, ran=2, counts={}, best=best, default=None, lowest=None)
    _keep_incumbent(study, result, final, margin=2.0)
    assert result.best["number"] == 0 and result.best["incumbent"]["kept"] is True
