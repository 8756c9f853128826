"""`unlearn` (Python API) and `forget_run` (the `unlearnkit forget` command's engine)."""

from __future__ import annotations

import copy
import dataclasses
import numbers
import resource
import shutil
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from unlearnkit.config import RunConfig, TrainConfig
from unlearnkit.data.splits import Split, class_token, select_forget
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import MethodContext, get_method, make_hparams
from unlearnkit.methods.common import request_sizes, whole_classes
from unlearnkit.provenance import check_same_job, describe, lineage_root, model_sha256, sha256_ids, sha256_json
from unlearnkit.runs import CHECKPOINT_FILE, MODEL_FILE, RunDir, environment, prepare_out_dir, save_model
from unlearnkit.runs import writes_run_dir
from unlearnkit.training.data import Normalizer
from unlearnkit.training.loop import DivergedError, accuracy, load_checkpoint
from unlearnkit.training.runtime import Runtime
from unlearnkit.tuning import defaults as tuning_defaults


_TUNED_FOR = {"random": "a share of the members", "class-share": "a share of one class, the rest of it kept"}


def _warn_if_whole_classes_take_random(parent_split: Split, split: Split, forget: str) -> None:
    """An `ids:` file (or a share of a small class that rounds up to all of it) can cover every member
    of a class: the methods then treat it as a class request (`whole_classes`), but its defaults
    lookup is by spec and gives the `random` (or `class-share`) entry. Only the samples this request adds count (the
    union minus the parent's forget set, no second read of an ids file): in a chain, a class an
    earlier request removed is not this request's doing."""
    kind = tuning_defaults.kind_of(forget)
    if kind not in _TUNED_FOR:
        return
    added = dataclasses.replace(split, forget_idx=np.setdiff1d(split.forget_idx, parent_split.forget_idx))
    gone = [class_token(split.classes, c, by="name") for c in whole_classes(added, split.num_classes)]
    if gone:
        warnings.warn(
            f"--forget {forget} covers every member of class {', '.join(gone)} but takes the {kind}-kind "
            f"hyperparameters (tuned for {_TUNED_FOR[kind]}); use --forget class:{','.join(gone)} for the class-tuned ones",
            stacklevel=3,
        )


def estimated_cost(cls, hp: Any, split: Split, recipe: TrainConfig) -> dict[str, float] | None:
    """The method's own cost estimate for this request (`Method.cost`, in REE) and its share of
    retraining (the recipe's epochs over this request's retain set); None if the method gives none."""
    sizes = request_sizes(split)  # what the tuner's estimates read, so both agree
    ree = cls().cost(hp, sizes, recipe) if sizes["retain"] else None
    if ree is None:
        return None
    return {"ree": round(float(ree), 4), "share_of_retraining": round(float(ree) / recipe.epochs, 4)}


def _warn_if_over_budget(method: str, forget: str, n_forget: int, estimate: dict[str, float] | None,
                         hp_source: dict[str, Any]) -> None:
    """A tuned entry keeps its method within a budget on the tuning requests; a method whose work
    grows with the forget set (passes over it) can cost far more on a larger request."""
    if estimate is None or hp_source.get("kind") != "tuned" or any(v == "set" for v in hp_source.get("fields", {}).values()):
        return
    budget = hp_source.get("budget")
    if budget is not None and estimate["share_of_retraining"] > 1.5 * budget:
        warnings.warn(
            f"{method} on --forget {forget} ({n_forget} samples): its tuned entry {hp_source['entry']} was kept within "
            f"{budget:.0%} of retraining on its tuning requests, but this one is estimated at "
            f"{estimate['share_of_retraining']:.0%} (its work grows with the forget set); it still runs — "
            "lower its passes over forget with --set to save time, or compare with `--method retrain`",
            stacklevel=3,
        )


def _warn_if_tuned_with_older_revision(method: str, hp_source: dict[str, Any]) -> None:
    """The tuned entry's trials ran an older revision of the method (`defaults.revision_note`)."""
    if "older_revision" in hp_source and any(v == "tuned" for v in hp_source.get("fields", {}).values()):
        warnings.warn(f"{method}: tuned entry {hp_source['entry']} was {hp_source['older_revision']}; it still applies — "
                      f"search it again with `{hp_source['command']}`", stacklevel=3)


