"""Run directories: provenance, reading run files back, and the directory a command writes.

A run directory holds everything needed to reproduce and audit one model:
  config.json      the resolved config (the whole recipe)
  run.json         kind, status, dataset fingerprint, normaliser, package versions, git commit,
                   and for unlearned runs: parent run, method, hyperparameters, cost
  split.json       members / validation / forget sample ids
  log.jsonl        one JSON record per epoch
  metrics.json     final accuracies (written last, with model.safetensors: their presence = finished)
  model.safetensors
  checkpoint.pt    per-epoch state while training (removed when the run finishes)
  .unlearnkit.lock while a command writes the directory: who holds it (unlearnkit.locks)

Writes are atomic (unlearnkit.files, re-exported here); a command holds the directory's lock
and, if it fails before the directory holds a model or a checkpoint, leaves nothing behind.
"""

from __future__ import annotations

import functools
import inspect
import json
import platform
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from safetensors.torch import save as save_bytes
from torch import nn

from unlearnkit.config import drop_late_fields
from unlearnkit.errors import UnlearnkitError

# The I/O layer, re-exported: run code (and other packages) import it from here.
from unlearnkit.files import (  # noqa: F401
    OutputError, atomic_write_bytes, atomic_write_json, atomic_write_text, atomic_write_with, check_output_dir, json_text,
    make_dirs, output_error, remove_empty_dirs, user_fixable, writing,
)
from unlearnkit.locks import LOCK_FILE, BusyError, acquire_lock, locked, release_lock, try_lock  # noqa: F401
from unlearnkit.outputs import check_outputs, write_outputs  # noqa: F401

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"


def _holds_work(out: Path) -> bool:
    """A model or a resumable checkpoint: work that a failure must never delete."""
    return (out / MODEL_FILE).exists() or (out / CHECKPOINT_FILE).exists()


def _user_entries(out: Path) -> list[Path]:
    return [p for p in out.iterdir() if p.name != LOCK_FILE and not p.name.endswith(".tmp")]


@contextmanager
def claim_run_dir(out: str | Path, *, what: str = "output directory") -> Iterator[Path]:
    """Hold the lock of a run directory while a command writes it; undo the directory on failure.

    A second command on the same `out` stops at once with a one-line `BusyError` naming this one.
    If the command fails (an error, a full disk, Ctrl-C) before the directory holds a model
    or a checkpoint, what it wrote is removed: the directory itself if this command created
    it, its contents if it was empty before. A directory that held anything before is never
    touched, and neither is a checkpoint (it is what `--resume` continues from).
    """
    out = Path(out)
    check_output_dir(out)
    existed = out.exists()
    with writing(out):
        created = make_dirs(out)
    try:
        acquire_lock(out, what=what)
    except BaseException:
        remove_empty_dirs(created)
        raise
    was_empty = not existed or not _user_entries(out)
    undo = False
    try:
        with writing(out, only_known=True):
            yield out
    except BaseException:
        undo = was_empty and out.is_dir() and not _holds_work(out)
        if undo:
            for p in _user_entries(out):
                if p.is_dir() and not p.is_symlink():
                    shutil.rmtree(p, ignore_errors=True)
                else:
                    p.unlink(missing_ok=True)
        raise
    finally:
        release_lock(out)
        if undo:
            remove_empty_dirs(created)


def writes_run_dir(out_param: str = "out"):
    """Decorator: run the function inside `claim_run_dir` of its `out_param` argument."""

    def decorate(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            out = signature.bind(*args, **kwargs).arguments[out_param]
            with claim_run_dir(Path(out)):
                return fn(*args, **kwargs)

        return wrapper

    return decorate

def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UnlearnkitError(f"{what} {path} does not exist; is this a finished unlearnkit run directory?")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(
            f"{what} {path} is not UTF-8 text (bad byte at offset {exc.start}); the file is damaged — restore it or recreate the run"
        ) from None
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno}); the run directory is damaged") from None
    except OSError as exc:
        raise UnlearnkitError(f"{what} {path} cannot be read ({exc.strerror}); check its permissions") from None


def _numbers(v: Any) -> bool:
    return isinstance(v, list) and len(v) > 0 and all(isinstance(x, (int, float)) and not isinstance(x, bool) for x in v)


def _ids(v: Any) -> bool:
    return isinstance(v, list) and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in v)


