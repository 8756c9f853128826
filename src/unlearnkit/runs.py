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
  .unlearnkit.lock while a command writes the directory: who holds it (flock; see `acquire_lock`)

Every write goes to a temp file named for its host, process and call, then is renamed into
place; a failed write (full disk, read-only, no permission) becomes an `OutputError` naming
the path and leaves no temp file, and temp files of killed writers are swept on the next write.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import functools
import hashlib
import inspect
import json
import os
import platform
import re
import secrets
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping
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

from unlearnkit.errors import UnlearnkitError

MODEL_FILE = "model.safetensors"
CHECKPOINT_FILE = "checkpoint.pt"


class OutputError(UnlearnkitError):
    """A file or directory could not be written (disk full, read-only, no permission); the message names it."""


class BusyError(UnlearnkitError):
    """Another process holds the lock of an output directory; the message names that process."""


# Why a write failed -> what the user can do about it (errno -> hint); anything else keeps its strerror.
_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free space or choose another --out",
    errno.EDQUOT: "the disk quota is exhausted: free space or choose another --out",
    errno.EROFS: "the file system is read-only: choose a writable --out",
    errno.EACCES: "permission denied: choose a writable --out",
    errno.EPERM: "permission denied: choose a writable --out",
}


def user_fixable(exc: OSError) -> bool:
    """Whether `exc` is a write failure the user fixes on their side (disk full, read-only, permissions)."""
    return exc.errno in _OS_HINTS


def output_error(exc: OSError, path: str | Path | None = None, *, target: bool = False) -> OutputError:
    """One line for an OSError raised while writing: the path, the reason, and what to do.

    `target`: name `path` (the file being written) rather than the OS's file (our temp file).
    """
    where = path if (target or exc.filename is None) and path is not None else exc.filename
    reason = exc.strerror or type(exc).__name__
    hint = _OS_HINTS.get(exc.errno, "check the path and try again")
    return OutputError(f"cannot write {where}: {reason}; {hint}")


@contextmanager
def writing(path: str | Path | None = None, *, only_known: bool = False, target: bool = False) -> Iterator[None]:
    """Turn an OSError raised inside into an `OutputError` naming the file (or `path`).

    `only_known`: convert only the errors a user fixes on their side (disk full, read-only,
    permissions); others pass through unchanged (they are bugs, or another layer's to word).
    """
    try:
        yield
    except OutputError:
        raise
    except OSError as exc:
        if only_known and not user_fixable(exc):
            raise
        raise output_error(exc, path, target=target) from None


_HOST = hashlib.sha256(socket.gethostname().encode()).hexdigest()[:6]
_TEMP_NAME = re.compile(r"^\..+\.([0-9a-f]{6})-(\d+)-[0-9a-f]{8}\.tmp$")


def temp_path(path: Path) -> Path:
    """A hidden temp name beside `path`, unique per host, process and call (two writers never share one)."""
    return path.with_name(f".{path.name}.{_HOST}-{os.getpid()}-{secrets.token_hex(4)}.tmp")


def remove_stale_temps(directory: Path) -> None:
    """Delete temp files that a killed writer (kill -9, power loss) left in `directory`.

    Only our own temp names, written on this host by a process that no longer exists; a live
    writer's file (its pid is running) or another host's is left alone.
    """
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    for entry in entries:
        m = _TEMP_NAME.match(entry.name)
        if m and m.group(1) == _HOST and not _alive(int(m.group(2))):
            with contextlib.suppress(OSError):
                os.unlink(entry.path)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # exists, owned by someone else
    return True


def make_dirs(path: Path) -> list[Path]:
    """mkdir -p that returns the directories it created (outermost first), so a failure can undo them."""
    path = Path(path)
    missing = []
    while not path.exists():
        missing.append(path)
        if path.parent == path:
            break
        path = path.parent
    created = []
    for d in reversed(missing):
        try:
            d.mkdir()
        except FileExistsError:
            continue
        created.append(d)
    return created


def remove_empty_dirs(dirs: list[Path]) -> None:
    """Remove the directories `make_dirs` created (innermost first) that are still empty."""
    for d in reversed(dirs):
        try:
            d.rmdir()
        except OSError:
            break  # not empty (someone else wrote there) or already gone: leave it and its parents


def _write_file(tmp: Path, data: bytes) -> None:
    # O_EXCL: the temp name is ours alone; mode 0o666 lets the umask decide, as for any new file.
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), 0o666)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def _write_temp(writer: Callable[[Path], Any], tmp: Path) -> None:
    # The one place every atomic write (JSON, reports, safetensors, checkpoints) writes its bytes:
    # the fault-injection test makes it fail like a full disk at each call in turn.
    writer(tmp)


