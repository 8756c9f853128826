"""`unlearnkit import`: a checkpoint made exactly like the seed's script becomes a run that forget and audit accept."""

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision
from PIL import Image

from helpers import assert_one_line_error, run_cli
from unlearnkit.training.pipeline import load_run

N_CLASSES = 10  # the seed's fc is 512 -> 10
SIZE = 8  # tiny images keep the width-64 seed network cheap on a CPU
MEAN, STD = "0.5,0.5,0.5", "0.25,0.25,0.25"


@pytest.fixture(scope="module")
def tiny_tree(tmp_path_factory, cache_dir) -> Path:
    """An image-folder dataset: 10 classes x (8 train + 2 test) 8x8 RGB PNGs, each class its own colour."""
    root = tmp_path_factory.mktemp("tiny") / "tree"
    rng = np.random.default_rng(0)
    for split, n in (("train", 8), ("test", 2)):
        for c in range(N_CLASSES):
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                base = np.array([25 * c, 255 - 25 * c, (90 * c) % 256])
                img = np.clip(base + rng.integers(-20, 20, (SIZE, SIZE, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(img).save(folder / f"{c}_{i}.png")
    return root


def seed_model() -> torch.nn.Module:
    """Resnet_Model.py's network, built the way the seed builds it."""
    model = torchvision.models.resnet18()
    model.conv1 = torch.nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    model.maxpool = torch.nn.Identity()
    model.fc = torch.nn.Linear(512, 10)
    return model


@pytest.fixture(scope="module")
def seed_checkpoint(tmp_path_factory) -> tuple[Path, torch.nn.Module]:
    torch.manual_seed(0)
    model = seed_model()
    path = tmp_path_factory.mktemp("ckpt") / "resnet18_weights.pth"
    torch.save(model.state_dict(), path)  # exactly as the seed's script saves it
    return path, model


def _import(capsys, tmp_path, weights, tree, *extra, out="mine"):
    return run_cli(capsys, "import", "--weights", weights, "--arch", "resnet18", "--data", tree,
                   "--out", tmp_path / out, *extra)


def test_seed_checkpoint_import_forget_scrub_audit(capsys, tmp_path, tiny_tree, seed_checkpoint):
    weights, original = seed_checkpoint
    code, out, err = _import(capsys, tmp_path, weights, tiny_tree, "--members", "split:0", "--mean", MEAN, "--std", STD)
    assert code == 0, err
    run_dir = tmp_path / "mine"
    assert sorted(p.name for p in run_dir.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "run.json", "split.json"]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["imported"]["members"] == "split:0" and info["imported"]["recipe"] is None
    assert info["normalizer"] == {"mean": [0.5] * 3, "std": [0.25] * 3}
    split = json.loads((run_dir / "split.json").read_text())
    assert split["members"] == "split:0" and split["counts"]["train"] == 64 and split["counts"]["val"] == 16
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert {"train_acc", "val_acc", "test_acc"} <= set(metrics)
    assert json.loads((run_dir / "config.json").read_text())["model"] == {"name": "resnet18", "width": 64, "flip_tta": False}

    # The run's model computes exactly what the seed's network computes on normalised images.
    run = load_run(run_dir)
    model = run.load_model().eval().to(memory_format=torch.contiguous_format)
    images = torch.from_numpy(run.split.part("test").images).float() / 255
    x = (images - 0.5) / 0.25
    original.eval()
    with torch.no_grad():
        torch.testing.assert_close(model(x), original(x), rtol=1e-4, atol=1e-4)

    code, out, err = run_cli(capsys, "forget", run_dir, "--method", "scrub", "--forget", "random:6",
                             "--out", tmp_path / "scrub", "--set", "method.epochs=1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "audit", tmp_path / "scrub", "--no-plots")
    assert code == 0, err
    audit = json.loads((tmp_path / "scrub" / "audit.json").read_text())
    assert audit["against_retraining"] is None and "no reference run" in audit["verdict"]
    assert audit["accuracy"]["original"]["n"]["val"] == 16  # the imported run is the recorded parent

    # No recipe was declared: no exact retrain, and the error says how to declare one.
    code, out, err = run_cli(capsys, "forget", run_dir, "--method", "retrain", "--forget", "random:6", "--out", tmp_path / "rt")
    assert_one_line_error(code, err, r"imported without its training recipe.*--recipe PRESET")
    assert not (tmp_path / "rt").exists()
    code, out, err = run_cli(capsys, "refs", "build", run_dir, "--k", "2")  # reference models need the recipe too
    assert_one_line_error(code, err, r"imported without its training recipe")
    assert not (run_dir / "refs").exists()


def test_recipe_declared_enables_retrain_and_wrappers_are_unwrapped(capsys, tmp_path, tiny_tree, seed_checkpoint):
    weights, original = seed_checkpoint
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"epoch": torch.tensor(10), "state_dict": {f"module.{k}": v for k, v in original.state_dict().items()}}, wrapped)
    code, out, err = run_cli(capsys, "import", "--weights", wrapped, "--arch", "torchvision:resnet18", "--data", tiny_tree,
                             "--members", "split:1", "--normalize", "fit", "--set", "train.epochs=1",
                             "--set", "train.batch_size=32", "--out", tmp_path / "mine")
    assert code == 0, err
    info = json.loads((tmp_path / "mine" / "run.json").read_text())
    assert info["imported"]["recipe"] == "--set train.epochs=1 train.batch_size=32"
    assert info["imported"]["normalizer"] == "fit on the members"
    code, out, err = run_cli(capsys, "forget", tmp_path / "mine", "--method", "retrain", "--forget", "random:4",
                             "--out", tmp_path / "rt")
    assert code == 0, err


def test_safetensors_from_a_run_reads_its_normaliser(capsys, tmp_path, digits_run):
    code, out, err = run_cli(capsys, "import", "--weights", digits_run / "model.safetensors", "--arch", "small_cnn",
                             "--data", "digits", "--members", "split:0", "--recipe", "digits", "--out", tmp_path / "again")
    assert code == 0, err
    mine, theirs = (json.loads((d / "run.json").read_text()) for d in (tmp_path / "again", digits_run))
    assert mine["normalizer"] == theirs["normalizer"]
    assert json.loads((tmp_path / "again" / "split.json").read_text())["train"] == json.loads((digits_run / "split.json").read_text())["train"]
    m_mine, m_theirs = (json.loads((d / "metrics.json").read_text()) for d in (tmp_path / "again", digits_run))
    assert m_mine["test_acc"] == m_theirs["test_acc"]  # same weights, same data, same normaliser


def test_members_all_has_no_non_members_and_audit_refuses(capsys, tmp_path, tiny_tree, seed_checkpoint):
    weights, _ = seed_checkpoint
    code, out, err = _import(capsys, tmp_path, weights, tiny_tree, "--members", "all", "--mean", MEAN, "--std", STD)
    assert code == 0, err
    split = json.loads((tmp_path / "mine" / "split.json").read_text())
    assert split["counts"]["val"] == 0 and split["non_members"].startswith("none")
    code, out, err = run_cli(capsys, "forget", tmp_path / "mine", "--method", "finetune", "--forget", "random:5",
                             "--out", tmp_path / "ft", "--set", "method.epochs=1")
    assert code == 0, err
    code, out, err = run_cli(capsys, "audit", tmp_path / "ft", "--no-plots")
    assert_one_line_error(code, err, r"no held-out non-members .*--members all.*no membership attack")


def test_member_ids_file(capsys, tmp_path, tiny_tree, seed_checkpoint):
    weights, _ = seed_checkpoint
    ids = tmp_path / "members.txt"
    from unlearnkit.data import load_dataset

    pool = load_dataset(str(tiny_tree)).train.ids
    ids.write_text("\n".join(pool[:50]) + "\n")
    code, out, err = _import(capsys, tmp_path, weights, tiny_tree, "--members", f"ids:{ids}", "--mean", MEAN, "--std", STD)
    assert code == 0, err
    split = json.loads((tmp_path / "mine" / "split.json").read_text())
    assert sorted(split["train"]) == sorted(pool[:50]) and sorted(split["val"]) == sorted(pool[50:])


@pytest.mark.parametrize("case, pattern", [
    ("other_arch", r"does not fit resnet18 \(width 64\).*'layer1.0.conv1.weight' has shape \(64, 64, 1, 1\) in the checkpoint but \(64, 64, 3, 3\)"),
    ("pickled", r"holds a pickled Python object \(collections.OrderedDict|holds a pickled Python object .*weights_only=True"),
    ("unknown_member", r"member id 'nope' .* is not a training sample"),
    ("no_normaliser", r"input normalisation of .* is unknown; pass --mean and --std.*--normalize fit"),
    ("bad_members", r"--members 'some' is not understood"),
])
def test_bad_input_is_one_line_and_writes_nothing(capsys, tmp_path, tiny_tree, seed_checkpoint, case, pattern):
    weights, original = seed_checkpoint
    norm = ["--mean", MEAN, "--std", STD]
    members = ["--members", "split:0"]
    if case == "other_arch":
        torch.manual_seed(0)
        other = torchvision.models.resnet50(num_classes=10)  # bottleneck blocks: another layout from layer1 on
        other.conv1 = torch.nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        weights = tmp_path / "r50.pth"
        torch.save(other.state_dict(), weights)
    elif case == "pickled":
        weights = tmp_path / "whole.pth"
        torch.save(original, weights)  # the whole module pickled, not a state_dict
        pattern = r"holds a pickled Python object \(torchvision.models.resnet.ResNet\).*weights_only=True"
    elif case == "unknown_member":
        (tmp_path / "ids.txt").write_text("nope\n")
        members = ["--members", f"ids:{tmp_path / 'ids.txt'}"]
    elif case == "no_normaliser":
        norm = []
    elif case == "bad_members":
        members = ["--members", "some"]
    code, out, err = _import(capsys, tmp_path, weights, tiny_tree, *members, *norm)
    assert_one_line_error(code, err, pattern)
    assert not (tmp_path / "mine").exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".mine")]
