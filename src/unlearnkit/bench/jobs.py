"""Running one job of a plan: the same function under every executor (local or Ray)."""

from __future__ import annotations

import contextlib
import json
import os
import time
import traceback
from pathlib import Path
from typing import Any

from unlearnkit.bench.plan import Job
from unlearnkit.files import atomic_write_json, make_dirs, remove_empty_dirs, writing
from unlearnkit.locks import LOCK_FILE, acquire_lock, release_lock, try_lock
from unlearnkit.runs import RunDir, resumable

SUMMARY = "summary.json"  # an audit job's output


def is_done(job: Job, path: Path) -> bool:
    if job.kind == "audit":
        return (path / SUMMARY).is_file()
    return RunDir(path).finished


def run_job(job: Job, path: Path, dep_paths: dict[str, str], log_path: Path, data: str | None = None,
            *, wait: bool | None = True) -> dict[str, Any] | None:
    """Run `job` into `path` unless it is already finished there; return {status, seconds, log}.

    Output of the job (progress bars, warnings, a traceback on failure) goes to `log_path`.
    Interrupted jobs resume: training and retraining continue from their epoch checkpoint.
    The store entry is locked while the job runs, so two benches sharing a store never run
    one job twice: the second waits and then finds it cached (or, with `wait=None`, gets None
    back at once and can do other work first).
    """
    if is_done(job, path):
        if (path / LOCK_FILE).exists() and try_lock(path):
            release_lock(path)  # the stale lock file of a bench killed as it finished: tidy it away
        return {"id": job.id, "status": "cached", "seconds": 0.0, "log": str(log_path)}
    with writing(path):
        created = make_dirs(path)
    try:
        if not acquire_lock(path, wait=wait, what=f"bench job {job.id}"):
            return None
        try:
            if is_done(job, path):  # another bench finished it while we waited
                return {"id": job.id, "status": "cached", "seconds": 0.0, "log": str(log_path)}
            return _run_locked(job, path, dep_paths, log_path, data)
        finally:
            release_lock(path)
    finally:
        remove_empty_dirs(created)  # a job that failed before writing anything leaves no entry


def _run_locked(job: Job, path: Path, dep_paths: dict[str, str], log_path: Path, data: str | None) -> dict[str, Any]:
    import torch  # noqa: PLC0415  (Ray workers import lazily)

    # The same thread count under every executor, so both give bit-identical results; restored
    # afterwards, since a local job runs in the caller's process (e.g. `tune` trials come next).
    threads = torch.get_num_threads()
    torch.set_num_threads(max(1, job.num_cpus))
    try:
        return _run_logged(job, path, dep_paths, log_path, data)
    finally:
        torch.set_num_threads(threads)


def _run_logged(job: Job, path: Path, dep_paths: dict[str, str], log_path: Path, data: str | None) -> dict[str, Any]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    started = time.time()  # wall clock, comparable across worker processes (results.json: when each job ran)
    t0 = time.perf_counter()
    with open(log_path, "a", encoding="utf-8") as log, contextlib.redirect_stderr(log), contextlib.redirect_stdout(log):
        os.environ.setdefault("UNLEARNKIT_QUIET", "0")
        # One header per run of the job: how a test (or a person) sees that no job ran twice.
        print(f"== {job.id}: started by pid {os.getpid()} at {time.strftime('%Y-%m-%dT%H:%M:%S')}", flush=True)
        try:
            _execute(job, path, dep_paths, data)
        except KeyboardInterrupt:
            log.write(f"== {job.id}: interrupted (KeyboardInterrupt) at {time.strftime('%Y-%m-%dT%H:%M:%S')}; "
                      "running the bench again resumes it\n")
            raise
        except Exception:  # noqa: BLE001  (a job failure is reported, the bench goes on)
            log.write(traceback.format_exc())
            return {"id": job.id, "status": "failed", "seconds": time.perf_counter() - t0, "started": started,
                    "log": str(log_path)}
    return {"id": job.id, "status": "done", "seconds": time.perf_counter() - t0, "started": started, "log": str(log_path)}


def _execute(job: Job, path: Path, dep_paths: dict[str, str], data: str | None) -> None:
    from unlearnkit.config import RunConfig  # noqa: PLC0415

    spec = job.spec
    if job.kind == "original":
        from unlearnkit.training.pipeline import train  # noqa: PLC0415

        cfg = RunConfig.from_dict(spec["config"])
        if data:
            cfg.data.source = data
        train(cfg, path, resume=resumable(path))
    elif job.kind in ("retrain", "method"):
        from unlearnkit.methods import forget_run  # noqa: PLC0415

        (original,) = dep_paths.values()
        mseed = spec["method_seed"]
        # The values in the job's key: forget_run refuses to run others (a tuned entry exported
        # between planning and this job would otherwise run under this key).
        forget_run(original, spec["method"], spec["forget"], path, hparams=spec["hparams"], data=data,
                   seed=None if mseed == 0 else 1000 * spec["seed"] + mseed, resume=resumable(path),
                   expect_hparams=spec.get("resolved"))
    elif job.kind == "audit":
        from unlearnkit.audit import audit  # noqa: PLC0415

        target, reference, original = (dep_paths[d] for d in job.deps)
        result = audit(target, reference=reference, original=original, data=data)
        atomic_write_json(path / SUMMARY, {"job": job.id, "target": target, "reference": reference,
                                           "audit": json.loads(json.dumps(result, default=_jsonable))})
    else:
        raise ValueError(f"unknown job kind {job.kind!r}")


def _jsonable(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if hasattr(o, "to_dict"):
        return o.to_dict()
    return str(o)