def _new_file_mode() -> int:
    """0o666 less the process's umask: the mode `open()` gives any new file (e.g. 0644)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return 0o666 & ~int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)  # no /proc (macOS): read the umask by setting it back at once
    os.umask(mask)
    return 0o666 & ~mask


def _rename(tmp: Path, path: Path) -> None:
    os.replace(tmp, path)


def atomic_write_with(path: str | Path, writer: Callable[[Path], Any]) -> None:
    """Call `writer(tmp)` to write a temp file beside `path`, then rename it over `path`.

    Readers see the old file or the new one, never a torn one. On any failure the temp file
    and the directories this call created are removed, and an OSError becomes an `OutputError`.
    """
    path = Path(path)
    with writing(path):
        created = make_dirs(path.parent)
    remove_stale_temps(path.parent)  # a few entries per run folder: cheap, and kills leave no litter
    tmp = temp_path(path)
    with writing(path, target=True):
        try:
            _write_temp(writer, tmp)
            os.chmod(tmp, _new_file_mode())  # safetensors writes 0600; a run's files are ordinary files
            _rename(tmp, path)
        except BaseException:
            tmp.unlink(missing_ok=True)
            remove_empty_dirs(created)
            raise


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write_with(path, lambda tmp: _write_file(tmp, data))


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def json_text(obj: Any) -> str:
    """How every JSON file of a run is written (indented, numpy arrays and paths allowed)."""
    return json.dumps(obj, indent=2, default=_json_default) + "\n"


def atomic_write_json(path: Path, obj: Any) -> None:
    atomic_write_text(path, json_text(obj))


# --------------------------------------------------------------------------- locks
#
# One lock per output directory: a hidden file inside it, held with flock(2). The kernel
# drops the lock when its process dies (kill -9 included), so a dead holder never blocks
# anyone; the file itself only records who holds it, for the message a second writer gets.

LOCK_FILE = ".unlearnkit.lock"
_HELD: dict[str, list] = {}  # realpath -> [fd, depth]: this process's locks (re-entrant)


def _holder_text(path: Path) -> str:
    try:
        h = json.loads(path.read_text(encoding="utf-8"))
        return f"pid {h['pid']} on {h['host']} ({h['command']}, since {h['since']})"
    except (OSError, ValueError, KeyError, TypeError):
        return "another process"


def _try_flock(fd: int, wait: bool) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        return True
    except BlockingIOError:
        return False


def acquire_lock(directory: str | Path, *, wait: bool | None = False, what: str = "output directory") -> bool:
    """Lock `directory` (created if missing) for this process; re-entrant within the process.

    If another process holds it: `wait=True` blocks until it is free (a note on stderr names
    the holder), `wait=False` raises `BusyError` naming the holder, `wait=None` returns False.
    """
    directory = Path(directory)
    key = os.path.realpath(directory)
    if key in _HELD:
        _HELD[key][1] += 1
        return True
    path = directory / LOCK_FILE
    with writing(directory):
        directory.mkdir(parents=True, exist_ok=True)
        told = False
        while True:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
            got = _try_flock(fd, False)
            if not got and wait is None:
                os.close(fd)
                return False
            if not got and not wait:
                holder = _holder_text(path)
                os.close(fd)
                raise BusyError(f"{what} {directory} is in use by {holder}; wait for it to finish or choose another --out")
            if not got:
                if not told:
                    print(f"waiting for {directory}: in use by {_holder_text(path)}", file=sys.stderr)
                    told = True
                _try_flock(fd, True)
            # The previous holder may have removed the file between our open and our flock:
            # then we hold a lock on a dead inode and must start over on the new file.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        holder = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
                  "since": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
    _HELD[key] = [fd, 1]
    return True


def try_lock(directory: str | Path) -> bool:
    """Lock `directory` if nobody else holds it; False (and nothing locked) if someone does."""
    return acquire_lock(directory, wait=None)


def release_lock(directory: str | Path) -> None:
    key = os.path.realpath(directory)
    held = _HELD.get(key)
    if held is None:
        return
    held[1] -= 1
    if held[1] > 0:
        return
    del _HELD[key]
    fd = held[0]
    try:
        # Remove the file while still holding the lock (a waiter then sees a dead inode and retries).
        path = Path(directory) / LOCK_FILE
        if os.path.samestat(os.fstat(fd), os.stat(path)):
            path.unlink()
    except OSError:
        pass  # the directory is gone (a failed run removed) or read-only: the kernel lock goes anyway
    finally:
        os.close(fd)


@contextmanager
def locked(directory: str | Path, *, wait: bool = False, what: str = "output directory") -> Iterator[Path]:
    """`with locked(out):` hold the lock of `out` for the block (see `acquire_lock`)."""
    acquire_lock(directory, wait=wait, what=what)
    try:
        yield Path(directory)
    finally:
        release_lock(directory)


def _command_line() -> str:
    first = Path(sys.argv[0]) if sys.argv and sys.argv[0] else Path("python")
    name = f"python -m {first.parent.name}" if first.name == "__main__.py" else first.name
    argv = [name, *sys.argv[1:]]
    text = " ".join(argv)
    return text if len(text) <= 200 else text[:197] + "..."


# --------------------------------------------------------------------------- files a command owns
#
# `compare --out` and `bench --out` write into folders a user may already keep files in. They
# replace only files unlearnkit wrote there: the manifest records the hash of each file written,
# and a file whose current content matches no recorded hash (a user's own, or ours edited since)
# is never overwritten.

OWNED_MANIFEST = ".unlearnkit-files.json"


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _read_owned(out: Path) -> dict[str, list[str]]:
    try:
        raw = json.loads((out / OWNED_MANIFEST).read_text(encoding="utf-8"))
        files = raw["files"]
        return {str(k): [str(h) for h in v] for k, v in files.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return {}  # a damaged manifest vouches for nothing: every existing file counts as the user's


def check_outputs(out: str | Path, names: Iterable[str]) -> None:
    """Raise if writing `names` into `out` would replace a file unlearnkit did not write there."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OutputError(f"--out {out} exists and is not a directory; choose another --out")
    owned = _read_owned(out) if out.is_dir() else {}
    for name in names:
        path = out / name
        if path.is_dir():
            raise OutputError(f"{path} is a directory; move it away or choose another --out")
        if not path.exists():
            continue
        try:
            digest = _sha256(path.read_bytes())
        except OSError as exc:
            raise output_error(exc, path) from None
        if digest not in owned.get(name, ()):
            raise OutputError(
                f"{path} exists and was not written by unlearnkit (or was edited since); move it away or choose another --out"
            )


