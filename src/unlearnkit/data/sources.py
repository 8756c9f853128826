"""Load an image-classification dataset from wherever the user keeps it, as uint8 arrays.

`load_dataset(source)` recognises four kinds of source:

1. ``"digits"``: scikit-learn's bundled 8x8 digits (no download, no cache: it is tiny).
2. A torchvision CIFAR root: ``"cifar10:ROOT"`` / ``"cifar100:ROOT"``, or a folder holding
   ``cifar-10-batches-py/`` or ``cifar-100-python/``.
3. An image-folder tree ``ROOT/train/<class>/*`` and ``ROOT/test/<class>/*``, as a folder or
   as a ``.tar``/``.tar.gz``/``.tgz``/``.zip``/``.7z`` archive (one wrapping folder allowed).
4. A flat folder of ``<id>.<ext>`` images with an ``id,label`` CSV (Kaggle's CIFAR-10 layout),
   as a folder or an archive.

Sources without their own test split (1, 4, and a tree without ``test/``) get a stratified
test split carved with a FIXED seed, so the test set is a property of the dataset and not
of a run's seed. Decoded datasets are cached by content (see `unlearnkit.data.cache`).
Everything a user can get wrong raises `UnlearnkitError` with one line naming the input.
"""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import lzma
import math
import multiprocessing
import numbers
import os
import posixpath
import re
import sys
import tarfile
import tempfile
import warnings
import zipfile
import zlib
from collections import defaultdict
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from unlearnkit.data import cache as _cache
from unlearnkit.errors import UnlearnkitError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp")
# Longest suffixes first, so "x.tar.gz" is a gzipped tar and not "x.tar" + ".gz".
ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip", ".7z")
# The carved test split must not depend on any run seed: it is part of the dataset's identity.
TEST_SPLIT_SEED = 0

_LAYOUTS_EXPECTED = (
    "expected one of: train/<class>/ and test/<class>/ image folders; "
    "a torchvision CIFAR root (cifar-10-batches-py/ or cifar-100-python/); "
    "a folder of <id>.<ext> images with an id,label CSV; or 'digits'"
)
# Modes Pillow decodes that carry no colour: kept single-channel unless colour images are mixed in.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# Below this many images a process pool costs more (fork + pickling) than it saves.
_PARALLEL_MIN_IMAGES = 2000
# Measured on CIFAR-10 (2 cores): serial 5.3 s, 2 worker processes 2.9 s; threads were slower
# (11.7 s: the per-image Python work holds the GIL). More workers would help on larger machines,
# but decoding happens once per dataset (then the cache serves it), so stay modest.
_MAX_DECODE_WORKERS = 4


@dataclass(frozen=True, eq=False)  # eq=False: element-wise array equality makes == meaningless
class LabeledImages:
    images: np.ndarray  # uint8, shape (N, C, H, W), C = 1 or 3
    labels: np.ndarray  # int64, shape (N,)
    ids: np.ndarray  # unicode str array, shape (N,): unique, stable sample ids

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True, eq=False)
class DatasetBundle:
    name: str  # "digits", "cifar10", or the folder/archive stem
    classes: tuple[str, ...]
    train: LabeledImages  # the training pool (split into members/validation elsewhere)
    test: LabeledImages
    fingerprint: str  # sha256 hex over train+test images, labels, ids and classes (order-sensitive)
    source: str  # the source string as given

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- entry point


