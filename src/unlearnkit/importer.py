"""`import_run`: a run directory around a model trained elsewhere, so forget / audit / compare work on it.

A run directory records what unlearning and auditing mean for its model, and an imported
checkpoint knows none of it, so the user declares each part and nothing is guessed:

* **members** (`--members`): the training samples the model saw. `all` (every sample of the
  source's training pool), `ids:FILE` (one id per line, or an `id` CSV column), or
  `split:SEED` (the seeded members/validation split `unlearnkit train` makes). Forget sets are
  drawn from members; the rest of the pool are the **non-members** every membership attack
  needs. With `all` there are none (the test split is kept for the test accuracy), which the
  split manifest records and `require_non_members` turns into a refusal to audit.
* **normalisation** (`--mean/--std`, or `--normalize fit` to fit it on the members as `train`
  does, or read from the run directory the weights came from).
* **recipe** (`--recipe PRESET` and/or `--set train.KEY=VALUE`): how the model was trained,
  which exact retraining (`forget --method retrain`) and reference pools reuse; without one,
  `require_recipe` refuses them.

Checkpoints are `.safetensors`, or `.pt`/`.pth` read ONLY with `torch.load(weights_only=True)`
(no arbitrary pickled code runs): a bare state_dict, a {"state_dict"|"model": ...} wrapper, or a
DataParallel `module.` prefix. The seed's ResNet-18 (torchvision's resnet18 with a 3x3 stride-1
conv1, no max-pool, fc 512->10) has our `resnet18`'s exact layout (and `torchvision:resnet18`'s).
Everything is checked and the model evaluated once before the directory appears, which is then
moved into place in one rename: bad input never leaves a half-written run.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from unlearnkit.config import RunConfig, resolve_config, set_path, validate
from unlearnkit.data import Split, make_split
from unlearnkit.data.cache import file_digest
from unlearnkit.data.splits import read_id_file
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model, model_kwargs
from unlearnkit.runs import MODEL_FILE, RunDir, environment, prepare_out_dir, read_json, save_model
from unlearnkit.training.data import Normalizer
from unlearnkit.training.runtime import Runtime

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # what training scripts wrap a state_dict in
DATA_PARALLEL_PREFIX = "module."


# --------------------------------------------------------------------------- checkpoints


def _read_safetensors(path: Path) -> Any:
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"checkpoint {path} is not a readable safetensors file ({exc}); check the file") from None


def _read_torch(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        what = f" ({found.group(1)})" if found else ""
        raise UnlearnkitError(
            f"checkpoint {path} holds a pickled Python object{what}, not only tensors; unlearnkit reads .pt/.pth "
            "with torch.load(weights_only=True) and runs no pickled code — save model.state_dict() instead"
        ) from None
    except (RuntimeError, EOFError, OSError, zipfile.BadZipFile) as exc:
        raise UnlearnkitError(f"checkpoint {path} is not a readable PyTorch file ({str(exc).splitlines()[0]}); check the file") from None


READERS: dict[str, Callable[[Path], Any]] = {
    ".safetensors": _read_safetensors, ".pt": _read_torch, ".pth": _read_torch, ".bin": _read_torch,
}


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of a checkpoint, unwrapped and without a DataParallel prefix."""
    path = Path(path)
    reader = READERS.get(path.suffix.lower())
    if reader is None:
        raise UnlearnkitError(f"checkpoint {path} has an unknown format; give a {', '.join(READERS)} file")
    if not path.is_file():
        raise UnlearnkitError(f"checkpoint {path} does not exist; check --weights")
    obj = reader(path)
    for key in WRAPPER_KEYS:
        if isinstance(obj, Mapping) and isinstance(obj.get(key), Mapping):
            obj = obj[key]
            break
    if not isinstance(obj, Mapping) or not obj:
        raise UnlearnkitError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UnlearnkitError(
            f"checkpoint {path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; save model.state_dict() "
            f"(or wrap it as {{'state_dict': ...}})"
        )
    state = dict(obj)
    if all(k.startswith(DATA_PARALLEL_PREFIX) for k in state):
        state = {k[len(DATA_PARALLEL_PREFIX):]: v for k, v in state.items()}
    return state


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """The first key (in the model's order) where `state` does not fit `model`, with both shapes."""
    own = model.state_dict()
    for key, t in own.items():
        if key not in state:
            return f"{key!r} (shape {tuple(t.shape)} in the model) is missing from the checkpoint"
        if tuple(state[key].shape) != tuple(t.shape):
            return f"{key!r} has shape {tuple(state[key].shape)} in the checkpoint but {tuple(t.shape)} in the model"
    extra = next((k for k in state if k not in own), None)
    return None if extra is None else f"the checkpoint has {extra!r} (shape {tuple(state[extra].shape)}), which the model lacks"


def infer_width(arch: str, state: Mapping[str, torch.Tensor]) -> int | None:
    """For architectures with a `width` option: the out-channels of the checkpoint's first convolution."""
    if model_kwargs(arch).get("width") is None:
        return None  # the architecture fixes its own width
    first = next((t for t in state.values() if t.ndim == 4), None)
    return None if first is None else int(first.shape[0])