def write_outputs(out: str | Path, files: Mapping[str, str | bytes]) -> dict[str, Path]:
    """Write `files` (name relative to `out` -> text or bytes) into `out`, each atomically.

    Refuses (before writing anything) to replace a file unlearnkit did not write (see
    `check_outputs`). On failure, files and directories this call created are removed again.
    Concurrent callers on one `out` take turns. Returns name -> path.
    """
    out = Path(out)
    data = {name: (c.encode("utf-8") if isinstance(c, str) else bytes(c)) for name, c in files.items()}
    with writing(out):
        created = make_dirs(out)
    new_files: list[Path] = []
    try:
        with locked(out, wait=True):
            check_outputs(out, data)
            owned = _read_owned(out)
            # Both the current and the new hash are ours while the files are being replaced,
            # so a crash half-way leaves nothing that the next run would refuse to overwrite.
            for name, blob in data.items():
                owned[name] = sorted({*owned.get(name, ()), _sha256(blob)})
            atomic_write_json(out / OWNED_MANIFEST, {"files": owned})
            for name, blob in data.items():
                path = out / name
                if not path.exists():
                    new_files.append(path)
                atomic_write_bytes(path, blob)
            for name, blob in data.items():
                owned[name] = [_sha256(blob)]
            atomic_write_json(out / OWNED_MANIFEST, {"files": owned})
    except BaseException:
        for path in new_files:
            path.unlink(missing_ok=True)
            remove_empty_dirs([d for d in _parents_below(path, out)])
        if created:
            with contextlib.suppress(OSError):
                (out / OWNED_MANIFEST).unlink(missing_ok=True)
            remove_empty_dirs(created)
        raise
    return {name: out / name for name in data}


def _parents_below(path: Path, top: Path) -> list[Path]:
    """The directories between `top` (excluded) and `path` (excluded), outermost first."""
    rel = path.parent.relative_to(top)
    return [top / Path(*rel.parts[: i + 1]) for i in range(len(rel.parts))]


# --------------------------------------------------------------------------- run directories a command creates


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
    if out.exists() and not out.is_dir():
        raise UnlearnkitError(f"output {out} exists and is not a directory; choose another --out")
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


def prepare_out_dir(out: Path, *, resume: bool, recipe: dict[str, Any] | None = None) -> RunDir:
    """Check that `out` may be written: new/empty, or (with resume) a run of the same recipe."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnlearnkitError(f"output {out} exists and is not a directory; choose another --out")
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
            saved.pop("runtime", None)
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
        raise UnlearnkitError(f"output directory {out} is not empty; choose a new --out, or pass --resume to continue that run")
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
