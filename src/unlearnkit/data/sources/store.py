"""Bundles <-> `.npz` cache entries (arrays only, no pickles); the file mechanics are in `unlearnkit.data.cache`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import DatasetBundle, LabeledImages


class Store:
    """One cache folder of decoded datasets, keyed by content (see `SourceRequest.cached`)."""

    _KEYS = ("train_images", "train_labels", "train_ids", "test_images", "test_labels", "test_ids",
             "classes", "name", "fingerprint")

    def __init__(self, directory: Path):
        self.directory = directory

    def cached(self, name: str, key_parts: dict, source: str, build: Callable[[], DatasetBundle]) -> DatasetBundle:
        key = _cache.make_key(key_parts)
        hit = self.load(name, key, source)
        if hit is not None:
            return hit
        bundle = build()
        self.save(name, key, bundle)
        return bundle

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
        if bundle.superclasses:  # only sources with super-classes (CIFAR-100) store them
            arrays["superclasses"] = np.asarray(bundle.superclasses, dtype=str)
            arrays["superclass_of"] = np.asarray(bundle.superclass_of, dtype=np.int64)
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
        superclasses = arrays.get("superclasses", np.empty(0, dtype=str))
        superclass_of = arrays.get("superclass_of", np.empty(0, dtype=np.int64))
        if superclasses.dtype.kind != "U" or superclass_of.dtype != np.int64:
            return None
        if len(superclasses) and superclass_of.shape != classes.shape:
            return None
        return DatasetBundle(str(name), tuple(str(c) for c in classes), parts[0], parts[1], str(fingerprint), source,
                             tuple(str(s) for s in superclasses), tuple(int(s) for s in superclass_of))
