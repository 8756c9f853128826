"""Data-layer review fixes: archive links, 16-bit images, bundle checks, cache keys, forget specs, Normalizer.fit."""

from __future__ import annotations

import io
import os
import re
import stat
import tarfile
import tracemalloc
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import unlearnkit.training.data as training_data
from unlearnkit.data.sources import load_dataset
from unlearnkit.data.sources.base import check_bundle, make_bundle, make_images
from unlearnkit.data.sources.decode import decode_image
from unlearnkit.data.splits import make_split
from unlearnkit.errors import UnlearnkitError
from unlearnkit.training.data import Normalizer

from helpers import needs_symlinks, write_images



def _one_line(excinfo) -> str:
    message = str(excinfo.value)
    assert "\n" not in message
    return message


# --------------------------------------------------------------------------- links inside archives


def _linked_tree(base: Path) -> Path:
    """A tree with a hard-linked image, a symlinked image, a class folder that is a symlink into the
    tree, and a link back to the top (a loop that must add nothing)."""
    root = base / "ds"
    for cls, seed in (("cat", 0), ("dog", 1)):
        write_images(root / "train" / cls, 3, seed)
    write_images(root / "pool" / "cow", 3, 2)
    os.link(root / "train/cat/0.png", root / "train/cat/hard.png")
    os.symlink("0.png", root / "train/dog/soft.png")
    os.symlink("../pool/cow", root / "train/cow")
    os.symlink("../..", root / "pool/cow/up")
    return root


@needs_symlinks
@pytest.mark.parametrize("kind", ["tar", "tgz", "zip"])
def test_archive_links_load_like_the_folder(tmp_path, kind):
    root = _linked_tree(tmp_path)
    folder = load_dataset(str(root), use_cache=False)
    assert folder.classes == ("cat", "cow", "dog")
    if kind == "zip":
        archive = tmp_path / "ds.zip"
        with zipfile.ZipFile(archive, "w") as zf:
            for p in _walk_no_follow(root):
                arc = p.relative_to(tmp_path).as_posix()
                if p.is_symlink():  # what `zip -y` stores: the link target as the member's bytes
                    info = zipfile.ZipInfo(arc)
                    info.external_attr = (stat.S_IFLNK | 0o777) << 16
                    zf.writestr(info, os.readlink(p))
                elif p.is_dir():
                    zf.writestr(arc + "/", b"")
                else:
                    zf.write(p, arc)
    else:
        archive = tmp_path / f"ds.{kind}"
        with tarfile.open(archive, "w:gz" if kind == "tgz" else "w") as tar:
            tar.add(root, arcname="ds")  # stores links as links (and the second name of an inode as a hard link)
        with tarfile.open(archive) as tar:
            types = {m.name: m for m in tar.getmembers()}
        assert types["ds/train/cow"].issym() and types["ds/train/dog/soft.png"].issym()
        assert any(m.islnk() for m in types.values())
    packed = load_dataset(str(archive), use_cache=False)
    assert packed.classes == folder.classes
    assert sorted(packed.train.ids.tolist() + packed.test.ids.tolist()) == sorted(
        folder.train.ids.tolist() + folder.test.ids.tolist())
    assert packed.fingerprint == folder.fingerprint


def _walk_no_follow(root: Path):
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            yield Path(dirpath) / name


@needs_symlinks
def test_archive_link_leaving_the_archive_is_a_one_line_error(tmp_path):
    outside = tmp_path / "store" / "cow"
    write_images(outside, 2, 3)
    root = tmp_path / "ds"
    write_images(root / "train" / "cat", 2, 0)
    write_images(root / "train" / "dog", 2, 1)
    os.symlink(outside, root / "train" / "cow")  # absolute: not inside the archive
    archive = tmp_path / "ds.tar"
    with tarfile.open(archive, "w") as tar:
        tar.add(root, arcname="ds")
    with pytest.raises(UnlearnkitError, match=r"symlink ds/train/cow -> .* cannot be followed.*tar -h") as excinfo:
        load_dataset(str(archive), use_cache=False)
    _one_line(excinfo)


# --------------------------------------------------------------------------- 16-bit and float images


def _encoded(im: Image.Image, fmt: str) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt)
    return buf.getvalue()


def test_16bit_gray_png_is_scaled_not_clipped():
    values = (np.arange(16, dtype=np.uint16).reshape(4, 4) * 4096 + 100)
    raw = _encoded(Image.fromarray(values), "PNG")
    out = decode_image("x16.png", raw)
    assert out.dtype == np.uint8 and out.shape == (4, 4)
    assert np.array_equal(out, (values >> 8).astype(np.uint8))


