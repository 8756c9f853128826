"""Run directories: atomic writes, provenance, and loading a finished run back.

A run directory holds everything needed to reproduce and audit one model:
  config.json      the resolved config (the whole recipe)
  run.json         kind, status, dataset fingerprint, normaliser, package versions, git commit,
                   and for unlearned runs: parent run, method, hyperparameters, cost
  split.json       members / validation / forget sample ids
  log.jsonl        one JSON record per epoch
  metrics.json     final accuracies (written last, with model.safetensors: their presence = finished)
  model.safetensors
  checkpoint.pt    per-epoch state while training (removed when the run finishes)
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from unlearnkit.errors import UnlearnkitError

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"


def atomic_write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=2, default=_json_default) + "\n")


def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def read_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise UnlearnkitError(f"{what} {path} does not exist; is this a finished unlearnkit run directory?")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"{what} {path} is not valid JSON ({exc.msg} at line {exc.lineno}); the run directory is damaged") from None


def save_model(model: nn.Module, path: Path, metadata: dict[str, str] | None = None) -> None:
    """Weights as safetensors (no pickle on load), written atomically."""
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(state, tmp, metadata=metadata)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


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
        return read_json(self.file(name), what or name)

    def write_log(self, records: list[dict]) -> None:
        # Rewritten whole (and atomically) each epoch: the file is small and never torn.
        atomic_write_text(self.file("log.jsonl"), "".join(json.dumps(r) + "\n" for r in records))


def prepare_out_dir(out: Path, *, resume: bool, recipe: dict[str, Any] | None = None) -> RunDir:
    """Check that `out` may be written: new/empty, or (with resume) a run of the same recipe."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnlearnkitError(f"output {out} exists and is not a directory; choose another --out")
    has_content = out.is_dir() and any(out.iterdir())
    if resume:
        if not (out / "config.json").is_file():
            raise UnlearnkitError(f"--resume: {out} holds no started run (no config.json); drop --resume to start one")
        if recipe is not None:
            saved = read_json(out / "config.json", "config")
            saved.pop("runtime", None)
            if saved != recipe:
                diff = _first_difference(saved, recipe)
                raise UnlearnkitError(
                    f"--resume: {out} was started with another config ({diff}); resume with the same preset and --set values, or choose a new --out"
                )
    elif has_content:
        raise UnlearnkitError(f"output directory {out} is not empty; choose a new --out, or pass --resume to continue that run")
    return RunDir(out)


def _first_difference(a: Any, b: Any, prefix: str = "") -> str:
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            if a.get(k) != b.get(k):
                return _first_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return f"{prefix.rstrip('.')}: {a!r} there, {b!r} now"