def load_dataset(
    source: str,
    *,
    labels_csv: str | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DatasetBundle:
    """Load `source` (see the module docstring for the kinds) as a `DatasetBundle`.

    labels_csv: the ``id,label`` CSV of a flat image folder (auto-detected when None).
    download: let torchvision download a CIFAR root that is missing (needs internet).
    test_fraction: share of each class carved off as test where the source has no test split.
    cache_dir / use_cache: where decoded arrays are cached (default $UNLEARNKIT_CACHE, else
    ~/.cache/unlearnkit), or skip the cache entirely.
    """
    source = os.fspath(source)
    _check_fraction(test_fraction)
    if source.strip().lower() == "digits":
        _reject_labels_csv(labels_csv, "digits")
        return _load_digits(source, test_fraction)

    store = _Store(_cache.resolve_cache_dir(cache_dir)) if use_cache else None
    explicit = _parse_torchvision_source(source)
    if explicit is not None:
        kind, root = explicit
        _reject_labels_csv(labels_csv, source)
        if not root.exists() and not download:
            raise UnlearnkitError(
                f"data path {root} does not exist: point {kind}:ROOT at the folder that contains "
                f"{_TORCHVISION[kind].folder}/, or pass download=True to fetch it there"
            )
        return _load_torchvision(kind, root, source, download, store)

    path = Path(source).expanduser()
    if not path.exists():
        raise UnlearnkitError(
            f"data path {source} does not exist: check the path (or use 'digits', "
            f"or 'cifar10:ROOT' with download=True)"
        )
    if path.is_dir():
        detected = _detect_torchvision_root(path)
        if detected is not None:
            kind, root = detected
            _reject_labels_csv(labels_csv, source)
            return _load_torchvision(kind, root, source, download, store)
    return _load_files(path, source, labels_csv, test_fraction, store)


def _check_fraction(test_fraction: float) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0.0 < test_fraction < 1.0:
        raise UnlearnkitError(f"test_fraction must be a number between 0 and 1 (exclusive), got {test_fraction!r}")


def _reject_labels_csv(labels_csv: str | None, source: str) -> None:
    # A setting that would be silently ignored is a mistake the user wants to hear about.
    if labels_csv is not None:
        raise UnlearnkitError(
            f"labels_csv={labels_csv!r} applies only to a flat folder of <id>.<ext> images, "
            f"not to {source}: drop labels_csv"
        )


# --------------------------------------------------------------------------- shared helpers


def compute_fingerprint(train: LabeledImages, test: LabeledImages, classes: Sequence[str]) -> str:
    """sha256 hex over classes, then train and test (images, labels, ids), order-sensitive.

    Dtype and shape go in too, so (N,1,8,8) and (N,8,8,1) of the same bytes differ.
    """
    h = hashlib.sha256(b"unlearnkit-dataset-v1\0")
    _hash_strings(h, classes)
    for part in (train, test):
        images = np.ascontiguousarray(part.images, dtype=np.uint8)
        h.update(f"{images.dtype.str}{images.shape}".encode())
        h.update(images.reshape(-1).view(np.uint8))
        h.update(np.ascontiguousarray(part.labels, dtype="<i8").tobytes())
        _hash_strings(h, part.ids)
    return h.hexdigest()


def _hash_strings(h: "hashlib._Hash", items: Sequence[str] | np.ndarray) -> None:
    # JSON keeps boundaries unambiguous ("a","bc" vs "ab","c") and is independent of numpy's <U width.
    h.update(json.dumps([str(s) for s in items], ensure_ascii=False).encode("utf-8"))


def _make_images(images: np.ndarray, labels: Sequence[int] | np.ndarray, ids: Sequence[str]) -> LabeledImages:
    return LabeledImages(
        np.ascontiguousarray(images, dtype=np.uint8),
        np.asarray(labels, dtype=np.int64).reshape(-1),
        np.asarray(list(ids), dtype=str).reshape(-1),
    )


def _subset(part: LabeledImages, index: np.ndarray) -> LabeledImages:
    return LabeledImages(np.ascontiguousarray(part.images[index]), part.labels[index], part.ids[index])


def _bundle(name: str, classes: Sequence[str], train: LabeledImages, test: LabeledImages, source: str) -> DatasetBundle:
    classes = tuple(str(c) for c in classes)
    return DatasetBundle(name, classes, train, test, compute_fingerprint(train, test, classes), source)


def carve_test_split(pool: LabeledImages, test_fraction: float, where: str) -> tuple[LabeledImages, LabeledImages]:
    """Stratified (train, test) from one pool, always with seed `TEST_SPLIT_SEED`.

    Per class, round(n * test_fraction) samples go to test, but at least one (when the
    class has two or more) and never all, so each class stays represented in train.
    Both parts keep the pool's order. Our own loop rather than sklearn's, so the split
    does not change when a library changes its algorithm.
    """
    rng = np.random.default_rng(TEST_SPLIT_SEED)
    in_test = np.zeros(len(pool), dtype=bool)
    for label in np.unique(pool.labels):
        members = np.flatnonzero(pool.labels == label)
        n = len(members)
        n_test = min(n - 1, max(1, round(n * test_fraction))) if n >= 2 else 0
        in_test[rng.permutation(members)[:n_test]] = True
    if not in_test.any():
        raise UnlearnkitError(
            f"{where} is too small to carve a test split (every class has a single image): add images"
        )
    return _subset(pool, np.flatnonzero(~in_test)), _subset(pool, np.flatnonzero(in_test))


# --------------------------------------------------------------------------- digits


def _load_digits(source: str, test_fraction: float) -> DatasetBundle:
    from sklearn.datasets import load_digits  # lazy: importing sklearn costs ~1 s

    digits = load_digits()
    # 0..16 intensities to 0..255; np.round is round-half-even like Python's round().
    images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
    ids = [f"digits-{i:04d}" for i in range(len(images))]
    pool = _make_images(images, digits.target, ids)
    train, test = carve_test_split(pool, test_fraction, "digits")
    return _bundle("digits", [str(d) for d in range(10)], train, test, source)


# --------------------------------------------------------------------------- cache glue


class _Store:
    """Bundles <-> `.npz` entries in one cache folder (arrays only, no pickles)."""

    _KEYS = ("train_images", "train_labels", "train_ids", "test_images", "test_labels", "test_ids",
             "classes", "name", "fingerprint")

    def __init__(self, directory: Path):
        self.directory = directory

    def load(self, name: str, key: str, source: str) -> DatasetBundle | None:
        path = _cache.entry_path(self.directory, name, key)
        arrays = _cache.read_entry(path)
        if arrays is None:
            return None
        bundle = self._from_arrays(arrays, source)
        if bundle is None:
            _cache.discard_entry(path, "incomplete or malformed")
        return bundle

    def save(self, name: str, key: str, bundle: DatasetBundle) -> None:
        arrays = {
            "train_images": bundle.train.images, "train_labels": bundle.train.labels, "train_ids": bundle.train.ids,
            "test_images": bundle.test.images, "test_labels": bundle.test.labels, "test_ids": bundle.test.ids,
            "classes": np.asarray(bundle.classes, dtype=str),
            "name": np.asarray(bundle.name, dtype=str),
            "fingerprint": np.asarray(bundle.fingerprint, dtype=str),
        }
        _cache.write_entry(_cache.entry_path(self.directory, name, key), arrays)

    @classmethod
    def _from_arrays(cls, arrays: dict[str, np.ndarray], source: str) -> DatasetBundle | None:
        # A CRC-valid file can still be wrong (written by a buggy version, hand-edited): check the shapes
        # and dtypes the rest of the library relies on instead of trusting them.
        if any(k not in arrays for k in cls._KEYS):
            return None
        parts = []
        for split in ("train", "test"):
            images, labels, ids = (arrays[f"{split}_{k}"] for k in ("images", "labels", "ids"))
            ok = (
                images.dtype == np.uint8 and images.ndim == 4 and images.shape[1] in (1, 3)
                and labels.dtype == np.int64 and labels.shape == (images.shape[0],)
                and ids.dtype.kind == "U" and ids.shape == (images.shape[0],)
            )
            if not ok:
                return None
            parts.append(LabeledImages(images, labels, ids))
        classes, name, fingerprint = arrays["classes"], arrays["name"], arrays["fingerprint"]
        if classes.dtype.kind != "U" or classes.ndim != 1 or name.dtype.kind != "U" or fingerprint.dtype.kind != "U":
            return None
        if parts[0].images.shape[1:] != parts[1].images.shape[1:] and len(parts[1]):
            return None
        return DatasetBundle(str(name), tuple(str(c) for c in classes), parts[0], parts[1], str(fingerprint), source)


def _cached(store: _Store | None, name: str, key_parts: dict | None, source: str, build) -> DatasetBundle:
    """The cached bundle for `key_parts`, else `build()` (then cached). key_parts None = uncacheable."""
    if store is None or key_parts is None:
        return build()
    key = _cache.make_key(key_parts)
    hit = store.load(name, key, source)
    if hit is not None:
        return hit
    bundle = build()
    store.save(name, key, bundle)
    return bundle


# --------------------------------------------------------------------------- torchvision CIFAR roots


@dataclass(frozen=True)
class _TorchvisionKind:
    cls_name: str  # attribute of torchvision.datasets
    folder: str  # the folder torchvision expects under ROOT
    pretty: str


_TORCHVISION = {
    "cifar10": _TorchvisionKind("CIFAR10", "cifar-10-batches-py", "CIFAR-10"),
    "cifar100": _TorchvisionKind("CIFAR100", "cifar-100-python", "CIFAR-100"),
}


def absolute_source(source: str) -> str:
    """`source` with its local path made absolute: a run directory records it, and later commands
    (forget, audit, bench jobs) must find the data from whatever folder they are started in."""
    if not source or source.strip().lower() == "digits":
        return source
    explicit = _parse_torchvision_source(source)
    if explicit is not None:
        kind, root = explicit
        return f"{kind}:{root.resolve()}"
    return str(Path(source).expanduser().resolve())


def _parse_torchvision_source(source: str) -> tuple[str, Path] | None:
    match = re.fullmatch(r"(cifar10|cifar100):(.+)", source.strip(), flags=re.IGNORECASE)
    if match is None:
        return None
    return match.group(1).lower(), Path(match.group(2)).expanduser()


def _detect_torchvision_root(path: Path) -> tuple[str, Path] | None:
    for kind, spec in _TORCHVISION.items():
        if (path / spec.folder).is_dir():
            return kind, path
        if path.name == spec.folder:  # pointed at the batch folder itself: its parent is the root
            return kind, path.parent
    return None


def _torchvision_files(cls) -> list[str]:
    # torchvision's own file lists, so a new torchvision release cannot drift from ours.
    return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


def _load_torchvision(kind: str, root: Path, source: str, download: bool, store: _Store | None) -> DatasetBundle:
    import torchvision.datasets  # lazy: torchvision is a heavy import and only CIFAR roots need it

    spec = _TORCHVISION[kind]
    cls = getattr(torchvision.datasets, spec.cls_name)
    base = root / spec.folder

    def key_parts() -> dict | None:
        files = _torchvision_files(cls)
        if not all((base / f).is_file() for f in files):
            return None  # not there yet (download pending, or a user error build() will report)
        return {"kind": f"torchvision-{kind}", "content": _cache.tree_digest(base, files)}

    def build() -> DatasetBundle:
        try:
            train_set = cls(str(root), train=True, download=download)
            test_set = cls(str(root), train=False, download=False)
        except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
            raise UnlearnkitError(
                f"{spec.pretty} files are missing or corrupted in {base} ({exc}): pass download=True "
                f"(needs internet) or point the source at the folder that contains {spec.folder}/"
            ) from exc
        except (OSError, tarfile.TarError, EOFError) as exc:  # URLError is an OSError
            if download:
                raise UnlearnkitError(
                    f"could not download {spec.pretty} into {root} ({exc}): check the internet connection, "
                    f"or download it by hand and point the source at the folder that contains {spec.folder}/"
                ) from exc
            raise UnlearnkitError(f"cannot read {spec.pretty} files in {base} ({exc}): check their permissions") from exc
        parts = []
        for split, ds in (("train", train_set), ("test", test_set)):
            images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # torchvision keeps NHWC
            parts.append(_make_images(images, ds.targets, [f"{split}-{i:05d}" for i in range(len(images))]))
        return _bundle(kind, list(train_set.classes), parts[0], parts[1], source)

    # A download only happens inside build(), so a missing root is keyed after it (by re-asking).
    parts = key_parts()
    if parts is None and store is not None:
        bundle = build()
        after = key_parts()
        if after is not None:
            store.save(kind, _cache.make_key(after), bundle)
        return bundle
    return _cached(store, kind, parts, source, build)


# --------------------------------------------------------------------------- file sets (folders and archives)


@dataclass
class _FileSet:
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


def _archive_suffix(path: Path) -> str | None:
    lower = path.name.lower()
    return next((s for s in ARCHIVE_SUFFIXES if lower.endswith(s)), None)


def _source_name(path: Path) -> str:
    suffix = _archive_suffix(path) if path.is_file() else None
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
    # Only images and CSVs are read into memory; anything else (READMEs, checksums) is noted, not read.
    return rel.lower().endswith(IMAGE_EXTENSIONS + (".csv",))


@contextlib.contextmanager
def _open_file_set(path: Path, label: str) -> Iterator[_FileSet]:
    """Yield the file set of a folder or archive (a context: a .7z is extracted to a temp folder)."""
    if path.is_dir():
        yield _dir_file_set(path, label)
        return
    suffix = _archive_suffix(path)
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


def _dir_file_set(root: Path, label: str) -> _FileSet:
    fs = _FileSet(label)
    for dirpath, dirnames, filenames in os.walk(root):
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


def _tar_file_set(path: Path, label: str) -> _FileSet:
    fs = _FileSet(label)
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


def _zip_file_set(path: Path, label: str) -> _FileSet:
    fs = _FileSet(label)
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


class _Index:
    """Folder -> (sub-folder names, file paths) over a file set, for cheap layout questions."""

    def __init__(self, fs: _FileSet):
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


def _join(folder: str, name: str) -> str:
    return posixpath.join(folder, name) if folder else name


def _find_root(index: _Index) -> str:
    """Descend through single wrapping folders (e.g. 'cifar10/train/...') to the dataset's top."""
    root = ""
    while "train" not in index.subdirs.get(root, ()) and not index.images_in(root):
        subdirs = index.subdirs.get(root, set())
        if len(subdirs) != 1:
            break
        root = _join(root, next(iter(subdirs)))
    return root


# --------------------------------------------------------------------------- decoding


def _decode_image(name: str, payload: bytes | str) -> np.ndarray:
    """One image as uint8 (H, W) for grayscale or (H, W, 3) for colour; unreadable -> UnlearnkitError."""
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as im:
            im.load()  # decode now, inside the try: a truncated file fails here, not later
            if im.mode in _GRAY_MODES:
                im = im if im.mode == "L" else im.convert("L")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        # Pillow reports broken PNG chunks as SyntaxError, truncation as OSError.
        raise UnlearnkitError(
            f"cannot read image {name} ({type(exc).__name__}: {exc}): replace or delete the file"
        ) from None


def _decode_chunk(items: Sequence[tuple[str, bytes | str]]) -> list[np.ndarray]:
    """Decode in order, grouping runs of same-shape images into blocks (k, H, W) or (k, H, W, 3).

    One array per block pickles back from a worker far faster than thousands of small ones,
    and lets the parent copy whole blocks into place. Module-level so worker processes can
    run it; an UnlearnkitError raised here pickles back to the parent intact.
    """
    blocks: list[np.ndarray] = []
    run: list[np.ndarray] = []
    for name, payload in items:
        arr = _decode_image(name, payload)
        if run and arr.shape != run[0].shape:
            blocks.append(np.stack(run))
            run = []
        run.append(arr)
    if run:
        blocks.append(np.stack(run))
    return blocks


def _decode_workers(n_images: int) -> int:
    if n_images < _PARALLEL_MIN_IMAGES or not sys.platform.startswith("linux"):
        # Elsewhere only spawn/forkserver exist, which re-import the user's __main__: a script
        # without an `if __name__ == "__main__"` guard would break. Serial is correct everywhere.
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DECODE_WORKERS))


