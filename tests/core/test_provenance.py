"""Provenance is checked, not trusted: --resume continues only the same job, chained forgetting is
cumulative, and bench jobs of two scenarios never share a directory."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import assert_one_line_error, run_cli
from unlearnkit.provenance import sha256_ids


def _json(path: Path, name: str) -> dict:
    return json.loads((path / name).read_text())


def _snapshot(path: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(path.iterdir())}


@pytest.fixture()
def killed_retrain(capsys, digits_run, tmp_path, monkeypatch):
    """A `retrain` of random:0.1 killed after its first epoch: run.json says running, a checkpoint is there."""
    import unlearnkit.methods.retrain as retrain_mod

    real_fit = retrain_mod.fit

    def fit_then_kill(*args, **kwargs):
        def kill(history):
            raise KeyboardInterrupt

        return real_fit(*args, **{**kwargs, "on_epoch": kill})

    out = tmp_path / "retrain"
    with monkeypatch.context() as m:
        m.setattr(retrain_mod, "fit", fit_then_kill)
        code, _, _ = run_cli(capsys, "forget", digits_run, "--method", "retrain", "--forget", "random:0.1", "--out", out)
    assert code == 130
    assert (out / "checkpoint.pt").is_file() and _json(out, "run.json")["status"] == "running"
    return out


@pytest.mark.parametrize("extra, pattern", [
    (["--method", "retrain", "--forget", "class:3"], r"forget set: 'random:0.1' there, 'class:3' now"),
    (["--method", "finetune", "--forget", "random:0.1"], r"method: 'retrain' there, 'finetune' now"),
    (["--method", "retrain", "--forget", "random:0.1", "--set", "method.epochs=2"], r"hyperparameters: .*epochs"),
    (["--method", "retrain", "--forget", "random:0.1", "--seed", "5"], r"seed: 0 there, 5 now"),
])
def test_resume_refuses_another_job_and_touches_nothing(capsys, digits_run, killed_retrain, extra, pattern):
    before = _snapshot(killed_retrain)
    code, _, err = run_cli(capsys, "forget", digits_run, *extra, "--out", killed_retrain, "--resume")
    assert_one_line_error(code, err, r"--resume: .* holds an exact retrain of random:0.1 .*" + pattern)
    assert _snapshot(killed_retrain) == before


def test_resume_finishes_the_same_job_then_refuses_a_finished_run(capsys, digits_run, killed_retrain):
    import torch

    argv = ["forget", digits_run, "--method", "retrain", "--forget", "random:0.1", "--out", killed_retrain]
    first = torch.load(killed_retrain / "checkpoint.pt", weights_only=True)["history"]
    code, _, err = run_cli(capsys, *argv, "--resume")
    assert code == 0, err
    # The time counts the killed session's epoch too: a resumed retrain must not look cheaper.
    metrics = _json(killed_retrain, "metrics.json")
    assert len(first) == 1 and metrics["unlearn_seconds_earlier_sessions"] == pytest.approx(first[0]["seconds"], abs=0.01)
    assert metrics["unlearn_seconds"] >= first[0]["seconds"]
    info = _json(killed_retrain, "run.json")
    assert info["status"] == "finished" and info["exact"] and info["parent"] == str(digits_run.resolve())
    assert not (killed_retrain / "checkpoint.pt").exists()
    (killed_retrain / "audit.json").write_text("{}")  # an audit made of this model
    before = _snapshot(killed_retrain)
    code, _, err = run_cli(capsys, *argv, "--resume")
    assert_one_line_error(code, err, r"--resume: .* is already finished \(an exact retrain of random:0.1")
    code, _, err = run_cli(capsys, "forget", digits_run, "--method", "finetune", "--forget", "random:0.1",
                           "--out", killed_retrain, "--resume")
    assert_one_line_error(code, err, "method: 'retrain' there, 'finetune' now")
    assert _snapshot(killed_retrain) == before  # the model beside the audit is never replaced


def test_chained_forgetting_is_cumulative_and_its_reference_retrains_the_union(capsys, digits_run, tmp_path):
    train_ids = _json(digits_run, "split.json")["train"]
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("\n".join(train_ids[:5]) + "\n")
    u1, u2, u3, ref = (tmp_path / n for n in ("u1", "u2", "u3", "ref"))
    for parent, spec, out in ((digits_run, "random:0.1", u1), (u1, "class:3", u2), (u2, f"ids:{ids_file}", u3)):
        code, _, err = run_cli(capsys, "forget", parent, "--method", "finetune", "--forget", spec, "--out", out)
        assert code == 0, err
    f1, f2, f3 = (set(_json(u, "split.json")["forget"]) for u in (u1, u2, u3))
    assert len(f1) > 0 and f1 < f2 < f3 and f3 == f1 | f2 | set(train_ids[:5])
    for u, forgotten in ((u1, f1), (u2, f2), (u3, f3)):
        split = _json(u, "split.json")
        assert split["counts"]["retain"] == len(train_ids) - len(forgotten)  # retain never regains a sample
        info = _json(u, "run.json")
        assert info["forget_sha256"] == sha256_ids(forgotten)
        assert info["original"] == str(digits_run.resolve())
    info3 = _json(u3, "run.json")
    assert info3["forget_specs"] == ["random:0.1", "class:3", f"ids:{ids_file}"]
    assert info3["parent"] == str(u2.resolve()) and info3["forget_spec"] == " + ".join(info3["forget_specs"])
    assert info3["request_sha256"] == sha256_ids(train_ids[:5])
    assert info3["parent_model_sha256"] != info3["original_model_sha256"]

    # The same request from another parent is another job, whatever the directory says.
    code, _, err = run_cli(capsys, "forget", u1, "--method", "finetune", "--forget", f"ids:{ids_file}", "--out", u3, "--resume")
    assert_one_line_error(code, err, r"--resume: .*u3 holds finetune on .* \(parent model: .*u2 \(\w+\) there, .*u1 \(\w+\) now\)")

    # The exact reference of the chain: a retrain on train minus the union, recorded against the root original.
    code, _, err = run_cli(capsys, "forget", u2, "--method", "retrain", "--forget", f"ids:{ids_file}", "--out", ref)
    assert code == 0, err
    r = _json(ref, "run.json")
    assert r["exact"] and r["parent"] == r["original"] == str(digits_run.resolve())
    assert r["requested_from"] == str(u2.resolve()) and r["forget_sha256"] == info3["forget_sha256"]
    assert set(_json(ref, "split.json")["forget"]) == f3
    assert _json(ref, "config.json") == _json(digits_run, "config.json")  # the root's recipe

    # A request that forgets nothing new is refused; nothing is written.
    code, _, err = run_cli(capsys, "forget", u3, "--method", "finetune", "--forget", "class:3", "--out", tmp_path / "u4")
    assert_one_line_error(code, err, "selects only samples this run has already forgotten")
    assert not (tmp_path / "u4").exists()


def test_two_bench_scenarios_never_share_a_method_job(tmp_path):
    from unlearnkit.bench.plan import build_plan
    from unlearnkit.config import resolve_config

    plan = build_plan(resolve_config("digits"), "f" * 64, methods=["finetune", "neggrad"],
                      scenarios=["random:0.1", "class:3"], seeds=2, store=tmp_path)
    by_path: dict[Path, set[str]] = {}
    for job in plan.jobs.values():
        if job.kind in ("retrain", "method", "audit"):
            by_path.setdefault(plan.path(job), set()).add(job.spec["scenario"])
    assert len(by_path) == 2 * 2 * 3 * 2  # (retrain + 2 methods) x (run + audit) x 2 scenarios x 2 seeds
    assert all(len(scenarios) == 1 for scenarios in by_path.values())



def test_a_split_forgets_the_union_of_its_requests_and_never_all_of_train():
    import numpy as np

    from unlearnkit.data import DatasetBundle, LabeledImages, make_split
    from unlearnkit.errors import UnlearnkitError

    n, classes = 40, ("a", "b")
    labels = (np.arange(n) % 2).astype(np.int64)
    pool = LabeledImages(np.zeros((n, 1, 2, 2), np.uint8), labels, np.array([f"s{i}" for i in range(n)]))
    split = make_split(DatasetBundle("toy", classes, pool, pool, "f" * 64, "toy"), 0.25, seed=0)
    first = split.with_forget("random:5")
    both = first.with_forget("class:a")
    assert set(first.forget_idx) < set(both.forget_idx)
    assert set(both.forget_idx) == set(first.forget_idx) | set(split.with_forget("class:a").forget_idx)
    assert both.forget_spec == "random:5 + class:a" and not set(both.retain_idx) & set(first.forget_idx)
    with pytest.raises(UnlearnkitError, match="covers the whole training set"):
        both.with_forget("class:b")
    with pytest.raises(UnlearnkitError, match="already forgotten"):
        both.with_forget("random:5")


def test_resume_from_an_unreadable_checkpoint_is_a_one_line_error(capsys, digits_run, killed_retrain):
    (killed_retrain / "checkpoint.pt").write_bytes(b"not a checkpoint")
    code, _, err = run_cli(capsys, "forget", digits_run, "--method", "retrain", "--forget", "random:0.1",
                           "--out", killed_retrain, "--resume")
    assert_one_line_error(code, err, r"checkpoint .*checkpoint\.pt cannot be read .*delete it")
