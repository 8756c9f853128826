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
        ("class:", r"forget spec 'class:' names no class; write class:NAME or class:NAME,NAME \(classes: cat, dog, frog, ship\)"),
        ("class::0.5", "names no class"),
        ("class: , ", "names no class"),
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


# --------------------------------------------------------------------------- per-class fractions, sub-classes


def _coarse_bundle(n=240):
    """Six fine classes in three super-classes (fine i -> coarse i // 2), like a tiny CIFAR-100."""
    fine = ("baby", "boy", "oak", "pine", "bus", "tram")
    rng = np.random.default_rng(1)
    labels = (np.arange(n) % len(fine)).astype(np.int64)
    train = LabeledImages(rng.integers(0, 255, (n, 3, 4, 4), dtype=np.uint8), labels,
                          np.array([f"img{i:04d}" for i in range(n)]))
    test = LabeledImages(train.images[:12], labels[:12], np.array([f"t{i}" for i in range(12)]))
    return DatasetBundle("toy100", fine, train, test, "c" * 64, "toy100", ("people", "trees", "vehicles"), (0, 0, 1, 1, 2, 2))


def test_class_fraction_takes_that_share_of_each_class_seeded():
    s = make_split(_bundle(), 0.2, seed=0)  # 40 members per class
    half = s.with_forget("class:dog:0.5")
    assert len(half.forget_idx) == 20 and set(s.bundle.train.labels[half.forget_idx]) == {1}
    assert np.array_equal(half.forget_idx, s.with_forget("class:dog:0.5").forget_idx)  # same spec + seed
    other_seed = make_split(_bundle(), 0.2, seed=0)
    other_seed = type(other_seed)(other_seed.bundle, other_seed.train_idx, other_seed.val_idx, other_seed.forget_idx, 5)
    assert not np.array_equal(other_seed.with_forget("class:dog:0.5").forget_idx, half.forget_idx)
    two = s.with_forget("class:cat,frog:0.25")
    assert np.bincount(s.bundle.train.labels[two.forget_idx], minlength=4).tolist() == [10, 0, 10, 0]
    assert len(s.with_forget("class:ship:1").forget_idx) == 40
    assert len(s.with_forget("class:0:0.001").forget_idx) == 1  # at least one of the class


@pytest.mark.parametrize("spec", ["class:cat:0", "class:cat:1.5", "class:cat:half", "class:cat:"])
def test_class_fraction_must_be_a_fraction(spec):
    with pytest.raises(UnlearnkitError, match=r"fraction in \(0, 1\] of each class, e.g. class:cat:0.5") as info:
        make_split(_bundle(), 0.2, seed=0).with_forget(spec)
    assert "\n" not in str(info.value)


def test_subclass_forgets_one_fine_class_and_retains_its_siblings():
    s = make_split(_coarse_bundle(), 0.25, seed=0).with_forget("subclass:baby")
    fine = s.bundle.train.labels
    assert set(fine[s.forget_idx]) == {0} and len(s.forget_idx) == 30
    # Retain keeps the other fine class of the same super-class (boy), as SUPREME does.
    assert 1 in set(fine[s.retain_idx]) and 0 not in set(fine[s.retain_idx])
    assert set(s.superclass_labels("forget")) == {0}
    assert np.array_equal(s.superclass_labels("retain"), np.array([0, 0, 1, 1, 2, 2])[fine[s.retain_idx]])
    manifest = s.manifest()
    assert manifest["superclasses"] == {"names": ["people", "trees", "vehicles"], "of_class": [0, 0, 1, 1, 2, 2]}
    assert manifest["forget_spec"] == "subclass:baby"
    back = split_from_manifest(s.bundle, manifest)
    assert np.array_equal(back.forget_idx, s.forget_idx)
    assert len(make_split(_coarse_bundle(), 0.25, seed=0).with_forget("subclass:oak,tram:0.5").forget_idx) == 30


def test_subclass_needs_super_classes_and_known_names():
    plain = make_split(_bundle(), 0.2, seed=0)
    assert "superclasses" not in plain.manifest()  # datasets without them keep the old split.json
    with pytest.raises(UnlearnkitError, match=r"needs a dataset with super-classes .*has none; use class:<name>"):
        plain.with_forget("subclass:cat")
    with pytest.raises(UnlearnkitError, match="has no super-classes"):
        plain.superclass_labels("train")
    with pytest.raises(UnlearnkitError, match=r"unknown class 'girl'; classes are: baby, boy, oak, pine, bus, tram"):
        make_split(_coarse_bundle(), 0.25, seed=0).with_forget("subclass:girl")


def test_unknown_forget_kind_lists_every_kind():
    with pytest.raises(UnlearnkitError) as info:
        make_split(_bundle(), 0.2, seed=0).with_forget("superclass:people")
    message = str(info.value)
    assert "\n" not in message
    for syntax in ("random:<count|fraction>", "class:<name|index>[,...][:<fraction>]", "subclass:", "ids:<file>"):
        assert syntax in message


# --------------------------------------------------------------------------- robustness


def test_non_utf8_id_file_is_a_one_line_error(tmp_path):
    s = make_split(_bundle(), 0.2, seed=0)
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("img0001\ncaf\u00e9\n".encode("latin-1"))
    with pytest.raises(UnlearnkitError, match=r"forget id file .*latin1\.txt is not UTF-8 text .*save it as UTF-8") as info:
        s.with_forget(f"ids:{bad}")
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("seed", [-1, 2**32, 1.5, True, "0"])
def test_bad_seed_is_a_one_line_error_naming_seed(seed):
    with pytest.raises(UnlearnkitError, match=r"^seed must be a whole number from 0 to 4294967295, got") as info:
        make_split(_bundle(), 0.2, seed=seed)
    assert "\n" not in str(info.value)


def test_largest_seed_still_splits():
    assert len(make_split(_bundle(), 0.2, seed=2**32 - 1).with_forget("random:3").forget_idx) == 3
