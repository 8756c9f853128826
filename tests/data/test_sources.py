"""Tests for unlearnkit.data.sources and unlearnkit.data.cache on tiny datasets built in tmp_path.

Every cache here lives under tmp_path: the user's real ~/.cache is never touched.
"""

from __future__ import annotations

import builtins
import csv
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unlearnkit.data.sources.decode as decode
from unlearnkit.data.sources import DatasetBundle, LabeledImages, load_dataset
from unlearnkit.errors import UnlearnkitError

from data_formats import write_cifar100

CLASSES = ("bird", "cat", "dog")
CIFAR_ARCHIVE = Path(__file__).resolve().parents[2].parent / "shared/datasets/cifar10-jpeg.tar.gz"


# --------------------------------------------------------------------------- fixtures


def _pixels(seed: int, size: tuple[int, int] = (6, 5), mode: str = "RGB") -> np.ndarray:
    rng = np.random.default_rng(seed)
    w, h = size
    shape = (h, w, 3) if mode == "RGB" else (h, w)
    return rng.integers(0, 256, size=shape, dtype=np.uint8)


def _write_png(path: Path, pixels: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="PNG")


def make_tree(root: Path, n_train: int = 3, n_test: int = 2, mode: str = "RGB") -> dict[str, np.ndarray]:
    """ROOT/train/<class>/NN.png and ROOT/test/<class>/NN.png; returns id -> HWC (or HW) pixels."""
    expected = {}
    seed = 0
    for split, n in (("train", n_train), ("test", n_test)):
        for cls in CLASSES:
            for i in range(n):
                rel = f"{split}/{cls}/{i:02d}.png"
                expected[rel] = _pixels(seed, mode=mode)
                _write_png(root / rel, expected[rel])
                seed += 1
    return expected


def make_tar(src: Path, dest: Path, wrapper: str | None = None) -> Path:
    with tarfile.open(dest, "w:gz") as tar:
        tar.add(src, arcname=wrapper or ".")
    return dest


def make_zip(src: Path, dest: Path, wrapper: str | None = None) -> Path:
    with zipfile.ZipFile(dest, "w") as archive:
        for path in sorted(src.rglob("*")):
            rel = path.relative_to(src).as_posix()
            archive.write(path, f"{wrapper}/{rel}" if wrapper else rel)
    return dest


def make_kaggle(folder: Path, n: int = 12, csv_name: str = "labels.csv", csv_dir: Path | None = None) -> dict:
    """<folder>/<id>.png plus an id,label CSV (inside the folder unless csv_dir is given)."""
    rows = []
    pixels = {}
    for i in range(n):
        sample_id = str(i + 1)
        pixels[sample_id] = _pixels(100 + i)
        _write_png(folder / f"{sample_id}.png", pixels[sample_id])
        rows.append((sample_id, CLASSES[i % len(CLASSES)]))
    write_csv((csv_dir or folder) / csv_name, ["id", "label"], rows)
    return {"rows": rows, "pixels": pixels}


def write_csv(path: Path, header: list[str], rows: list[tuple]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)


