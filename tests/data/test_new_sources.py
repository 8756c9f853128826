"""CIFAR-100 (with super-classes), SVHN and Tiny-ImageNet, each read from small files written in
the exact on-disk format (tests/data/data_formats.py); every cache lives under tmp_path."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import unlearnkit.data.sources.cifar100 as cifar100_module
import unlearnkit.data.sources.decode as decode
from unlearnkit.data.sources import absolute_source, load_dataset
from unlearnkit.errors import UnlearnkitError

from data_formats import tiny_imagenet_files, write_cifar100, write_svhn, write_tree, write_zip


@pytest.fixture
def cache_dir(tmp_path) -> Path:
    return tmp_path / "cache"


def one_line_error(match: str, source: str, **kwargs) -> str:
    with pytest.raises(UnlearnkitError, match=match) as info:
        load_dataset(source, **kwargs)
    assert "\n" not in str(info.value)
    return str(info.value)


# --------------------------------------------------------------------------- CIFAR-100


def test_cifar100_fine_labels_coarse_mapping_and_cache(tmp_path, cache_dir, monkeypatch):
    written = write_cifar100(tmp_path / "data", n_train=130, n_test=100)
    first = load_dataset(f"cifar100:{tmp_path / 'data'}", cache_dir=cache_dir)
    data, fine = written["test"]
    np.testing.assert_array_equal(first.test.images, data.reshape(-1, 3, 32, 32))
    assert first.test.labels.tolist() == fine and first.test.ids[0] == "test-00000"
    assert first.superclass_of[7] == 7 % 20 and len(first.superclasses) == 20
    assert len(list(cache_dir.glob("cifar100-*.npz"))) == 1

    monkeypatch.setattr(cifar100_module, "read_pickle", lambda *a: pytest.fail("a cache hit unpickled a file"))
    second = load_dataset(f"cifar100:{tmp_path / 'data'}", cache_dir=cache_dir)
    assert second.fingerprint == first.fingerprint
    assert second.superclasses == first.superclasses and second.superclass_of == first.superclass_of


def test_cifar100_fingerprint_covers_the_super_class_mapping(tmp_path):
    write_cifar100(tmp_path / "a", seed=3)
    base = tmp_path / "b" / "cifar-100-python"
    write_cifar100(tmp_path / "b", seed=3)
    with open(base / "meta", "wb") as f:  # same pixels and fine labels, other super-class names
        pickle.dump({"fine_label_names": [f"fine{i}" for i in range(100)],
                     "coarse_label_names": [f"group{i}" for i in range(20)]}, f, protocol=2)
    a = load_dataset(str(tmp_path / "a"), use_cache=False)
    b = load_dataset(str(tmp_path / "b"), use_cache=False)
    assert a.fingerprint != b.fingerprint


@pytest.mark.parametrize("damage", ["truncated", "garbage", "not-a-dict", "code"])
def test_cifar100_corrupt_file_is_a_one_line_error(tmp_path, damage):
    write_cifar100(tmp_path / "data")
    victim = tmp_path / "data" / "cifar-100-python" / "train"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:5000])
    elif damage == "garbage":
        victim.write_bytes(b"\x00not a pickle at all")
    elif damage == "not-a-dict":
        victim.write_bytes(pickle.dumps([1, 2, 3], protocol=2))
    else:  # a pickle that would run a command when loaded with plain pickle.load
        victim.write_bytes(b"cos\nsystem\n(S'echo pwned'\ntR.")
    message = one_line_error(r"CIFAR-100 file .*cifar-100-python/train ", str(tmp_path / "data"), use_cache=False)
    if damage == "code":
        assert "refers to os.system" in message


def test_cifar100_inconsistent_super_classes_are_refused(tmp_path):
    write_cifar100(tmp_path / "data")
    path = tmp_path / "data" / "cifar-100-python" / "test"
    with open(path, "rb") as f:
        entry = pickle.load(f)
    entry["coarse_labels"][0] = (entry["coarse_labels"][0] + 1) % 20  # fine class 0 now in two super-classes
    with open(path, "wb") as f:
        pickle.dump(entry, f, protocol=2)
    one_line_error(r"fine class 'fine0' samples in 2 super-classes", str(tmp_path / "data"), use_cache=False)


def test_cifar100_missing_file_and_download(tmp_path, monkeypatch):
    (tmp_path / "data" / "cifar-100-python").mkdir(parents=True)
    one_line_error(r"CIFAR-100 file .*cifar-100-python/train is missing .*pass download=True", str(tmp_path / "data"),
                   use_cache=False)

    import torchvision.datasets

    calls = []

    class FakeCIFAR100:  # stands in for torchvision's downloader (no internet here): writes the real format
        def __init__(self, root, train=True, download=False):
            calls.append((root, train, download))
            write_cifar100(Path(root))

    monkeypatch.setattr(torchvision.datasets, "CIFAR100", FakeCIFAR100)
    bundle = load_dataset(f"cifar100:{tmp_path / 'new'}", download=True, use_cache=False)
    assert calls == [(str(tmp_path / "new"), True, True)] and len(bundle.classes) == 100


# --------------------------------------------------------------------------- SVHN


@pytest.mark.parametrize("form", ["explicit", "detected"])
def test_svhn_mat_files(tmp_path, cache_dir, form):
    written = write_svhn(tmp_path / "svhn")
    source = f"svhn:{tmp_path / 'svhn'}" if form == "explicit" else str(tmp_path / "svhn")
    bundle = load_dataset(source, cache_dir=cache_dir)
    assert bundle.name == "svhn" and bundle.classes == tuple(str(d) for d in range(10))
    assert len(bundle.train) == 30 and len(bundle.test) == 12
    x, y = written["train"]
    for i in (0, 9, 29):
        np.testing.assert_array_equal(bundle.train.images[i], x[:, :, :, i].transpose(2, 0, 1))
    assert bundle.train.labels.tolist()[:10] == [1, 2, 3, 4, 5, 6, 7, 8, 9, 0]  # 10 means the digit 0
    assert bundle.train.labels.dtype == np.int64 and bundle.train.ids[3] == "train-00003"
    again = load_dataset(source, cache_dir=cache_dir)
    assert again.fingerprint == bundle.fingerprint


@pytest.mark.parametrize("damage", ["truncated", "garbage", "no-X"])
def test_svhn_corrupt_file_is_a_one_line_error(tmp_path, damage):
    import scipy.io

    write_svhn(tmp_path / "svhn")
    victim = tmp_path / "svhn" / "test_32x32.mat"
    if damage == "truncated":
        victim.write_bytes(victim.read_bytes()[:3000])
    elif damage == "garbage":
        victim.write_bytes(b"this is not a MATLAB file" * 20)
    else:
        scipy.io.savemat(victim, {"images": np.zeros((2, 2), dtype=np.uint8)})
    one_line_error(r"SVHN file .*test_32x32\.mat ", f"svhn:{tmp_path / 'svhn'}", use_cache=False)


def test_svhn_label_out_of_range_and_missing_file(tmp_path):
    import scipy.io

    write_svhn(tmp_path / "svhn")
    scipy.io.savemat(tmp_path / "svhn" / "train_32x32.mat",
                     {"X": np.zeros((32, 32, 3, 2), dtype=np.uint8), "y": np.array([[1], [11]], dtype=np.uint8)})
    one_line_error(r"labels in 1\.\.10", f"svhn:{tmp_path / 'svhn'}", use_cache=False)
    (tmp_path / "svhn" / "test_32x32.mat").unlink()
    one_line_error(r"SVHN file .*test_32x32\.mat is missing .*download=True", f"svhn:{tmp_path / 'svhn'}", use_cache=False)
    one_line_error(r"does not exist: point svhn:ROOT .*download=True", f"svhn:{tmp_path / 'nowhere'}", use_cache=False)


def test_svhn_download_goes_through_torchvision(tmp_path, monkeypatch):
    import torchvision.datasets

    calls = []

    class FakeSVHN:  # stands in for torchvision's downloader (no internet here): writes the real format
        def __init__(self, root, split="train", download=False):
            calls.append((split, download))
            write_svhn(Path(root))

    monkeypatch.setattr(torchvision.datasets, "SVHN", FakeSVHN)
    bundle = load_dataset(f"svhn:{tmp_path / 'new'}", download=True, use_cache=False)
    assert calls == [("train", True), ("test", True)] and len(bundle.test) == 12
    calls.clear()
    load_dataset(f"svhn:{tmp_path / 'new'}", download=True, use_cache=False)
    assert calls == []  # files present: nothing to fetch


# --------------------------------------------------------------------------- Tiny-ImageNet


def _decoded(jpeg: bytes) -> np.ndarray:
    with Image.open(io.BytesIO(jpeg)) as im:
        return np.asarray(im.convert("RGB")).transpose(2, 0, 1)


@pytest.mark.parametrize("form", ["explicit", "explicit-parent", "detected", "detected-parent", "zip"])
def test_tiny_imagenet_layout(tmp_path, cache_dir, form):
    files = tiny_imagenet_files(n_classes=3, per_class=4, n_val=6, gray_every=5)
    folder = write_tree(tmp_path / "tiny-imagenet-200", files)
    source = {
        "explicit": f"tinyimagenet:{folder}", "explicit-parent": f"tinyimagenet:{tmp_path}",
        "detected": str(folder), "detected-parent": str(tmp_path),
        "zip": str(write_zip(tmp_path / "tiny-imagenet-200.zip", files, "tiny-imagenet-200")),
    }[form]
    bundle = load_dataset(source, cache_dir=cache_dir)
    assert bundle.name == "tinyimagenet"
    wnids = [line for line in files["wnids.txt"].decode().split()]
    assert bundle.classes == tuple(sorted(wnids))  # sorted, not wnids.txt order
    assert len(bundle.train) == 12 and len(bundle.test) == 6
    assert bundle.train.images.shape[1:] == (3, 64, 64)  # the grayscale JPEGs are expanded to RGB
    i = bundle.train.ids.tolist().index(f"{wnids[1]}_2")
    assert bundle.classes[bundle.train.labels[i]] == wnids[1]
    np.testing.assert_array_equal(bundle.train.images[i], _decoded(files[f"train/{wnids[1]}/images/{wnids[1]}_2.JPEG"]))
    # The val set (labelled by val_annotations.txt) is the test split; the unlabelled test/ is ignored.
    assert sorted(bundle.test.ids.tolist()) == [f"val_{k}" for k in range(6)]
    j = bundle.test.ids.tolist().index("val_4")
    assert bundle.classes[bundle.test.labels[j]] == wnids[4 % 3]
    np.testing.assert_array_equal(bundle.test.images[j], _decoded(files["val/images/val_4.JPEG"]))
    assert load_dataset(source, cache_dir=cache_dir).fingerprint == bundle.fingerprint


def test_tiny_imagenet_cache_hit_does_not_decode(tmp_path, cache_dir, monkeypatch):
    folder = write_tree(tmp_path / "tiny-imagenet-200", tiny_imagenet_files())
    first = load_dataset(f"tinyimagenet:{folder}", cache_dir=cache_dir)
    monkeypatch.setattr(decode, "decode_image", lambda *a: pytest.fail("a cache hit decoded an image"))
    assert load_dataset(f"tinyimagenet:{folder}", cache_dir=cache_dir).fingerprint == first.fingerprint


@pytest.mark.parametrize("damage, match", [
    ("corrupt-jpeg", r"cannot read image train/n\d+/images/n\d+_1\.JPEG in .*tiny-imagenet-200"),
    ("unknown-wnid", r"val_annotations\.txt line 2 is not usable \(class 'n00000000' is not in wnids\.txt\)"),
    ("unlabelled-val", r"image val/images/extra\.JPEG .*has no line in val/val_annotations\.txt"),
    ("no-wnids", r"has no wnids\.txt: point tinyimagenet:ROOT"),
    ("empty-class", r"class n\d+ \(from wnids\.txt\) has no images"),
    ("stray-class", r"folder train/n12345678 .*is not a class in wnids\.txt"),
])
def test_tiny_imagenet_errors_are_one_line(tmp_path, damage, match):
    files = tiny_imagenet_files()
    wnid = files["wnids.txt"].decode().split()[0]
    if damage == "corrupt-jpeg":
        files[f"train/{wnid}/images/{wnid}_1.JPEG"] = files[f"train/{wnid}/images/{wnid}_1.JPEG"][:200]
    elif damage == "unknown-wnid":
        lines = files["val/val_annotations.txt"].decode().splitlines(keepends=True)
        lines[1] = "val_1.JPEG\tn00000000\t0\t0\t1\t1\n"
        files["val/val_annotations.txt"] = "".join(lines).encode()
    elif damage == "unlabelled-val":
        files["val/images/extra.JPEG"] = files["val/images/val_0.JPEG"]
    elif damage == "no-wnids":
        del files["wnids.txt"]
    elif damage == "empty-class":
        files = {k: v for k, v in files.items() if not k.startswith(f"train/{wnid}/images/")}
    else:
        files["train/n12345678/images/n12345678_0.JPEG"] = files["val/images/val_0.JPEG"]
    folder = write_tree(tmp_path / "tiny-imagenet-200", files)
    one_line_error(match, f"tinyimagenet:{folder}", use_cache=False)


# --------------------------------------------------------------------------- specs


def test_new_specs_record_absolute_paths(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for kind in ("cifar100", "svhn", "tinyimagenet", "cifar10", "folder"):
        assert absolute_source(f"{kind}:data") == f"{kind}:{tmp_path / 'data'}"
    assert absolute_source("digits") == "digits"


def test_unknown_kind_lists_the_kinds(tmp_path):
    message = one_line_error(r"data source 'cifar1O:/x': unknown kind 'cifar1o'; choose one of: ", "cifar1O:/x")
    for kind in ("digits", "cifar10", "cifar100", "svhn", "tinyimagenet", "folder"):
        assert kind in message


def test_explicit_folder_kind_and_path_errors(tmp_path):
    one_line_error(r"data source 'digits' takes no path", "digits:/somewhere")
    one_line_error(r"data path .*nowhere does not exist: point tinyimagenet:ROOT at the folder that contains tiny-imagenet-200/",
                   f"tinyimagenet:{tmp_path / 'nowhere'}")
    with pytest.raises(UnlearnkitError) as info:
        load_dataset(f"tinyimagenet:{tmp_path / 'nowhere'}", download=True)
    assert "download=True" not in str(info.value)  # Tiny-ImageNet has no torchvision downloader: don't offer one


def test_folder_kind_reads_a_tree_like_a_bare_path(tmp_path):
    for split, n in (("train", 3), ("test", 1)):
        for cls in ("a", "b"):
            folder = tmp_path / "tree" / split / cls
            folder.mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((3, 3), 40 * i, dtype=np.uint8)).save(folder / f"{i}.png")
    explicit = load_dataset(f"folder:{tmp_path / 'tree'}", use_cache=False)
    bare = load_dataset(str(tmp_path / "tree"), use_cache=False)
    assert explicit.fingerprint == bare.fingerprint and explicit.classes == ("a", "b") and len(explicit.train) == 6
    one_line_error(r"data path .*nothing does not exist: point folder:ROOT", f"folder:{tmp_path / 'nothing'}")
