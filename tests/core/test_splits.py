import numpy as np
import pytest

from unlearnkit.data import DatasetBundle, LabeledImages, make_split, split_from_manifest
from unlearnkit.errors import UnlearnkitError


def _bundle(n=200, classes=("cat", "dog", "frog", "ship")):
    rng = np.random.default_rng(0)
    labels = np.arange(n) % len(classes)
    train = LabeledImages(rng.integers(0, 255, (n, 3, 4, 4), dtype=np.uint8), labels.astype(np.int64),
                          np.array([f"img{i:04d}" for i in range(n)]))
    test = LabeledImages(train.images[:20], train.labels[:20], np.array([f"t{i}" for i in range(20)]))
    return DatasetBundle("toy", tuple(classes), train, test, "f" * 64, "toy")


def test_split_is_stratified_disjoint_and_seeded():
    b = _bundle()
    s = make_split(b, 0.2, seed=1)
    assert len(s.val_idx) == 40 and len(s.train_idx) == 160
    assert not set(s.train_idx) & set(s.val_idx)
    assert np.bincount(b.train.labels[s.val_idx]).tolist() == [10, 10, 10, 10]
    assert np.array_equal(make_split(b, 0.2, seed=1).train_idx, s.train_idx)
    assert not np.array_equal(make_split(b, 0.2, seed=2).train_idx, s.train_idx)


@pytest.mark.parametrize("spec, count", [("random:16", 16), ("random:0.1", 16), ("class:dog", 40), ("class:dog,0", 80), ("class:2", 40)])
def test_forget_specs_select_members_only(spec, count):
    s = make_split(_bundle(), 0.2, seed=0).with_forget(spec)
    assert len(s.forget_idx) == count
    assert set(s.forget_idx) <= set(s.train_idx)
    assert len(s.retain_idx) == 160 - count
    assert not set(s.retain_idx) & set(s.forget_idx)


def test_random_forget_is_deterministic_per_seed():
    s = make_split(_bundle(), 0.2, seed=0)
    assert np.array_equal(s.with_forget("random:10").forget_idx, s.with_forget("random:10").forget_idx)


def test_forget_ids_from_text_and_csv(tmp_path):
    s = make_split(_bundle(), 0.2, seed=0)
    ids = s.bundle.train.ids[s.train_idx[:3]]
    (tmp_path / "f.txt").write_text("\n".join(ids) + "\n")
    (tmp_path / "f.csv").write_text("id,label\n" + "".join(f"{i},cat\n" for i in ids))
    for name in ("f.txt", "f.csv"):
        got = s.with_forget(f"ids:{tmp_path / name}")
        assert sorted(got.bundle.train.ids[got.forget_idx]) == sorted(ids)


def test_manifest_round_trip_and_fingerprint_check():
    b = _bundle()
    s = make_split(b, 0.2, seed=0).with_forget("random:7")
    back = split_from_manifest(b, s.manifest())
    assert np.array_equal(back.train_idx, s.train_idx) and np.array_equal(back.forget_idx, s.forget_idx)
    other = DatasetBundle(b.name, b.classes, b.train, b.test, "0" * 64, b.source)
    with pytest.raises(UnlearnkitError, match="made for dataset ffffff.*pass the same --data"):
        split_from_manifest(other, s.manifest())


def test_parts():
    s = make_split(_bundle(), 0.2, seed=0).with_forget("class:cat")
    assert len(s.part("forget").labels) == 40 and set(s.part("forget").labels) == {0}
    assert len(s.part("test").labels) == 20
    with pytest.raises(UnlearnkitError, match="unknown split part 'holdout'"):
        s.part("holdout")


@pytest.mark.parametrize(
    "spec, message",
    [
        ("class:horse", "unknown class 'horse'; classes are: cat, dog, frog, ship"),
        ("class:9", "unknown class '9'"),
        ("random:0", "selects no training sample"),
        ("random:500", "asks for 500 samples but the training split has 160"),
        ("random:lots", "random needs a whole count or a fraction"),
        ("class:cat,dog,frog,ship", "selects the whole training set"),
        ("everything", "forget spec 'everything' is not understood"),
        ("ids:/nonexistent/ids.txt", "forget id file /nonexistent/ids.txt does not exist"),
    ],
)
def test_bad_forget_specs(spec, message):
    s = make_split(_bundle(), 0.2, seed=0)
    with pytest.raises(UnlearnkitError, match=message):
        s.with_forget(spec)


def test_bad_forget_id_files(tmp_path):
    s = make_split(_bundle(), 0.2, seed=0)
    member = s.bundle.train.ids[s.train_idx[0]]
    held_out = s.bundle.train.ids[s.val_idx[0]]
    cases = {
        "unknown.txt": (f"{member}\nnot-an-id\n", "forget id 'not-an-id' .* is not a training sample"),
        "dup.txt": (f"{member}\n{member}\n", f"forget id '{member}' appears twice"),
        "val.txt": (f"{held_out}\n", f"forget id '{held_out}' .* is in the validation split"),
        "empty.txt": ("\n", "selects no training sample"),
        "nocol.csv": ("name\nimg0001\n", "has no `id` column"),
    }
    for name, (text, message) in cases.items():
        (tmp_path / name).write_text(text)
        with pytest.raises(UnlearnkitError, match=message):
            s.with_forget(f"ids:{tmp_path / name}")
