"""Writing files safely: atomic writes, unique temp names, and OSErrors worded for the user.

Every write goes to a temp file named for its host, process and call, then is renamed into
place: readers see the old file or the new one, never a torn one, and two writers never
share a temp file. A failed write (full disk, read-only, no permission) becomes an
`OutputError` naming the path and leaves no temp file and no directory it created; temp
files of killed writers are swept by the next write into their directory. Files get the
mode any new file gets (0666 less the umask, e.g. 0644).
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import re
import secrets
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from unlearnkit.errors import UnlearnkitError


class OutputError(UnlearnkitError):
    """A file or directory could not be written (disk full, read-only, no permission); the message names it."""



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


def check_output_dir(out: str | Path, flag: str = "--out") -> None:
    """A one-line error, before any work, if `out` cannot become a directory: it is a file, or the
    nearest of its parents that exists is one (mkdir would fail with "Not a directory" at the end)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UnlearnkitError(f"output {out} exists and is not a directory; choose another {flag}")
    if out.exists():
        return
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise UnlearnkitError(f"output {out} cannot be created: {parent} is a file, not a directory; choose another {flag}")
            return


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



def _json_default(o: Any) -> Any:
    if hasattr(o, "tolist"):
        return o.tolist()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")

