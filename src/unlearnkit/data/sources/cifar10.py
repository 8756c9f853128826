"""A torchvision CIFAR-10 root (``ROOT/cifar-10-batches-py/``), read through torchvision itself
(which also checks the files' md5 sums, and downloads them when ``download=True``)."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest, make_bundle, make_images, register_source
from unlearnkit.errors import UnlearnkitError


def detect_root(path: Path, folder: str) -> Path | None:
    """ROOT when `path` holds `folder`/ (torchvision's layout) or is that folder itself."""
    if (path / folder).is_dir():
        return path
    if path.name == folder and path.is_dir():  # pointed at the batch folder itself: its parent is the root
        return path.parent
    return None


def _torchvision_files(cls) -> list[str]:
    # torchvision's own file lists, so a new torchvision release cannot drift from ours.
    return [name for name, _ in cls.train_list + cls.test_list] + [cls.meta["filename"]]


@register_source
class Cifar10(Source):
    name = "cifar10"
    summary = "a torchvision CIFAR-10 root (cifar-10-batches-py/ pickles)"
    example = "cifar10:~/data"
    layout = "cifar-10-batches-py/"
    can_download = True
    pretty = "CIFAR-10"

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        return detect_root(path, "cifar-10-batches-py")

    def load(self, request: SourceRequest) -> DatasetBundle:
        import torchvision.datasets  # lazy: torchvision is a heavy import and only CIFAR roots need it

        root, kind, folder, pretty = request.root, self.name, "cifar-10-batches-py", self.pretty
        cls = torchvision.datasets.CIFAR10
        base = root / folder

        def key_parts() -> dict | None:
            files = _torchvision_files(cls)
            if not all((base / f).is_file() for f in files):
                return None  # not there yet (download pending, or a user error build() will report)
            return {"kind": f"torchvision-{kind}", "content": _cache.tree_digest(base, files)}

        def build() -> DatasetBundle:
            try:
                train_set = cls(str(root), train=True, download=request.download)
                test_set = cls(str(root), train=False, download=False)
            except RuntimeError as exc:  # torchvision's "Dataset not found or corrupted"
                raise UnlearnkitError(
                    f"{pretty} files are missing or corrupted in {base} ({exc}): pass download=True "
                    f"(needs internet) or point the source at the folder that contains {folder}/"
                ) from exc
            except (OSError, tarfile.TarError, EOFError) as exc:  # URLError is an OSError
                if request.download:
                    raise UnlearnkitError(
                        f"could not download {pretty} into {root} ({exc}): check the internet connection, "
                        f"or download it by hand and point the source at the folder that contains {folder}/"
                    ) from exc
                raise UnlearnkitError(f"cannot read {pretty} files in {base} ({exc}): check their permissions") from exc
            parts = []
            for split, ds in (("train", train_set), ("test", test_set)):
                images = np.asarray(ds.data).transpose(0, 3, 1, 2)  # torchvision keeps NHWC
                parts.append(make_images(images, ds.targets, [f"{split}-{i:05d}" for i in range(len(images))]))
            return make_bundle(kind, list(train_set.classes), parts[0], parts[1], request.source)

        # A download only happens inside build(), so a missing root is keyed after it (by re-asking).
        parts = key_parts()
        if parts is None and request.store is not None:
            bundle = build()
            after = key_parts()
            if after is not None:
                request.store.save(kind, _cache.make_key(after), bundle)
            return bundle
        return request.cached(kind, parts, build)