def make_fake_cifar10(root: Path, per_batch: int = 4, n_test: int = 5) -> dict[str, np.ndarray]:
    """A torchvision CIFAR-10 root in the real pickle format (tiny batches, wrong md5s)."""
    base = root / "cifar-10-batches-py"
    base.mkdir(parents=True)
    rng = np.random.default_rng(7)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    data = {}
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        flat = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)
        labels = [int(x) for x in rng.integers(0, 10, size=n)]
        with open(base / name, "wb") as f:
            pickle.dump({"data": flat, "labels": labels}, f)
        data[name] = (flat, labels)
    with open(base / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{i}" for i in range(10)]}, f)
    return data


@pytest.fixture
def no_md5(monkeypatch):
    """torchvision checks the real CIFAR md5s; the fake files cannot match them."""
    import torchvision.datasets.cifar as tv_cifar

    monkeypatch.setattr(tv_cifar, "check_integrity", lambda *args, **kwargs: True)


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def assert_same(a: DatasetBundle, b: DatasetBundle) -> None:
    assert a.fingerprint == b.fingerprint and a.classes == b.classes and a.name == b.name
    for pa, pb in ((a.train, b.train), (a.test, b.test)):
        np.testing.assert_array_equal(pa.images, pb.images)
        np.testing.assert_array_equal(pa.labels, pb.labels)
        np.testing.assert_array_equal(pa.ids, pb.ids)


def assert_well_typed(part: LabeledImages, channels: int, hw: tuple[int, int]) -> None:
    assert part.images.dtype == np.uint8 and part.images.shape[1:] == (channels, *hw)
    assert part.labels.dtype == np.int64 and part.labels.shape == (len(part),)
    assert part.ids.dtype.kind == "U" and part.ids.shape == (len(part),)
    assert len(set(part.ids.tolist())) == len(part)


# --------------------------------------------------------------------------- digits


def test_digits_shapes_stratified_and_deterministic():
    a = load_dataset("digits")
    b = load_dataset("digits", test_fraction=0.2)
    assert a.name == "digits" and a.classes == tuple(str(d) for d in range(10))
    assert len(a.train) + len(a.test) == 1797
    assert_well_typed(a.train, 1, (8, 8))
    assert_well_typed(a.test, 1, (8, 8))
    assert a.train.images.max() == 255 and a.train.images.min() == 0
    assert set(a.train.ids.tolist()).isdisjoint(a.test.ids.tolist())
    assert a.train.ids[0] == "digits-0000"
    # Stratified: every class contributes ~20% of its samples to test.
    total = np.bincount(np.concatenate([a.train.labels, a.test.labels]))
    share = np.bincount(a.test.labels, minlength=10) / total
    assert np.all(np.abs(share - 0.2) < 0.01)
    assert_same(a, b)  # fixed seed: the test split is a property of the dataset


def test_a_folder_named_like_a_builtin_source_does_not_shadow_it(tmp_path, monkeypatch, cache_dir):
    # `unlearnkit train --preset digits --out digits` creates ./digits before reading the data; the
    # preset's `digits` then read as that empty folder ("data path ... is empty"). A name means the
    # same data in every working directory; the folder is reached as ./digits.
    monkeypatch.chdir(tmp_path)
    (tmp_path / "digits").mkdir()
    assert_same(load_dataset("digits"), load_dataset("digits", cache_dir=cache_dir))
    assert load_dataset("digits").name == "digits"
    with pytest.raises(UnlearnkitError, match="is empty"):
        load_dataset("./digits")


def test_digits_pixel_conversion_matches_sklearn():
    from sklearn.datasets import load_digits

    raw = load_digits().images
    bundle = load_dataset("digits")
    index = int(bundle.train.ids[5].split("-")[1])
    expected = np.array([[round(v * 255 / 16) for v in row] for row in raw[index]], dtype=np.uint8)
    np.testing.assert_array_equal(bundle.train.images[5, 0], expected)


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, True, "0.2"])
def test_bad_test_fraction(fraction):
    with pytest.raises(UnlearnkitError, match="test_fraction"):
        load_dataset("digits", test_fraction=fraction)


# --------------------------------------------------------------------------- torchvision CIFAR roots


@pytest.mark.parametrize("form", ["explicit", "detected", "batch-folder"])
def test_fake_cifar10_root(tmp_path, no_md5, cache_dir, form):
    root = tmp_path / "cifar"
    data = make_fake_cifar10(root)
    source = {"explicit": f"cifar10:{root}", "detected": str(root),
              "batch-folder": str(root / "cifar-10-batches-py")}[form]
    bundle = load_dataset(source, cache_dir=cache_dir)
    assert bundle.name == "cifar10" and bundle.classes == tuple(f"class{i}" for i in range(10))
    assert bundle.source == source
    assert len(bundle.train) == 20 and len(bundle.test) == 5
    assert_well_typed(bundle.train, 3, (32, 32))
    assert bundle.train.ids[0] == "train-00000" and bundle.test.ids[-1] == "test-00004"
    flat, labels = data["data_batch_2"]
    np.testing.assert_array_equal(bundle.train.images[4:8], flat.reshape(-1, 3, 32, 32))
    assert bundle.train.labels[4:8].tolist() == labels


