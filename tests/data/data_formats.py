"""Writers of small datasets in the EXACT on-disk formats the sources read (torchvision's CIFAR-100
pickles, SVHN's MATLAB files, the tiny-imagenet-200 tree). Used by the tests and by
benchmarks/new_sources_load.py (which imports this file from tests/data)."""

from __future__ import annotations

import io
import pickle
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

N_FINE, N_COARSE = 100, 20


def fine_names(n: int = N_FINE) -> list[str]:
    return [f"fine{i}" for i in range(n)]


def coarse_names(n: int = N_COARSE) -> list[str]:
    return [f"coarse{i}" for i in range(n)]


def coarse_of(fine: int) -> int:
    return fine % N_COARSE


def write_cifar100(root: Path, n_train: int = 120, n_test: int = 100, seed: int = 8) -> dict:
    """ROOT/cifar-100-python/{train,test,meta} as the real Python-2 era pickles (protocol 2,
    dict with data (N, 3072) uint8, fine_labels, coarse_labels, filenames, batch_label).

    The first N_FINE samples of train and of test cover every fine class once, so every
    fine class's super-class can be read off the data (as in the real set). Returns the arrays.
    """
    base = root / "cifar-100-python"
    base.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        fine = [i % N_FINE if i < N_FINE else int(rng.integers(0, N_FINE)) for i in range(n)]
        entry = {
            "filenames": [f"img_{split}_{i}.png" for i in range(n)],
            "batch_label": f"{split}ing batch 1 of 1",
            "fine_labels": fine,
            "coarse_labels": [coarse_of(f) for f in fine],
            "data": data,
        }
        with open(base / split, "wb") as f:
            pickle.dump(entry, f, protocol=2)
        out[split] = (data, fine)
    with open(base / "meta", "wb") as f:
        pickle.dump({"fine_label_names": fine_names(), "coarse_label_names": coarse_names()}, f, protocol=2)
    return out


def write_svhn(root: Path, n_train: int = 30, n_test: int = 12, seed: int = 9) -> dict:
    """ROOT/{train,test}_32x32.mat as SVHN ships them: X (32, 32, 3, N) uint8, y (N, 1) in 1..10 (10 = digit 0)."""
    import scipy.io

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    out = {}
    for split, n in (("train", n_train), ("test", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)
        y = (np.arange(n) % 10 + 1).astype(np.uint8).reshape(n, 1)  # every label 1..10 appears
        scipy.io.savemat(root / f"{split}_32x32.mat", {"X": x, "y": y})
        out[split] = (x, y)
    return out


def _jpeg(rng: np.random.Generator, size: int = 64, gray: bool = False) -> bytes:
    shape = (size, size) if gray else (size, size, 3)
    buffer = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, size=shape, dtype=np.uint8)).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


def tiny_imagenet_files(n_classes: int = 3, per_class: int = 4, n_val: int = 6, size: int = 64,
                        seed: int = 10, gray_every: int = 0) -> dict[str, bytes]:
    """rel path -> bytes of a tiny-imagenet-200 tree (wnids.txt in file order unlike sorted, words.txt,
    train/<wnid>/images/<wnid>_<i>.JPEG, <wnid>_boxes.txt, val/images/val_<i>.JPEG + val_annotations.txt,
    and an unlabelled test/images/). gray_every=k makes every k-th JPEG grayscale, as some real ones are."""
    rng = np.random.default_rng(seed)
    wnids = [f"n{9000000 - 1000 * i:08d}" for i in range(n_classes)]  # listed in descending order
    files: dict[str, bytes] = {
        "wnids.txt": "".join(f"{w}\n" for w in wnids).encode(),
        "words.txt": "".join(f"{w}\tthing {i}, object {i}\n" for i, w in enumerate(wnids)).encode(),
    }
    count = 0
    for w in wnids:
        boxes = []
        for i in range(per_class):
            count += 1
            files[f"train/{w}/images/{w}_{i}.JPEG"] = _jpeg(rng, size, gray=bool(gray_every) and count % gray_every == 0)
            boxes.append(f"{w}_{i}.JPEG\t0\t0\t{size - 1}\t{size - 1}\n")
        files[f"train/{w}/{w}_boxes.txt"] = "".join(boxes).encode()
    lines = []
    for i in range(n_val):
        files[f"val/images/val_{i}.JPEG"] = _jpeg(rng, size)
        lines.append(f"val_{i}.JPEG\t{wnids[i % n_classes]}\t1\t2\t30\t40\n")
    files["val/val_annotations.txt"] = "".join(lines).encode()
    files["test/images/test_0.JPEG"] = _jpeg(rng, size)
    return files


def write_tree(root: Path, files: dict[str, bytes]) -> Path:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return root


def write_zip(dest: Path, files: dict[str, bytes], wrapper: str) -> Path:
    with zipfile.ZipFile(dest, "w") as archive:
        for rel, data in files.items():
            archive.writestr(f"{wrapper}/{rel}", data)
    return dest