# --------------------------------------------------------------------------- members


def _split_members(bundle, spec: str, val_fraction: float) -> tuple[Split, int]:
    """(split, seed) for a `--members` spec."""
    kind, _, arg = spec.partition(":")
    n = len(bundle.train.labels)
    empty = np.empty(0, dtype=np.int64)
    if spec == "all":
        return Split(bundle, np.arange(n, dtype=np.int64), empty, empty, 0), 0
    if kind == "split" and arg.strip().lstrip("-").isdigit():
        seed = int(arg)
        return make_split(bundle, val_fraction, seed), seed
    if kind == "ids" and arg:
        return Split(bundle, *_member_ids(bundle, Path(arg)), empty, 0), 0
    raise UnlearnkitError(
        f"--members {spec!r} is not understood; use all, ids:FILE (the ids the model was trained on) or "
        "split:SEED (the split `unlearnkit train --seed SEED` makes)"
    )


def _member_ids(bundle, path: Path) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        raise UnlearnkitError(f"member id file {path} does not exist; give ids:FILE with one sample id per line or an `id` CSV column")
    ids = read_id_file(path)
    pos = {str(sid): i for i, sid in enumerate(bundle.train.ids)}
    chosen: list[int] = []
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise UnlearnkitError(f"member id {sid!r} appears twice in {path}; list each sample once")
        seen.add(sid)
        if sid not in pos:
            raise UnlearnkitError(
                f"member id {sid!r} from {path} is not a training sample of the data given (e.g. {bundle.train.ids[0]!r}); "
                "check the ids and --data"
            )
        chosen.append(pos[sid])
    if not chosen:
        raise UnlearnkitError(f"member id file {path} lists no id; list the samples the model was trained on")
    members = np.sort(np.array(chosen, dtype=np.int64))
    return members, np.setdiff1d(np.arange(len(bundle.train.labels)), members)


def require_non_members(split: Split, where: str) -> None:
    """Membership attacks compare members with samples the model never saw; refuse when there are none."""
    if len(split.val_idx) == 0:
        raise UnlearnkitError(
            f"{where} has no held-out non-members (every training sample is a member, e.g. imported with --members all), "
            "so no membership attack can be run; import with --members ids:FILE or split:SEED so that some training "
            "samples stay unseen"
        )


def require_recipe(info: Mapping[str, Any], where: str) -> None:
    """Exact retraining reuses the run's training recipe; an import without a declared one has none."""
    imported = info.get("imported") or {}
    if imported and imported.get("recipe") is None:
        raise UnlearnkitError(
            f"{where} was imported without its training recipe, so there is no exact retrain; re-import it with "
            "--recipe PRESET and/or --set train.KEY=VALUE (epochs, lr, batch_size, ...) to declare how it was trained"
        )


# --------------------------------------------------------------------------- normalisation


def _floats(text: str, flag: str) -> tuple[float, ...]:
    try:
        values = tuple(float(v) for v in str(text).replace(" ", "").split(",") if v)
    except ValueError:
        raise UnlearnkitError(f"{flag} {text!r} is not a comma-separated list of numbers, e.g. {flag} 0.49,0.48,0.45") from None
    if not values:
        raise UnlearnkitError(f"{flag} is empty; give one number per channel, e.g. {flag} 0.49,0.48,0.45")
    return values


def _normalizer(split: Split, weights: Path, mean, std, normalize: str | None) -> tuple[Normalizer, str]:
    channels = int(split.bundle.train.images.shape[1])
    if normalize is not None and normalize != "fit":
        raise UnlearnkitError(f"--normalize {normalize!r} is not valid; the only choice is fit (mean/std of the members)")
    if normalize == "fit":
        if mean is not None or std is not None:
            raise UnlearnkitError("--normalize fit and --mean/--std contradict each other; pass one")
        return Normalizer.fit(split.part("train").images), "fit on the members"
    if (mean is None) != (std is None):
        raise UnlearnkitError("--mean and --std go together; pass both (one number per channel)")
    if mean is not None:
        m, s = _floats(mean, "--mean"), _floats(std, "--std")
        m, s = (m * channels if len(m) == 1 else m), (s * channels if len(s) == 1 else s)
        if len(m) != channels or len(s) != channels:
            raise UnlearnkitError(f"--mean/--std give {len(m)}/{len(s)} values but the images have {channels} channel(s); give one per channel")
        if min(s) <= 0:
            raise UnlearnkitError(f"--std {std!r} has a value <= 0; give positive standard deviations")
        return Normalizer(m, s), "given"
    run_json = weights.parent / "run.json"
    if weights.name == MODEL_FILE and run_json.is_file():
        norm = read_json(run_json, "run record").get("normalizer") or {}
        if "mean" in norm and "std" in norm:
            return Normalizer(tuple(norm["mean"]), tuple(norm["std"])), f"read from {run_json}"
    raise UnlearnkitError(
        f"the input normalisation of {weights} is unknown; pass --mean and --std (per channel, in [0, 1] pixel units as "
        "given to transforms.Normalize), or --normalize fit to fit them on the members as `unlearnkit train` does"
    )


