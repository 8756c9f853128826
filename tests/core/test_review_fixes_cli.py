"""Review fixes in the import / run-directory / CLI layer: recipe scope, lineage, resume precision,
locks and output paths, device checks, checkpoint contents. Each test failed before its fix."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from helpers import assert_one_line_error, run_cli
from unlearnkit.config import PRESETS, RuntimeConfig, resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.locks import LOCK_FILE
from unlearnkit.models import create_model
from unlearnkit.training.pipeline import train
from unlearnkit.training.runtime import Runtime

NORM = ["--mean", "0.3058", "--std", "0.3762"]  # any valid normalisation: these tests compare runs with each other


def _import(capsys, weights, out, *extra, arch="small_cnn", members="split:0"):
    return run_cli(capsys, "import", "--weights", weights, "--arch", arch, "--data", "digits",
                   "--members", members, "--out", out, *extra)


def _metrics(run_dir: Path) -> dict:
    return json.loads((run_dir / "metrics.json").read_text())


def _config(run_dir: Path) -> dict:
    return json.loads((run_dir / "config.json").read_text())


@pytest.fixture(scope="module")
def digits_state(digits_run) -> dict:
    return load_file(str(digits_run / "model.safetensors"))


def _nothing_written(tmp_path: Path, name: str) -> None:
    assert not (tmp_path / name).exists()
    assert not [p for p in os.listdir(tmp_path) if p.startswith(f".{name}")]


# --------------------------------------------------------------------------- bug 1: recipe scope


def test_recipe_gives_train_data_and_precision_not_the_presets_model_options(capsys, tmp_path, digits_run):
    # cifar10-cpu sets model.flip_tta=true (not applied to this checkpoint) and runtime.precision=bf16
    # (taken: the recipe's precision changes what an exact retrain trains).
    code, out, err = _import(capsys, digits_run / "model.safetensors", tmp_path / "imp", "--recipe", "cifar10-cpu")
    assert code == 0, err
    cfg = _config(tmp_path / "imp")
    assert cfg["model"] == {"name": "small_cnn", "width": 32, "flip_tta": False}
    assert cfg["runtime"]["precision"] == resolve_config("cifar10-cpu").runtime.precision == "bf16"
    assert cfg["train"] == resolve_config("cifar10-cpu").to_dict()["train"]
    assert cfg["preset"] == "cifar10-cpu"
    assert _metrics(tmp_path / "imp")["test_acc"] == _metrics(digits_run)["test_acc"]  # evaluated as trained


def test_flip_tta_only_when_asked_and_only_where_the_model_has_it(capsys, tmp_path):
    torch.manual_seed(0)
    weights = tmp_path / "rn.pt"
    torch.save(create_model("resnet18", 10, in_channels=1, width=4).state_dict(), weights)
    assert PRESETS["cifar10-resnet18"].overrides["model.flip_tta"] is True
    code, out, err = _import(capsys, weights, tmp_path / "plain", "--arch", "resnet18", *NORM, "--recipe", "cifar10-resnet18",
                             arch="resnet18")
    assert code == 0, err
    assert _config(tmp_path / "plain")["model"] == {"name": "resnet18", "width": 4, "flip_tta": False}
    code, out, err = _import(capsys, weights, tmp_path / "tta", *NORM, "--recipe", "cifar10-resnet18",
                             "--set", "model.flip_tta=true", arch="resnet18")
    assert code == 0, err
    assert _config(tmp_path / "tta")["model"]["flip_tta"] is True
    # small_cnn has no flip_tta option: refused up front with one line, nothing written.
    small = tmp_path / "small.pt"
    torch.save(create_model("small_cnn", 10, in_channels=1, width=8).state_dict(), small)
    code, out, err = _import(capsys, small, tmp_path / "bad", *NORM, "--set", "model.flip_tta=true")
    assert_one_line_error(code, err, r"model.flip_tta=true: small_cnn has no flip test-time augmentation")
    _nothing_written(tmp_path, "bad")


# --------------------------------------------------------------------------- bug 2: lineage


def test_exact_retrain_follows_the_recipe_of_the_lineages_import(capsys, tmp_path, digits_run):
    weights = digits_run / "model.safetensors"
    for name, recipe in (("bare", []), ("declared", ["--recipe", "digits", "--set", "train.epochs=1"])):
        code, out, err = _import(capsys, weights, tmp_path / name, *recipe)
        assert code == 0, err
        code, out, err = run_cli(capsys, "forget", tmp_path / name, "--method", "finetune", "--forget", "random:20",
                                 "--out", tmp_path / f"{name}-ft", "--set", "method.epochs=1")
        assert code == 0, err
    # A run unlearned from an import without a recipe carries the import's invented defaults: refused.
    code, out, err = run_cli(capsys, "forget", tmp_path / "bare-ft", "--method", "retrain", "--forget", "class:3",
                             "--out", tmp_path / "rt")
    assert_one_line_error(code, err, r"run .*bare-ft descends from .*bare, which was imported without its training recipe.*--recipe PRESET")
    _nothing_written(tmp_path, "rt")
    code, out, err = run_cli(capsys, "refs", "build", tmp_path / "bare-ft", "--k", "2")
    assert_one_line_error(code, err, r"descends from .*imported without its training recipe")
    assert not (tmp_path / "bare-ft" / "refs").exists()
    # With a declared recipe the descendant retrains as before.
    code, out, err = run_cli(capsys, "forget", tmp_path / "declared-ft", "--method", "retrain", "--forget", "class:3",
                             "--out", tmp_path / "rt")
    assert code == 0, err
    # The import's record is carried down, so the refusal holds once the root has gone.
    assert json.loads((tmp_path / "bare-ft" / "run.json").read_text())["imported"]["recipe"] is None
    shutil.rmtree(tmp_path / "bare")
    code, out, err = run_cli(capsys, "forget", tmp_path / "bare-ft", "--method", "retrain", "--forget", "class:3",
                             "--out", tmp_path / "rt2")
    assert_one_line_error(code, err, r"descends from .*bare, which was imported without its training recipe")


# --------------------------------------------------------------------------- bug 3: resume precision


def test_resume_under_another_precision_is_refused_naming_the_key(tmp_path, cache_dir):
    out = tmp_path / "run"
    train(resolve_config("digits", {"train.epochs": 1, "runtime.precision": "fp32"}), out)
    # As if killed before its end: resumable, not finished.
    (out / "metrics.json").unlink()
    (out / "model.safetensors").unlink()
    before = (out / "config.json").read_text()
    with pytest.raises(UnlearnkitError, match=r"another config \(runtime.precision: 'fp32' there, 'bf16' now\)") as err:
        train(resolve_config("digits", {"train.epochs": 1, "runtime.precision": "bf16"}), out, resume=True)
    assert "\n" not in str(err.value)
    assert (out / "config.json").read_text() == before
    # Device and memory format change speed only: still free on resume.
    train(resolve_config("digits", {"train.epochs": 1, "runtime.precision": "fp32", "runtime.channels_last": False}),
          out, resume=True)
    assert json.loads((out / "config.json").read_text())["runtime"]["precision"] == "fp32"


# --------------------------------------------------------------------------- bugs 7, 8, 13: output directory


def test_import_takes_over_a_stale_lock_and_stops_at_a_live_one(capsys, tmp_path, digits_run):
    stale = tmp_path / "stale"
    stale.mkdir()
    (stale / LOCK_FILE).write_text('{"pid": 1, "host": "gone", "command": "unlearnkit import", "since": "then"}')
    code, out, err = _import(capsys, digits_run / "model.safetensors", stale)
    assert code == 0, err
    assert sorted(p.name for p in stale.iterdir()) == ["config.json", "metrics.json", "model.safetensors", "run.json", "split.json"]

    busy = tmp_path / "busy"
    busy.mkdir()
    holder = subprocess.Popen(  # holds the directory's flock as another unlearnkit command would
        [sys.executable, "-c", "import fcntl, os, sys, time\n"
         f"fd = os.open({str(busy / LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
         "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('held', flush=True)\ntime.sleep(60)\n"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        code, out, err = _import(capsys, digits_run / "model.safetensors", busy)
        assert_one_line_error(code, err, r"output directory .*busy is in use by .*choose another --out")
        assert [p.name for p in busy.iterdir()] == [LOCK_FILE]
    finally:
        holder.kill()
        holder.wait()


def test_import_into_a_non_empty_directory_does_not_suggest_resume(capsys, tmp_path, digits_run):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    code, out, err = _import(capsys, digits_run / "model.safetensors", tmp_path / "full")
    assert_one_line_error(code, err, r"output directory .*full is not empty; choose a new or empty --out")
    assert "--resume" not in err
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]


@pytest.mark.parametrize("target", ["file", "file/run"])
def test_out_that_is_or_lies_under_a_file_is_one_line_for_import_and_tune(capsys, tmp_path, digits_run, target):
    (tmp_path / "file").write_text("a file")
    out = tmp_path / target
    code, _, err = _import(capsys, digits_run / "model.safetensors", out)
    assert_one_line_error(code, err, r"output .*file.* (exists and is not a directory|is a file, not a directory); choose another --out")
    code, _, err = run_cli(capsys, "tune", "--method", "finetune", "--forget", "random", "--trials", "1", "--sets", "1",
                           "--out", out)
    assert_one_line_error(code, err, r"output .*file.* (exists and is not a directory|is a file, not a directory); choose another --out")
    assert (tmp_path / "file").read_text() == "a file"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # no tune-store beside it either


# --------------------------------------------------------------------------- bug 9: devices


@pytest.mark.parametrize("device", ["cuda:x", "cuda:", "cuda:-1", "gpu"])
def test_misspelt_devices_are_refused_by_the_config(device):
    with pytest.raises(UnlearnkitError, match=r"runtime.device=.* is not valid; use auto, cpu, cuda, cuda:N"):
        resolve_config("digits", [f"runtime.device={device}"])
    with pytest.raises(UnlearnkitError, match=r"runtime.device=.* is not valid"):
        Runtime.from_config(RuntimeConfig(device=device))  # made without validate (the plain API does)


def test_absent_devices_are_one_line_errors(monkeypatch):
    if not (torch.backends.mps.is_available()):
        with pytest.raises(UnlearnkitError, match=r"runtime.device='mps' but MPS .* is not available here"):
            Runtime.from_config(RuntimeConfig(device="mps"))
    # A machine with one GPU: cuda:0 is fine, cuda:1 is named as absent before anything runs.
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.backends.cudnn, "benchmark", torch.backends.cudnn.benchmark)
    monkeypatch.setattr(torch.backends.cuda.matmul, "allow_tf32", torch.backends.cuda.matmul.allow_tf32)
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", torch.backends.cudnn.allow_tf32)
    assert Runtime.from_config(RuntimeConfig(device="cuda:0")).device == torch.device("cuda:0")
    with pytest.raises(UnlearnkitError, match=r"runtime.device='cuda:1' but this machine has 1 CUDA device\(s\) \(cuda:0 to cuda:0\)"):
        Runtime.from_config(RuntimeConfig(device="cuda:1"))


@pytest.mark.skipif(torch.backends.mps.is_available(), reason="this machine has MPS")
def test_train_on_an_absent_device_writes_nothing(capsys, tmp_path, cache_dir):
    code, out, err = run_cli(capsys, "train", "--out", tmp_path / "run", "--set", "runtime.device=mps", "--set", "train.epochs=1")
    assert_one_line_error(code, err, r"runtime.device='mps' but MPS .* use --set runtime.device=cpu")
    _nothing_written(tmp_path, "run")


# --------------------------------------------------------------------------- bug 12 (+ wrappers): checkpoint contents


@pytest.mark.parametrize("case, pattern", [
    ("nan", r"checkpoint .*nan.pt: '0.weight' holds NaN or infinite values"),
    ("inf", r"checkpoint .*inf.pt: '12.bias' holds NaN or infinite values"),
    ("int", r"checkpoint .*int.pt: '0.weight' is int64, but the model's is floating point"),
    ("garbage", r"checkpoint .*garbage.pt is not a readable PyTorch checkpoint \(Unsupported operand"),
])
def test_broken_checkpoints_are_refused_naming_the_key(capsys, tmp_path, digits_state, case, pattern):
    weights = tmp_path / f"{case}.pt"
    state = {k: v.clone() for k, v in digits_state.items()}
    if case == "nan":
        state["0.weight"][0] = float("nan")
    elif case == "inf":
        state["12.bias"][3] = float("inf")
    elif case == "int":
        state = {k: (v.long() if v.is_floating_point() else v) for k, v in state.items()}
    if case == "garbage":
        weights.write_bytes(b"not a torch file")
    else:
        torch.save(state, weights)
    code, out, err = _import(capsys, weights, tmp_path / "imp", *NORM)
    assert_one_line_error(code, err, pattern)
    assert "pickled" not in err
    _nothing_written(tmp_path, "imp")


@pytest.mark.parametrize("case", ["no_batch_counters", "compiled", "compiled_data_parallel", "config_under_model"])
def test_checkpoint_layouts_that_load_as_the_same_model(capsys, tmp_path, digits_run, digits_state, case):
    state = dict(digits_state)
    if case == "no_batch_counters":
        obj = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    elif case == "compiled":
        obj = {f"_orig_mod.{k}": v for k, v in state.items()}
    elif case == "compiled_data_parallel":
        obj = {f"module._orig_mod.{k}": v for k, v in state.items()}
    else:  # a training script's wrapper with the model's config under "model": the tensors are elsewhere
        obj = {"model": {"arch": "small_cnn"}, "model_state_dict": state}
    weights = tmp_path / f"{case}.pt"
    torch.save(obj, weights)
    code, out, err = _import(capsys, weights, tmp_path / "imp", *NORM)
    assert code == 0, err
    saved = load_file(str(tmp_path / "imp" / "model.safetensors"))
    for key, value in state.items():
        expected = torch.zeros_like(value) if case == "no_batch_counters" and key.endswith("num_batches_tracked") else value
        assert torch.equal(saved[key], expected), key
