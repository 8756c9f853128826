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
  `require_recipe` refuses them (for the import and every run unlearned from it). Only the
  preset's `train.*`, `data.*` and `runtime.precision` settings are taken: the model is the checkpoint's (`--arch`,
  `--width`), evaluated as given, so a preset's `model.flip_tta` (test-time mirror averaging the
  checkpoint was never evaluated with) is not applied unless `--set model.flip_tta=true` asks.

Checkpoints are `.safetensors`, or `.pt`/`.pth` read ONLY with `torch.load(weights_only=True)`
(no arbitrary pickled code runs): a bare state_dict, a {"state_dict"|"model"|"model_state_dict": ...}
wrapper, a DataParallel `module.` or torch.compile `_orig_mod.` prefix. Weights that are NaN or
infinite, or integers where the model has floats, are refused (the import would evaluate a
broken model at chance accuracy and call it imported). The seed's ResNet-18 (torchvision's
resnet18 with a 3x3 stride-1 conv1, no max-pool, fc 512->10) has our `resnet18`'s exact layout
(and `torchvision:resnet18`'s).
The output directory is locked (`runs.claim_run_dir`, as train and forget do) before anything else;
everything is checked and the model evaluated once before a file is written, and the model file
is written last: a failure removes what was written, so bad input never leaves a half-written run.
"""

from __future__ import annotations

import pickle
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from unlearnkit.config import ModelConfig, RunConfig, resolve_config, set_path, validate
from unlearnkit.data import Split, make_split
from unlearnkit.data.cache import file_digest
from unlearnkit.data.splits import read_id_file
from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import model_kwargs
from unlearnkit.runs import MODEL_FILE, claim_run_dir, environment, prepare_out_dir, read_json, save_model
from unlearnkit.training.data import Normalizer
from unlearnkit.training.runtime import Runtime

WRAPPER_KEYS = ("state_dict", "model", "model_state_dict")  # what training scripts wrap a state_dict in
DATA_PARALLEL_PREFIX = "module."
# Prefixes a wrapper adds to every key: DataParallel/DDP's `module.`, torch.compile's `_orig_mod.`
# (a state_dict saved from the compiled module), in either nesting order.
KEY_PREFIXES = (DATA_PARALLEL_PREFIX, "_orig_mod.")
# BatchNorm's batch counter: read only with momentum=None, so a checkpoint without it (some
# exporters drop it) loses nothing; torch itself fills it in for state_dicts without version metadata.
BATCH_COUNTER = "num_batches_tracked"


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
        # weights_only refuses a class it does not allow as "Unsupported global: GLOBAL name": that is
        # a pickled object. Any other unpickling failure ("Unsupported operand", "invalid load key")
        # means the bytes are no pickle at all: a damaged or non-PyTorch file.
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", str(exc))
        if found is None:
            detail = next((ln.strip() for ln in str(exc).splitlines() if ln.strip().startswith(("Unsupported", "invalid"))), None)
            raise UnlearnkitError(
                f"checkpoint {path} is not a readable PyTorch checkpoint{f' ({detail})' if detail else ''}; "
                "check the file (save it with torch.save(model.state_dict(), path))"
            ) from None
        raise UnlearnkitError(
            f"checkpoint {path} holds a pickled Python object ({found.group(1)}), not only tensors; unlearnkit reads .pt/.pth "
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
    if isinstance(obj, Mapping):
        # The first wrapper that holds only tensors: {"model": {"arch": ...}, "model_state_dict": {...}}
        # keeps its config under "model". With none such, the first mapping one (its error names the entry).
        wrapped = [obj[k] for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)]
        tensors_only = [w for w in wrapped if w and all(isinstance(v, torch.Tensor) for v in w.values())]
        if tensors_only or wrapped:
            obj = (tensors_only or wrapped)[0]
    if not isinstance(obj, Mapping) or not obj:
        raise UnlearnkitError(f"checkpoint {path} holds a {type(obj).__name__}, not a state_dict; save model.state_dict()")
    bad = next((k for k, v in obj.items() if not isinstance(v, torch.Tensor)), None)
    if bad is not None:
        raise UnlearnkitError(
            f"checkpoint {path}: entry {bad!r} is a {type(obj[bad]).__name__}, not a tensor; save model.state_dict() "
            f"(or wrap it as {{'state_dict': ...}})"
        )
    state = dict(obj)
    stripped = True
    while stripped:
        stripped = False
        for prefix in KEY_PREFIXES:
            if state and all(k.startswith(prefix) for k in state):
                state = {k[len(prefix):]: v for k, v in state.items()}
                stripped = True
    return state


def state_mismatch(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """The first key (in the model's order) where `state` does not fit `model`, with both shapes."""
    own = model.state_dict()
    for key, t in own.items():
        if key not in state and key.rpartition(".")[2] == BATCH_COUNTER:
            continue  # filled in by `fill_batch_counters`
        if key not in state:
            return f"{key!r} (shape {tuple(t.shape)} in the model) is missing from the checkpoint"
        if tuple(state[key].shape) != tuple(t.shape):
            return f"{key!r} has shape {tuple(state[key].shape)} in the checkpoint but {tuple(t.shape)} in the model"
    extra = next((k for k in state if k not in own), None)
    return None if extra is None else f"the checkpoint has {extra!r} (shape {tuple(state[extra].shape)}), which the model lacks"


def fill_batch_counters(model: nn.Module, state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """`state` with BatchNorm's missing `num_batches_tracked` counters set to 0 (see BATCH_COUNTER)."""
    own = model.state_dict()
    missing = {k: torch.zeros_like(t) for k, t in own.items() if k not in state and k.rpartition(".")[2] == BATCH_COUNTER}
    return {**state, **missing}


def bad_values(model: nn.Module, state: Mapping[str, torch.Tensor]) -> str | None:
    """The first key whose values cannot be the model's weights: integers where the model has floats
    (a cast lost every fraction), or NaN/inf where the freshly built model is finite (a diverged run)."""
    own = model.state_dict()
    for key, t in own.items():
        theirs = state[key]
        if t.is_floating_point() and not theirs.is_floating_point():
            return (f"{key!r} is {str(theirs.dtype).replace('torch.', '')}, but the model's is floating point (a cast "
                    "dropped every fraction); save the float state_dict, e.g. model.float().state_dict()")
        # A buffer that is non-finite by design (e.g. an -inf attention mask) is so in a fresh model too.
        if theirs.is_floating_point() and bool(torch.isfinite(t).all()) and not bool(torch.isfinite(theirs).all()):
            return (f"{key!r} holds NaN or infinite values (training diverged, or the file is damaged); import a "
                    "checkpoint saved before the divergence")
    return None


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


def _lineage_import(info: Mapping[str, Any]) -> tuple[Mapping[str, Any] | None, str | None]:
    """(the `imported` record of the run's lineage root, the root's path) -- (None, None) for a trained root.

    An unlearned run carries its root's config.json (the recipe retraining uses) and, when made by
    this version, its `imported` record too (methods.api `_job_record`); an older one has only the
    root run recorded in run.json (`original`, else `parent`, as `provenance.lineage_root` writes
    them), whose record is read.
    """
    if info.get("imported"):
        return info["imported"], (info.get("original") if info.get("kind") == "unlearned" else None)
    if info.get("kind") != "unlearned":
        return None, None
    for key in ("original", "parent"):
        root = info.get(key)
        if not isinstance(root, str) or not root:
            continue
        try:
            root_info = read_json(Path(root) / "run.json", "run record")
        except UnlearnkitError:
            # The root moved or is unreadable: nothing recorded to go by. Not refused, or moving a
            # trained root would block exact retraining of all its descendants.
            continue
        if isinstance(root_info, Mapping):
            return root_info.get("imported") or None, root
    return None, None


def require_recipe(info: Mapping[str, Any], where: str) -> None:
    """Exact retraining reuses the run's training recipe; an import without a declared one has none,
    and neither has any run unlearned from it (its config.json is the import's, carried down)."""
    imported, root = _lineage_import(info)
    if imported and imported.get("recipe") is None:
        origin = "was imported" if root is None else f"descends from {root}, which was imported"
        raise UnlearnkitError(
            f"{where} {origin} without its training recipe, so there is no exact retrain; re-import it with "
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
    cfg = RunConfig(preset=recipe if recipe is not None else "imported")
    if recipe is not None:
        # The preset's training recipe (what exact retraining reuses), its data settings (the split's
        # val_fraction) and its precision (bf16 and fp32 train different weights); not its model
        # options nor where it runs: the model is the checkpoint's, evaluated as given (a preset's
        # flip_tta would average over mirrors the checkpoint never saw).
        preset = resolve_config(recipe)
        cfg.train, cfg.data = preset.train, preset.data
        cfg.runtime.precision = preset.runtime.precision
    cfg.model = ModelConfig(name=arch)
    for key, value in overrides.items():
        allowed = key.split(".")[0] in ("train", "runtime", "data") or key == "model.flip_tta"
        if not allowed or key in ("data.source", "data.labels_csv"):
            raise UnlearnkitError(
                f"--set {key}: import takes train.*, runtime.*, data.val_fraction/test_fraction and model.flip_tta "
                "settings; the model comes from --arch/--width and the data from --data/--labels"
            )
        set_path(cfg, key, value)
    if cfg.model.flip_tta and "flip_tta" not in model_kwargs(arch):
        raise UnlearnkitError(
            f"--set model.flip_tta=true: {arch} has no flip test-time augmentation (models with a flip_tta option, "
            "e.g. resnet18, have it); drop the setting"
        )
    cfg.data.source, cfg.data.labels_csv = data, labels_csv  # the model came from --arch above
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
    # Locked (a second writer stops at once; a stale lock file of a dead one is taken over) and
    # removed again if anything below fails: the same claim train and forget make.
    with claim_run_dir(out):
        run = prepare_out_dir(out, resume=False, retry="choose a new or empty --out (import only creates a run directory)")
        cfg, declared = _config(arch, data, labels_csv, recipe, dict(overrides or {}))
        state = read_state_dict(weights)
        model_kwargs(arch)  # an unknown --arch fails here, before the data are loaded
        runtime = Runtime.from_config(cfg.runtime)  # and so does an absent --set runtime.device
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
        state = fill_batch_counters(model, state)
        bad = bad_values(model, state)
        if bad is not None:
            raise UnlearnkitError(f"checkpoint {weights}: {bad}")
        model.load_state_dict(state)
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
        run.write_json("config.json", cfg.to_dict())
        run.write_json("split.json", manifest)
        run.write_json("run.json", info)
        run.write_json("metrics.json", metrics)
        # Last, in one atomic write: until it is there, a failure (or Ctrl-C) makes claim_run_dir
        # remove the other files, and a run directory is finished only once it holds the model.
        save_model(model, run.file(MODEL_FILE), {"model": arch, "imported_from": str(weights.resolve())})
    return ImportResult(out, metrics, int(len(split.train_idx)), int(len(split.val_idx)))