# What readers of a run directory rely on, per file: (dotted field, check, what it must be).
# Checked on every RunDir.read_json, so a hand-edited or damaged file is named as such
# instead of surfacing as a traceback or as an error blaming --data.
_RUN_FILE_FIELDS: dict[str, tuple[tuple[str, Callable[[Any], bool], str], ...]] = {
    "config.json": (),
    "metrics.json": (),
    "run.json": (
        ("kind", lambda v: isinstance(v, str), "a string"),
        ("dataset", lambda v: isinstance(v, dict), "an object"),
        ("normalizer.mean", _numbers, "a list of numbers"),
        ("normalizer.std", _numbers, "a list of numbers"),
    ),
    "split.json": (
        ("dataset_fingerprint", lambda v: isinstance(v, str) and len(v) > 0, "a string"),
        ("seed", lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
        ("train", _ids, "a list of sample ids"),
        ("val", _ids, "a list of sample ids"),
        ("forget", _ids, "a list of sample ids"),
        ("counts", lambda v: isinstance(v, dict), "an object"),
    ),
}


def _field(obj: Any, dotted: str) -> Any:
    for part in dotted.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return _MISSING
        obj = obj[part]
    return obj


_MISSING = object()


def check_run_file(path: Path, obj: Any, what: str) -> None:
    """Raise a one-line error if `obj` (read from run file `path`) lacks what readers rely on."""
    fields = _RUN_FILE_FIELDS.get(path.name)
    if fields is None:
        return
    fix = "the run directory is damaged — restore the file or recreate the run"
    if not isinstance(obj, dict):
        raise UnlearnkitError(f"{what} {path} holds a JSON {type(obj).__name__}, not an object; {fix}")
    for dotted, ok, desc in fields:
        value = _field(obj, dotted)
        if value is _MISSING:
            raise UnlearnkitError(f"{what} {path} has no {dotted!r}; {fix}")
        if not ok(value):
            raise UnlearnkitError(f"{what} {path}: {dotted!r} should be {desc}; {fix}")
    if path.name == "split.json":
        for part in ("train", "val", "forget"):
            if part in obj["counts"] and obj["counts"][part] != len(obj[part]):
                raise UnlearnkitError(
                    f"{what} {path} lists {len(obj[part])} {part} ids but counts {obj['counts'][part]!r}; {fix}"
                )
        # The split's dataset must be the run's: if they disagree, the file is damaged (not --data wrong).
        try:
            recorded = json.loads((path.parent / "run.json").read_bytes().decode("utf-8"))["dataset"]["fingerprint"]
        except (OSError, ValueError, KeyError, TypeError):
            return
        if isinstance(recorded, str) and recorded != obj["dataset_fingerprint"]:
            raise UnlearnkitError(
                f"{what} {path} names dataset {obj['dataset_fingerprint'][:12]}…, but its run.json names {recorded[:12]}… — one of the two is damaged; restore it or recreate the run"
            )


def save_model(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors (no pickle on load), written atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    atomic_write_bytes(path, safetensors_bytes(state, metadata))


def safetensors_bytes(state: dict[str, torch.Tensor], metadata: dict[str, str] | None = None) -> bytes:
    """The safetensors file of `state`, byte for byte the same for the same weights and metadata.

    safetensors writes its metadata in a random (hash map) order, so the same model saved twice
    differs; the header is rewritten with the metadata keys sorted (the format allows any
    order: a header is JSON, space-padded to 8 bytes, followed by the unchanged tensor data).
    """
    blob = save_bytes(state)
    n = int.from_bytes(blob[:8], "little")
    header = json.loads(blob[8 : 8 + n])
    if metadata:
        header = {"__metadata__": {str(k): str(v) for k, v in sorted(metadata.items())}, **header}
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text + blob[8 + n :]


def load_weights(model: nn.Module, path: Path, arch: str = "the model") -> nn.Module:
    """Load safetensors weights; a file from another architecture is a one-line error."""
    if not Path(path).is_file():
        raise UnlearnkitError(f"weights file {path} does not exist; train the run first (unlearnkit train)")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise UnlearnkitError(f"weights file {path} is not a readable safetensors file ({exc}); retrain or restore it") from None
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or unexpected or wrong:
        detail = (
            f"missing {missing[0]!r}" if missing else f"unexpected {unexpected[0]!r}" if unexpected
            else f"{wrong[0]!r} has shape {tuple(state[wrong[0]].shape)}, expected {tuple(own[wrong[0]].shape)}"
        )
        raise UnlearnkitError(
            f"checkpoint {path} does not fit {arch} ({detail}); it was saved from another architecture or width — "
            "use the config of the run that saved it"
        )
    model.load_state_dict(state)
    return model


def git_commit() -> str | None:
    """The commit of the unlearnkit source tree, with '+dirty' when it has local changes."""
    src = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")


def environment() -> dict[str, Any]:
    versions = {}
    for pkg in ("unlearnkit", "torch", "torchvision", "numpy", "scikit-learn", "scipy", "safetensors"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "packages": versions,
        "git_commit": git_commit(),
        "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch_threads": torch.get_num_threads(),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }


@dataclass(frozen=True)
class RunDir:
    path: Path

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def finished(self) -> bool:
        return self.file(MODEL_FILE).is_file() and self.file("metrics.json").is_file()

    def write_json(self, name: str, obj: Any) -> None:
        atomic_write_json(self.file(name), obj)

    def read_json(self, name: str, what: str | None = None) -> Any:
        obj = read_json(self.file(name), what or name)
        check_run_file(self.file(name), obj, what or name)
        return obj

    def write_log(self, records: list[dict]) -> None:
        # Rewritten whole (and atomically) each epoch: the file is small and never torn.
        atomic_write_text(self.file("log.jsonl"), "".join(json.dumps(r) + "\n" for r in records))


RESUME_HINT = "choose a new --out, or pass --resume to continue that run"


def prepare_out_dir(out: Path, *, resume: bool, recipe: dict[str, Any] | None = None, retry: str = RESUME_HINT) -> RunDir:
    """Check that `out` may be written: new/empty, or (with resume) a run of the same recipe.

    `recipe` (training): the config that determines the weights, compared with the run's
    config.json -- its `runtime` section only in the keys `recipe["runtime"]` names (the
    precision: see `RunConfig.resume_recipe`); device and memory format may change on resume.
    `retry`: what a non-empty `out` tells the user to do (commands without --resume say so).
    """
    out = Path(out)
    check_output_dir(out)
    if out.is_dir() and not resume and _never_started(out):
        _clear(out)  # killed before its first epoch was saved: nothing to lose, start it over
    has_content = out.is_dir() and bool(_user_entries(out))
    if resume:
        if recipe is None and not has_content:
            return RunDir(out)  # forget writes every start file anew: one killed before it began just starts
        if not (out / "config.json").is_file():
            raise UnlearnkitError(f"--resume: {out} holds no started run (no config.json); drop --resume to start one")
        if recipe is not None:
            saved = read_json(out / "config.json", "config")
            if not isinstance(saved, dict):
                raise UnlearnkitError(f"--resume: config {out / 'config.json'} is not a JSON object; the run directory is damaged")
            saved_runtime = saved.pop("runtime", None)
            if "runtime" in recipe:
                saved_runtime = saved_runtime if isinstance(saved_runtime, dict) else {}
                saved["runtime"] = {k: saved_runtime.get(k) for k in recipe["runtime"]}
            # config.json records every field; a field added later (LATE_FIELDS) counts only when set,
            # so a run started before it existed and one started with it at its default both resume.
            saved = drop_late_fields(saved)
            if saved != recipe:
                diff = _first_difference(saved, recipe)
                raise UnlearnkitError(
                    f"--resume: {out} was started with another config ({diff}); resume with the same preset and --set values, or choose a new --out"
                )
        missing = [n for n in ("split.json", "run.json") if not (out / n).is_file()]
        if recipe is not None and missing and not _holds_work(out):
            # Training reads its split back on resume; forget (no recipe) rewrites it, so only training stops here.
            raise UnlearnkitError(
                f"--resume: {out} was stopped before its run was set up (no {missing[0]}); drop --resume to start it over"
            )
    elif has_content:
        raise UnlearnkitError(f"output directory {out} is not empty; {retry}")
    return RunDir(out)


# What a run directory holds before its first checkpoint: written by the command that starts it.
_START_FILES = {"config.json", "split.json", "run.json", "log.jsonl"}


def resumable(out: str | Path) -> bool:
    """Whether `out` holds a run that `--resume` can continue (its start files are all there)."""
    return all((Path(out) / n).is_file() for n in ("config.json", "split.json", "run.json"))


def _never_started(out: Path) -> bool:
    """A run directory killed before it held any work: only start files, config.json one of ours.

    Anything else (a user's file, a checkpoint, a model, metrics) makes it a real directory.
    """
    names = {p.name for p in _user_entries(out)}
    if not names or not names <= _START_FILES or "config.json" not in names:
        return False
    try:
        cfg = json.loads((out / "config.json").read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(cfg, dict) and {"data", "model", "train"} <= set(cfg)


def _clear(out: Path) -> None:
    with writing(out):
        for p in out.iterdir():
            if p.name != LOCK_FILE:
                p.unlink()


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"
