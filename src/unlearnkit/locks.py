"""One lock per output directory, so two commands never write one directory at once.

The lock is a hidden file inside the directory, held with flock(2). The kernel drops the lock
when its process dies (kill -9 included), so a dead holder never blocks anyone; the file only
records who holds it (pid, host, command, since when) for the message a second writer gets.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import writing


class BusyError(UnlearnkitError):
    """Another process holds the lock of an output directory; the message names that process."""


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
            try:
                got = _try_flock(fd, False)
                if not got and wait is None:
                    os.close(fd)
                    return False
                if not got and not wait:
                    raise BusyError(f"{what} {directory} is in use by {_holder_text(path)}; "
                                    "wait for it to finish or choose another --out")
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
            except BaseException:  # BusyError, Ctrl-C while waiting: no descriptor left open
                os.close(fd)
                raise
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


