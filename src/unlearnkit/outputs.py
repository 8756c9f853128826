"""Files a command writes into a folder the user may keep other files in (`compare --out`, `bench --out`).

A command replaces only files unlearnkit wrote there: a manifest records the hash of each file
written, and a file whose current content matches no recorded hash (a user's own, or ours
edited since) is never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path

from unlearnkit.files import OutputError, atomic_write_bytes, atomic_write_json, make_dirs, output_error, remove_empty_dirs, writing
from unlearnkit.locks import locked


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


def remove_outputs(out: str | Path, names: Iterable[str]) -> list[str]:
    """Remove those of `names` in `out` that unlearnkit wrote there and nobody edited since; returns them.

    For outputs a later run of the same command no longer produces (a comparison without audited
    runs draws no ROC figure): left in place, they would show another run's results beside the new
    report. A file the user wrote or edited (its hash is not in the manifest) stays.
    """
    out = Path(out)
    if not out.is_dir():
        return []
    removed = []
    with locked(out, wait=True):
        owned = _read_owned(out)
        for name in names:
            path = out / name
            if not path.is_file() or path.is_symlink():
                continue
            try:
                ours = _sha256(path.read_bytes()) in owned.get(name, ())
            except OSError:
                continue
            if ours:
                path.unlink()
                owned.pop(name, None)
                removed.append(name)
                remove_empty_dirs(_parents_below(path, out))
        if removed:
            atomic_write_json(out / OWNED_MANIFEST, {"files": owned})
    return removed


def _parents_below(path: Path, top: Path) -> list[Path]:
    """The directories between `top` (excluded) and `path` (excluded), outermost first."""
    rel = path.parent.relative_to(top)
    return [top / Path(*rel.parts[: i + 1]) for i in range(len(rel.parts))]




def adopt_outputs(out: str | Path, names: Iterable[str]) -> None:
    """Record the existing `names` in `out` as unlearnkit's (a folder it wrote before it kept a manifest).

    Only for a folder the caller has recognised as its own; never for one that has a manifest.
    """
    out = Path(out)
    with locked(out, wait=True):
        if (out / OWNED_MANIFEST).exists():
            return
        owned = {name: [_sha256((out / name).read_bytes())] for name in names if (out / name).is_file()}
        atomic_write_json(out / OWNED_MANIFEST, {"files": owned})
