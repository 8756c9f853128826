"""`unlearn` (Python API) and `forget_run` (the `unlearnkit forget` command's engine)."""

from __future__ import annotations

import copy
import dataclasses
import resource
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
from torch import nn

from unlearnkit.config import TrainConfig
from unlearnkit.data.splits import Split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import MethodContext, get_method, make_hparams
from unlearnkit.runs import CHECKPOINT_FILE, MODEL_FILE, environment, prepare_out_dir, save_model
from unlearnkit.runs import writes_run_dir
from unlearnkit.training.data import Normalizer, TensorSet
from unlearnkit.training.loop import DivergedError, predict_logits
from unlearnkit.training.runtime import Runtime


def unlearn(
    model: nn.Module,
    split: Split,
    method: str,
    *,
    normalizer: Normalizer | None = None,
    runtime: Runtime | None = None,
    recipe: TrainConfig | None = None,
    model_factory=None,
    seed: int = 0,
    checkpoint: Path | None = None,
    **hparams: Any,
) -> nn.Module:
    """Return an unlearned copy of `model`; `model` itself is never modified.

    `split` must carry a forget set (`split.with_forget("random:0.1")`). `recipe` and
    `model_factory` default to a `TrainConfig()` and a re-initialised copy of `model`'s
    architecture; `retrain` needs them to match the original run (the CLI passes them).
    """
    cls = get_method(method)
    hp = make_hparams(method, hparams)
    if len(split.forget_idx) == 0:
        raise UnlearnkitError("the split has no forget set; select one with split.with_forget('random:0.1') or --forget")
    runtime = runtime or Runtime.from_config()
    normalizer = normalizer or Normalizer.fit(split.part("train").images)
    original = copy.deepcopy(model).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    if model_factory is None:
        model_factory = lambda s: _reinitialised(model, s)  # noqa: E731
    ctx = MethodContext(split, normalizer, runtime, original, recipe or TrainConfig(), model_factory, seed, checkpoint)
    torch.manual_seed(seed)
    work = copy.deepcopy(model)
    try:
        out = cls().run(work, ctx, hp)
    except DivergedError as exc:
        raise UnlearnkitError(
            f"method {method!r} diverged ({exc}); the original model is untouched — lower method.lr or change its hyperparameters"
        ) from None
    _check_finite(out, method)
    return out


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    torch.manual_seed(seed)
    fresh = copy.deepcopy(model)
    for m in fresh.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
    return fresh


def _check_finite(model: nn.Module, method: str) -> None:
    for name, t in model.state_dict().items():
        if t.is_floating_point() and not torch.isfinite(t).all():
            raise UnlearnkitError(
                f"method {method!r} diverged: it produced non-finite weights ({name}); lower method.lr — the original is untouched"
            )


def peak_memory_mb(runtime: Runtime) -> float:
    if runtime.device.type == "cuda":
        return torch.cuda.max_memory_allocated(runtime.device) / 2**20
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return rss / (2**20 if sys.platform == "darwin" else 2**10)


@writes_run_dir("out")  # locked while it runs; a failure before a model or checkpoint leaves no directory
def forget_run(
    run_path: str | Path,
    method: str,
    forget: str,
    out: str | Path,
    *,
    hparams: dict[str, Any] | None = None,
    data: str | None = None,
    seed: int | None = None,
    resume: bool = False,
) -> dict[str, Any]:
    """Unlearn `forget` from the finished run at `run_path` with `method`; write a new run directory at `out`.

    Everything is validated (method, hyperparameters, run, forget spec, output directory)
    before `out` is created; the original run directory is only read.
    """
    from unlearnkit.training.pipeline import evaluate_parts, load_run  # noqa: PLC0415  (avoid an import cycle)

    cls = get_method(method)
    hp = make_hparams(method, hparams)
    original_run = load_run(run_path, data=data)
    split = original_run.split.with_forget(forget)
    out = Path(out)
    if out.resolve() == original_run.dir.path.resolve():
        raise UnlearnkitError(f"--out {out} is the original run; choose a new directory so the original stays untouched")
    run = prepare_out_dir(out, resume=resume)
    model = original_run.load_model()
    seed = original_run.config.seed if seed is None else seed
    rt = original_run.runtime
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)

    out.mkdir(parents=True, exist_ok=True)
    cfg = original_run.config.to_dict()
    run.write_json("config.json", cfg)
    run.write_json("split.json", split.manifest())
    record = {
        "kind": "unlearned",
        "status": "running",
        "parent": str(original_run.dir.path.resolve()),
        "method": method,
        "exact": cls.exact,
        "hparams": dataclasses.asdict(hp),
        "forget_spec": forget,
        "seed": seed,
        "dataset": original_run.info["dataset"],
        "normalizer": original_run.info["normalizer"],
        "environment": environment(),
        "runtime": rt.describe(),
    }
    run.write_json("run.json", record)
    t0 = time.perf_counter()
    try:
        unlearned = unlearn(
            model, split, method, normalizer=original_run.normalizer, runtime=rt, recipe=original_run.config.train,
            model_factory=original_run.fresh_model, seed=seed, checkpoint=run.file(CHECKPOINT_FILE),
            **dataclasses.asdict(hp),
        )
    except UnlearnkitError:
        # A failed method leaves no half-made run behind (a killed one keeps its checkpoint for --resume).
        shutil.rmtree(out, ignore_errors=True)
        raise
    wall = time.perf_counter() - t0
    parts = evaluate_parts(unlearned, (split, original_run.normalizer, rt), ("retain", "forget", "val", "test"))
    forget_part = split.part("forget")
    logits = predict_logits(unlearned, TensorSet.from_numpy(forget_part.images, forget_part.labels, rt), original_run.normalizer, rt)
    conf = torch.softmax(logits, 1).gather(1, torch.as_tensor(forget_part.labels)[:, None]).mean().item()
    metrics = {
        **parts,
        "forget_mean_confidence": round(conf, 4),
        "unlearn_seconds": round(wall, 2),
        "peak_memory_mb": round(peak_memory_mb(rt), 1),
        "original": {k: original_run.metrics.get(k) for k in ("train_seconds", "test_acc")},
    }
    save_model(unlearned, run.file(MODEL_FILE), {"method": method, "parent": record["parent"]})
    record["status"] = "finished"
    record["unlearn_seconds"] = metrics["unlearn_seconds"]
    run.write_json("run.json", record)
    run.write_json("metrics.json", metrics)
    run.file(CHECKPOINT_FILE).unlink(missing_ok=True)
    return {"run_dir": str(out), "method": method, "hparams": dataclasses.asdict(hp), **metrics}