def unlearn(
    model: nn.Module,
    split: Split,
    method: str,
    *,
    normalizer: Normalizer | None = None,
    runtime: Runtime | None = None,
    recipe: TrainConfig | RunConfig | None = None,
    model_factory=None,
    seed: int = 0,
    checkpoint: Path | None = None,
    report: dict[str, Any] | None = None,
    **hparams: Any,
) -> nn.Module:
    """Return an unlearned copy of `model`, in eval mode; `model` itself is never modified.

    `split` must carry a forget set (`split.with_forget("random:0.1")`). `recipe` and
    `model_factory` default to a `TrainConfig()` and a re-initialised copy of `model`'s
    architecture; `retrain` needs them to match the original run (the CLI passes them).
    `report`, when given, receives what the method decided while it ran (e.g. ssd's searched alpha).
    The copy is returned in eval mode whatever mode `model` was in (call `.train()` to train it
    further): the methods train it, and a train-mode forward would predict with batch statistics
    and overwrite its BatchNorm running statistics.
    """
    cls = get_method(method)
    check_seed(seed, "seed")
    # A RunConfig as `recipe` (e.g. `run.config`) also selects the tuned defaults for its preset and recipe.
    hp, hp_source = tuning_defaults.hparams_for(method, recipe, split.forget_spec, hparams)
    warn_inert_hparams(cls, method, hp, hparams)
    _warn_if_tuned_with_older_revision(method, hp_source)
    return _unlearn(cls, method, hp, model, split, normalizer=normalizer, runtime=runtime,
                    recipe=getattr(recipe, "train", recipe), model_factory=model_factory, seed=seed,
                    checkpoint=checkpoint, report=report)


# torch's generators take a 64-bit seed (torch.manual_seed accepts 0 .. 2**64 - 1; above that it
# fails with "Overflow when unpacking long long" after the output directory exists).
MAX_SEED = 2**64 - 1


def check_seed(seed: Any, name: str = "--seed") -> None:
    """A one-line error for a seed torch cannot take (negative, too large, not a whole number)."""
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise UnlearnkitError(f"{name} {seed!r} is not a whole number; give a seed from 0 to {MAX_SEED} (2**64 - 1)")
    if seed < 0:
        raise UnlearnkitError(f"{name} {seed} is negative; give a seed >= 0 (or none: the run's own seed)")
    if seed > MAX_SEED:
        raise UnlearnkitError(f"{name} {seed} is too large: torch takes seeds from 0 to {MAX_SEED} (2**64 - 1); give a smaller one")


def warn_inert_hparams(cls, method: str, hp: Any, explicit: dict[str, Any]) -> None:
    """One warning per hyperparameter the user set that has no effect with the others (`Method.inert_fields`):
    e.g. forget_lr with optimizer=sgd, or neggrad's lr with optimizer=dualoptim.

    Only values that differ from the paper default count: the tuner passes every fixed field at
    its paper default in every trial, and a default that changes nothing needs no warning.
    """
    defaults = dataclasses.asdict(cls.Hparams())
    inert = cls().inert_fields(hp)
    for key in explicit:
        name = key.removeprefix("method.")
        if name in inert and getattr(hp, name) != defaults.get(name):
            warnings.warn(f"{method}: method.{name}={getattr(hp, name)!r} has no effect: {inert[name]}", stacklevel=3)