def test_fake_cifar100_root(tmp_path, cache_dir):
    written = write_cifar100(tmp_path / "c100", n_train=110, n_test=100)
    for source in (f"CIFAR100:{tmp_path / 'c100'}", str(tmp_path / "c100"), str(tmp_path / "c100" / "cifar-100-python")):
        bundle = load_dataset(source, cache_dir=cache_dir)
        assert bundle.name == "cifar100" and len(bundle.classes) == 100 and bundle.classes[3] == "fine3"
        assert len(bundle.train) == 110 and len(bundle.test) == 100
        assert_well_typed(bundle.test, 3, (32, 32))
        data, fine = written["train"]
        np.testing.assert_array_equal(bundle.train.images, data.reshape(-1, 3, 32, 32))
        assert bundle.train.labels.tolist() == fine  # the fine labels are the labels
        assert bundle.superclasses == tuple(f"coarse{i}" for i in range(20))
        assert bundle.superclass_of == tuple(i % 20 for i in range(100))


def test_fake_cifar10_cache_hit_skips_torchvision(tmp_path, no_md5, cache_dir, monkeypatch):
    root = tmp_path / "cifar"
    make_fake_cifar10(root)
    first = load_dataset(str(root), cache_dir=cache_dir)
    import torchvision.datasets

    def boom(*args, **kwargs):
        raise AssertionError("cache hit must not construct the torchvision dataset")

    monkeypatch.setattr(torchvision.datasets.CIFAR10, "__init__", boom)
    assert_same(first, load_dataset(str(root), cache_dir=cache_dir))


def test_cifar_root_with_missing_files(tmp_path, cache_dir):
    (tmp_path / "cifar" / "cifar-10-batches-py").mkdir(parents=True)
    with pytest.raises(UnlearnkitError, match=r"cifar-10-batches-py.*download=True"):
        load_dataset(str(tmp_path / "cifar"), cache_dir=cache_dir)


def test_cifar_explicit_root_missing(tmp_path):
    with pytest.raises(UnlearnkitError, match=r"does not exist.*download=True"):
        load_dataset(f"cifar100:{tmp_path / 'nowhere'}", use_cache=False)


def test_labels_csv_rejected_for_cifar(tmp_path, no_md5):
    make_fake_cifar10(tmp_path / "cifar")
    with pytest.raises(UnlearnkitError, match="labels_csv"):
        load_dataset(str(tmp_path / "cifar"), labels_csv="x.csv", use_cache=False)


# --------------------------------------------------------------------------- image-folder trees


def _check_tree_bundle(bundle: DatasetBundle, expected: dict[str, np.ndarray]) -> None:
    assert bundle.classes == CLASSES
    assert len(bundle.train) == 9 and len(bundle.test) == 6
    assert_well_typed(bundle.train, 3, (5, 6))  # PNGs were 6 wide, 5 high
    assert_well_typed(bundle.test, 3, (5, 6))
    assert bundle.train.ids.tolist() == sorted(k for k in expected if k.startswith("train/"))
    for part in (bundle.train, bundle.test):
        for image, label, sample_id in zip(part.images, part.labels, part.ids):
            np.testing.assert_array_equal(image.transpose(1, 2, 0), expected[sample_id])  # exact round trip
            assert CLASSES[label] == sample_id.split("/")[1]


@pytest.mark.parametrize("kind", ["folder", "tar.gz", "zip", "tar.gz-wrapped", "zip-wrapped", "folder-wrapped"])
def test_image_tree_folder_and_archives(tmp_path, cache_dir, kind):
    tree = tmp_path / "pets" / "pets-v1" if kind == "folder-wrapped" else tmp_path / "pets"
    expected = make_tree(tree)
    wrapper = "pets-v1" if kind.endswith("wrapped") else None
    if kind.startswith("folder"):
        source = tmp_path / "pets"
    elif kind.startswith("tar.gz"):
        source = make_tar(tree, tmp_path / "pets.tar.gz", wrapper)
    else:
        source = make_zip(tree, tmp_path / "pets.zip", wrapper)
    bundle = load_dataset(str(source), cache_dir=cache_dir)
    assert bundle.name == "pets"
    _check_tree_bundle(bundle, expected)


