"""The files of a folder or an archive (.tar*, .zip, .7z), addressed by POSIX paths relative to its top.

Sources that read loose files (image-folder trees, the Kaggle layout, Tiny-ImageNet) work on a
`FileSet`, so each of them reads a folder and every archive kind alike.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import tarfile
import tempfile
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from unlearnkit.data.cache import walk_tree
from unlearnkit.errors import UnlearnkitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Longest suffixes first, so "x.tar.gz" is a gzipped tar and not "x.tar" + ".gz".
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip", ".7z")
# Besides images, the small text files layouts need (labels CSVs; Tiny-ImageNet's .txt lists).
_KEPT_EXTENSIONS = IMAGE_EXTENSIONS + (".csv", ".txt")


@dataclass
class FileSet:
    """The files of a folder or archive, addressed by POSIX paths relative to its top."""

    label: str  # how messages name the source
    files: dict[str, bytes | str] = field(default_factory=dict)  # rel path -> bytes (archive) or disk path
    dirs: set[str] = field(default_factory=set)  # rel paths of all folders, including empty ones
    other_files: int = 0  # files we did not keep (not images or CSVs): only to tell "empty" apart

    def add_dir(self, rel: str) -> None:
        while rel and rel not in self.dirs:
            self.dirs.add(rel)
            rel = posixpath.dirname(rel)

    def add_file(self, rel: str, payload: bytes | str) -> None:
        self.files[rel] = payload
        self.add_dir(posixpath.dirname(rel))


def archive_suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def source_name(path: Path) -> str:
    suffix = archive_suffix(path) if path.is_file() else None
    name = path.resolve().name
    return name[: -len(suffix)] if suffix else name


def _clean_member(name: str) -> str | None:
    """Normalised relative path of an archive member, or None for entries to skip.

    Skips absolute paths and '..' (never trust archive paths), and hidden/OS junk such as
    '.DS_Store', '._x.jpg' (macOS resource forks) and '__MACOSX/'.
    """
    name = name.replace("\\", "/")
    if name.startswith("/"):
        return None
    rel = posixpath.normpath(name)
    if rel in (".", "") or rel == ".." or rel.startswith("../"):
        return None
    if any(part.startswith(".") or part == "__MACOSX" for part in rel.split("/")):
        return None
    return rel


def _wanted(rel: str) -> bool:
    # Only images and small label files are read into memory; anything else (READMEs, checksums) is noted, not read.
    return rel.lower().endswith(_KEPT_EXTENSIONS)


@contextlib.contextmanager
def open_file_set(path: Path, label: str) -> Iterator[FileSet]:
    """Yield the file set of a folder or archive (a context: a .7z is extracted to a temp folder)."""
    if path.is_dir():
        yield _dir_file_set(path, label)
        return
    suffix = archive_suffix(path)
    if suffix is None:
        raise UnlearnkitError(
            f"data path {label} is a file but not a supported archive: use a folder, or a "
            f".tar, .tar.gz, .tgz, .zip or .7z archive of one"
        )
    if suffix == ".zip":
        yield _zip_file_set(path, label)
    elif suffix == ".7z":
        with _extract_7z(path, label) as folder:
            yield _dir_file_set(folder, label)
    else:
        yield _tar_file_set(path, label)


def _dir_file_set(root: Path, label: str) -> FileSet:
    fs = FileSet(label)
    # walk_tree follows symlinked folders (a class folder is often a link to where the images live).
    for dirpath, dirnames, filenames in walk_tree(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".") and d != "__MACOSX")
        rel_dir = Path(dirpath).relative_to(root).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        fs.add_dir(rel_dir)
        for name in filenames:
            if name.startswith("."):
                continue
            rel = posixpath.join(rel_dir, name)
            if _wanted(rel):
                fs.add_file(rel, os.path.join(dirpath, name))
            else:
                fs.other_files += 1
    return fs


def _bad_archive(label: str, exc: BaseException) -> UnlearnkitError:
    return UnlearnkitError(
        f"cannot read archive {label} ({type(exc).__name__}: {exc}): check that it is complete and "
        f"not corrupted (download or copy it again)"
    )


def _tar_file_set(path: Path, label: str) -> FileSet:
    fs = FileSet(label)
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                rel = _clean_member(member.name)
                if rel is None:
                    continue
                if member.isdir():
                    fs.add_dir(rel)
                elif member.isfile() and _wanted(rel):
                    fs.add_file(rel, tar.extractfile(member).read())
                elif member.isfile():
                    fs.other_files += 1
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError) as exc:
        raise _bad_archive(label, exc) from exc
    return fs


def _zip_file_set(path: Path, label: str) -> FileSet:
    fs = FileSet(label)
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                rel = _clean_member(info.filename)
                if rel is None:
                    continue
                if info.is_dir():
                    fs.add_dir(rel)
                elif _wanted(rel):
                    fs.add_file(rel, archive.read(info))
                else:
                    fs.other_files += 1
    # RuntimeError: encrypted member; NotImplementedError: unsupported compression method.
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError) as exc:
        raise _bad_archive(label, exc) from exc
    return fs


@contextlib.contextmanager
def _extract_7z(path: Path, label: str) -> Iterator[Path]:
    try:
        import py7zr
    except ImportError as exc:
        raise UnlearnkitError(
            f"reading the .7z archive {label} needs the optional py7zr package: pip install unlearnkit[7z] "
            f"(or extract it and pass the folder)"
        ) from exc
    # py7zr's in-memory read API changed across releases; extractall(path=...) is stable in all of them.
    errors: tuple[type[BaseException], ...] = (OSError, EOFError, ValueError, lzma.LZMAError)
    errors += tuple(
        getattr(py7zr.exceptions, n) for n in
        ("ArchiveError", "Bad7zFile", "CrcError", "DecompressionError", "PasswordRequired",
         "UnsupportedCompressionMethodError", "InternalError")
        if isinstance(getattr(py7zr.exceptions, n, None), type)
    )
    with tempfile.TemporaryDirectory(prefix="unlearnkit-7z-") as tmp:
        try:
            with py7zr.SevenZipFile(path, mode="r") as archive:
                archive.extractall(path=tmp)
        except errors as exc:
            raise _bad_archive(label, exc) from exc
        yield Path(tmp)


class FileIndex:
    """Folder -> (sub-folder names, file paths) over a file set, for cheap layout questions."""

    def __init__(self, fs: FileSet):
        self.subdirs: dict[str, set[str]] = defaultdict(set)
        self.files_in: dict[str, list[str]] = defaultdict(list)
        for d in fs.dirs:
            self.subdirs[posixpath.dirname(d)].add(posixpath.basename(d))
        for rel in fs.files:
            self.files_in[posixpath.dirname(rel)].append(rel)

    def images_in(self, folder: str) -> list[str]:
        return sorted(f for f in self.files_in.get(folder, ()) if f.lower().endswith(IMAGE_EXTENSIONS))

    def csvs_in(self, folder: str) -> list[str]:
        return sorted(f for f in self.files_in.get(folder, ()) if f.lower().endswith(".csv"))


def join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if folder else name


def find_root(index: FileIndex) -> str:
    """Descend through single wrapping folders (e.g. 'cifar10/train/...') to the dataset's top."""
    root = ""
    while "train" not in index.subdirs.get(root, ()) and not index.images_in(root):
        subdirs = index.subdirs.get(root, set())
        if len(subdirs) != 1:
            break
        root = join(root, next(iter(subdirs)))
    return root

