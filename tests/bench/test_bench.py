"""The bench's test: the `smoke` grid (embedded digits, every method, 2 seeds), cache reuse,
failure isolation, and the Ray executor giving the same table as the local one."""

from __future__ import annotations

import hashlib
import json
import math
import shutil

import pytest

from unlearnkit.bench.leaderboard import mean_ci
from unlearnkit.bench.runner import run_bench
from unlearnkit.cli.main import main
from unlearnkit.config import resolve_config
from unlearnkit.errors import UnlearnkitError

# Digits at a short recipe: the whole grid stays well inside the test budget.
SMOKE = {"train.epochs": 6}


def _cfg():
    return resolve_config("digits", SMOKE)


def _quality(table):
    """The leaderboard without its timing columns (wall times differ between runs, the rest must not)."""
    return {s: [{k: v for k, v in r.items() if k not in ("seconds", "time_ratio")} for r in rows] for s, rows in table.items()}


@pytest.fixture(scope="module")
def smoke_bench(tmp_path_factory, cache_dir):
    out = tmp_path_factory.mktemp("bench") / "smoke"
    result = run_bench(_cfg(), out, methods="all", forget="random:0.1", seeds=2)
    return out, result


def test_smoke_grid_runs_every_method_and_writes_the_leaderboard(smoke_bench):
    from unlearnkit.methods import list_methods

    out, result = smoke_bench
    assert not result["failed"] and not result["skipped"]
    rows = result["table"]["random:0.1"]
    assert [r["method"] for r in rows][0] == "retrain"
    assert {r["method"] for r in rows} == set(list_methods())
    assert all(r["n"] == 2 for r in rows)
    retrain = rows[0]
    assert retrain["avg_gap"][0] == pytest.approx(0.0, abs=1e-9)
    assert retrain["time_ratio"][0] == pytest.approx(1.0)
    gaps = [r["avg_gap"][0] for r in rows[1:]]
    assert gaps == sorted(gaps)  # sorted by average gap to retraining
    for r in rows:
        ua, ta = r["UA"][0], r["TA"][0]
        assert 0 <= ua <= 100 and 0 <= ta <= 100
        assert not math.isnan(r["UA"][1])  # two seeds give an interval
    md = (out / "leaderboard.md").read_text()
    assert "| retrain | 2 |" in md and "±" in md
    csv_lines = (out / "leaderboard.csv").read_text().splitlines()
    assert csv_lines[0].startswith("scenario,method,n,UA,UA_ci95") and len(csv_lines) == 1 + len(rows)
    html = (out / "leaderboard.html").read_text()
    assert html.count("data:image/png;base64,") == 2


def test_second_run_reuses_everything(smoke_bench):
    out, first = smoke_bench
    again = run_bench(_cfg(), out, methods="all", forget="random:0.1", seeds=2)
    assert {r["status"] for r in again["results"].values()} == {"cached"}
    assert again["table"] == first["table"]


def test_the_header_counts_the_methods_and_the_note_resolves_their_defaults(smoke_bench, monkeypatch):
    # The method list was once shadowed by the output file names: the header said "7 methods" and
    # the provenance note resolved defaults for "plan.json", ..., so a leaderboard made with tuned
    # defaults claimed paper defaults.
    from unlearnkit.bench.plan import parse_methods

    out, _ = smoke_bench
    seen = []
    monkeypatch.setattr("unlearnkit.tuning.defaults.provenance_note", lambda methods, *a: seen.append(methods) or "NOTE")
    run_bench(_cfg(), out, methods="all", forget="random:0.1", seeds=2)  # every job from the store
    assert seen == [parse_methods("all")]
    md = (out / "leaderboard.md").read_text().splitlines()
    assert md[0] == f"# unlearnkit leaderboard: digits, {len(parse_methods('all'))} methods, 2 seed(s)"
    assert "NOTE" in md


def test_interrupted_bench_loses_nothing(smoke_bench, tmp_path):
    """A kill mid-run leaves some jobs finished and one half-written; rerunning redoes only the rest."""
    out, first = smoke_bench
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    store = copy / "store"
    # Simulate the kill: one method run lost its final files, one audit never happened.
    method_dir = next(p for p in store.iterdir() if p.name.startswith("method-"))
    (method_dir / "metrics.json").unlink()
    (method_dir / "model.safetensors").unlink()
    audit_dir = next(p for p in store.iterdir() if p.name.startswith("audit-"))
    shutil.rmtree(audit_dir)
    again = run_bench(_cfg(), copy, methods="all", forget="random:0.1", seeds=2)
    statuses = [r["status"] for r in again["results"].values()]
    assert statuses.count("done") >= 2 and statuses.count("cached") >= len(statuses) - 4
    assert not again["failed"]
    assert _quality(again["table"]) == _quality(first["table"])  # determinism: the redone jobs give the same numbers