def test_folder_and_archive_give_the_same_fingerprint(tmp_path):
    make_tree(tmp_path / "pets")
    folder = load_dataset(str(tmp_path / "pets"), use_cache=False)
    archive = load_dataset(str(make_tar(tmp_path / "pets", tmp_path / "pets.tgz")), use_cache=False)
    assert folder.fingerprint == archive.fingerprint


def test_image_tree_ignores_junk_files(tmp_path):
    expected = make_tree(tmp_path / "pets")
    (tmp_path / "pets" / "README.txt").write_text("hello")
    (tmp_path / "pets" / "train" / "cat" / ".DS_Store").write_bytes(b"\0\1")
    (tmp_path / "pets" / "train" / "cat" / "notes.txt").write_text("not an image")
    _check_tree_bundle(load_dataset(str(tmp_path / "pets"), use_cache=False), expected)


def test_grayscale_tree_is_single_channel(tmp_path):
    expected = make_tree(tmp_path / "gray", mode="L")
    bundle = load_dataset(str(tmp_path / "gray"), use_cache=False)
    assert bundle.train.images.shape[1] == 1
    np.testing.assert_array_equal(bundle.train.images[0, 0], expected[bundle.train.ids[0]])


def test_mixed_gray_and_colour_become_rgb(tmp_path):
    make_tree(tmp_path / "mixed")
    gray = _pixels(999, mode="L")
    _write_png(tmp_path / "mixed" / "train" / "cat" / "gray.png", gray)
    bundle = load_dataset(str(tmp_path / "mixed"), use_cache=False)
    assert bundle.train.images.shape[1] == 3
    position = bundle.train.ids.tolist().index("train/cat/gray.png")
    for channel in range(3):  # gray expands into identical R, G and B
        np.testing.assert_array_equal(bundle.train.images[position, channel], gray)


def test_jpeg_tree_decodes(tmp_path):
    for split in ("train", "test"):
        for i, cls in enumerate(CLASSES):
            path = tmp_path / "jpg" / split / cls / "a.JPG"  # extension match is case-insensitive
            path.parent.mkdir(parents=True)
            Image.fromarray(np.full((4, 4, 3), 40 * i, dtype=np.uint8)).save(path, format="JPEG", quality=95)
    bundle = load_dataset(str(tmp_path / "jpg"), use_cache=False)
    assert bundle.train.images.shape == (3, 3, 4, 4)
    assert abs(int(bundle.train.images[2].mean()) - 80) <= 2


def test_tree_without_test_folder_carves_a_test_split(tmp_path):
    make_tree(tmp_path / "pets", n_train=5, n_test=0)
    bundle = load_dataset(str(tmp_path / "pets"), use_cache=False)
    assert len(bundle.train) == 12 and len(bundle.test) == 3
    assert sorted(bundle.test.labels.tolist()) == [0, 1, 2]  # one per class: stratified


