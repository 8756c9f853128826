"""Executors: run a plan's jobs in dependency order, locally or as Ray tasks.

A failed job is reported with its log path; jobs that do not depend on it still run;
jobs that do are skipped. Finished jobs found in the store are reused ("cached").
"""

from __future__ import annotations

import time
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
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


# Jobs that train or unlearn a model: they own the accelerator (or the cores) while they run, and
# their wall time is what the leaderboard divides by retraining's, so with several workers no two
# of them run at once. Audits (mostly CPU: the MIA-efficacy SVC, the attacks) run beside them.
DEVICE_KINDS = frozenset({"original", "retrain", "method"})


def run_local(plan: Plan, data: str | None = None, on_result: Report | None = None,
              workers: int = 1) -> dict[str, dict[str, Any]]:
    """Jobs in dependency order; a job another bench (on the same store) is running now is put
    off while other ready jobs run, and waited for only when none is left.

    `workers` > 1 runs jobs in that many worker processes (`_run_pool`): one training or
    unlearning job at a time (DEVICE_KINDS) with audits beside it.
    """
    if workers < 1:
        raise UnlearnkitError(f"--workers must be >= 1, got {workers}")
    if workers > 1:
        return _run_pool(plan, data, on_result, workers)
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


def _run_pool(plan: Plan, data: str | None, on_result: Report | None, workers: int) -> dict[str, dict[str, Any]]:
    """`run_local` with `workers` processes (spawned: CUDA cannot be forked); see `_PoolScheduler`."""
    import multiprocessing  # noqa: PLC0415

    bar = _BenchBar(plan, f"bench ({workers} workers)")
    with ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"),
                             initializer=_worker_init) as pool:
        for _ in range(workers):
            pool.submit(_warm_up)  # start every worker now (each imports torch), not when its first job comes
        scheduler = _PoolScheduler(plan, pool, workers, bar, data, on_result)
        try:
            scheduler.run()
        except KeyboardInterrupt:
            # A Ctrl-C reaches every process of the terminal, but `timeout --signal=INT` (gpu_tier.sh)
            # or a scheduler's SIGINT reaches this one only: pass it on, so each worker's job unwinds
            # (locks released, checkpoints kept) and the pool's shutdown does not wait for whole jobs.
            _interrupt_workers(pool)
            raise
    bar.close()
    return {j.id: scheduler.results[j.id] for j in plan.order()}


class _PoolScheduler:
    """Which job starts next in a worker pool, and what its result unblocks.

    At most one DEVICE_KINDS job in flight, so training and unlearning times stay comparable
    with a serial bench's; audits fill the other workers, keeping one free for the next device
    job. Jobs start in plan order among those whose dependencies are done. A job that another
    bench holds (its lock) comes back as None and is tried again a little later.
    """

    def __init__(self, plan: Plan, pool: ProcessPoolExecutor, workers: int, bar: _BenchBar,
                 data: str | None, on_result: Report | None):
        self.plan, self.pool, self.workers, self.bar = plan, pool, workers, bar
        self.data, self.on_result = data, on_result
        self.results: dict[str, dict[str, Any]] = {}
        self.pending = plan.order()
        self.position = {j.id: i for i, j in enumerate(self.pending)}
        self.retry_at: dict[str, float] = {}
        self.running: dict[Future, Job] = {}

    def run(self) -> None:
        while self.pending or self.running:
            self._skip_jobs_of_failed_dependencies()
            self._start_ready_jobs()
            if not self.running:
                if self.pending:
                    time.sleep(0.5)  # every ready job is held by another bench: look again shortly
                continue
            self._collect(wait(self.running, timeout=1.0, return_when=FIRST_COMPLETED)[0])

    def _resolved(self, job: Job) -> bool:
        return all(d in self.results for d in job.deps)

    def _device_running(self) -> bool:
        return any(j.kind in DEVICE_KINDS for j in self.running.values())

    def _skip_jobs_of_failed_dependencies(self) -> None:
        for job in [j for j in self.pending if self._resolved(j)]:
            failed = [d for d in job.deps if self.results[d]["status"] in ("failed", "skipped")]
            if failed:
                self.pending.remove(job)
                self._finish(job, {"id": job.id, "status": "skipped", "seconds": 0.0, "log": None, "because": failed[0]})

    def _start_ready_jobs(self) -> None:
        now = time.monotonic()
        ready = [j for j in self.pending if self._resolved(j) and self.retry_at.get(j.id, 0.0) <= now]
        # The device job first (the critical path: audits wait for methods, not the other way
        # round); audits then fill the workers, keeping one free for the next device job.
        if not self._device_running():
            for job in [j for j in ready if j.kind in DEVICE_KINDS][:1]:
                self._submit(job)
        device_left = any(j.kind in DEVICE_KINDS for j in [*self.pending, *self.running.values()])
        for job in [j for j in ready if j.kind not in DEVICE_KINDS]:
            if len(self.running) >= self.workers - (1 if device_left and not self._device_running() else 0):
                break
            self._submit(job)

    def _submit(self, job: Job) -> None:
        self.pending.remove(job)
        self.bar.start(job)
        future = self.pool.submit(_run_job_in_worker, job, self.plan.path(job), _dep_paths(self.plan, job),
                                  _log(self.plan, job), self.data, wait=None)
        self.running[future] = job

    def _collect(self, done) -> None:
        for future in done:
            job = self.running.pop(future)
            try:
                result = future.result()
            except BrokenProcessPool:
                raise UnlearnkitError(
                    f"a bench worker process died while running {job.id} (killed, e.g. out of memory, or it could not start: see above); run the same bench "
                    "command again (finished jobs are reused), with fewer --workers") from None
            if result is None:  # another bench holds its lock: try it again after the next jobs
                self.pending.append(job)
                self.pending.sort(key=lambda j: self.position[j.id])
                self.retry_at[job.id] = time.monotonic() + 2.0
            else:
                self._finish(job, result)

    def _finish(self, job: Job, result: dict[str, Any]) -> None:
        self.results[job.id] = result
        self.bar.finish(job, result)
        if self.on_result:
            self.on_result(result)


_IN_JOB = False  # in a worker: whether a job is running (a SIGINT then interrupts it; an idle worker ignores it)


def _worker_init() -> None:
    import signal  # noqa: PLC0415

    signal.signal(signal.SIGINT, _on_sigint)


def _on_sigint(signum, frame) -> None:
    # An idle worker waiting for its next job would die with a traceback; the pool's shutdown ends it.
    if _IN_JOB:
        raise KeyboardInterrupt


def _run_job_in_worker(*args, **kwargs) -> dict[str, Any] | None:
    global _IN_JOB
    _IN_JOB = True
    try:
        return run_job(*args, **kwargs)
    finally:
        _IN_JOB = False


def _warm_up() -> None:
    import torch  # noqa: F401, PLC0415

    import unlearnkit.bench.jobs  # noqa: F401, PLC0415


def _interrupt_workers(pool: ProcessPoolExecutor) -> None:
    import os  # noqa: PLC0415
    import signal  # noqa: PLC0415

    for proc in list((getattr(pool, "_processes", None) or {}).values()):  # no public handle before Python 3.14
        try:
            os.kill(proc.pid, signal.SIGINT)
        except (ProcessLookupError, AttributeError, TypeError):
            pass


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
