"""What every source produces (`DatasetBundle`), the `Source` interface, and the source registry.

A source is one small module: a `Source` subclass that reads one on-disk format and is
decorated with `@register_source`. `load_dataset` (in `unlearnkit.data.sources.resolve`)
picks the source from the spec (``kind:ROOT``, a bare path it recognises, or ``digits``),
so adding a format never touches the resolver. Other packages add sources through the
``unlearnkit.datasets`` entry-point group (see `unlearnkit.data.sources.plugins`).
"""

from __future__ import annotations

import hashlib
import json
import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np

from unlearnkit.errors import UnlearnkitError

if TYPE_CHECKING:
    from unlearnkit.data.sources.store import Store

# The carved test split must not depend on any run seed: it is part of the dataset's identity.
TEST_SPLIT_SEED = 0


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
    # Super-classes (CIFAR-100's 20 coarse classes), empty when the source has none:
    # class i belongs to superclasses[superclass_of[i]]. Sub-class forgetting needs them.
    superclasses: tuple[str, ...] = ()
    superclass_of: tuple[int, ...] = ()

    @property
    def num_classes(self) -> int:
        return len(self.classes)


# --------------------------------------------------------------------------- building bundles


def compute_fingerprint(train: LabeledImages, test: LabeledImages, classes: Sequence[str],
                        superclasses: Sequence[str] = (), superclass_of: Sequence[int] = ()) -> str:
    """sha256 hex over classes, then train and test (images, labels, ids), order-sensitive.

    Dtype and shape go in too, so (N,1,8,8) and (N,8,8,1) of the same bytes differ. The
    super-class mapping goes in only when there is one, so every other dataset keeps the
    fingerprint it had before super-classes existed.
    """
    h = hashlib.sha256(b"unlearnkit-dataset-v1\0")
    hash_strings(h, classes)
    for part in (train, test):
        images = np.ascontiguousarray(part.images, dtype=np.uint8)
        h.update(f"{images.dtype.str}{images.shape}".encode())
        h.update(images.reshape(-1).view(np.uint8))
        h.update(np.ascontiguousarray(part.labels, dtype="<i8").tobytes())
        hash_strings(h, part.ids)
    if superclasses:
        h.update(b"superclasses\0")
        hash_strings(h, superclasses)
        hash_strings(h, [str(int(s)) for s in superclass_of])
    return h.hexdigest()


def hash_strings(h: "hashlib._Hash", items: Sequence[str] | np.ndarray) -> None:
    # JSON keeps boundaries unambiguous ("a","bc" vs "ab","c") and is independent of numpy's <U width.
    h.update(json.dumps([str(s) for s in items], ensure_ascii=False).encode("utf-8"))


def make_images(images: np.ndarray, labels: Sequence[int] | np.ndarray, ids: Sequence[str]) -> LabeledImages:
    return LabeledImages(
        np.ascontiguousarray(images, dtype=np.uint8),
        np.asarray(labels, dtype=np.int64).reshape(-1),
        np.asarray(list(ids), dtype=str).reshape(-1),
    )


def subset(part: LabeledImages, index: np.ndarray) -> LabeledImages:
    return LabeledImages(np.ascontiguousarray(part.images[index]), part.labels[index], part.ids[index])


def make_bundle(name: str, classes: Sequence[str], train: LabeledImages, test: LabeledImages, source: str, *,
                superclasses: Sequence[str] = (), superclass_of: Sequence[int] = ()) -> DatasetBundle:
    """A `DatasetBundle` with its fingerprint computed (what every source, plugins too, returns)."""
    classes = tuple(str(c) for c in classes)
    superclasses = tuple(str(c) for c in superclasses)
    superclass_of = tuple(int(s) for s in superclass_of)
    fingerprint = compute_fingerprint(train, test, classes, superclasses, superclass_of)
    return DatasetBundle(name, classes, train, test, fingerprint, source, superclasses, superclass_of)


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
    return subset(pool, np.flatnonzero(~in_test)), subset(pool, np.flatnonzero(in_test))


def check_fraction(test_fraction: float) -> None:
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, numbers.Real) or not 0.0 < test_fraction < 1.0:
        raise UnlearnkitError(f"test_fraction must be a number between 0 and 1 (exclusive), got {test_fraction!r}")


def reject_labels_csv(labels_csv: str | None, source: str) -> None:
    # A setting that would be silently ignored is a mistake the user wants to hear about.
    if labels_csv is not None:
        raise UnlearnkitError(
            f"labels_csv={labels_csv!r} applies only to a flat folder of <id>.<ext> images, "
            f"not to {source}: drop labels_csv"
        )


