"""A decode-once cache of datasets as uncompressed `.npz` files, keyed by the source's content.

Decoding CIFAR-10's 60,000 JPEGs takes seconds; reading the same arrays back from one
uncompressed `.npz` takes a fraction of a second. The cache is only an optimisation:
a missing, stale or corrupt entry is rebuilt, and a cache folder that cannot be written
only costs a warning, never a failed load.

Keys are content digests (see `file_digest` and `tree_digest`) mixed with everything else
that changes the decoded result (loader kind, labels CSV, test fraction, cache format),
so a changed source can never hit an old entry.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
import warnings
import zipfile
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import numpy as np

from unlearnkit.errors import UnlearnkitError

CACHE_ENV = "UNLEARNKIT_CACHE"
# Bump when the layout or meaning of an entry changes: old entries then simply stop matching.
CACHE_FORMAT = 1

_HASH_BLOCK = 1 << 20


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> Path:
    """The cache folder: `cache_dir`, else $UNLEARNKIT_CACHE, else ~/.cache/unlearnkit."""
    if cache_dir is not None:
        return Path(cache_dir).expanduser()
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    return Path.home() / ".cache" / "unlearnkit"


def file_digest(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes (an archive: 19 MB hashes in ~20 ms, cheaper than any doubt)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_HASH_BLOCK), b""):
            h.update(block)
    return h.hexdigest()


def tree_digest(root: str | os.PathLike, files: Iterable[str | os.PathLike] | None = None) -> str:
    """sha256 over the sorted (relative path, size, mtime_ns) of every file under `root`.

    Stat-only on purpose: hashing the bytes of tens of thousands of image files would cost as
    much as decoding them, which is what the cache exists to avoid. Any edit, addition,
    removal or rename changes a path, size or mtime, so a stale entry is never hit; a file
    touched without change merely causes one rebuild. `files` restricts the digest to those
    paths (e.g. a torchvision root's batch files), each relative to `root` or absolute.
    """
    base = Path(root)
    if files is None:
        paths = [Path(d) / name for d, _, names in walk_tree(base) for name in names]
    else:
        paths = [base / f for f in files]
    rows = []
    for p in paths:
        try:
            st = p.stat()
            size = st.st_size
        except FileNotFoundError:
            if not p.is_symlink():
                raise
            # A dangling link: the key covers the link itself (size -1 marks it), and the load decides as it
            # would uncached (a dangling image is a one-line error, any other dangling file is ignored).
            st, size = p.lstat(), -1
        rows.append((p.relative_to(base).as_posix(), size, st.st_mtime_ns))
    rows.sort()
    return hashlib.sha256(json.dumps(rows).encode("utf-8")).hexdigest()


def walk_tree(root: str | os.PathLike) -> Iterator[tuple[str, list[str], list[str]]]:
    """`os.walk` that follows symlinked folders, without looping.

    A dataset's class folders are often links to where the images really live; plain os.walk
    would silently drop them. A link back to a folder already on the current path (a loop) is
    skipped. Like os.walk (top-down), the caller may prune the yielded `dirnames` in place.
    """
    # The real paths of the folders on the way down to each folder: a child whose real path is among
    # them would walk forever. (A set of all folders seen would also drop two links to one folder.)
    chain: dict[str, frozenset[str]] = {}
    for dirpath, dirnames, filenames in os.walk(root, followlinks=True, onerror=_unreadable_folder):
        here = chain.pop(dirpath, None) or frozenset({os.path.realpath(dirpath)})
        keep = []
        for d in dirnames:
            child = os.path.join(dirpath, d)
            real = os.path.realpath(child)
            if real not in here:
                keep.append(d)
                chain[child] = here | {real}
        dirnames[:] = keep
        yield dirpath, dirnames, filenames  # (folders the caller prunes leave a small, harmless chain entry)


def _unreadable_folder(exc: OSError) -> None:
    # os.walk's default skips a folder it cannot list: an unreadable class folder would silently vanish.
    if os.path.basename(exc.filename or "") == "lost+found":
        return  # the root-only folder at the top of a mounted volume holds no data
    raise UnlearnkitError(
        f"cannot read folder {exc.filename} ({exc.strerror or type(exc).__name__}): check its permissions, "
        f"or move it out of the dataset"
    ) from None


def make_key(parts: Mapping[str, object]) -> str:
    """One hex key from everything that determines an entry's content (JSON-serialisable values)."""
    payload = {"cache_format": CACHE_FORMAT, **parts}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode("utf-8")).hexdigest()


def entry_path(cache_dir: Path, name: str, key: str) -> Path:
    """`<cache_dir>/<name>-<key>.npz`; the name is only there so a person can tell entries apart."""
    safe = re.sub(r"[^A-Za-z0-9._-]+", "_", name)[:64] or "dataset"
    return cache_dir / f"{safe}-{key}.npz"


def read_entry(path: Path) -> dict[str, np.ndarray] | None:
    """All arrays of an entry, or None when it is absent or unreadable (a corrupt one is deleted).

    Reading every member fully makes zipfile verify each member's CRC-32, so truncation
    and bit rot are caught here rather than surfacing as wrong pixels later.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile) as exc:
        discard_entry(path, f"unreadable ({type(exc).__name__}: {exc})")
        return None


def discard_entry(path: Path, why: str) -> None:
    """Delete a bad entry so the caller's rebuild replaces it (and say so: it costs a decode)."""
    warnings.warn(f"dataset cache file {path} is {why}; deleting it and rebuilding", stacklevel=3)
    try:
        path.unlink()
    except FileNotFoundError:
        pass  # another process removed or replaced it first: fine
    except OSError as exc:
        warnings.warn(f"could not delete bad cache file {path}: {exc}", stacklevel=3)


def write_entry(path: Path, arrays: Mapping[str, np.ndarray]) -> bool:
    """Write an entry atomically; returns False (with a warning) when the cache cannot be written.

    The arrays go to a temp file in the same folder, then `os.replace` moves it into place,
    so readers never see a half-written file, and concurrent writers of the same key each
    publish a complete file (the last one wins, both are identical).
    """
    tmp_name = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)  # uncompressed: loading is then a plain read, no inflate
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp_name, path)
        tmp_name = None
        return True
    except OSError as exc:
        warnings.warn(
            f"could not write dataset cache file {path} ({exc}); continuing without the cache: "
            f"set {CACHE_ENV} or pass cache_dir to a writable folder, or use_cache=False",
            stacklevel=3,
        )
        return False
    finally:
        if tmp_name is not None:
            try:
                os.unlink(tmp_name)
            except OSError:
                pass  # nothing more to clean up than we tried