def _decode_all(items: Sequence[tuple[str, bytes | str]]) -> list[np.ndarray]:
    """Decode every (name, payload) in order (as blocks, see `_decode_chunk`), over a few forked
    processes when that pays off."""
    workers = _decode_workers(len(items))
    if workers < 2:
        return _decode_chunk(items)
    # ~8 chunks per worker balances load; each chunk is one pickled round trip.
    size = max(1, math.ceil(len(items) / (workers * 8)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # fork: workers start instantly and import nothing; they only run Pillow/numpy (no torch),
    # which is the same bet torch's own DataLoader makes on Linux.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\).*", category=DeprecationWarning)
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            blocks: list[np.ndarray] = []
            for part in executor.map(_decode_chunk, chunks):
                blocks.extend(part)
            return blocks
        except BrokenProcessPool:
            pass  # a worker died (e.g. killed): fall through to the always-works serial path
        finally:
            executor.shutdown(wait=True, cancel_futures=True)  # on an error, skip the remaining chunks
    return _decode_chunk(items)


def _stack(blocks: Sequence[np.ndarray], names: Sequence[str], label: str) -> np.ndarray:
    """(N, C, H, W) uint8 from decoded blocks: all grayscale -> C=1, else gray is expanded to RGB."""
    h, w = blocks[0].shape[1:3]
    offset = 0
    for block in blocks:
        if block.shape[1:3] != (h, w):
            raise UnlearnkitError(
                f"image {names[offset]} in {label} is {block.shape[2]}x{block.shape[1]} pixels but the first "
                f"image ({names[0]}) is {w}x{h}: resize all images to one size"
            )
        offset += len(block)
    channels = 1 if all(b.ndim == 3 for b in blocks) else 3
    out = np.empty((offset, channels, h, w), dtype=np.uint8)
    offset = 0
    for block in blocks:
        # Straight into NCHW (one copy); a gray block broadcasts into R, G and B alike.
        out[offset : offset + len(block)] = block[:, None] if block.ndim == 3 else block.transpose(0, 3, 1, 2)
        offset += len(block)
    return out


# --------------------------------------------------------------------------- layouts


@dataclass
class _Plan:
    """What to decode: per sample an id, a label index and a file-set path; test None = carve it."""

    classes: list[str]
    train: list[tuple[str, int, str]]
    test: list[tuple[str, int, str]] | None
    layout: str


def _load_files(path: Path, source: str, labels_csv: str | None, test_fraction: float, store: _Store | None) -> DatasetBundle:
    label = source
    csv_path = Path(labels_csv).expanduser() if labels_csv is not None else None
    if csv_path is not None and not csv_path.is_file():
        raise UnlearnkitError(f"labels CSV {labels_csv} does not exist: check the labels_csv path")
    name = _source_name(path)

    def build() -> DatasetBundle:
        with _open_file_set(path, label) as fs:
            plan = _plan(fs, path, csv_path, labels_csv)
            if labels_csv is not None and plan.layout != "flat":
                _reject_labels_csv(labels_csv, source)
            return _decode_plan(fs, plan, name, source, test_fraction)

    return _cached(store, name, _file_key_parts(path, csv_path, test_fraction) if store else None, source, build)


def _file_key_parts(path: Path, csv_path: Path | None, test_fraction: float) -> dict:
    # Folders are keyed by a stat digest, archives by their bytes (see cache.py). A labels CSV can
    # live outside the source, so it is keyed too: by content when given, and when auto-detected by
    # the stat of every CSV beside the source (cheap, and an edit there then forces a rebuild).
    content = _cache.tree_digest(path) if path.is_dir() else _cache.file_digest(path)
    parts: dict = {"kind": "files", "content": content, "test_fraction": float(test_fraction)}
    if csv_path is not None:
        parts["labels_csv"] = _cache.file_digest(csv_path)
    else:
        beside = _csvs_beside(path)
        parts["csvs_beside"] = _cache.tree_digest(path.parent, [p.name for p in beside]) if beside else None
    return parts


def _csvs_beside(path: Path) -> list[Path]:
    parent = path.resolve().parent
    try:
        return sorted(p for p in parent.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    except OSError:
        return []  # an unreadable parent folder just means no CSV beside


def _plan(fs: _FileSet, path: Path, csv_path: Path | None, labels_csv: str | None) -> _Plan:
    if not fs.files and not fs.other_files:
        raise UnlearnkitError(f"data path {fs.label} is empty: put the dataset's images there ({_LAYOUTS_EXPECTED})")
    index = _Index(fs)
    root = _find_root(index)
    train_dir = _join(root, "train")
    if index.subdirs.get(train_dir):
        return _plan_tree(fs, index, root)
    for folder in (root, train_dir):
        if index.images_in(folder):
            return _plan_flat(fs, index, folder, path, csv_path, labels_csv)
    raise UnlearnkitError(f"data path {fs.label} matches no known layout: {_LAYOUTS_EXPECTED}")


def _plan_tree(fs: _FileSet, index: _Index, root: str) -> _Plan:
    """ROOT/train/<class>/** and ROOT/test/<class>/** (nested folders inside a class are included)."""
    by_folder: dict[tuple[str, str], list[str]] = defaultdict(list)
    prefix = _join(root, "")
    for rel in fs.files:
        if not rel.lower().endswith(IMAGE_EXTENSIONS) or not rel.startswith(prefix):
            continue
        parts = rel[len(prefix):].split("/")
        if parts[0] not in ("train", "test"):
            continue  # e.g. a val/ folder: not part of this layout
        if len(parts) == 2:
            raise UnlearnkitError(
                f"image {rel} in {fs.label} is not inside a class folder: move it into {parts[0]}/<class>/"
            )
        by_folder[(parts[0], parts[1])].append(rel)

    classes = sorted(index.subdirs[_join(root, "train")])
    for cls in classes:
        if not by_folder.get(("train", cls)):
            raise _empty_class_folder(fs, _join(root, f"train/{cls}"))
    test_dir = _join(root, "test")
    test: list[tuple[str, int, str]] | None = None
    if test_dir in fs.dirs:
        test_classes = sorted(index.subdirs.get(test_dir, ()))
        if not test_classes:
            raise UnlearnkitError(
                f"folder {test_dir} in {fs.label} has no class folders: put test images in test/<class>/ "
                f"(or remove test/ to carve a test split from train)"
            )
        for cls in test_classes:
            if cls not in classes:
                raise UnlearnkitError(
                    f"test class folder {_join(test_dir, cls)} in {fs.label} has no matching train/{cls}/ "
                    f"(train classes: {', '.join(classes)}): rename or remove it"
                )
            if not by_folder.get(("test", cls)):
                raise _empty_class_folder(fs, _join(test_dir, cls))
        test = _tree_samples(by_folder, classes, "test", prefix)
    return _Plan(classes, _tree_samples(by_folder, classes, "train", prefix), test, "tree")


def _empty_class_folder(fs: _FileSet, folder: str) -> UnlearnkitError:
    return UnlearnkitError(
        f"class folder {folder} in {fs.label} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
        f"add images or remove the folder"
    )


def _tree_samples(by_folder: dict, classes: list[str], split: str, prefix: str) -> list[tuple[str, int, str]]:
    samples = [
        (rel[len(prefix):], label, rel)
        for label, cls in enumerate(classes)
        for rel in by_folder.get((split, cls), ())
    ]
    return sorted(samples)  # sorted by id: independent of archive member or directory listing order


def _plan_flat(fs: _FileSet, index: _Index, folder: str, path: Path, csv_path: Path | None,
               labels_csv: str | None) -> _Plan:
    """Kaggle layout: <folder>/<id>.<ext> images labelled by an id,label CSV (CSV row order kept)."""
    where = _join(fs.label, folder) if folder else fs.label
    csv_name, csv_text = _labels_csv_text(fs, index, folder, path, csv_path, labels_csv)
    rows = _parse_labels_csv(csv_text, csv_name)

    by_id: dict[str, str] = {}
    for rel in index.images_in(folder):
        stem = posixpath.splitext(posixpath.basename(rel))[0]
        if stem in by_id:
            raise UnlearnkitError(
                f"images {by_id[stem]} and {rel} in {fs.label} share the id {stem!r}: keep one of them"
            )
        by_id[stem] = rel
    labelled = {sample_id for sample_id, _ in rows}
    for sample_id, _ in rows:
        if sample_id not in by_id:
            raise UnlearnkitError(
                f"labels CSV {csv_name} lists id {sample_id!r} but folder {where} has no image "
                f"{sample_id}.<ext> ({', '.join(IMAGE_EXTENSIONS)}): add the image or remove the row"
            )
    unlabelled = sorted(rel for stem, rel in by_id.items() if stem not in labelled)
    if unlabelled:
        raise UnlearnkitError(
            f"image {unlabelled[0]} in {fs.label} has no row in labels CSV {csv_name} "
            f"({len(unlabelled)} unlabelled images): add id,label rows for them or remove the files"
        )
    classes = _sort_labels({lab for _, lab in rows})
    label_index = {c: i for i, c in enumerate(classes)}
    train = [(sample_id, label_index[lab], by_id[sample_id]) for sample_id, lab in rows]
    return _Plan(classes, train, None, "flat")


def _sort_labels(labels: set[str]) -> list[str]:
    # All-integer labels sort numerically ("2" before "10"); anything else sorts as text.
    if all(re.fullmatch(r"-?\d+", lab) for lab in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _labels_csv_text(fs: _FileSet, index: _Index, folder: str, path: Path, csv_path: Path | None,
                     labels_csv: str | None) -> tuple[str, str]:
    """(name for messages, text) of the labels CSV: the given one, else the nearest single CSV."""
    if csv_path is not None:
        return str(labels_csv), _decode_csv_bytes(csv_path.read_bytes(), str(labels_csv))
    # Nearest first: beside the images, each enclosing folder inside the source, then beside the source.
    levels: list[list[tuple[str, bytes | str]]] = []
    level = folder
    while True:
        levels.append([(f"{fs.label}/{rel}", fs.files[rel]) for rel in index.csvs_in(level)])
        if not level:
            break
        level = posixpath.dirname(level)
    levels.append([(str(p), str(p)) for p in _csvs_beside(path)])
    for candidates in levels:
        if not candidates:
            continue
        if len(candidates) > 1:
            # Kaggle ships trainLabels.csv next to sampleSubmission.csv: prefer the one named for labels.
            named = [c for c in candidates if "label" in posixpath.basename(c[0]).lower()]
            if len(named) != 1:
                raise UnlearnkitError(
                    f"several CSV files could label {fs.label} ({', '.join(c[0] for c in candidates)}): "
                    f"pass labels_csv to choose one"
                )
            candidates = named
        name, payload = candidates[0]
        data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
        return name, _decode_csv_bytes(data, name)
    raise UnlearnkitError(
        f"no labels CSV found for the images in {fs.label}: pass labels_csv with id,label columns "
        f"(or put one CSV beside the images)"
    )


def _decode_csv_bytes(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(f"labels CSV {name} is not UTF-8 text ({exc}): save it as UTF-8 CSV") from exc


def _parse_labels_csv(text: str, name: str) -> list[tuple[str, str]]:
    """[(id, label)] in file order; header names are matched ignoring case and spaces."""
    try:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            raise UnlearnkitError(f"labels CSV {name} is empty: it needs a header row id,label and one row per image")
        columns = [h.strip().lower() for h in header]
        for needed in ("id", "label"):
            if needed not in columns:
                raise UnlearnkitError(
                    f"labels CSV {name} has no {needed!r} column (columns: {', '.join(header) or 'none'}): "
                    f"the header row must name an id column and a label column"
                )
        i_id, i_label = columns.index("id"), columns.index("label")
        rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank lines (a trailing newline or two) are harmless
            if len(row) <= max(i_id, i_label) or not row[i_id].strip() or not row[i_label].strip():
                raise UnlearnkitError(f"labels CSV {name} line {line} lacks an id or a label: fix or delete the line")
            sample_id, lab = row[i_id].strip(), row[i_label].strip()
            if sample_id in seen:
                raise UnlearnkitError(f"labels CSV {name} lists id {sample_id!r} twice (line {line}): keep one row per image")
            seen.add(sample_id)
            rows.append((sample_id, lab))
    except csv.Error as exc:
        raise UnlearnkitError(f"labels CSV {name} is not valid CSV ({exc}): fix the file") from exc
    if not rows:
        raise UnlearnkitError(f"labels CSV {name} has a header but no rows: add one id,label row per image")
    return rows


def _decode_plan(fs: _FileSet, plan: _Plan, name: str, source: str, test_fraction: float) -> DatasetBundle:
    samples = plan.train + (plan.test or [])
    # Decode train and test in one pass: one process pool, one size/colour decision for both.
    shown = [rel for _, _, rel in samples]
    blocks = _decode_all([(f"{rel} in {fs.label}", fs.files[rel]) for _, _, rel in samples])
    images = _stack(blocks, shown, fs.label)
    n_train = len(plan.train)
    train = _make_images(images[:n_train], [s[1] for s in plan.train], [s[0] for s in plan.train])
    if plan.test is None:
        train, test = carve_test_split(train, test_fraction, fs.label)
    else:
        test = _make_images(images[n_train:], [s[1] for s in plan.test], [s[0] for s in plan.test])
    return _bundle(name, plan.classes, train, test, source)
