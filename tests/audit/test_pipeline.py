"""The audit pipeline on real (digits) runs: the numbers are the ones the runs report, the seed's
one-batch scenario works, the caches change no number, and the forgetting score groups runs."""

import json
import math
from pathlib import Path
from types import SimpleNamespace

import shutil

import numpy as np
import pytest
from helpers import audit_numbers
import torch
from safetensors.torch import load_file, save_file

from unlearnkit.audit import audit, forgetting_score
from unlearnkit.audit.pipeline import AUDIT_FILE, score_arrays
from unlearnkit.cli.main import main
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)  # the CI machine's 2 cores are shared: one thread is faster and stable
    yield


@pytest.fixture(scope="module")
def runs(digits_run, tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("pipeline")
    forget_run(digits_run, "finetune", "random:0.1", base / "ft")
    forget_run(digits_run, "retrain", "random:0.1", base / "rt")
    return SimpleNamespace(ft=base / "ft", rt=base / "rt", base=base)


def _json(path):
    return json.loads(path.read_text())


def test_audit_numbers_match_the_runs_and_the_reference(runs, digits_run, monkeypatch, tmp_path):
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))  # every model's numbers computed here
    result = audit(runs.ft, reference=runs.rt, plots=False)
    a = result.to_dict()
    assert json.loads(json.dumps(a)) == a  # plain JSON
    assert _json(runs.ft / AUDIT_FILE) == a  # the file holds exactly what the API returns
    assert (runs.ft / "report.md").is_file() and (runs.ft / "report.html").is_file()

    # accuracies are the ones `unlearnkit forget` recorded in metrics.json (rounded to 3 decimals there)
    for role, run in (("unlearned", runs.ft), ("retrained", runs.rt)):
        metrics = _json(run / "metrics.json")
        acc = a["accuracy"][role]
        for key in ("retain_acc", "forget_acc", "val_acc", "test_acc"):
            assert acc[key] == pytest.approx(metrics[key], abs=6e-4), (role, key)
        assert acc["ua"] == pytest.approx(100 - acc["forget_acc"])
    n = a["accuracy"]["unlearned"]["n"]
    assert n["forget"] == a["run"]["n_forget"] == round(0.1 * (n["retain"] + n["forget"]))

    # the original defaults to the parent recorded in run.json
    assert a["original"]["path"] == str(digits_run.resolve())
    orig_metrics = _json(digits_run / "metrics.json")
    assert a["accuracy"]["original"]["test_acc"] == pytest.approx(orig_metrics["test_acc"], abs=6e-4)
    assert a["accuracy"]["original"]["val_acc"] == pytest.approx(orig_metrics["val_acc"], abs=6e-4)

    # against retraining
    ag = a["against_retraining"]
    u, r = a["accuracy"]["unlearned"], a["accuracy"]["retrained"]
    assert ag["gaps"]["UA"]["gap"] == pytest.approx(abs(u["ua"] - r["ua"]))
    assert ag["gaps"]["TA"]["diff"] == pytest.approx(u["test_acc"] - r["test_acc"])
    mia = a["mia_efficacy"]
    assert ag["gaps"]["MIA-efficacy"]["gap"] == pytest.approx(100 * abs(mia["unlearned"]["efficacy"] - mia["retrained"]["efficacy"]))
    assert ag["avg_gap"] == pytest.approx(np.mean([ag["gaps"][k]["gap"] for k in ("UA", "RA", "TA", "MIA-efficacy")]))
    t_u, t_r = _json(runs.ft / "run.json")["unlearn_seconds"], _json(runs.rt / "run.json")["unlearn_seconds"]
    assert ag["time_ratio"] == pytest.approx(t_u / t_r)
    assert 0 < ag["js_divergence"]["forget"] < math.log(2) and 0 < ag["js_divergence"]["test"] < math.log(2)
    assert f"{ag['avg_gap']:.2f}" in a["verdict"] and "x the reference's time" in a["verdict"]
    summary = a["summary"]
    assert summary["UA"] == u["ua"] and summary["RA"] == u["retain_acc"] and summary["TA"] == u["test_acc"]
    assert summary["MIA"] == pytest.approx(100 * a["mia_efficacy"]["unlearned"]["efficacy"])
    assert summary["avg_gap"] == ag["avg_gap"] and summary["time_ratio"] == ag["time_ratio"]
    assert summary["seconds"] == _json(runs.ft / "run.json")["unlearn_seconds"]

    # attacks: the seed attack's FNR on forget beside the retrained model's, rates in range
    for role in ("original", "unlearned", "retrained"):
        sets = a["seed_attack"][role]["sets"]
        assert set(sets) == {"train", "test", "forget"}
        assert 0 <= sets["forget"]["fnr"] <= 1 and sets["forget"]["n"] == n["forget"]
        assert sets["test"]["fnr"] is None  # NaN (no members in test) is written as null
        assert 0 <= mia[role]["efficacy"] <= 1
        for score in ("loss", "confidence"):
            t = a["threshold_attacks"][role][score]
            assert 0 <= t["auc"] <= 1 and set(t["tpr_at_fpr"]) == {"0.01", "0.001"}
            assert t["n_members"] == n["forget"] and t["n_nonmembers"] == n["val"]
            assert len(t["roc"]["fpr"]) == len(t["roc"]["tpr"]) <= 120
    assert a["reference_attacks"] is None and a["refs"] is None

    # every attack's cost is listed separately
    timings = a["timings"]
    for key in ("load", "forward/unlearned", "forward/original", "forward/retrained", "seed_attack/unlearned",
                "mia_efficacy/retrained", "threshold_attacks/original", "js_divergence", "report", "total"):
        assert key in timings and timings[key] >= 0
    assert "plots" not in timings


