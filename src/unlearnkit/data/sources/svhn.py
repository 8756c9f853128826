"""SVHN in torchvision's format: ``ROOT/train_32x32.mat`` and ``ROOT/test_32x32.mat`` (cropped digits).

Each file is a MATLAB file with ``X`` (32, 32, 3, N) uint8 and ``y`` (N, 1) labels 1..10, where
10 stands for the digit 0: it becomes label 0, as torchvision maps it. The ``extra`` set is not read.
torchvision is used only to download (``download=True``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest, make_bundle, make_images, register_source
from unlearnkit.data.sources.torchvision_roots import missing_error, missing_files, torchvision_download
from unlearnkit.errors import UnlearnkitError

_FILES = {"train": "train_32x32.mat", "test": "test_32x32.mat"}
_PRETTY = "SVHN"
_CLASSES = [str(d) for d in range(10)]


def _read_mat(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(images NCHW uint8, labels 0..9) of one SVHN .mat file; anything else -> one-line error."""
    import scipy.io  # lazy: only SVHN needs it
    from scipy.io.matlab import MatReadError

    try:
        mat = scipy.io.loadmat(str(path), variable_names=["X", "y"])
    except (MatReadError, ValueError, TypeError, OSError, EOFError, KeyError, IndexError, NotImplementedError) as exc:
        # scipy reports a truncated or foreign file as MatReadError/ValueError, an HDF5 (v7.3) file as NotImplementedError.
        raise UnlearnkitError(
            f"{_PRETTY} file {path} is corrupted or not a MATLAB file ({type(exc).__name__}: {exc}): "
            f"download it again (download=True) or replace it"
        ) from None
    x, y = mat.get("X"), mat.get("y")
    if not isinstance(x, np.ndarray) or x.ndim != 4 or x.shape[2] != 3 or not isinstance(y, np.ndarray):
        raise UnlearnkitError(
            f"{_PRETTY} file {path} lacks an X array of shape (H, W, 3, N) and a y array: it is not an SVHN file; download it again"
        )
    n = x.shape[3]
    labels = y.reshape(-1)
    if x.dtype != np.uint8 or labels.shape != (n,) or not np.all((labels >= 1) & (labels <= 10) & (labels == np.round(labels))):
        raise UnlearnkitError(
            f"{_PRETTY} file {path} does not hold uint8 images and {n} labels in 1..10: the file is corrupted; download it again"
        )
    labels = labels.astype(np.int64)
    labels[labels == 10] = 0  # SVHN writes the digit 0 as 10
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), labels  # (H, W, C, N) -> (N, C, H, W)


@register_source
class Svhn(Source):
    name = "svhn"
    summary = "SVHN in torchvision's format (train_32x32.mat, test_32x32.mat); digit 0 is label 0"
    example = "svhn:~/data/svhn"
    layout = "train_32x32.mat and test_32x32.mat"
    can_download = True

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        return path if path.is_dir() and all((path / f).is_file() for f in _FILES.values()) else None

    def load(self, request: SourceRequest) -> DatasetBundle:
        root = request.root
        files = list(_FILES.values())
        if missing_files(root, files) and request.download:
            for split in _FILES:  # torchvision fetches one split per construction
                torchvision_download(_PRETTY, "SVHN", root, self.layout, split=split)
        missing = missing_files(root, files)
        if missing:
            raise missing_error(_PRETTY, root, missing, self.layout)

        def build() -> DatasetBundle:
            parts = []
            for split, file in _FILES.items():
                images, labels = _read_mat(root / file)
                parts.append(make_images(images, labels, [f"{split}-{i:05d}" for i in range(len(labels))]))
            return make_bundle(self.name, _CLASSES, parts[0], parts[1], request.source)

        return request.cached(self.name, {"kind": "svhn", "content": _cache.tree_digest(root, files)}, build)
