"""The files of a folder or an archive (.tar*, .zip, .7z), addressed by POSIX paths relative to its top.

Sources that read loose files (image-folder trees, the Kaggle layout, Tiny-ImageNet) work on a
`FileSet`, so each of them reads a folder and every archive kind alike.
"""

from __future__ import annotations

import contextlib
import lzma
import os
import posixpath
import stat
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
    links: dict[str, str] = {}  # symlink rel path -> its target as stored
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                rel = _clean_member(member.name)
                if rel is None:
                    continue
                if member.isdir():
                    fs.add_dir(rel)
                elif member.issym():
                    links[rel] = member.linkname  # resolved once every member is known (a target may come later)
                elif member.islnk() and _wanted(rel):
                    # A hard link names an earlier member: reuse its bytes, else let tarfile find them.
                    target = fs.files.get(_clean_member(member.linkname) or "")
                    fs.add_file(rel, target if isinstance(target, bytes) else tar.extractfile(member).read())
                elif member.isfile() and _wanted(rel):
                    fs.add_file(rel, tar.extractfile(member).read())
                elif member.isfile() or member.islnk():
                    fs.other_files += 1
    # KeyError: a hard link whose target is not in the archive.
    except (tarfile.TarError, OSError, EOFError, zlib.error, lzma.LZMAError, KeyError) as exc:
        raise _bad_archive(label, exc) from exc
    _add_symlinks(fs, links)
    return fs


def _zip_file_set(path: Path, label: str) -> FileSet:
    fs = FileSet(label)
    links: dict[str, str] = {}
    try:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                rel = _clean_member(info.filename)
                if rel is None:
                    continue
                if info.is_dir():
                    fs.add_dir(rel)
                elif stat.S_ISLNK(info.external_attr >> 16):
                    # `zip -y` stores a symlink as a member whose bytes are its target.
                    links[rel] = archive.read(info).decode("utf-8", "surrogateescape")
                elif _wanted(rel):
                    fs.add_file(rel, archive.read(info))
                else:
                    fs.other_files += 1
    # RuntimeError: encrypted member; NotImplementedError: unsupported compression method.
    except (zipfile.BadZipFile, OSError, EOFError, zlib.error, lzma.LZMAError, RuntimeError, NotImplementedError) as exc:
        raise _bad_archive(label, exc) from exc
    _add_symlinks(fs, links)
    return fs


def _add_symlinks(fs: FileSet, links: dict[str, str]) -> None:
    """Add what an archive's symlinks point to under the links' own paths, as walk_tree does for a folder.

    A link to a file adds that file's bytes; a link to a folder adds the folder's files and sub-folders
    (and its own links, recursively). As in walk_tree, a link to a folder on its own path (a loop) adds
    nothing. A link that leaves the archive, or points to a hidden or missing member, cannot be read from
    the archive alone: that is a one-line error rather than a silently smaller dataset (a dangling link
    whose name is not an image or label file is merely counted, as a folder's would be).
    """
    if not links:
        return
    files, dirs = dict(fs.files), set(fs.dirs)  # the archive's real members, before any link is added

    def resolve(rel: str) -> str | None:
        """`rel` with every symlink among its components followed; None when it leaves the archive."""
        done: list[str] = []
        todo = rel.split("/")
        for _ in range(40 + len(todo)):  # 40: the kernel's own limit on links followed in one path
            if not todo:
                return "/".join(done)
            here = "/".join(done + [todo[0]])
            if here not in links:
                done.append(todo.pop(0))
                continue
            target = links[here].replace("\\", "/")
            joined = posixpath.normpath(posixpath.join(posixpath.dirname(here), target))
            if target.startswith("/") or joined == ".." or joined.startswith("../"):
                return None
            done, todo = [], ([] if joined == "." else joined.split("/")) + todo[1:]
        return None  # a cycle of links

    def place(link: str, dest: str, chain: frozenset[str]) -> None:
        real = resolve(link)
        if real is not None and real in files:
            if _wanted(dest):
                fs.add_file(dest, files[real])
            else:
                fs.other_files += 1
        elif real is not None and (real == "" or real in dirs):
            if real in chain:
                return  # a link back to a folder on its own path: following it would never end
            fs.add_dir(dest)
            prefix = real + "/" if real else ""
            for rel in [f for f in files if f.startswith(prefix)]:
                fs.add_file(dest + "/" + rel[len(prefix):], files[rel])
            for rel in [d for d in dirs if d.startswith(prefix)]:
                fs.add_dir(dest + "/" + rel[len(prefix):])
            for rel in sorted(r for r in links if r.startswith(prefix)):
                place(rel, dest + "/" + rel[len(prefix):], chain | _folders_between(real, rel))
        elif real is not None and _clean_member(real) == real and not _wanted(dest):
            fs.other_files += 1  # dangling, and no image or label file: a folder's walk would skip it too
        else:
            raise UnlearnkitError(
                f"symlink {link} -> {links[link]} in {fs.label} cannot be followed inside the archive (its target is "
                f"outside it, missing or hidden): pack the dataset with links dereferenced (`tar -h`, or zip without -y) "
                f"so the archive holds the files themselves"
            )

    for link in sorted(links):
        place(link, link, _folders_between("", link))


def _folders_between(top: str, rel: str) -> frozenset[str]:
    """The folders from `top` down to the one that holds `rel` (the real path walk_tree's loop check keeps)."""
    out = {top}
    folder = posixpath.dirname(rel)
    while folder and folder != top:
        out.add(folder)
        folder = posixpath.dirname(folder)
    return frozenset(out)


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

