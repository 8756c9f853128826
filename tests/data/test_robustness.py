"""Issue #13 item 9: symlinked class folders, one-class datasets, bad seeds reaching the split."""

from __future__ import annotations

import os

import pytest

from unlearnkit.data.cache import tree_digest
from unlearnkit.data.sources import load_dataset
from unlearnkit.errors import UnlearnkitError

from helpers import assert_one_line_error, needs_symlinks, run_cli, write_images



@needs_symlinks
def test_symlinked_class_folders_are_followed(tmp_path):
    store = tmp_path / "store"  # where the images really live
    write_images(store / "cats", 3, 0)
    write_images(store / "dogs-test", 2, 1)
    tree = tmp_path / "pets"
    write_images(tree / "train" / "bird", 3, 2)
    write_images(tree / "test" / "bird", 2, 3)
    os.symlink(store / "cats", tree / "train" / "cat")
    (tree / "test").mkdir(exist_ok=True)
    os.symlink(store / "dogs-test", tree / "test" / "cat")
    bundle = load_dataset(str(tree), use_cache=False)
    assert bundle.classes == ("bird", "cat")
    assert sorted(bundle.train.ids.tolist()) == [f"train/bird/{i}.png" for i in range(3)] + [f"train/cat/{i}.png" for i in range(3)]
    assert len(bundle.test) == 4


@needs_symlinks
def test_symlink_loops_end_and_the_cache_key_sees_linked_files(tmp_path):
    store = tmp_path / "store"
    write_images(store / "cats", 2, 0)
    tree = tmp_path / "pets"
    write_images(tree / "train" / "bird", 2, 1)
    os.symlink(store / "cats", tree / "train" / "cat")
    os.symlink(tree / "train", store / "cats" / "loop")  # cat/loop -> train/ -> cat/ -> ...
    os.symlink(tree, tree / "train" / "bird" / "up")  # and a link to the top of the tree
    bundle = load_dataset(str(tree), use_cache=False)  # terminates; the loop links add nothing
    ids = bundle.train.ids.tolist() + bundle.test.ids.tolist()  # no test/: one image per class is carved off
    assert sorted(ids) == ["train/bird/0.png", "train/bird/1.png", "train/cat/0.png", "train/cat/1.png"]
    before = tree_digest(tree)
    write_images(store / "cats", 3, 5)  # a new image behind the link must change the cache key
    assert tree_digest(tree) != before
    cache = tmp_path / "cache"
    first = load_dataset(str(tree), cache_dir=cache)
    assert len(first.train) + len(first.test) == 5


def test_one_class_dataset_is_refused(tmp_path):
    write_images(tmp_path / "solo" / "train" / "cat", 4, 0)
    write_images(tmp_path / "solo" / "test" / "cat", 2, 1)
    with pytest.raises(UnlearnkitError, match=r"^dataset .*solo has only one class \('cat'\) .*two or more classes") as info:
        load_dataset(str(tmp_path / "solo"), use_cache=False)
    assert "\n" not in str(info.value)


def test_negative_seed_from_the_cli_is_a_one_line_error(tmp_path, capsys):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--preset", "digits", "--seed", "-1", "--out", out)
    assert_one_line_error(code, err, r"seed=-1 is out of range: it must be in \[0, 4294967295\]")
    assert not out.exists()  # nothing half-written