# --------------------------------------------------------------------------- import


@dataclass
class ImportResult:
    run_dir: Path
    metrics: dict[str, Any]
    members: int
    non_members: int


def _config(arch: str, data: str, labels_csv: str | None, recipe: str | None, overrides: Mapping[str, Any]) -> tuple[RunConfig, str | None]:
    cfg = resolve_config(recipe) if recipe is not None else RunConfig(preset="imported")
    for key, value in overrides.items():
        if key.split(".")[0] not in ("train", "runtime", "data") or key in ("data.source", "data.labels_csv"):
            raise UnlearnkitError(
                f"--set {key}: import takes train.*, runtime.* and data.val_fraction/test_fraction settings; "
                "the model comes from --arch/--width and the data from --data/--labels"
            )
        set_path(cfg, key, value)
    cfg.data.source, cfg.data.labels_csv, cfg.model.name = data, labels_csv, arch
    train_sets = [f"{k}={v}" for k, v in overrides.items() if k.startswith("train.")]
    # What the user declared as the training recipe (None: no exact retrain, see require_recipe).
    declared = " ".join(filter(None, [recipe, "--set " + " ".join(train_sets) if train_sets else None])) or None
    return validate(cfg), declared


def import_run(
    weights: str | Path,
    arch: str,
    data: str,
    members: str,
    out: str | Path,
    *,
    labels_csv: str | None = None,
    width: int | None = None,
    mean: str | tuple[float, ...] | None = None,
    std: str | tuple[float, ...] | None = None,
    normalize: str | None = None,
    recipe: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> ImportResult:
    """Make the run directory `out` for the checkpoint `weights` of architecture `arch` trained on `data`.

    See the module docstring for `members`, the normalisation and the recipe. Raises
    `UnlearnkitError` (one line) on any bad input, before anything is written.
    """
    from unlearnkit.training.pipeline import build_model, evaluate_parts, load_data, with_absolute_paths  # noqa: PLC0415

    weights = Path(weights)
    if isinstance(mean, (tuple, list)):
        mean = ",".join(map(str, mean))
    if isinstance(std, (tuple, list)):
        std = ",".join(map(str, std))
    out = Path(out)
    prepare_out_dir(out, resume=False)
    cfg, declared = _config(arch, data, labels_csv, recipe, dict(overrides or {}))
    state = read_state_dict(weights)
    model_kwargs(arch)  # an unknown --arch fails here, before the data are loaded
    cfg = with_absolute_paths(cfg)
    bundle = load_data(cfg)
    split, seed = _split_members(bundle, members, cfg.data.val_fraction)
    cfg.seed = seed  # the split's seed; also retraining's initial weights
    inferred = infer_width(arch, state)
    if width is not None or inferred is not None:
        cfg.model.width = int(width if width is not None else inferred)
    validate(cfg)
    normalizer, norm_source = _normalizer(split, weights, mean, std, normalize)
    model = build_model(cfg, split)
    bad = state_mismatch(model, state)
    if bad is not None:
        width_note = f" (width {cfg.model.width})" if model_kwargs(arch).get("width") is not None else ""
        raise UnlearnkitError(
            f"checkpoint {weights} does not fit {arch}{width_note} with {split.num_classes} classes and "
            f"{bundle.train.images.shape[1]} input channel(s): {bad}; pass the --arch (and --width) it was trained with"
        )
    model.load_state_dict(state)
    runtime = Runtime.from_config(cfg.runtime)
    model = runtime.model(model)
    metrics = evaluate_parts(model, (split, normalizer, runtime), ("train", "val", "test"), cfg.train.eval_batch_size)
    metrics.update(imported=True, members=int(len(split.train_idx)), non_members=int(len(split.val_idx)))

    manifest = {
        **split.manifest(), "members": members,
        "non_members": ("none: every training sample is a member; the audit refuses (no membership attack possible)"
                        if len(split.val_idx) == 0 else "the training samples that are not members (the `val` ids)"),
    }
    info = {
        "kind": "original",
        "status": "finished",
        "imported": {
            "weights": str(weights.resolve()), "sha256": file_digest(weights), "arch": arch, "members": members,
            "recipe": declared, "normalizer": norm_source,
            "input_shape": list(bundle.train.images.shape[1:]),  # fed at the dataset's own size (C, H, W)
        },
        "dataset": {"name": bundle.name, "source": str(bundle.source), "fingerprint": bundle.fingerprint,
                    "classes": list(bundle.classes)},
        "normalizer": {"mean": normalizer.mean, "std": normalizer.std},
        "environment": environment(),
        "runtime": runtime.describe(),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.import-"))
    try:
        run = RunDir(tmp)
        run.write_json("config.json", cfg.to_dict())
        run.write_json("split.json", manifest)
        run.write_json("run.json", info)
        save_model(model, run.file(MODEL_FILE), {"model": arch, "imported_from": str(weights.resolve())})
        run.write_json("metrics.json", metrics)
        if out.is_dir():
            out.rmdir()  # prepare_out_dir allowed only an empty one
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ImportResult(out, metrics, int(len(split.train_idx)), int(len(split.val_idx)))
