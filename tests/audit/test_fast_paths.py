"""The audit's faster paths change no number (issue #11): `forget` hands its forward passes to the
audit's logit cache, and the accuracies it records are the ones the former evaluation gave."""

import json

import numpy as np
import pytest
from helpers import audit_numbers
import torch

from unlearnkit.audit import audit
from unlearnkit.audit.pipeline.caches import _forward, _logits_cache
from unlearnkit.audit.pipeline.loading import _Model
from unlearnkit.methods import forget_run
from unlearnkit.training.data import TensorSet
from unlearnkit.training.loop import predict_logits
from unlearnkit.training.pipeline import evaluate_parts, load_run

PARTS = ("retain", "forget", "val", "test")


@pytest.fixture(autouse=True)
def _one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)  # later tests in this process get the usual count back



def test_forget_fills_the_audits_logit_cache_with_the_audits_own_logits(digits_run, monkeypatch, tmp_path):
    import unlearnkit.training.loop as loop

    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "cache"))
    calls = []
    real = loop.predict_logits
    monkeypatch.setattr(loop, "predict_logits", lambda *a, **k: calls.append(len(a[1])) or real(*a, **k))
    forget_run(digits_run, "neggrad", "random:0.1", tmp_path / "ng")
    forget_run(digits_run, "retrain", "random:0.1", tmp_path / "rt")
    lr = load_run(tmp_path / "ng")
    sizes = {p: len(lr.split.part(p).labels) for p in PARTS}
    assert sorted(calls[-4:]) == sorted(sizes.values())  # the retrain's evaluation: one pass per part, forget not twice

    # What forget stored is exactly what the audit's own forward computes with the cache off.
    for part in PARTS:
        stored = np.load(_logits_cache(lr, part, lr.split.part(part).ids))["logits"]
        monkeypatch.setenv("UNLEARNKIT_LOGIT_CACHE", "0")
        fresh = _Model("unlearned", lr)
        _forward(fresh, [part], seed=0)
        monkeypatch.delenv("UNLEARNKIT_LOGIT_CACHE")
        assert stored.dtype == np.float32 and np.array_equal(stored.astype(np.float64), fresh.logits[part])

    # The audit of the fresh run runs no forward pass of its model, and gives the numbers of an uncached one.
    calls.clear()
    warm = audit(tmp_path / "ng", reference=tmp_path / "rt", write=False, plots=False)
    assert len(calls) == 4  # the original's four parts only: the unlearned and retrained models' came from forget
    monkeypatch.setenv("UNLEARNKIT_LOGIT_CACHE", "0")
    monkeypatch.setenv("UNLEARNKIT_RESULT_CACHE", "0")
    assert audit_numbers(audit(tmp_path / "ng", reference=tmp_path / "rt", write=False, plots=False)) == audit_numbers(warm)
    monkeypatch.delenv("UNLEARNKIT_LOGIT_CACHE")
    monkeypatch.delenv("UNLEARNKIT_RESULT_CACHE")

    # A tuning trial's audit (RA on a retain subset) slices the whole parts forget stored: no forward either.
    calls.clear()
    trial = audit(tmp_path / "ng", reference=tmp_path / "rt", original=False, write=False, plots=False, retain_limit=0)
    assert calls == []
    monkeypatch.setenv("UNLEARNKIT_LOGIT_CACHE", "0")
    monkeypatch.setenv("UNLEARNKIT_RESULT_CACHE", "0")
    cold = audit(tmp_path / "ng", reference=tmp_path / "rt", original=False, write=False, plots=False, retain_limit=0)
    assert calls and audit_numbers(cold) == audit_numbers(trial)


def test_forget_records_the_accuracies_of_the_former_evaluation(digits_run, tmp_path):
    forget_run(digits_run, "finetune", "random:0.1", tmp_path / "ft")
    lr = load_run(tmp_path / "ft")
    metrics = json.loads((tmp_path / "ft" / "metrics.json").read_text())
    model = lr.load_model()
    # The former code: evaluate_parts at batch 1024, and a second pass over forget for the mean confidence.
    before = evaluate_parts(model, lr, PARTS)
    part = lr.split.part("forget")
    logits = predict_logits(model, TensorSet.from_numpy(part.images, part.labels, lr.runtime), lr.normalizer, lr.runtime)
    conf = torch.softmax(logits, 1).gather(1, torch.as_tensor(part.labels)[:, None]).mean().item()
    assert {k: metrics[k] for k in before} == before
    assert metrics["forget_mean_confidence"] == round(conf, 4)