def check_bundle(bundle: object, where: str) -> DatasetBundle:
    """`bundle` if it is well formed and has two or more classes, else a one-line UnlearnkitError.

    Our own sources build bundles correctly; this guards what plugins return and what the rest
    of the library assumes (uint8 NCHW images, int64 labels in range, unique str ids).
    """
    if not isinstance(bundle, DatasetBundle):
        raise UnlearnkitError(f"{where} returned {type(bundle).__name__}, not a DatasetBundle: build it with make_bundle")
    n_classes = len(bundle.classes)
    for split in ("train", "test"):
        part = getattr(bundle, split)
        ok = (
            isinstance(part, LabeledImages)
            and isinstance(part.images, np.ndarray) and part.images.dtype == np.uint8
            and part.images.ndim == 4 and part.images.shape[1] in (1, 3)
            and isinstance(part.labels, np.ndarray) and part.labels.dtype == np.int64
            and part.labels.shape == (part.images.shape[0],)
            and isinstance(part.ids, np.ndarray) and part.ids.dtype.kind == "U" and part.ids.shape == part.labels.shape
        )
        if not ok:
            raise UnlearnkitError(
                f"{where} returned a malformed {split} split (need uint8 images (N, 1|3, H, W), int64 labels (N,) "
                f"and str ids (N,)): build it with make_images"
            )
        if len(part) and (part.labels.min() < 0 or part.labels.max() >= n_classes):
            raise UnlearnkitError(f"{where} returned {split} labels outside 0..{n_classes - 1}: fix the labels or the class list")
        # Splits and manifests address samples by id: a repeated id would map two samples to one position.
        unique, counts = np.unique(part.ids, return_counts=True)
        if len(unique) < len(part):
            first = int(np.argmax(counts > 1))
            raise UnlearnkitError(
                f"{where} returned {split} ids that are not unique ({str(unique[first])!r} appears {counts[first]} times): "
                f"give every sample its own id"
            )
    train_shape, test_shape = bundle.train.images.shape[1:], bundle.test.images.shape[1:]
    if len(bundle.test) and test_shape != train_shape:
        # A model is built for the train images' shape; test images of another shape would fail only at evaluation.
        raise UnlearnkitError(
            f"{where} returned test images of shape (C, H, W) = {test_shape} but train images of {train_shape}: "
            f"give both splits the same channels and size"
        )
    present = np.unique(bundle.train.labels)
    if n_classes < 2 or len(present) < 2:
        only = bundle.classes[int(present[0])] if len(present) else (bundle.classes[0] if bundle.classes else "none")
        raise UnlearnkitError(
            f"dataset {where} has only one class ({only!r}) in its training data: unlearning needs a classifier "
            f"over two or more classes; add images of other classes"
        )
    if bundle.superclasses and (
        len(bundle.superclass_of) != n_classes or not all(0 <= s < len(bundle.superclasses) for s in bundle.superclass_of)
    ):
        raise UnlearnkitError(f"{where} returned a super-class mapping that does not cover its {n_classes} classes: fix superclass_of")
    return bundle


# --------------------------------------------------------------------------- the source interface


@dataclass(frozen=True)
class SourceRequest:
    """One `load_dataset` call, as a source sees it."""

    source: str  # the spec as given (recorded in the bundle)
    argument: str  # the spec without its "kind:" prefix (a path for file sources); "" for bare kinds
    root: Path | None  # `argument` as an expanded path, or None for sources that take no path
    labels_csv: str | None = None
    download: bool = False
    test_fraction: float = 0.2
    store: "Store | None" = field(default=None, repr=False)

    def cached(self, name: str, key_parts: dict | None, build: Callable[[], DatasetBundle]) -> DatasetBundle:
        """The bundle cached under `key_parts` (everything that determines its content), else `build()`
        (then cached). key_parts None, or no cache: just build."""
        if self.store is None or key_parts is None:
            return build()
        return self.store.cached(name, key_parts, self.source, build)


class Source:
    """Subclass, set the class attributes, implement `load` (and `detect`), decorate with `@register_source`."""

    name: ClassVar[str]  # the spec prefix: "cifar100" in "cifar100:ROOT"
    summary: ClassVar[str]  # one line: what format this reads
    example: ClassVar[str]  # a spec, e.g. "cifar100:~/data"
    layout: ClassVar[str] = ""  # what ROOT must hold (for messages), e.g. "cifar-100-python/"
    takes_path: ClassVar[bool] = True  # False: the spec is the bare name ("digits")
    takes_labels_csv: ClassVar[bool] = False
    can_download: ClassVar[bool] = False  # True: download=True fetches a missing ROOT (torchvision)

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        """The ROOT to load when a bare path (no "kind:") points at this source's layout, else None."""
        return None

    def load(self, request: SourceRequest) -> DatasetBundle:
        raise NotImplementedError


_SOURCES: dict[str, type[Source]] = {}


def register_source(cls: type[Source]) -> type[Source]:
    """Class decorator: add a source. Registration order is auto-detection order (first match wins)."""
    if cls.name in _SOURCES:
        raise ValueError(f"dataset source {cls.name!r} is registered twice")
    if not cls.name.isidentifier() or cls.name != cls.name.lower() or len(cls.name) < 2:
        raise ValueError(f"dataset source name {cls.name!r} must be a lower-case identifier of 2+ characters")
    _SOURCES[cls.name] = cls
    return cls


def registered_sources() -> dict[str, type[Source]]:
    return dict(_SOURCES)
