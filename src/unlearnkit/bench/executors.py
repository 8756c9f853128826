"""Executors: run a plan's jobs in dependency order, locally or as Ray tasks.

A failed job is reported with its log path; jobs that do not depend on it still run;
jobs that do are skipped. Finished jobs found in the store are reused ("cached").
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from unlearnkit.bench.jobs import is_done, run_job
from unlearnkit.bench.plan import Job, Plan
from unlearnkit.errors import UnlearnkitError
from unlearnkit.training.loop import progress

Report = Callable[[dict[str, Any]], None]


def _dep_paths(plan: Plan, job: Job) -> dict[str, str]:
    return {d: str(plan.path(plan.jobs[d]).resolve()) for d in job.deps}


def _log(plan: Plan, job: Job) -> Path:
    return plan.store.parent / "logs" / (job.id.replace("/", "__").replace(":", "-") + ".log")


class _BenchBar:
    """Progress over the jobs left to run, weighted by each job's estimated cost.

    Jobs differ ~100x in cost (a training run vs. an audit) and cached ones cost nothing, so a
    bar counting jobs would give a meaningless ETA; weighting by cost makes tqdm's rate-based
    ETA track the real remaining time. The postfix says which job runs and how many are done.
    """

    def __init__(self, plan: Plan, desc: str):
        todo = [j for j in plan.jobs.values() if not is_done(j, plan.path(j))]
        self.total_jobs, self.done_jobs = len(todo), 0
        self.bar = progress(None, sum(j.cost for j in todo), desc, leave=True,
                            bar_format="{desc}: {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}{postfix}]")
        self._show("")

    def _show(self, current: str) -> None:
        self.bar.set_postfix_str(f"{self.done_jobs}/{self.total_jobs} jobs{', ' + current if current else ''}")

    def start(self, job: Job) -> None:
        self._show(job.id)

    def finish(self, job: Job, result: dict[str, Any]) -> None:
        if result["status"] != "cached":
            self.done_jobs += 1
            self.bar.update(job.cost)
        self._show("")

    def close(self) -> None:
        self.bar.close()


def run_local(plan: Plan, data: str | None = None, on_result: Report | None = None) -> dict[str, dict[str, Any]]:
    """Jobs one at a time in dependency order; a job another bench (on the same store) is
    running now is put off while other ready jobs run, and waited for only when none is left."""
    results: dict[str, dict[str, Any]] = {}
    bar = _BenchBar(plan, "bench")
    pending = plan.order()
    while pending:
        # Dependency order: the first pending job's dependencies are always resolved.
        ready = [j for j in pending if all(d in results for d in j.deps)]
        result = None
        for job in ready:
            bar.start(job)
            result = _run_one(plan, job, results, data, wait=None)
            if result is not None:
                break
        else:
            job = ready[0]
            bar.start(job)
            result = _run_one(plan, job, results, data, wait=True)
        results[job.id] = result
        pending.remove(job)
        bar.finish(job, result)
        if on_result:
            on_result(result)
    bar.close()
    return {j.id: results[j.id] for j in plan.order()}


def _run_one(plan: Plan, job: Job, results: dict[str, dict[str, Any]], data: str | None,
             wait: bool | None) -> dict[str, Any] | None:
    failed = [d for d in job.deps if results[d]["status"] in ("failed", "skipped")]
    if failed:
        return {"id": job.id, "status": "skipped", "seconds": 0.0, "log": None, "because": failed[0]}
    return run_job(job, plan.path(job), _dep_paths(plan, job), _log(plan, job), data, wait=wait)


def run_ray(plan: Plan, data: str | None = None, address: str | None = None, num_cpus: int | None = None,
            on_result: Report | None = None) -> dict[str, dict[str, Any]]:
    """Each job is a Ray task asking for its CPUs (and a GPU where the job wants one).

    Dependencies are expressed by passing upstream ObjectRefs, so Ray starts a job only when
    everything it reads exists; independent jobs run in parallel across the cluster.
    """
    try:
        import ray  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise UnlearnkitError("--executor ray needs Ray; install it with `pip install unlearnkit[ray]`") from None
    started_here = not ray.is_initialized()
    if started_here:
        ray.init(address=address, num_cpus=None if address else num_cpus, include_dashboard=False,
                 log_to_driver=False, ignore_reinit_error=True)

    @ray.remote
    def task(job: Job, path: str, dep_paths: dict[str, str], log: str, data: str | None, *upstream):
        bad = [u["id"] for u in upstream if u["status"] in ("failed", "skipped")]
        if bad:
            return {"id": job.id, "status": "skipped", "seconds": 0.0, "log": None, "because": bad[0]}
        return run_job(job, Path(path), dep_paths, Path(log), data)

    refs: dict[str, Any] = {}
    try:
        for job in plan.order():
            opts = {"num_cpus": job.num_cpus, "num_gpus": job.num_gpus}
            refs[job.id] = task.options(**opts).remote(
                job, str(plan.path(job).resolve()), _dep_paths(plan, job), str(_log(plan, job).resolve()), data,
                *[refs[d] for d in job.deps],
            )
        results: dict[str, dict[str, Any]] = {}
        pending = {ref: jid for jid, ref in refs.items()}
        bar = _BenchBar(plan, "bench (ray)")
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            jid = pending.pop(done[0])
            results[jid] = ray.get(done[0])
            bar.finish(plan.jobs[jid], results[jid])
            if on_result:
                on_result(results[jid])
        bar.close()
        return {j.id: results[j.id] for j in plan.order()}
    finally:
        if started_here:
            ray.shutdown()
