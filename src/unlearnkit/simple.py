"""The plain PyTorch API: any classifier, any torch Dataset/DataLoader of (image, label).

    import unlearnkit as uk
    clean = uk.unlearn(model, forget=forget_set, retain=retain_set, method="scrub")   # model untouched
    report = uk.audit(clean, forget=forget_set, retain=retain_set, test=test_set, original=model)
    report.to_html("audit.html")

Each dataset is read ONCE through its own transforms into float tensors (so the model sees
exactly what the user's pipeline feeds it; random augmentations in those transforms are drawn
once) and handed to the registered methods as an in-memory split with an identity normaliser
and no extra augmentation. `audit` writes temporary run directories for its models and runs
the audit package's public `unlearnkit.audit.audit` on them, so the numbers and the report are
the CLI's. The run-directory form `unlearn(model, split, method, ...)` stays as it was.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import hashlib
import os
import tempfile
import types
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from unlearnkit.config import RunConfig, TrainConfig
from unlearnkit.data import DatasetBundle, LabeledImages, Split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models.registry import temporary_model
from unlearnkit.runs import MODEL_FILE, RunDir, atomic_write_text, environment, save_model
from unlearnkit.training.data import Normalizer
from unlearnkit.training.runtime import Runtime

MATERIALISE_BATCH = 256


# --------------------------------------------------------------------------- data


def materialise(data: Dataset | DataLoader, what: str) -> tuple[np.ndarray, np.ndarray]:
    """(images float32 NCHW, labels int64) of every item, read once through the dataset's transforms."""
    if isinstance(data, DataLoader):
        batches: Any = data
    elif isinstance(data, Dataset) or (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        if len(data) == 0:
            raise UnlearnkitError(f"{what} is empty; pass a dataset with at least one (image, label) item")
        _check_item(data[0], what)
        batches = DataLoader(data, batch_size=MATERIALISE_BATCH, shuffle=False)
    else:
        raise UnlearnkitError(f"{what} is a {type(data).__name__}; pass a torch Dataset or DataLoader of (image, label)")
    xs, ys = [], []
    for batch in batches:
        if not isinstance(batch, (tuple, list)) or len(batch) < 2:
            raise UnlearnkitError(f"{what} yields {type(batch).__name__} batches; it must yield (images, labels)")
        x, y = batch[0], batch[1]
        if not isinstance(x, torch.Tensor) or x.ndim != 4:
            raise UnlearnkitError(f"{what} yields images of shape {tuple(getattr(x, 'shape', ()))}; batches must be (N, C, H, W) tensors")
        xs.append(x.detach().float().cpu())
        ys.append(torch.as_tensor(y).long().cpu().reshape(-1))
    if not xs or sum(len(y) for y in ys) == 0:
        raise UnlearnkitError(f"{what} is empty; pass a dataset with at least one (image, label) item")
    images, labels = torch.cat(xs), torch.cat(ys)
    if not torch.isfinite(images).all():
        raise UnlearnkitError(f"{what} has NaN or infinite pixel values; check its transforms")
    return images.numpy(), labels.numpy()


def _check_item(item: Any, what: str) -> None:
    if not isinstance(item, (tuple, list)) or len(item) < 2:
        raise UnlearnkitError(f"{what}[0] is a {type(item).__name__}; items must be (image, label) pairs")
    if not isinstance(item[0], torch.Tensor):
        raise UnlearnkitError(
            f"{what}[0] holds a {type(item[0]).__name__} image, not a tensor; add transforms.ToTensor() (and the "
            "normalisation the model was trained with) to its transform"
        )


def identity_normalizer(channels: int) -> Normalizer:
    """Feeds already-normalised float images unchanged: (x / 255 - 0) / (1 / 255) = x."""
    return Normalizer((0.0,) * channels, (1.0 / 255.0,) * channels)


def _num_classes(model: nn.Module, sample: np.ndarray, device: torch.device) -> int:
    """The model's output width (its class count), from one forward pass on one sample."""
    probe = copy.deepcopy(model).to(device).eval()
    with torch.no_grad():
        out = probe(torch.from_numpy(sample[:1]).to(device))
    if not isinstance(out, torch.Tensor) or out.ndim != 2:
        raise UnlearnkitError(f"the model returned {type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}; it must return (N, classes) logits")
    return int(out.shape[1])


@dataclass
class _Parts:
    """The materialised parts as one in-memory dataset and a split over it."""

    split: Split
    normalizer: Normalizer


def _build(model: nn.Module, device: torch.device, seed: int, *, forget, retain, val=None, test=None) -> _Parts:
    parts = {"retain": materialise(retain, "retain"), "forget": materialise(forget, "forget")}
    if val is not None:
        parts["val"] = materialise(val, "val")
    shape = parts["retain"][0].shape[1:]
    test_arrays = materialise(test, "test") if test is not None else (np.empty((0, *shape), np.float32), np.empty(0, np.int64))
    for name, (x, _) in [*parts.items(), ("test", test_arrays)]:
        if x.shape[1:] != shape:
            raise UnlearnkitError(f"{name} images have shape {x.shape[1:]} but retain's are {shape}; give every set the same transforms")
    num_classes = _num_classes(model, parts["retain"][0], device)
    for name, (_, y) in [*parts.items(), ("test", test_arrays)]:
        if len(y) and (y.min() < 0 or y.max() >= num_classes):
            raise UnlearnkitError(f"{name} has label {int(y.max() if y.max() >= num_classes else y.min())}, outside the model's {num_classes} outputs")
    pool = [(name, x, y) for name, (x, y) in parts.items()]
    ids = np.concatenate([np.array([f"{name}-{i}" for i in range(len(y))], dtype=str) for name, _, y in pool])
    train = LabeledImages(np.concatenate([x for _, x, _ in pool]), np.concatenate([y for _, _, y in pool]), ids)
    test_part = LabeledImages(test_arrays[0], test_arrays[1], np.array([f"test-{i}" for i in range(len(test_arrays[1]))], dtype=str))
    h = hashlib.sha256(b"unlearnkit-api-v1\0")
    for arr in (train.images, train.labels, test_part.images, test_part.labels):
        h.update(f"{arr.dtype.str}{arr.shape}".encode())
        h.update(np.ascontiguousarray(arr).tobytes())
    classes = tuple(str(c) for c in range(num_classes))
    bundle = DatasetBundle("in-memory", classes, train, test_part, h.hexdigest(), "in-memory")
    bounds = np.cumsum([0] + [len(y) for _, _, y in pool])
    pos = {name: np.arange(bounds[i], bounds[i + 1], dtype=np.int64) for i, (name, _, _) in enumerate(pool)}
    members = np.concatenate([pos["retain"], pos["forget"]])
    split = Split(bundle, np.sort(members), pos.get("val", np.empty(0, np.int64)), pos["forget"], seed,
                  f"the forget set ({len(pos['forget'])} samples)")
    return _Parts(split, identity_normalizer(int(shape[0])))


def _runtime(device: str | torch.device | None) -> Runtime:
    from unlearnkit.config import RuntimeConfig  # noqa: PLC0415

    # fp32 and the user's memory format: an arbitrary model is run as its author ran it.
    return Runtime.from_config(RuntimeConfig(device=str(device or "auto"), precision="fp32", channels_last=False),
                               device_key="device")


def _check_seed(seed: Any, where: str) -> None:
    """A seed torch's generators take (0 .. 2**64 - 1, as methods.api checks it), refused before any
    data are read: a negative one used to fail only after the datasets were materialised."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= 2**64 - 1:
        raise UnlearnkitError(f"{where}: seed={seed!r} is not valid; give an integer in [0, 2**64 - 1], e.g. seed=0")


def _device_of(model: nn.Module) -> torch.device:
    return next((p.device for p in model.parameters()), torch.device("cpu"))


# --------------------------------------------------------------------------- unlearn


def unlearn(model: nn.Module, split: Split | None = None, method: str | None = None, *, forget=None, retain=None,
            **kwargs: Any) -> nn.Module:
    """Return an unlearned copy of `model` (the model passed in is never modified).

    Two forms:

    * `unlearn(model, forget=DATASET, retain=DATASET, method="scrub", val=None, recipe=None,
      device=None, seed=0, **hparams)`: torch Datasets/DataLoaders of (image, label), as the
      model's own transforms produce them. `val` (samples the model never saw) is needed by
      `neggrad` and `gan`; `recipe` (a TrainConfig or dict of train.* settings) is what
      `retrain` trains with (default: TrainConfig(), without extra augmentation).
    * `unlearn(model, split, method, normalizer=..., runtime=..., ...)`: a run's Split
      (see `unlearnkit.methods.api.unlearn`).
    """
    from unlearnkit.methods import api  # noqa: PLC0415

    if isinstance(split, Split):
        if forget is not None or retain is not None:
            raise UnlearnkitError("unlearn: pass either a Split or forget=/retain= datasets, not both")
        return api.unlearn(model, split, method, **kwargs)
    if split is not None:
        raise UnlearnkitError(
            f"unlearn: the second argument is a {type(split).__name__}, not a Split; for torch datasets call "
            "unlearn(model, forget=..., retain=..., method=...)"
        )
    if forget is None or retain is None:
        raise UnlearnkitError("unlearn needs forget= and retain= (torch Datasets or DataLoaders of (image, label))")
    return unlearn_datasets(model, forget=forget, retain=retain, method=method or "scrub", **kwargs)


def unlearn_datasets(model: nn.Module, *, forget, retain, method: str = "scrub", val=None, recipe=None,
                     device: str | torch.device | None = None, seed: int = 0, model_factory=None,
                     **hparams: Any) -> nn.Module:
    from unlearnkit.methods import api, make_hparams  # noqa: PLC0415

    make_hparams(method, hparams)  # a bad method or hyperparameter fails before the data are read
    _check_seed(seed, "unlearn")
    train_recipe = _recipe(recipe)  # likewise a bad recipe
    runtime = _runtime(device)
    seed = int(seed)
    parts = _build(model, runtime.device, seed, forget=forget, retain=retain, val=val)
    # A fresh model (retrain, bad_teacher's random teacher): the caller's factory, on the run's device;
    # without one, `model` re-initialised by its modules' reset_parameters (refused where one is missing).
    factory = None if model_factory is None else (lambda s: runtime.model(model_factory(s)))
    out = api.unlearn(runtime.model(copy.deepcopy(model)), parts.split, method, normalizer=parts.normalizer,
                      runtime=runtime, recipe=train_recipe, seed=seed, model_factory=factory, **hparams)
    return out.to(_device_of(model))


def _recipe(recipe: TrainConfig | dict | None) -> TrainConfig:
    """The user's data were augmented (or not) by their transforms: add no crop, flip or cutout of our own.

    A TrainConfig is taken field by field through the same type and range checks as the dict
    form (TrainConfig(epochs=0) would retrain nothing, lr=-1 fail deep inside the optimiser).
    """
    from unlearnkit.config import set_path, validate  # noqa: PLC0415

    cfg = RunConfig()
    cfg.train.crop_padding, cfg.train.flip, cfg.train.cutout = 0, False, 0
    if isinstance(recipe, TrainConfig):
        items = {f.name: getattr(recipe, f.name) for f in dataclasses.fields(TrainConfig)}
    elif recipe is None or isinstance(recipe, dict):
        items = dict(recipe or {})
    else:
        raise UnlearnkitError(f"recipe= is a {type(recipe).__name__}; pass a TrainConfig or a dict of train.* settings")
    for key, value in items.items():
        set_path(cfg, key if str(key).startswith("train.") else f"train.{key}", value)
    return validate(cfg).train


# --------------------------------------------------------------------------- audit


@dataclass
class AuditReport:
    """What `audit` returns: the audit's numbers (`result`, `to_dict()`), and its report as HTML."""

    result: Any  # unlearnkit.audit.AuditResult
    html: str

    def to_dict(self) -> dict[str, Any]:
        return self.result.to_dict()

    def to_html(self, path: str | Path) -> Path:
        """Write the self-contained HTML report (tables and figures) to `path`."""
        path = Path(path)
        atomic_write_text(path, self.html)
        return path

    def __getattr__(self, name: str) -> Any:  # verdict, accuracy, ua, avg_gap, ... of the AuditResult
        if name in ("result", "html"):
            raise AttributeError(name)
        return getattr(self.result, name)


def audit(model: nn.Module, *, forget, retain, test, val=None, reference: nn.Module | None = None,
          original: nn.Module | None = None, device: str | torch.device | None = None, seed: int = 0,
          plots: bool = True) -> AuditReport:
    """Audit `model` after unlearning `forget`: accuracy, membership attacks, and the gap to `reference`.

    `reference`: a model retrained without `forget` (for the gap to retraining); `original`: the
    model before unlearning (shown beside). `val`: non-members for the attacks, samples none of
    the models saw (default: the test set doubles as them). The datasets are those given to
    `unlearn`; nothing is written outside a temporary folder.
    """
    from unlearnkit import audit as audit_package  # noqa: PLC0415

    _check_seed(seed, "audit")
    runtime = _runtime(device)
    seed = int(seed)
    parts = _build(model, runtime.device, seed, forget=forget, retain=retain, val=val if val is not None else test, test=test)
    with contextlib.ExitStack() as stack:
        tmp = stack.enter_context(tempfile.TemporaryDirectory(prefix="unlearnkit-audit-"))
        source = stack.enter_context(_memory_dataset(parts.split.bundle))
        stack.enter_context(_no_logit_cache())
        dirs = {}
        for role, net in (("unlearned", model), ("retrained", reference), ("original", original)):
            if net is not None:
                dirs[role] = Path(tmp) / role
                template = copy.deepcopy(net).cpu()
                name = stack.enter_context(temporary_model(
                    f"api:{role}-{uuid.uuid4().hex[:8]}",
                    lambda num_classes, in_channels=3, width=32, t=template: copy.deepcopy(t)))
                _write_run(dirs[role], template, name, role, parts, source, runtime)
        result = audit_package.audit(dirs["unlearned"], reference=dirs.get("retrained"),
                                     original=dirs.get("original", False), seed=seed, plots=plots)
        html = Path(result.files["report_html"]).read_text(encoding="utf-8")
    result.files = {}
    return AuditReport(result, html)


@contextlib.contextmanager
def _memory_dataset(bundle: DatasetBundle) -> Iterator[str]:
    from unlearnkit.training import pipeline  # noqa: PLC0415

    source = f"memory:{bundle.fingerprint[:16]}-{uuid.uuid4().hex[:8]}"
    pipeline.MEMORY_DATASETS[source] = bundle
    try:
        yield source
    finally:
        pipeline.MEMORY_DATASETS.pop(source, None)


@contextlib.contextmanager
def _no_logit_cache() -> Iterator[None]:
    # The temporary models' logits would only fill the user's cache with entries nobody can hit again.
    old = os.environ.get("UNLEARNKIT_LOGIT_CACHE")
    os.environ["UNLEARNKIT_LOGIT_CACHE"] = "0"
    try:
        yield
    finally:
        if old is None:
            os.environ.pop("UNLEARNKIT_LOGIT_CACHE", None)
        else:
            os.environ["UNLEARNKIT_LOGIT_CACHE"] = old


_KINDS = {"unlearned": ("unlearned", "the model"), "retrained": ("unlearned", "retrain"), "original": ("original", None)}


def _write_run(path: Path, template: nn.Module, name: str, role: str, parts: _Parts, source: str, runtime: Runtime) -> None:
    """A run directory for one in-memory model, whose architecture `name` is registered for this process."""
    cfg = RunConfig(preset="api")
    cfg.data.source, cfg.model.name = source, name
    cfg.runtime.device, cfg.runtime.precision, cfg.runtime.channels_last = str(runtime.device), "fp32", False
    kind, method = _KINDS[role]
    split = parts.split if role != "original" else Split(
        parts.split.bundle, parts.split.train_idx, parts.split.val_idx, np.empty(0, np.int64), parts.split.seed)
    bundle = split.bundle
    run = RunDir(path)
    run.write_json("config.json", cfg.to_dict())
    run.write_json("split.json", split.manifest())
    run.write_json("run.json", {
        "kind": kind, "status": "finished", "method": method, "forget_spec": split.forget_spec,
        # The caller vouches that `reference=` is retrained without the forget set from the same
        # starting point: the audit's reference check reads exactly these two fields.
        "exact": role == "retrained", "parent": "the caller's original model (in memory)",
        "api": "unlearnkit.audit(model, forget=..., retain=..., test=...)",
        "dataset": {"name": bundle.name, "source": source, "fingerprint": bundle.fingerprint, "classes": list(bundle.classes)},
        "normalizer": {"mean": parts.normalizer.mean, "std": parts.normalizer.std},
        "environment": environment(), "runtime": runtime.describe(),
    })
    save_model(template, run.file(MODEL_FILE))
    run.write_json("metrics.json", {})


class _CallableAuditPackage(types.ModuleType):
    """`unlearnkit.audit` stays the audit subpackage and can also be called (see `make_callable`)."""

    def __call__(self, target, *args: Any, **kwargs: Any):
        if isinstance(target, nn.Module):
            return audit(target, *args, **kwargs)
        return self.audit(target, *args, **kwargs)  # a run directory: the audit package's own function


def make_callable(package: types.ModuleType) -> None:
    """Make the `unlearnkit.audit` subpackage callable, so `unlearnkit.audit(model, forget=...)` works.

    A function named `audit` on the top-level package would be replaced by the subpackage the
    moment anything imports `unlearnkit.audit`; a callable module keeps both spellings working.
    """
    package.__class__ = _CallableAuditPackage