def test_parallel_decode_matches_serial(tmp_path, monkeypatch):
    make_tree(tmp_path / "pets", n_train=6, n_test=3)
    serial = load_dataset(str(tmp_path / "pets"), use_cache=False)
    monkeypatch.setattr(decode, "_PARALLEL_MIN_IMAGES", 1)
    monkeypatch.setattr(decode, "_MAX_DECODE_WORKERS", 2)
    if decode._decode_workers(100) < 2:
        pytest.skip("parallel decoding needs Linux and two CPUs")
    assert_same(serial, load_dataset(str(tmp_path / "pets"), use_cache=False))
    # A bad file found by a worker process still reaches the caller as a one-line UnlearnkitError.
    (tmp_path / "pets" / "test" / "dog" / "01.png").write_bytes(b"not a png")
    with pytest.raises(UnlearnkitError, match=r"test/dog/01\.png"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


# --------------------------------------------------------------------------- Kaggle layout


def test_kaggle_folder_with_csv_inside(tmp_path, cache_dir):
    made = make_kaggle(tmp_path / "kaggle", n=12)
    bundle = load_dataset(str(tmp_path / "kaggle"), cache_dir=cache_dir)
    assert bundle.classes == CLASSES and bundle.name == "kaggle"
    assert len(bundle.train) == 9 and len(bundle.test) == 3
    assert sorted(bundle.test.labels.tolist()) == [0, 1, 2]
    label_of = dict(made["rows"])
    for part in (bundle.train, bundle.test):
        assert_well_typed(part, 3, (5, 6))
        for image, label, sample_id in zip(part.images, part.labels, part.ids):
            assert CLASSES[label] == label_of[sample_id]
            np.testing.assert_array_equal(image.transpose(1, 2, 0), made["pixels"][sample_id])
    # CSV row order is kept within each part.
    order = [sample_id for sample_id, _ in made["rows"]]
    assert bundle.train.ids.tolist() == [i for i in order if i in set(bundle.train.ids.tolist())]


def test_kaggle_csv_beside_folder_and_explicit(tmp_path):
    make_kaggle(tmp_path / "train", csv_name="trainLabels.csv", csv_dir=tmp_path)
    write_csv(tmp_path / "sampleSubmission.csv", ["id", "label"], [("1", "cat")])  # Kaggle ships this too
    beside = load_dataset(str(tmp_path / "train"), use_cache=False)
    explicit = load_dataset(str(tmp_path / "train"), labels_csv=str(tmp_path / "trainLabels.csv"), use_cache=False)
    assert_same(beside, explicit)


def test_kaggle_numeric_labels_sort_numerically(tmp_path):
    folder = tmp_path / "nums"
    rows = []
    for i in range(12):
        _write_png(folder / f"img{i}.png", _pixels(i))
        rows.append((f"img{i}", str([2, 10, 1][i % 3])))
    write_csv(folder / "labels.csv", ["ID", " Label "], rows)  # header match ignores case and spaces
    bundle = load_dataset(str(folder), use_cache=False)
    assert bundle.classes == ("1", "2", "10")


def test_kaggle_archive_with_csv(tmp_path):
    make_kaggle(tmp_path / "src" / "train", csv_name="trainLabels.csv", csv_dir=tmp_path / "src")
    archive = make_zip(tmp_path / "src", tmp_path / "kaggle.zip")
    bundle = load_dataset(str(archive), use_cache=False)
    assert len(bundle.train) + len(bundle.test) == 12


# --------------------------------------------------------------------------- cache


def test_cache_hit_does_not_decode(tmp_path, cache_dir, monkeypatch):
    make_tree(tmp_path / "pets")
    archive = make_tar(tmp_path / "pets", tmp_path / "pets.tar.gz")
    first = load_dataset(str(archive), cache_dir=cache_dir)
    assert len(list(cache_dir.glob("*.npz"))) == 1

    def boom(*args, **kwargs):
        raise AssertionError("a cache hit must not decode images")

    monkeypatch.setattr(decode, "decode_image", boom)
    second = load_dataset(str(archive), cache_dir=cache_dir)
    assert_same(first, second)
    assert second.source == str(archive)


def test_corrupt_cache_is_rebuilt(tmp_path, cache_dir):
    make_tree(tmp_path / "pets")
    first = load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*.npz")
    entry.write_bytes(entry.read_bytes()[: entry.stat().st_size // 2])  # truncated
    with pytest.warns(UserWarning, match="rebuilding"):
        second = load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    assert_same(first, second)
    with np.load(entry, allow_pickle=False) as npz:  # rewritten whole
        assert "train_images" in npz.files
    assert not [p for p in cache_dir.iterdir() if p.suffix != ".npz"]  # no temp files left behind


def test_cache_entry_with_bit_rot_is_rebuilt(tmp_path, cache_dir):
    make_tree(tmp_path / "pets")
    first = load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    (entry,) = cache_dir.glob("*.npz")
    data = bytearray(entry.read_bytes())
    data[len(data) // 3] ^= 0xFF  # flips bits inside an array: zip's CRC-32 catches it
    entry.write_bytes(bytes(data))
    with pytest.warns(UserWarning, match="rebuilding"):
        assert_same(first, load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir))


def test_changed_folder_misses_the_cache(tmp_path, cache_dir):
    make_tree(tmp_path / "pets")
    first = load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    _write_png(tmp_path / "pets" / "train" / "cat" / "new.png", _pixels(5000))
    second = load_dataset(str(tmp_path / "pets"), cache_dir=cache_dir)
    assert len(second.train) == len(first.train) + 1 and second.fingerprint != first.fingerprint
    assert len(list(cache_dir.glob("*.npz"))) == 2


def test_use_cache_false_and_env_cache_dir(tmp_path, monkeypatch):
    make_tree(tmp_path / "pets")
    monkeypatch.setenv("UNLEARNKIT_CACHE", str(tmp_path / "envcache"))
    load_dataset(str(tmp_path / "pets"), use_cache=False)
    assert not (tmp_path / "envcache").exists()
    load_dataset(str(tmp_path / "pets"))
    assert len(list((tmp_path / "envcache").glob("*.npz"))) == 1


def test_unwritable_cache_only_warns(tmp_path):
    make_tree(tmp_path / "pets")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    with pytest.warns(UserWarning, match="could not write dataset cache"):
        bundle = load_dataset(str(tmp_path / "pets"), cache_dir=blocker / "cache")
    assert len(bundle.train) == 9


# --------------------------------------------------------------------------- user errors, one per input


def test_error_missing_path(tmp_path):
    with pytest.raises(UnlearnkitError, match=r"data path .*nope does not exist"):
        load_dataset(str(tmp_path / "nope"))


def test_error_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UnlearnkitError, match=r"empty.* is empty"):
        load_dataset(str(tmp_path / "empty"), use_cache=False)


def test_error_empty_archive(tmp_path):
    with tarfile.open(tmp_path / "nothing.tar", "w"):
        pass
    with pytest.raises(UnlearnkitError, match=r"nothing\.tar is empty"):
        load_dataset(str(tmp_path / "nothing.tar"), use_cache=False)


def test_error_corrupt_archive(tmp_path):
    (tmp_path / "broken.tar.gz").write_bytes(b"\x1f\x8b\x08 definitely not gzip data")
    with pytest.raises(UnlearnkitError, match=r"cannot read archive .*broken\.tar\.gz"):
        load_dataset(str(tmp_path / "broken.tar.gz"), use_cache=False)


def test_error_file_that_is_not_an_archive(tmp_path):
    (tmp_path / "data.csv").write_text("id,label\n")
    with pytest.raises(UnlearnkitError, match=r"data\.csv is a file but not a supported archive"):
        load_dataset(str(tmp_path / "data.csv"), use_cache=False)


def test_error_folder_matching_no_layout(tmp_path):
    (tmp_path / "odd" / "stuff").mkdir(parents=True)
    (tmp_path / "odd" / "other").mkdir()
    (tmp_path / "odd" / "notes.txt").write_text("x")
    with pytest.raises(UnlearnkitError, match=r"odd matches no known layout.*train/<class>/"):
        load_dataset(str(tmp_path / "odd"), use_cache=False)


def test_error_class_folder_without_images(tmp_path):
    make_tree(tmp_path / "pets")
    (tmp_path / "pets" / "train" / "emu").mkdir()
    with pytest.raises(UnlearnkitError, match=r"class folder train/emu .*has no images"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


def test_error_class_folder_without_images_in_archive(tmp_path):
    make_tree(tmp_path / "pets")
    (tmp_path / "pets" / "train" / "emu").mkdir()
    archive = make_tar(tmp_path / "pets", tmp_path / "pets.tar")
    with pytest.raises(UnlearnkitError, match=r"class folder train/emu .*has no images"):
        load_dataset(str(archive), use_cache=False)


def test_error_truncated_image(tmp_path):
    make_tree(tmp_path / "pets")
    victim = tmp_path / "pets" / "train" / "dog" / "01.png"
    big = _pixels(1, size=(40, 40))
    buffer = io.BytesIO()
    Image.fromarray(big).save(buffer, format="PNG")
    victim.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    with pytest.raises(UnlearnkitError, match=r"cannot read image train/dog/01\.png"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


def test_error_truncated_image_in_zip(tmp_path):
    make_tree(tmp_path / "pets")
    victim = tmp_path / "pets" / "test" / "cat" / "00.png"
    victim.write_bytes(victim.read_bytes()[:30])
    archive = make_zip(tmp_path / "pets", tmp_path / "pets.zip")
    with pytest.raises(UnlearnkitError, match=r"cannot read image test/cat/00\.png in .*pets\.zip"):
        load_dataset(str(archive), use_cache=False)


def test_error_mixed_sizes(tmp_path):
    make_tree(tmp_path / "pets")
    _write_png(tmp_path / "pets" / "train" / "dog" / "big.png", _pixels(3, size=(9, 7)))
    with pytest.raises(UnlearnkitError, match=r"train/dog/big\.png .* is 9x7 pixels .* is 6x5: resize"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


def test_error_unknown_test_class_folder(tmp_path):
    make_tree(tmp_path / "pets")
    _write_png(tmp_path / "pets" / "test" / "emu" / "00.png", _pixels(4))
    with pytest.raises(UnlearnkitError, match=r"test class folder test/emu .*no matching train/emu"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


def test_error_image_outside_class_folder(tmp_path):
    make_tree(tmp_path / "pets")
    _write_png(tmp_path / "pets" / "train" / "loose.png", _pixels(4))
    with pytest.raises(UnlearnkitError, match=r"train/loose\.png .*not inside a class folder"):
        load_dataset(str(tmp_path / "pets"), use_cache=False)


def test_error_csv_missing_id_column(tmp_path):
    make_kaggle(tmp_path / "k")
    write_csv(tmp_path / "k" / "labels.csv", ["name", "label"], [("1", "cat")])
    with pytest.raises(UnlearnkitError, match=r"labels CSV .*labels\.csv has no 'id' column"):
        load_dataset(str(tmp_path / "k"), use_cache=False)


def test_error_csv_missing_label_column(tmp_path):
    make_kaggle(tmp_path / "k")
    write_csv(tmp_path / "k" / "labels.csv", ["id", "class"], [("1", "cat")])
    with pytest.raises(UnlearnkitError, match=r"labels CSV .*labels\.csv has no 'label' column"):
        load_dataset(str(tmp_path / "k"), use_cache=False)


def test_error_csv_id_without_image(tmp_path):
    made = make_kaggle(tmp_path / "k")
    write_csv(tmp_path / "k" / "labels.csv", ["id", "label"], made["rows"] + [("404", "cat")])
    with pytest.raises(UnlearnkitError, match=r"lists id '404' but folder .*k has no image"):
        load_dataset(str(tmp_path / "k"), use_cache=False)


def test_error_image_without_csv_row(tmp_path):
    make_kaggle(tmp_path / "k")
    _write_png(tmp_path / "k" / "stray.png", _pixels(8))
    with pytest.raises(UnlearnkitError, match=r"image stray\.png .*has no row in labels CSV"):
        load_dataset(str(tmp_path / "k"), use_cache=False)


def test_error_explicit_labels_csv_missing(tmp_path):
    make_kaggle(tmp_path / "k")
    with pytest.raises(UnlearnkitError, match=r"labels CSV .*missing\.csv does not exist"):
        load_dataset(str(tmp_path / "k"), labels_csv=str(tmp_path / "missing.csv"), use_cache=False)


def test_error_no_labels_csv(tmp_path):
    make_kaggle(tmp_path / "data" / "k")
    (tmp_path / "data" / "k" / "labels.csv").unlink()
    with pytest.raises(UnlearnkitError, match=r"no labels CSV found for the images in .*k: pass labels_csv"):
        load_dataset(str(tmp_path / "data" / "k"), use_cache=False)


def test_error_ambiguous_labels_csv(tmp_path):
    make_kaggle(tmp_path / "k", csv_name="a.csv")
    write_csv(tmp_path / "k" / "b.csv", ["id", "label"], [("1", "cat")])
    with pytest.raises(UnlearnkitError, match=r"several CSV files .*a\.csv.*b\.csv.*pass labels_csv"):
        load_dataset(str(tmp_path / "k"), use_cache=False)


def test_error_labels_csv_with_tree_layout(tmp_path):
    make_tree(tmp_path / "pets")
    write_csv(tmp_path / "l.csv", ["id", "label"], [("1", "cat")])
    with pytest.raises(UnlearnkitError, match=r"labels_csv=.*l\.csv.* applies only"):
        load_dataset(str(tmp_path / "pets"), labels_csv=str(tmp_path / "l.csv"), use_cache=False)


def test_error_7z_without_py7zr(tmp_path, monkeypatch):
    (tmp_path / "data.7z").write_bytes(b"7z\xbc\xaf\x27\x1c")
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "py7zr" or name.startswith("py7zr."):
            raise ImportError("No module named 'py7zr'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(UnlearnkitError, match=r"data\.7z needs the optional py7zr package: pip install unlearnkit\[7z\]"):
        load_dataset(str(tmp_path / "data.7z"), use_cache=False)


def test_7z_archive_when_py7zr_is_installed(tmp_path):
    py7zr = pytest.importorskip("py7zr")
    expected = make_tree(tmp_path / "pets")
    with py7zr.SevenZipFile(tmp_path / "pets.7z", "w") as archive:
        archive.writeall(tmp_path / "pets", arcname="pets")
    _check_tree_bundle(load_dataset(str(tmp_path / "pets.7z"), use_cache=False), expected)


def test_errors_are_one_line(tmp_path):
    make_kaggle(tmp_path / "k")
    write_csv(tmp_path / "k" / "labels.csv", ["name", "label"], [("1", "cat")])
    with pytest.raises(UnlearnkitError) as info:
        load_dataset(str(tmp_path / "k"), use_cache=False)
    assert "\n" not in str(info.value)


# --------------------------------------------------------------------------- the real CIFAR-10 archive


@pytest.mark.cifar
def test_real_cifar10_archive_and_its_cache(tmp_path, monkeypatch):
    if not CIFAR_ARCHIVE.is_file():
        pytest.skip(f"{CIFAR_ARCHIVE} is absent (the shared CIFAR-10 JPEG archive lives in ../shared/datasets)")
    cache_dir = tmp_path / "cache"
    first = load_dataset(str(CIFAR_ARCHIVE), cache_dir=cache_dir)
    assert first.classes == ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
    assert len(first.train) == 50000 and len(first.test) == 10000
    assert_well_typed(first.train, 3, (32, 32))
    assert_well_typed(first.test, 3, (32, 32))
    assert np.bincount(first.train.labels).tolist() == [5000] * 10
    mean = first.train.images.mean(axis=(0, 2, 3), dtype=np.float64) / 255.0
    np.testing.assert_allclose(mean, [0.4913, 0.4821, 0.4465], atol=0.002)

    # The second load is a cache hit (no decoding at all); its speed is a benchmark
    # (benchmarks/cifar10_cache_load.py, docs/benchmarks.md), not a timed test.
    (entry,) = cache_dir.glob("*.npz")
    before = entry.stat().st_mtime_ns
    import PIL.Image

    monkeypatch.setattr(PIL.Image, "open", lambda *a, **k: pytest.fail("a cached load decoded an image"))
    second = load_dataset(str(CIFAR_ARCHIVE), cache_dir=cache_dir)
    assert_same(first, second)
    assert entry.stat().st_mtime_ns == before