def test_32bit_int_image_is_scaled_as_16bit_or_refused():
    ok = np.array([[0, 65535], [256, 511]], dtype=np.int32)  # mode I: how older Pillow opens a 16-bit PNG
    assert decode_image("x.tif", _encoded(Image.fromarray(ok), "TIFF")).tolist() == [[0, 255], [1, 1]]
    wide = np.array([[0, 70000], [1, 2]], dtype=np.int32)
    with pytest.raises(UnlearnkitError, match=r"image x\.tif has pixel values outside 0\.\.65535") as excinfo:
        decode_image("x.tif", _encoded(Image.fromarray(wide), "TIFF"))
    _one_line(excinfo)


def test_float_image_is_refused():
    raw = _encoded(Image.fromarray(np.full((2, 2), 0.5, np.float32), "F"), "TIFF")
    with pytest.raises(UnlearnkitError, match=r"image f\.tif has floating-point pixels \(mode F\)"):
        decode_image("f.tif", raw)


# --------------------------------------------------------------------------- check_bundle


def _bundle(train_ids, test_images=None):
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (len(train_ids), 3, 8, 8), dtype=np.uint8)
    y = np.arange(len(train_ids)) % 2
    test_x = x[:4] if test_images is None else test_images
    return make_bundle("p", ["a", "b"], make_images(x, y, train_ids), make_images(test_x, y[:4], [f"t{i}" for i in range(4)]), "p:x")


def test_check_bundle_refuses_duplicate_ids():
    with pytest.raises(UnlearnkitError, match=r"p:x returned train ids that are not unique \('s0' appears 2 times\)") as excinfo:
        check_bundle(_bundle([f"s{i % 10}" for i in range(20)]), "p:x")
    _one_line(excinfo)
    bundle = _bundle([f"s{i}" for i in range(20)])
    dup_test = make_bundle("p", ["a", "b"], bundle.train, make_images(bundle.test.images, bundle.test.labels, ["t", "t", "u", "v"]), "p:x")
    with pytest.raises(UnlearnkitError, match=r"returned test ids that are not unique \('t' appears 2 times\)"):
        check_bundle(dup_test, "p:x")


def test_check_bundle_refuses_test_images_of_another_shape():
    bad = _bundle([f"s{i}" for i in range(20)], test_images=np.zeros((4, 1, 28, 28), np.uint8))
    with pytest.raises(UnlearnkitError, match=r"test images of shape \(C, H, W\) = \(1, 28, 28\) but train images of \(3, 8, 8\)"):
        check_bundle(bad, "p:x")
    assert check_bundle(_bundle([f"s{i}" for i in range(20)]), "p:x")  # a well-formed one still passes


# --------------------------------------------------------------------------- cache keys


@needs_symlinks
def test_dangling_symlink_with_the_cache_on_gives_the_uncached_result(tmp_path):
    root = tmp_path / "ds"
    write_images(root / "train" / "cat", 3, 0)
    write_images(root / "train" / "dog", 3, 1)
    os.symlink(tmp_path / "missing.md", root / "train" / "notes.md")  # not an image: ignored either way
    cached = load_dataset(str(root), cache_dir=tmp_path / "cache", use_cache=True)
    assert cached.fingerprint == load_dataset(str(root), use_cache=False).fingerprint
    os.symlink(tmp_path / "missing.png", root / "train" / "cat" / "broken.png")
    for use_cache in (False, True):
        with pytest.raises(UnlearnkitError, match=r"cannot read image train/cat/broken\.png") as excinfo:
            load_dataset(str(root), cache_dir=tmp_path / "cache", use_cache=use_cache)
        _one_line(excinfo)