def test_a_retrain_is_its_own_reference_with_zero_gaps(runs):
    result = audit(runs.rt, reference=runs.rt, original=False, write=False, plots=False)  # a bench's retrain row
    ag = result.against_retraining
    assert all(g["gap"] == 0 for g in ag["gaps"].values())
    assert ag["avg_gap"] == 0 == result.avg_gap and ag["js_divergence"] == {"forget": 0.0, "test": 0.0}
    assert any("itself" in n for n in result.notes)


def test_seed_one_batch_scenario_reports_fnr_beside_retraining(digits_run, tmp_path):
    forget_run(digits_run, "finetune", "random:128", tmp_path / "ft128")
    forget_run(digits_run, "retrain", "random:128", tmp_path / "rt128")
    result = audit(tmp_path / "ft128", reference=tmp_path / "rt128", original=False, write=False, plots=False)
    assert result.run["n_forget"] == 128 and result.run["forget_spec"] == "random:128"
    fnr = {r: result.seed_attack[r]["sets"]["forget"]["fnr"] for r in ("unlearned", "retrained")}
    assert all(0 <= v <= 1 for v in fnr.values())
    assert result.seed_attack["unlearned"]["sets"]["forget"]["n_members"] == 128
    assert not (tmp_path / "ft128" / AUDIT_FILE).exists()  # write=False writes nothing