def _unlearn(cls, method: str, hp: Any, model: nn.Module, split: Split, *, normalizer: Normalizer | None,
             runtime: Runtime | None, recipe: TrainConfig | None, model_factory, seed: int,
             checkpoint: Path | None, report: dict[str, Any] | None) -> nn.Module:
    """`unlearn` with the hyperparameters already resolved (`forget_run` resolves them itself)."""
    if len(split.forget_idx) == 0:
        raise UnlearnkitError("the split has no forget set; select one with split.with_forget('random:0.1') or --forget")
    runtime = runtime or Runtime.from_config()
    normalizer = normalizer or Normalizer.fit(split.part("train").images)
    original = copy.deepcopy(model).eval()
    for p in original.parameters():
        p.requires_grad_(False)
    if model_factory is None:
        model_factory = lambda s: _reinitialised(model, s)  # noqa: E731
    work = copy.deepcopy(model)
    if not cls.exact:  # retraining is left as it is: it is the reference (only its logged val accuracy would change)
        _one_view(work)
        _one_view(original)
        build = model_factory
        model_factory = lambda s: _one_view(build(s))  # noqa: E731  (random teachers run one view too)
    ctx = MethodContext(split, normalizer, runtime, original, recipe or TrainConfig(), model_factory, seed, checkpoint,
                        report=report if report is not None else {})
    torch.manual_seed(seed)
    try:
        out = cls().run(work, ctx, hp)
        _copy_views(model, out)  # the unlearned model is evaluated exactly as the original was
    except DivergedError as exc:
        raise UnlearnkitError(
            f"method {method!r} diverged ({exc}); the original model is untouched — lower method.lr or change its hyperparameters"
        ) from None
    _check_finite(out, method)
    # Methods leave the model in train mode (`run_epoch`); a returned model is for predictions
    # (eval mode), and a train-mode forward would also overwrite its BatchNorm running statistics.
    return out.eval()


def _one_view(model: nn.Module) -> nn.Module:
    """Turn off `model`'s flip test-time augmentation (every submodule with a `flip_tta` flag); returns it.

    A model built with `flip_tta` averages its eval-mode logits over the image and its mirror:
    a reporting choice (+0.3-1 point of test accuracy) that doubles every eval-mode pass. Inside
    a method, eval-mode passes are statistics of the network -- teacher outputs, Fisher
    importances, saliency, forget-accuracy probes -- which one view estimates as well, and the
    methods' cost estimates (the tuner's budget) count one pass (docs/methods.md).
    """
    for m in model.modules():
        if getattr(m, "flip_tta", False):
            m.flip_tta = False
    return model


def _copy_views(reference: nn.Module, out: nn.Module) -> None:
    """Give `out` the evaluation views of `reference` (a method may return a model it built itself)."""
    flags = {name: m.flip_tta for name, m in reference.named_modules() if hasattr(m, "flip_tta")}
    for name, m in out.named_modules():
        if name in flags:
            m.flip_tta = flags[name]


