"""Tuning references and trials use every CPU this process may use, as the bench does."""

from __future__ import annotations


import pytest
import torch

from unlearnkit.bench.jobs import _run_locked
from unlearnkit.bench.plan import Job
from unlearnkit.config import resolve_config
from unlearnkit.tuning.references import tuning_plan


@pytest.mark.parametrize("cpus", [1, 6])
def test_tuning_jobs_get_every_cpu(tmp_path, monkeypatch, cpus):
    # The count is patched so that the test also fails on a 1-CPU machine if jobs are pinned to one.
    monkeypatch.setattr("unlearnkit.training.runtime.available_cpus", lambda: cpus)
    monkeypatch.setattr("unlearnkit.training.runtime.cuda_available", lambda: False)
    plan = tuning_plan(resolve_config("digits", []), "f" * 16, [(100, "random:0.1")], tmp_path / "store")
    assert {j.num_cpus for j in plan.jobs.values()} == {cpus}


def test_tuning_jobs_on_a_gpu_get_one_cpu_each(tmp_path, monkeypatch):
    monkeypatch.setattr("unlearnkit.training.runtime.available_cpus", lambda: 8)
    monkeypatch.setattr("unlearnkit.training.runtime.cuda_available", lambda: True)
    plan = tuning_plan(resolve_config("digits", []), "f" * 16, [(100, "random:0.1")], tmp_path / "store")
    assert {j.num_cpus for j in plan.jobs.values()} == {1}
    assert {j.num_gpus for j in plan.jobs.values()} == {1.0}


def test_a_local_job_restores_the_callers_thread_count(tmp_path, monkeypatch):
    # A job sets torch's threads to its num_cpus; the trials that run in the same process after it
    # must get the caller's count back (one-thread references left every later trial on one core).
    seen = []
    monkeypatch.setattr("unlearnkit.bench.jobs._execute", lambda *a: seen.append(torch.get_num_threads()))
    before = torch.get_num_threads()
    job = Job(id="original/seed0", kind="original", key="k", spec={}, deps=(), num_cpus=before + 1)
    result = _run_locked(job, tmp_path, {}, tmp_path / "log.txt", None)
    assert result["status"] == "done" and seen == [before + 1]
    assert torch.get_num_threads() == before