@pytest.fixture(scope="module")
def seeds(digits_run, tmp_path_factory):
    """Three finetune and three retrain runs of one forget set, different seeds (the epsilon audit's input)."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("seeds")
    ft = [Path(forget_run(digits_run, "finetune", "random:64", base / f"ft{s}", seed=s)["run_dir"]) for s in range(3)]
    rt = [Path(forget_run(digits_run, "retrain", "random:64", base / f"rt{s}", seed=s,
                          hparams={"epochs": 4})["run_dir"]) for s in range(3)]
    return SimpleNamespace(ft=ft, rt=rt, base=base)


def test_forgetting_score_from_groups_of_runs(seeds):
    s = forgetting_score(seeds.ft, seeds.rt)
    assert s["method"] == "finetune" and s["n_unlearned"] == 3 and s["n_retrained"] == 3 and s["n_forget"] == 64
    assert 0 <= s["F"] <= 1
    assert s["noise_floor"] is None and "needs >= 6 retrained runs" in s["noise_floor_note"]
    assert s["max_measurable_epsilon"] == pytest.approx(math.log(3 - 1 - 3e-5))
    assert s["scored_epsilon_limit"] == 1.0
    ra_u = np.mean([_json(p / "metrics.json")["retain_acc"] for p in seeds.ft])
    assert s["accuracy"]["unlearned"]["retain"] == pytest.approx(ra_u)
    ratio = (s["accuracy"]["unlearned"]["retain"] / s["accuracy"]["retrained"]["retain"]
             * s["accuracy"]["unlearned"]["test"] / s["accuracy"]["retrained"]["test"])
    assert s["competition_score"] == pytest.approx(s["F"] * ratio)

    with pytest.raises(UnlearnkitError, match="at least 3 unlearned and 3 retrained runs.*got 2 unlearned"):
        forgetting_score(seeds.ft[:2], seeds.rt)
    with pytest.raises(UnlearnkitError, match="given twice"):
        forgetting_score([seeds.ft[0], seeds.ft[0], seeds.ft[1]], seeds.rt)


def test_forgetting_score_refuses_another_forget_set(seeds, runs):
    with pytest.raises(UnlearnkitError, match="forgot another set"):
        forgetting_score(seeds.ft, [*seeds.rt[:2], runs.rt])


def test_compare_score_on_the_command_line(seeds, capsys):
    code = main(["compare", *map(str, seeds.ft), *map(str, seeds.rt), "--score"])
    out = capsys.readouterr().out
    assert code == 0
    assert "forgetting quality of finetune" in out and "noise floor" in out and "6 retrained" in out
    code = main(["compare", *map(str, seeds.ft), *map(str, seeds.rt[:2]), "--score"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "at least 3 retrain runs" in err[0] and "got 2 retrain run(s) and finetune: 3" in err[0]


def test_score_arrays_shows_the_noise_floor_with_six_retrained_models():
    rng = np.random.default_rng(0)
    mu = rng.normal(0, 3, size=300)
    R = mu + rng.normal(size=(6, 300))
    U_same = mu + rng.normal(size=(3, 300))
    U_far = mu + 8 + rng.normal(size=(3, 300))
    acc = {"unlearned": {"retain": 99.0, "test": 95.0}, "retrained": {"retain": 99.0, "test": 95.0}}
    same, far = score_arrays(U_same, R, acc), score_arrays(U_far, R, acc)
    assert 0 <= same["noise_floor"] <= 1 and same["noise_floor_n_per_side"] == 3
    assert far["F"] < same["F"]  # perfectly separated outputs score (close to) nothing
    assert far["n_capped"] > 250
    assert same["competition_score"] == pytest.approx(same["F"])


def test_logit_cache_is_hit_for_the_same_models_and_changes_no_number(runs, monkeypatch, tmp_path):
    import unlearnkit.training.loop as loop

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = loop.predict_logits
    monkeypatch.setattr(loop, "predict_logits", lambda *a, **k: calls.append(1) or real(*a, **k))

    def numbers():
        d = audit(runs.ft, reference=runs.rt, write=False, plots=False).to_dict()
        return {k: d[k] for k in ("accuracy", "mia_efficacy", "threshold_attacks", "against_retraining", "seed_attack")}

    first = numbers()
    assert calls and list((tmp_path / "cache" / "logits").glob("logits-*.npz"))
    calls.clear()
    assert numbers() == first and calls == []  # every model's logits came from the cache

    monkeypatch.setenv("UNLEARNKIT_LOGIT_CACHE", "0")
    assert numbers() == first and calls  # recomputed: the same numbers

    # Another model (other weights) never reads the first one's entries.
    monkeypatch.delenv("UNLEARNKIT_LOGIT_CACHE")
    calls.clear()
    other = tmp_path / "ng"
    forget_run(json.loads((runs.ft / "run.json").read_text())["parent"], "neggrad", "random:0.1", other)
    audit(other, reference=runs.rt, write=False, plots=False)
    assert len(calls) >= 4  # the neggrad model's own parts were computed, not looked up



def test_result_cache_reuses_the_original_and_reference_and_changes_no_number(runs, monkeypatch, tmp_path):
    import unlearnkit.audit.attacks as attacks

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    fits = []
    real = attacks.mia_efficacy
    monkeypatch.setattr(attacks, "mia_efficacy", lambda *a, **k: fits.append(1) or real(*a, **k))

    first = audit(runs.ft, reference=runs.rt, write=False, plots=False)
    assert len(fits) == 3 and list((tmp_path / "cache" / "results").glob("results-*.npz"))
    fits.clear()
    again = audit(runs.ft, reference=runs.rt, write=False, plots=False)
    assert audit_numbers(again) == audit_numbers(first)
    assert len(fits) == 1  # only the unlearned model's SVC: the original's and the reference's came from the cache
    assert {"cached_results/original", "cached_results/retrained", "mia_efficacy/unlearned"} <= set(again.timings)
    assert "mia_efficacy/retrained" not in again.timings

    monkeypatch.setenv("UNLEARNKIT_RESULT_CACHE", "0")
    fits.clear()
    assert audit_numbers(audit(runs.ft, reference=runs.rt, write=False, plots=False)) == audit_numbers(first) and len(fits) == 3
    monkeypatch.delenv("UNLEARNKIT_RESULT_CACHE")

    # Another model file (the reference's weights nudged) misses the cache for that model only.
    other_ref = tmp_path / "rt-nudged"
    shutil.copytree(runs.rt, other_ref, ignore=shutil.ignore_patterns("audit*", "report*"))
    state = load_file(str(other_ref / "model.safetensors"))
    name = next(k for k, v in state.items() if v.is_floating_point() and v.ndim > 1)
    state[name] = state[name] * 1.01
    save_file(state, str(other_ref / "model.safetensors"))
    fits.clear()
    nudged = audit(runs.ft, reference=other_ref, write=False, plots=False)
    assert len(fits) == 2 and "mia_efficacy/retrained" in nudged.timings and "cached_results/original" in nudged.timings

    # Another forget set changes the original's audited samples (its forget part): a miss as well.
    ft64, rt64 = tmp_path / "ft64", tmp_path / "rt64"
    forget_run(json.loads((runs.ft / "run.json").read_text())["parent"], "finetune", "random:64", ft64)
    forget_run(json.loads((runs.ft / "run.json").read_text())["parent"], "retrain", "random:64", rt64)
    fits.clear()
    audit(ft64, reference=rt64, write=False, plots=False)
    assert len(fits) == 3


def test_noise_floor_says_its_n_and_unequal_model_counts_are_stated():
    rng = np.random.default_rng(1)
    mu = rng.normal(0, 3, size=300)
    R, U = mu + rng.normal(size=(8, 300)), mu + rng.normal(size=(4, 300))
    acc = {"unlearned": {"retain": 99.0, "test": 95.0}, "retrained": {"retain": 99.0, "test": 95.0}}
    at_n = score_arrays(U, R, acc)  # 2N = 8 retrained runs: the floor is measured at the method's N = 4
    assert at_n["noise_floor_n_per_side"] == 4 and "4 vs 4 runs" in at_n["noise_floor_note"]
    assert "at the method's N = 4" in at_n["noise_floor_note"]
    fewer = score_arrays(U, R[:6], acc)  # 6 retrained runs: halves of 3, and the label says so
    assert fewer["noise_floor_n_per_side"] == 3
    assert "at N = 3, not the method's N = 4 (needs 8 retrained runs)" in fewer["noise_floor_note"]
    assert fewer["notes"] == ["4 unlearned vs 6 retrained models (the competition requires equal numbers): each side's "
                              "rates use its own count and the limits use N = 4"]
    assert score_arrays(U, R[:4], acc)["notes"] == []