def _reinitialised(model: nn.Module, seed: int) -> nn.Module:
    """A copy of `model` with every parameter drawn afresh by its module's `reset_parameters`.

    A parameter held by a module without one (a ViT's position embedding, a custom `nn.Parameter`)
    would keep its trained value, so a "retrained" reference (or a random teacher) would start
    partly from the original: refused instead, naming it, since only the caller knows its init.
    """
    uncovered = [f"{name}.{p}" if name else p for name, m in model.named_modules()
                 if not hasattr(m, "reset_parameters") for p, _ in m.named_parameters(recurse=False)]
    if uncovered:
        raise UnlearnkitError(
            f"cannot re-initialise parameter {uncovered[0]!r} of this model ({len(uncovered)} such): its module has no "
            "reset_parameters(); pass model_factory=lambda seed: <a freshly initialised model> to unlearn"
        )
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
    reuse: bool = False,
    expect_hparams: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Unlearn `forget` from the finished run at `run_path` with `method`; write a new run directory at `out`.

    `expect_hparams` (a bench job): the values the job was planned with; if the tuned defaults
    resolve to others now (the entries file changed since planning), nothing is written and the
    job fails with a one-line error, so a store never holds a run under another setting's key.

    Everything is validated (method, hyperparameters, run, forget spec, output directory)
    before `out` is created; the parent run directory is only read.

    Forgetting is cumulative: from an unlearned run, the new run forgets the union of every
    request along the lineage (`Split.with_forget`). run.json records what the run is with content
    hashes (`unlearnkit.provenance`). `resume` continues only the same job (same parent and parent
    model, method, forget set, hyperparameters and seed) and refuses a finished one; `reuse`
    (the demo) also returns a finished run of the same job as it is, without redoing it.
    """
    from unlearnkit.audit.pipeline.caches import part_logits, store_logits  # noqa: PLC0415  (avoid an import cycle)
    from unlearnkit.training.pipeline import LoadedRun, load_run  # noqa: PLC0415

    cls = get_method(method)
    hp = make_hparams(method, hparams)
    if seed is not None:
        check_seed(seed)
    parent_run = load_run(run_path, data=data)
    if cls.exact:
        from unlearnkit.importer import require_recipe  # noqa: PLC0415

        require_recipe(parent_run.info, f"run {parent_run.dir.path}")
    split = parent_run.split.with_forget(forget)
    # Tuned defaults for this recipe and scenario kind (else the paper's), then --set; run.json says which.
    hp, hp_source = tuning_defaults.hparams_for(method, parent_run.config, forget, hparams)
    _warn_if_whole_classes_take_random(parent_run.split, split, forget)
    warn_inert_hparams(cls, method, hp, hparams or {})
    estimate = estimated_cost(cls, hp, split, parent_run.config.train)
    _warn_if_over_budget(method, forget, len(split.forget_idx), estimate, hp_source)
    _warn_if_tuned_with_older_revision(method, hp_source)
    if expect_hparams is not None and dataclasses.asdict(hp) != expect_hparams:
        changed = sorted(k for k, v in dataclasses.asdict(hp).items() if expect_hparams.get(k) != v)
        raise UnlearnkitError(
            f"{method} on {forget}: the hyperparameters resolve to other values than when this bench was planned "
            f"({', '.join(changed)}; the tuned defaults changed since); run the bench again to plan it anew"
        )
    out = Path(out)
    if out.resolve() == parent_run.dir.path.resolve():
        raise UnlearnkitError(f"--out {out} is the parent run; choose a new directory so the parent stays untouched")
    seed = parent_run.config.seed if seed is None else seed
    record = _job_record(parent_run, cls, method, hp, split, forget, seed)
    record["hparams_source"] = hp_source
    if resume or (reuse and (out / "run.json").is_file()):
        recorded = check_same_job(out, record, action="--resume" if resume else "demo")
        if RunDir(out).finished:  # model + metrics, written last (a kill before them leaves it resumable)
            if reuse:
                return {"run_dir": str(out), "method": method, "hparams": dataclasses.asdict(hp),
                        **RunDir(out).read_json("metrics.json")}
            raise UnlearnkitError(
                f"--resume: {out} is already finished ({describe(recorded)}); nothing to resume — "
                f"audit it with `unlearnkit audit {out}`, or choose a new --out to run it again"
            )
        resume = True
    run = prepare_out_dir(out, resume=resume)
    model = parent_run.load_model()
    rt = parent_run.runtime
    if rt.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(rt.device)

    out.mkdir(parents=True, exist_ok=True)
    run.write_json("config.json", parent_run.config.to_dict())  # the root's recipe, carried down the lineage
    run.write_json("split.json", split.manifest())
    run.write_json("run.json", record)
    earlier = _checkpointed_seconds(run.file(CHECKPOINT_FILE))
    t0 = time.perf_counter()
    report: dict[str, Any] = {}
    try:
        # The resolved hyperparameters as they are (`unlearn` would resolve them again from the spec).
        unlearned = _unlearn(
            cls, method, hp, model, split, normalizer=parent_run.normalizer, runtime=rt, recipe=parent_run.config.train,
            model_factory=parent_run.fresh_model, seed=seed, checkpoint=run.file(CHECKPOINT_FILE), report=report,
        )
    except UnlearnkitError:
        # A failed method leaves no half-made run behind (a killed one keeps its checkpoint for --resume).
        shutil.rmtree(out, ignore_errors=True)
        raise
    # A resumed run's time includes its earlier sessions' epochs (else a retrain killed and resumed
    # near its end looks cheap, and every method's time ratio to it is inflated).
    wall = time.perf_counter() - t0 + earlier
    # One forward pass per part, the audit's own (`part_logits`): the accuracies and the forget confidence
    # come from it, and its logits go to the audit's cache, so `unlearnkit audit` of this run runs none.
    loaded = LoadedRun(run, parent_run.config, record, split, parent_run.normalizer, rt)
    raw = {name: part_logits(loaded, unlearned, split.part(name).images, split.part(name).labels)
           for name in ("retain", "forget", "val", "test") if len(split.part(name).labels)}
    parts = {f"{name}_acc": round(accuracy(torch.from_numpy(z), torch.as_tensor(split.part(name).labels)), 3)
             for name, z in raw.items()}
    forget_labels = torch.as_tensor(split.part("forget").labels)
    conf = torch.softmax(torch.from_numpy(raw["forget"]), 1).gather(1, forget_labels[:, None]).mean().item()
    metrics = {
        **parts,
        "forget_mean_confidence": round(conf, 4),
        "unlearn_seconds": round(wall, 2),
        **({"unlearn_seconds_earlier_sessions": round(earlier, 2)} if earlier else {}),
        "peak_memory_mb": round(peak_memory_mb(rt), 1),
        **({"estimated_cost": estimate} if estimate else {}),
        "original": {k: parent_run.metrics.get(k) for k in ("train_seconds", "test_acc")},
        **({"method_report": report} if report else {}),
    }
    save_model(unlearned, run.file(MODEL_FILE), {"method": method, "parent": record["parent"]})
    store_logits(loaded, raw)  # keyed by the saved file's sha256: written after it
    record["status"] = "finished"
    record["unlearn_seconds"] = metrics["unlearn_seconds"]
    run.write_json("run.json", record)
    run.write_json("metrics.json", metrics)
    run.file(CHECKPOINT_FILE).unlink(missing_ok=True)
    return {"run_dir": str(out), "method": method, "hparams": dataclasses.asdict(hp), "hparams_source": hp_source["summary"],
            **metrics}


def _job_record(parent_run, cls, method: str, hp, split: Split, request: str, seed: int) -> dict[str, Any]:
    """run.json of an unlearned run: what it is, with the content hashes `--resume` and audits check."""
    parent_path = parent_run.dir.path.resolve()
    parent_hash = model_sha256(parent_path)
    root, root_hash, earlier = lineage_root(parent_path, parent_run.info, parent_hash)
    ids = split.bundle.train.ids
    hparams = dataclasses.asdict(hp)
    record = {
        "kind": "unlearned",
        "status": "running",
        # An exact retrain depends only on the root's recipe and the forget union: its parent is the root.
        "parent": root if cls.exact else str(parent_path),
        "parent_model_sha256": root_hash if cls.exact else parent_hash,
        "original": root,
        "original_model_sha256": root_hash,
        "method": method,
        **({"method_revision": cls.revision} if cls.revision else {}),  # absent at 0: older records still match
        "exact": cls.exact,
        "hparams": hparams,
        "hparams_sha256": sha256_json(hparams),
        "forget_spec": split.forget_spec,
        "forget_specs": [*earlier, request],
        "forget_sha256": sha256_ids(ids[split.forget_idx]),
        "request_sha256": sha256_ids(ids[select_forget(split, request)]),
        "seed": seed,
        "dataset": parent_run.info["dataset"],
        "normalizer": parent_run.info["normalizer"],
        "environment": environment(),
        "runtime": parent_run.runtime.describe(),
    }
    if parent_run.info.get("imported") is not None:
        # Carried down every generation: whether the lineage's import declared a training recipe
        # decides if an exact retrain exists (importer.require_recipe), even once the root has moved.
        record["imported"] = parent_run.info["imported"]
    if cls.exact and str(parent_path) != root:
        record["requested_from"], record["requested_from_model_sha256"] = str(parent_path), parent_hash
    record["provenance"] = describe(record)
    return record


def _checkpointed_seconds(checkpoint: Path) -> float:
    """Seconds of the epochs a resumed run already did (its checkpoint's per-epoch log; 0 without one).
    The interrupted epoch itself is lost time and not counted."""
    if not checkpoint.is_file():
        return 0.0
    state = load_checkpoint(checkpoint)
    return float(sum(r.get("seconds", 0.0) for r in state.get("history", [])))