@needs_symlinks
def test_csv_beside_a_linked_folder_or_dot_is_keyed_where_it_is_read(tmp_path, monkeypatch):
    real = tmp_path / "real"
    flat = real / "flat"
    rng = np.random.default_rng(0)
    flat.mkdir(parents=True)
    rows = ["id,label"]
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(flat / f"{i}.png")
        rows.append(f"{i},{'ab'[i % 2]}")
    (real / "trainLabels.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "links").mkdir()
    os.symlink(flat, tmp_path / "links" / "flat")
    cache = tmp_path / "cache"
    assert load_dataset(str(tmp_path / "links" / "flat"), cache_dir=cache).classes == ("a", "b")
    monkeypatch.chdir(flat)
    first = load_dataset(".", cache_dir=cache)
    assert first.classes == ("a", "b")
    # An edit to the CSV beside the folder must miss the cache (it is keyed where it is read).
    (real / "trainLabels.csv").write_text("\n".join(rows).replace(",a", ",c") + "\n")
    assert load_dataset(".", cache_dir=cache).classes == ("b", "c")


def test_unreadable_folder_is_a_one_line_error(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    for cls, seed in (("cat", 0), ("dog", 1), ("cow", 2)):
        write_images(root / "train" / cls, 3, seed)
    real_scandir = os.scandir

    def scandir(path="."):  # as a folder without read permission does (tests may run as root, which bypasses chmod)
        if os.fspath(path).endswith("cow"):
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)
    for use_cache in (False, True):
        with pytest.raises(UnlearnkitError, match=r"cannot read folder .*train/cow \(Permission denied\)") as excinfo:
            load_dataset(str(root), cache_dir=tmp_path / "cache", use_cache=use_cache)
        _one_line(excinfo)


# --------------------------------------------------------------------------- forget specs


def _split(classes, labels, seed=0):
    rng = np.random.default_rng(0)
    labels = np.asarray(labels)
    x = rng.integers(0, 255, (len(labels), 1, 4, 4), dtype=np.uint8)
    bundle = make_bundle("t", classes, make_images(x, labels, [f"s{i}" for i in range(len(labels))]),
                         make_images(x[:3], labels[:3], ["t0", "t1", "t2"]), "t")
    return make_split(bundle, 0.2, seed)


def _forgotten(split, spec) -> list[str]:
    f = split.with_forget(spec)
    return sorted({split.classes[label] for label in f.part("forget").labels})


def test_numeric_class_names_that_are_also_indices_are_ambiguous():
    s = _split(["1", "2", "3", "4"], np.arange(80) % 4)  # Kaggle labels 1..4
    with pytest.raises(UnlearnkitError, match=r"class '1' is ambiguous: .*write =1 for the class named '1' or #1 for index 1") as excinfo:
        s.with_forget("class:1")
    _one_line(excinfo)
    assert _forgotten(s, "class:=1") == ["1"]
    assert _forgotten(s, "class:#1") == ["2"]
    assert _forgotten(s, "class:0") == ["1"]  # index only
    assert _forgotten(s, "class:4") == ["4"]  # name only (no index 4)
    assert _forgotten(s, "class:#0,=4:0.5") == ["1", "4"]
    with pytest.raises(UnlearnkitError, match=r"unknown class '#4'"):
        s.with_forget("class:#4")
    same = _split(["0", "b", "c"], np.arange(60) % 3)
    assert _forgotten(same, "class:0") == ["0"]  # the name and the index of the same class: fine


def test_class_names_holding_spec_separators_are_named_by_index():
    from unlearnkit.data.splits import _class_label, class_token

    classes = ["a,b", "x:y", "plain", "#3", " pad"]
    s = _split(classes, np.arange(100) % 5)
    for spec, index in (("class:a,b", 0), ("class:a,b:0.5", 0), ("class:x:y", 1), ("class:plain,x:y", 1)):
        with pytest.raises(UnlearnkitError, match=rf"class name '{re.escape(classes[index])}' holds ',' or ':'.*class:#{index}$") as excinfo:
            s.with_forget(spec)
        _one_line(excinfo)
    assert _forgotten(s, "class:#0,#1") == ["a,b", "x:y"]
    with pytest.raises(UnlearnkitError, match=r"unknown class 'a'.*is named by its index, class:#N"):
        s.with_forget("class:a")
    # The hint and the tuning sets write every class so that the parser reads it back as that class.
    for index in range(len(classes)):
        for by in ("name", "index"):
            token = class_token(tuple(classes), index, by=by)
            assert _class_label(tuple(classes), token, f"class:{token}") == index, (index, by, token)
    assert class_token(tuple(classes), 2, by="name") == "plain"


@pytest.mark.parametrize("token", ["\u00b2", "\u0663"])  # superscript two, Arabic-Indic three
def test_non_ascii_digits_are_unknown_classes(token):
    s = _split(["a", "b", "c", "d"], np.arange(80) % 4)
    with pytest.raises(UnlearnkitError, match=f"unknown class '{token}'"):
        s.with_forget(f"class:{token}")


def test_named_class_without_members_is_an_error():
    labels = np.array([0] * 20 + [1] * 20 + [2])  # class 'c' has a single image in the pool
    seed = next(s for s in range(100) if 40 in _split(["a", "b", "c"], labels, s).val_idx)
    split = _split(["a", "b", "c"], labels, seed)  # ... which this seed holds out for validation
    for spec in ("class:a,c", "class:a,c:0.5", "class:c"):
        with pytest.raises(UnlearnkitError, match=r"class 'c' has no member in the training split.*drop it") as excinfo:
            split.with_forget(spec)
        _one_line(excinfo)
    assert _forgotten(split, "class:a") == ["a"]


@pytest.fixture
def member_split():
    return _split(["a", "b"], np.arange(40) % 2)


def _member_ids(split, n=3) -> list[str]:
    return split.bundle.train.ids[split.train_idx[:n]].tolist()


def test_id_file_path_expands_home(member_split, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    (tmp_path / "f.txt").write_text("\n".join(_member_ids(member_split)) + "\n")
    assert len(member_split.with_forget("ids:~/f.txt").forget_idx) == 3


def test_id_file_that_is_a_folder(member_split, tmp_path):
    with pytest.raises(UnlearnkitError, match=r"forget id file .* is a folder"):
        member_split.with_forget(f"ids:{tmp_path}")


@pytest.mark.parametrize("header", ["ID,label", " id , label", "label,Id"])
def test_id_csv_header_ignores_case_and_spaces(member_split, tmp_path, header):
    ids = _member_ids(member_split)
    first = header.split(",")[0].strip().lower()
    rows = [f"{i},0" if first == "id" else f"0,{i}" for i in ids]
    (tmp_path / "f.csv").write_text(header + "\n" + "\n".join(rows) + "\n")
    got = member_split.with_forget(f"ids:{tmp_path / 'f.csv'}")
    assert sorted(got.bundle.train.ids[got.forget_idx]) == sorted(ids)


def test_id_csv_without_rows_or_with_an_empty_id(member_split, tmp_path):
    (tmp_path / "h.csv").write_text("id,label\n\n")
    with pytest.raises(UnlearnkitError, match=r"h\.csv has no ids"):
        member_split.with_forget(f"ids:{tmp_path / 'h.csv'}")
    ids = _member_ids(member_split)
    for name, text, line in [("short.csv", f"label,id\n0,{ids[0]}\n5\n", 3), ("blank.csv", f"id,label\n{ids[0]},0\n\n ,1\n", 4)]:
        (tmp_path / name).write_text(text)
        with pytest.raises(UnlearnkitError, match=rf"{name} line {line} has no id: fix or delete the line") as excinfo:
            member_split.with_forget(f"ids:{tmp_path / name}")
        _one_line(excinfo)


@pytest.mark.parametrize("bad", [20, 1, 0, True, "0.2", float("nan"), 1.0, -0.1])
def test_val_fraction_must_be_a_fraction(bad):
    bundle = _split(["a", "b"], np.arange(40) % 2).bundle
    with pytest.raises(UnlearnkitError, match=r"val_fraction must be a fraction between 0 and 1 \(exclusive\), got "):
        make_split(bundle, bad, 0)
    assert len(make_split(bundle, 0.25, 0).val_idx) == 10


# --------------------------------------------------------------------------- Normalizer.fit


def _old_fit(images: np.ndarray) -> tuple[list[float], list[float]]:
    """The formula Normalizer.fit used before it was chunked (a float64 copy of everything)."""
    x = torch.as_tensor(images)
    flat = x.transpose(0, 1).reshape(x.shape[1], -1).double() / 255.0
    return flat.mean(dim=1).tolist(), flat.std(dim=1).clamp_min(1e-3).tolist()


@pytest.mark.parametrize("chunk_values", [1 << 22, 3 * 5 * 7 * 4, 7])  # one chunk; 4 images (ragged end); 1 image
def test_normalizer_fit_in_chunks_matches_the_full_formula(monkeypatch, chunk_values):
    monkeypatch.setattr(training_data, "_FIT_CHUNK_VALUES", chunk_values)
    x = np.random.default_rng(0).integers(0, 256, (37, 3, 5, 7), dtype=np.uint8)
    x[:, 2] = 200  # a constant channel: std clamps to 1e-3
    mean, std = _old_fit(x)
    got = Normalizer.fit(x)
    assert got.mean == pytest.approx(mean, rel=1e-6) and got.std == pytest.approx(std, rel=1e-6)
    assert Normalizer.fit(torch.from_numpy(x)) == got


def test_normalizer_fit_memory_is_bounded_by_the_chunk(monkeypatch):
    monkeypatch.setattr(training_data, "_FIT_CHUNK_VALUES", 3 * 32 * 32 * 8)  # 8 images per chunk
    x = np.random.default_rng(1).integers(0, 256, (256, 3, 32, 32), dtype=np.uint8)  # 768 KiB
    tracemalloc.start()
    try:
        Normalizer.fit(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < x.nbytes  # a float64 copy of the whole set would be 8x x.nbytes; a chunk's is 1/32 of it