def test_failed_job_is_isolated(tmp_path, cache_dir):
    """A method that fails is reported with its log; independent jobs finish; the CLI exits non-zero."""
    out = tmp_path / "b"
    code = main(["bench", "--preset", "digits", "--set", "train.epochs=3", "--methods", "finetune,neggrad",
                 "--set", "neggrad.lr=1e12", "--out", str(out)])
    assert code == 1
    results = json.loads((out / "results.json").read_text())
    failed = [r for r in results.values() if r["status"] == "failed"]
    assert [r["id"] for r in failed] == ["method/random:0.1/neggrad/seed0"]
    assert "diverged" in open(failed[0]["log"]).read()
    assert results["audit/random:0.1/neggrad/seed0"]["status"] == "skipped"
    assert results["audit/random:0.1/finetune/seed0"]["status"] == "done"


@pytest.mark.parametrize("argv, planned, not_planned", [
    (["--seeds", "2", "--forget", "random:0.1,class:3"], ["original/seed1", "audit/class:3/finetune/seed1"], ["seed2"]),
    # One bench per seed (a core or machine each) on one store; --seeds N from 0 then gathers them.
    (["--seed-start", "2", "--seeds", "2"], ["original/seed2", "audit/random:0.1/finetune/seed3"], ["seed0", "seed1", "seed4"]),
    # A comma inside one scenario separates its classes; a new scenario starts at a spec kind.
    (["--forget", "random:0.1,class:3,5:0.5,class:3,5"], ["method/class:3,5:0.5/finetune/seed0", "method/class:3,5/finetune/seed0",
                                                        "method/random:0.1/finetune/seed0"], ["class:5", "seed1"]),
])
def test_dry_run_plans_without_running(tmp_path, cache_dir, capsys, argv, planned, not_planned):
    out = tmp_path / "dry"
    assert main(["bench", "--preset", "digits", "--methods", "finetune", *argv, "--dry-run", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert all(job in printed for job in planned)
    assert not any(seed in printed for seed in not_planned)
    assert not out.exists()


def test_a_bench_of_one_later_seed_runs_and_says_which(tmp_path, cache_dir):
    out = tmp_path / "s1"
    assert main(["bench", "--preset", "digits", "--methods", "finetune", "--seed-start", "1", "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert sorted(results) == sorted(["original/seed1", "retrain/random:0.1/retrain/seed1", "method/random:0.1/finetune/seed1",
                                      "audit/random:0.1/finetune/seed1", "audit/random:0.1/retrain/seed1"])
    assert (out / "leaderboard.md").read_text().startswith("# unlearnkit leaderboard: digits, 1 methods, 1 seed(s): 1")


@pytest.mark.parametrize("argv, message", [
    (["--seed-start", "-1"], "--seed-start -1 must be >= 0"),
    (["--seeds", "0"], "--seeds must be >= 1, got 0"),
    (["--seed-start", "1", "--score-models", "3"], "runs its models on seed 0; run it with --seed-start 0"),
    (["--methods", "finetune,forgetall"], "unknown method 'forgetall'"),
    (["--forget", "class:elephant"], "unknown class 'elephant'"),
    (["--set", "finetune.lrr=1"], "no hyperparameter 'lrr'"),
    (["--score-models", "2"], "at least 3 models per side"),
    (["--methods", "retrain"], "names no method to compare with retraining"),
    (["--methods", " , "], "names no method to compare with retraining"),
    # A setting for a method outside the bench would be checked, then silently unused.
    (["--methods", "finetune", "--set", "scrub.lr=0.5"], "--set scrub.* applies to a method that is not in --methods"),
    (["--set", "method.lr=0.1"], "a bench sets hyperparameters per method, e.g. --set finetune.lr=..."),
])
def test_bench_bad_input(tmp_path, cache_dir, capsys, argv, message):
    out = tmp_path / "bad"
    assert main(["bench", "--preset", "digits", "--out", str(out), *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0]
    assert not out.exists()


def test_methods_and_scenarios_are_kept_once_in_order():
    from unlearnkit.bench.plan import parse_methods, parse_scenarios

    assert parse_methods("scrub, finetune,scrub,retrain") == ["scrub", "finetune"]
    assert parse_scenarios("class:3,5, random:0.1,class:3,5") == ["class:3,5", "random:0.1"]


def test_mean_ci():
    m, h = mean_ci([1.0, 2.0, 3.0])
    assert m == 2.0 and h == pytest.approx(4.303 * 1.0 / 3**0.5, rel=1e-3)
    assert math.isnan(mean_ci([5.0])[1])


def test_ray_executor_matches_local(tmp_path, cache_dir):
    pytest.importorskip("ray")
    local = run_bench(_cfg(), tmp_path / "local", methods="finetune,ssd", forget="random:0.1", seeds=1)
    ray_run = run_bench(_cfg(), tmp_path / "ray", methods="finetune,ssd", forget="random:0.1", seeds=1, executor="ray")
    assert not ray_run["failed"]
    assert _quality(ray_run["table"]) == _quality(local["table"])


def test_precision_is_part_of_every_stored_model_key(tmp_path):
    from unlearnkit.bench.plan import build_plan

    def keys(precision):
        cfg = resolve_config("digits", {"runtime.precision": precision})
        plan = build_plan(cfg, "fp", methods=["finetune"], scenarios=["random:0.1"], seeds=1, store=tmp_path)
        return {j.id: j.key for j in plan.order()}

    fp32, bf16 = keys("fp32"), keys("bf16")
    assert fp32.keys() == bf16.keys()
    # the original differs, and through it every job that descends from it
    assert all(fp32[k] != bf16[k] for k in fp32)
    assert keys("fp32") == fp32  # and the key is stable


def test_a_methods_revision_is_part_of_its_key_and_only_its_own(tmp_path, monkeypatch):
    # A code change that alters a method's results raises its revision: a store made by the older
    # code must not hand back its runs. Unrevised methods keep the keys they always had.
    from unlearnkit.bench.plan import build_plan
    from unlearnkit.methods import get_method

    def keys():
        plan = build_plan(resolve_config("digits", {}), "fp", methods=["finetune", "gan"], scenarios=["class:3:0.5"],
                          seeds=1, store=tmp_path)
        return {j.id: j.key for j in plan.order()}

    now = keys()
    monkeypatch.setattr(get_method("gan"), "revision", get_method("gan").revision + 1)
    bumped = keys()
    changed = {k for k in now if now[k] != bumped[k]}
    assert changed == {"method/class:3:0.5/gan/seed0", "audit/class:3:0.5/gan/seed0"}
    monkeypatch.setattr(get_method("gan"), "revision", 0)
    assert keys()["method/class:3:0.5/gan/seed0"] not in (now["method/class:3:0.5/gan/seed0"], bumped["method/class:3:0.5/gan/seed0"])


# --------------------------------------------------------------------------- robustness (issue #13)


def test_a_failed_original_is_reported_not_a_crash(tmp_path, cache_dir, capsys):
    """The original diverges: every job depending on it is skipped, the leaderboard is still
    written (empty), the failed job's log is named, and the exit status is 1."""
    out = tmp_path / "b"
    code = main(["bench", "--preset", "digits", "--set", "train.epochs=1", "--set", "train.lr=10",
                 "--set", "train.momentum=0.99", "--set", "train.weight_decay=1", "--set", "train.schedule=constant",
                 "--methods", "finetune", "--out", str(out)])
    printed = " ".join(capsys.readouterr().out.split())  # the console wraps lines
    assert code == 1
    log = out / "logs" / "original__seed0.log"
    assert "failed original/seed0: see" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["original/seed0"]["status"] == "failed" and results["original/seed0"]["log"] == str(log)
    assert "diverged" in log.read_text() or "became nan" in log.read_text()
    assert "No audit finished" in (out / "leaderboard.md").read_text()
    assert not (out / "store").exists() or not any((out / "store").iterdir())  # no half store entry


def test_bench_never_replaces_a_users_file(tmp_path, cache_dir, capsys):
    out = tmp_path / "b"
    out.mkdir()
    (out / "leaderboard.md").write_text("my leaderboard")
    code = main(["bench", "--preset", "digits", "--methods", "finetune", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "leaderboard.md exists and was not written by unlearnkit" in err[0]
    assert (out / "leaderboard.md").read_text() == "my leaderboard"
    assert sorted(p.name for p in out.iterdir()) == ["leaderboard.md"]  # checked before any job ran


def test_two_benches_on_one_store_share_the_work(tmp_path, cache_dir):
    """Two `bench` processes started together on one folder: no job runs twice (one header per
    job log), and both end with the leaderboard a single process writes."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    import unlearnkit

    argv = ["bench", "--preset", "digits", "--set", "train.epochs=1", "--methods", "finetune", "--seeds", "1"]
    env = {**os.environ, "PYTHONPATH": str(Path(unlearnkit.__file__).resolve().parents[1]), "UNLEARNKIT_QUIET": "1",
           "OMP_NUM_THREADS": "1", "UNLEARNKIT_CACHE": str(cache_dir)}
    shared = tmp_path / "shared"
    procs = [subprocess.Popen([sys.executable, "-m", "unlearnkit", *argv, "--out", str(shared)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    single = tmp_path / "single"
    assert main([*argv, "--out", str(single)]) == 0
    logs = sorted((shared / "logs").iterdir())
    assert len(logs) == 5  # original, retrain, finetune, 2 audits
    for log in logs:
        starts = [line for line in log.read_text().splitlines() if line.startswith("== ")]
        assert len(starts) == 1, (log.name, starts)  # each job ran once, in one of the two

    def table(folder):
        import csv

        rows = list(csv.DictReader((folder / "leaderboard.csv").open()))
        return [{k: v for k, v in r.items() if not k.startswith(("seconds", "time_ratio"))} for r in rows]

    assert table(shared) == table(single)
    assert not [p for p in shared.rglob("*") if p.name.endswith(".tmp") or p.name == ".unlearnkit.lock"]


def test_ctrl_c_in_bench_says_to_run_it_again(tmp_path, monkeypatch, capsys):
    import unlearnkit.bench.runner as runner

    def interrupted(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner, "run_bench", interrupted)
    assert main(["bench", "--preset", "digits", "--out", str(tmp_path / "b")]) == 130
    err = capsys.readouterr().err
    assert "run the same bench command again" in err and "--resume" not in err


def test_a_bench_folder_from_before_the_manifest_is_still_ours(tmp_path):
    """Benches written before the manifest (e.g. docs/leaderboards/*) are recognised by their plan and store."""
    from unlearnkit.bench.runner import _pre_manifest_bench
    from unlearnkit.outputs import adopt_outputs, check_outputs

    out = tmp_path / "old"
    (out / "store").mkdir(parents=True)
    (out / "plan.json").write_text(json.dumps({"scenarios": ["random:0.1"], "jobs": {}}))
    (out / "leaderboard.md").write_text("# an old leaderboard")
    assert _pre_manifest_bench(out)
    adopt_outputs(out, ["plan.json", "leaderboard.md"])
    check_outputs(out, ["plan.json", "leaderboard.md"])
    assert not _pre_manifest_bench(out)  # adopted once; from now on the manifest decides
    user = tmp_path / "user"
    user.mkdir()
    (user / "plan.json").write_text("{}")  # a user's own plan.json is no bench plan
    assert not _pre_manifest_bench(user)


def test_retrain_floor_adds_a_second_retraining_row(tmp_path, cache_dir):
    from unlearnkit.bench.plan import FLOOR_ROW

    out = tmp_path / "floor"
    result = run_bench(_cfg(), out, methods="finetune", forget="random:0.1", seeds=2, retrain_floor=True)
    assert not result["failed"]
    rows = result["table"]["random:0.1"]
    assert [r["method"] for r in rows][:2] == ["retrain", FLOOR_ROW]
    floor = rows[1]
    assert floor["n"] == 2
    # Another initial seed trains other weights: the gap is positive.
    assert floor["avg_gap"][0] > 0
    # Per original: the reference and its twin, retrained with two different seeds into two different models.
    retrains = {}
    for run in (out / "store").glob("retrain-*"):
        info = json.loads((run / "run.json").read_text())
        retrains.setdefault(info["parent"], []).append((info["seed"], hashlib.sha256((run / "model.safetensors").read_bytes()).digest()))
    assert len(retrains) == 2
    for pair in retrains.values():
        assert len(pair) == 2 and len({seed for seed, _ in pair}) == 2 and len({h for _, h in pair}) == 2, pair
    # The twin is the same job as the competition score's first replica (method seed 1), on every seed.
    assert {"retrain/random:0.1/retrain/seed0-m1", "retrain/random:0.1/retrain/seed1-m1",
            "audit/random:0.1/retrain-floor/seed0", "audit/random:0.1/retrain-floor/seed1"} <= set(result["results"])
    md = (out / "leaderboard.md").read_text()
    assert f"| {FLOOR_ROW} | 2 |" in md and "the gap a perfect method would score" in md
    again = run_bench(_cfg(), out, methods="finetune", forget="random:0.1", seeds=2, retrain_floor=True)
    assert {r["status"] for r in again["results"].values()} == {"cached"}
    # Without the flag the same store gives the table without the row (nothing re-runs).
    plain = run_bench(_cfg(), out, methods="finetune", forget="random:0.1", seeds=2)
    assert FLOOR_ROW not in {r["method"] for r in plain["table"]["random:0.1"]}


def test_retrain_floor_shares_the_score_replica(tmp_path, cache_dir, capsys):
    out = tmp_path / "dry"
    argv = ["bench", "--preset", "digits", "--methods", "finetune", "--dry-run", "--out", str(out)]
    assert main([*argv, "--score-models", "3", "--retrain-floor"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("retrain/random:0.1/retrain/seed0-m1") == 1
    assert "audit/random:0.1/retrain-floor/seed0" in printed


def test_workers_run_audits_beside_one_device_job_and_match_the_serial_bench(tmp_path, cache_dir):
    """`--workers 3`: the same leaderboard as one process, and no two training/unlearning jobs
    ever ran at once (their times are what the leaderboard compares with retraining's)."""
    from unlearnkit.bench.executors import DEVICE_KINDS

    cfg, methods = resolve_config("digits", {"train.epochs": 2}), "finetune,neggrad,ssd"
    serial = run_bench(cfg, tmp_path / "serial", methods=methods, forget="random:0.1", seeds=1)
    with pytest.warns(UserWarning, match="without a GPU: audits share the CPU cores"):
        pooled = run_bench(cfg, tmp_path / "pooled", methods=methods, forget="random:0.1", seeds=1, workers=3)
    assert not pooled["failed"] and not pooled["skipped"]
    assert _quality(pooled["table"]) == _quality(serial["table"])
    runs = [r for r in pooled["results"].values() if r["status"] == "done"]
    assert len(runs) == len(serial["results"]) == 1 + (1 + 3) + 4  # original, retrain + methods, audits
    device = sorted((r["started"], r["started"] + r["seconds"]) for r in runs if r["id"].split("/")[0] in DEVICE_KINDS)
    assert len(device) == 5
    for (_, end), (start, _) in zip(device, device[1:]):
        assert start >= end - 0.05, "two training/unlearning jobs overlapped"  # 50 ms: clock reads vs process start
    with pytest.raises(UnlearnkitError, match="--workers"):
        run_bench(_cfg(), tmp_path / "bad", methods="finetune", workers=0)
    with pytest.raises(UnlearnkitError, match="local executor"):
        run_bench(_cfg(), tmp_path / "bad", methods="finetune", workers=2, executor="ray")


def test_sigint_to_the_bench_alone_stops_its_workers(tmp_path, cache_dir):
    """`timeout --signal=INT` (gpu_tier.sh) signals the bench process only: it passes the interrupt
    on to the worker running a job, idle workers exit quietly, and nothing stays locked or running."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import unlearnkit

    out = tmp_path / "b"
    env = {**os.environ, "PYTHONPATH": str(Path(unlearnkit.__file__).resolve().parents[1]), "UNLEARNKIT_QUIET": "1",
           "OMP_NUM_THREADS": "1", "UNLEARNKIT_CACHE": str(cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "unlearnkit", "bench", "--preset", "digits", "--set", "train.epochs=500",
                             "--methods", "finetune", "--workers", "2", "--out", str(out)], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    log = out / "logs" / "original__seed0.log"
    deadline = time.monotonic() + 300
    while not (log.is_file() and "started by pid" in log.read_text()) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(1.0)  # into the training loop
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, output[-2000:]
    assert "interrupted: run the same bench command again" in output and "Traceback" not in output, output[-2000:]
    assert "interrupted (KeyboardInterrupt)" in log.read_text()  # the job itself was interrupted, not left to finish 500 epochs
    for _ in range(50):  # workers exit as the pool shuts down; allow them a moment
        alive = subprocess.run(["pgrep", "-a", "-s", str(proc.pid)], capture_output=True, text=True).stdout.strip()
        if not alive:
            break
        time.sleep(0.1)
    assert not alive, f"processes of the bench left running: {alive}"
    assert not [p for p in out.rglob(".unlearnkit.lock") if p.is_file() and p.stat().st_size]
