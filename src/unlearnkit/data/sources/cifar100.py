"""A torchvision CIFAR-100 root (``ROOT/cifar-100-python/{train,test,meta}``), fine labels plus super-classes.

The pickles are read here rather than through torchvision, because torchvision keeps only the
fine labels and sub-class forgetting needs the 20 coarse (super-)classes too. They are read
with an unpickler that only builds what the format holds (dicts, lists, numpy arrays), so a
tampered file cannot run code. torchvision is used only to download (``download=True``).
"""

from __future__ import annotations

import codecs
import pickle
from pathlib import Path

import numpy as np

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest, make_bundle, make_images, register_source
from unlearnkit.data.sources.cifar10 import detect_root
from unlearnkit.data.sources.torchvision_roots import missing_error, missing_files, torchvision_download
from unlearnkit.errors import UnlearnkitError

_FOLDER = "cifar-100-python"
_FILES = ["train", "test", "meta"]
_PRETTY = "CIFAR-100"

_ARRAY = np.zeros(1, dtype=np.uint8)
# The globals numpy arrays pickle with (protocol 2 and 5, numpy 1.x and 2.x module names): nothing else.
_ALLOWED = {
    **{(m, "_reconstruct"): _ARRAY.__reduce__()[0] for m in ("numpy.core.multiarray", "numpy._core.multiarray")},
    **{(m, "_frombuffer"): _ARRAY.__reduce_ex__(5)[0] for m in ("numpy.core.numeric", "numpy._core.numeric")},
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): codecs.encode,  # bytes pickled by Python 3 at protocol 2
}
# What a truncated, garbled or wrong-format pickle raises while loading.
_PICKLE_ERRORS = (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError, IndexError, KeyError,
                  OverflowError, UnicodeDecodeError, MemoryError)


class _ArraysOnlyUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"it refers to {module}.{name}, which a CIFAR pickle never does") from None


def read_pickle(path: Path, pretty: str) -> object:
    """A CIFAR-format pickle (latin1, as torchvision reads the Python 2 originals); unreadable -> one-line error."""
    try:
        with open(path, "rb") as f:
            return _ArraysOnlyUnpickler(f, encoding="latin1").load()
    except _PICKLE_ERRORS as exc:
        raise UnlearnkitError(
            f"{pretty} file {path} is corrupted or not a {pretty} pickle ({type(exc).__name__}: {exc}): "
            f"download it again (download=True) or replace it"
        ) from None
    except OSError as exc:
        raise UnlearnkitError(f"cannot read {pretty} file {path} ({exc}): check its permissions") from None


def _field(entry: object, key: str, path: Path) -> object:
    if not isinstance(entry, dict) or key not in entry:
        raise UnlearnkitError(f"{_PRETTY} file {path} has no {key!r} entry: it is not a {_PRETTY} file; download it again")
    return entry[key]


def _labels(entry: object, key: str, n: int, n_classes: int, path: Path) -> np.ndarray:
    raw = _field(entry, key, path)
    try:
        labels = np.asarray(raw, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError, OverflowError):
        labels = np.empty(0, dtype=np.int64)  # reported below, with the rest of what is wrong
    if labels.shape != (n,) or (n and (labels.min() < 0 or labels.max() >= n_classes)):
        raise UnlearnkitError(
            f"{_PRETTY} file {path} has {key!r} that are not {n} labels in 0..{n_classes - 1}: the file is corrupted; download it again"
        )
    return labels


def _names(meta: object, key: str, path: Path) -> list[str]:
    names = _field(meta, key, path)
    if not isinstance(names, list) or not names or not all(isinstance(s, str) for s in names):
        raise UnlearnkitError(f"{_PRETTY} file {path} has no list of {key}: the file is corrupted; download it again")
    return names


def _split(base: Path, split: str, fine: list[str], coarse: list[str]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(images NCHW, fine labels, coarse labels) of one split file."""
    path = base / split
    entry = read_pickle(path, _PRETTY)
    data = _field(entry, "data", path)
    if not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise UnlearnkitError(
            f"{_PRETTY} file {path} has 'data' that is not a uint8 array of rows of 3x32x32 pixels: the file is corrupted; download it again"
        )
    n = len(data)
    return (data.reshape(n, 3, 32, 32), _labels(entry, "fine_labels", n, len(fine), path),
            _labels(entry, "coarse_labels", n, len(coarse), path))


def _superclass_of(fine: list[str], fine_labels: np.ndarray, coarse_labels: np.ndarray, base: Path) -> list[int]:
    """Each fine class's coarse class, read off the samples (the format has no explicit table)."""
    mapping = []
    for index, name in enumerate(fine):
        seen = np.unique(coarse_labels[fine_labels == index])
        if len(seen) != 1:
            what = "no sample" if len(seen) == 0 else f"samples in {len(seen)} super-classes"
            raise UnlearnkitError(
                f"{_PRETTY} files in {base} give fine class {name!r} {what}, so its super-class is unknown: "
                f"the files are incomplete or corrupted; download them again"
            )
        mapping.append(int(seen[0]))
    return mapping


@register_source
class Cifar100(Source):
    name = "cifar100"
    summary = "a torchvision CIFAR-100 root (cifar-100-python/ pickles); fine labels, with the 20 super-classes recorded"
    example = "cifar100:~/data"
    layout = f"{_FOLDER}/"
    can_download = True

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        return detect_root(path, _FOLDER)

    def load(self, request: SourceRequest) -> DatasetBundle:
        root = request.root
        base = root / _FOLDER
        if missing_files(base, _FILES) and request.download:
            torchvision_download(_PRETTY, "CIFAR100", root, self.layout, train=True)
        missing = missing_files(base, _FILES)
        if missing:
            raise missing_error(_PRETTY, base, missing, self.layout)

        def build() -> DatasetBundle:
            meta = read_pickle(base / "meta", _PRETTY)
            fine = _names(meta, "fine_label_names", base / "meta")
            coarse = _names(meta, "coarse_label_names", base / "meta")
            train_images, train_fine, train_coarse = _split(base, "train", fine, coarse)
            test_images, test_fine, test_coarse = _split(base, "test", fine, coarse)
            superclass_of = _superclass_of(fine, np.concatenate([train_fine, test_fine]),
                                           np.concatenate([train_coarse, test_coarse]), base)
            train = make_images(train_images, train_fine, [f"train-{i:05d}" for i in range(len(train_fine))])
            test = make_images(test_images, test_fine, [f"test-{i:05d}" for i in range(len(test_fine))])
            return make_bundle(self.name, fine, train, test, request.source,
                               superclasses=coarse, superclass_of=superclass_of)

        # "format" 2: entries now carry the super-classes (those of format 1, via torchvision, did not).
        key = {"kind": "cifar100", "format": 2, "content": _cache.tree_digest(base, _FILES)}
        return request.cached(self.name, key, build)
