"""Bad input through the command line: one line on stderr, exit status 2, nothing written."""

import json
import subprocess
import sys

import pytest

from helpers import assert_one_line_error, run_cli


@pytest.mark.parametrize(
    "args, pattern",
    [
        (["--preset", "nope"], "unknown preset 'nope'"),
        (["--set", "train.epoch=2"], "unknown setting 'train.epoch'"),
        (["--set", "train.epochs=two"], "train.epochs expects an integer"),
        (["--data", "/no/such/dir"], "/no/such/dir"),
        (["--preset", "cifar10-cpu"], "needs a dataset: pass --data"),
        (["--resume"], "holds no started run"),
        # Issue #13: each reached a traceback (or a diverging run) before the declared ranges.
        (["--set", "train.lr=inf"], "train.lr=inf is out of range: it must be a finite number"),
        (["--set", "train.lr=1e4"], r"train.lr=10000.0 is out of range: it must be in \(0, 10\]"),
        (["--set", "train.momentum=nan"], "train.momentum=nan is out of range: it must be a finite number"),
        (["--set", "train.weight_decay=nan"], "train.weight_decay=nan is out of range: it must be a finite number"),
        (["--set", "train.label_smoothing=2"], r"train.label_smoothing=2.0 is out of range: it must be in \[0, 1\)"),
        (["--seed", "-1"], "seed=-1 is out of range"),
    ],
)
def test_train_bad_input(capsys, tmp_path, args, pattern):
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", str(out), *args)
    assert_one_line_error(code, err, pattern)
    assert not out.exists()


def test_a_diverging_training_is_one_line_naming_the_setting_and_leaves_nothing(capsys, tmp_path, cache_dir):
    # In range, but lr * weight_decay = 10 with momentum 0.99 blows the weights up within an epoch.
    out = tmp_path / "run"
    code, _, err = run_cli(capsys, "train", "--out", out, "--set", "train.epochs=1", "--set", "train.lr=10",
                           "--set", "train.momentum=0.99", "--set", "train.weight_decay=1", "--set", "train.schedule=constant")
    assert_one_line_error(code, err, r"training diverged \(loss became nan.*\) with train.lr=10; lower train.lr .* was removed")
    assert not out.exists()


def test_train_writes_a_complete_run_directory_and_refuses_mismatched_resume(capsys, digits_run, tmp_path):
    files = {p.name for p in digits_run.iterdir()}
    assert {"config.json", "run.json", "split.json", "log.jsonl", "metrics.json", "model.safetensors"} <= files
    assert "checkpoint.pt" not in files
    info = json.loads((digits_run / "run.json").read_text())
    assert info["status"] == "finished" and len(info["dataset"]["fingerprint"]) == 64
    assert {"torch", "numpy", "unlearnkit"} <= set(info["environment"]["packages"])
    assert "git_commit" in info["environment"]
    metrics = json.loads((digits_run / "metrics.json").read_text())
    assert metrics["test_acc"] > 90
    code, _, err = run_cli(capsys, "train", "--out", str(digits_run), "--resume")
    assert_one_line_error(code, err, "another config|already finished")

    # A started run resumed with another recipe is refused before anything is touched.
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "config.json").write_text((digits_run / "config.json").read_text())
    code, _, err = run_cli(capsys, "train", "--out", str(partial), "--resume", "--set", "train.epochs=3")
    assert_one_line_error(code, err, r"another config \(train.epochs: 8 there, 3 now\)")


def test_forget_bad_input(capsys, digits_run, tmp_path):
    out = tmp_path / "u"
    cases = [
        (["--method", "forgetall"], "unknown method 'forgetall'.*retrain"),
        (["--method", "finetune", "--set", "method.lrr=1"], "no hyperparameter 'lrr'.*lr"),
        (["--method", "finetune", "--set", "method.lr=fast"], "method.lr expects a number"),
    ]
    for extra, pattern in cases[:3]:
        code, _, err = run_cli(capsys, "forget", str(digits_run), "--forget", "random:10", "--out", str(out), *extra)
        assert_one_line_error(code, err, pattern)
        assert not out.exists()
    for spec, pattern in [("class:elephant", "unknown class 'elephant'"), ("random:0", "selects no training sample"),
                          ("class:0,1,2,3,4,5,6,7,8,9", "whole training set")]:
        code, _, err = run_cli(capsys, "forget", str(digits_run), "--method", "finetune", "--forget", spec, "--out", str(out))
        assert_one_line_error(code, err, pattern)
        assert not out.exists()
    code, _, err = run_cli(capsys, "forget", str(tmp_path / "missing"), "--method", "finetune", "--forget", "random:5", "--out", str(out))
    assert_one_line_error(code, err, "run directory .*missing does not exist")
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    for name in ("config.json", "run.json", "split.json"):
        (unfinished / name).write_text((digits_run / name).read_text())
    code, _, err = run_cli(capsys, "forget", str(unfinished), "--method", "finetune", "--forget", "random:5", "--out", str(out))
    assert_one_line_error(code, err, "has no finished model")
    assert not out.exists()


def test_forget_writes_an_unlearned_run_and_leaves_the_original_untouched(capsys, digits_run, tmp_path):
    before = {p.name: p.read_bytes() for p in digits_run.iterdir()}
    out = tmp_path / "ft"
    code, stdout, _ = run_cli(capsys, "forget", str(digits_run), "--method", "finetune", "--forget", "class:3", "--out", str(out))
    assert code == 0 and "run directory" in stdout
    info = json.loads((out / "run.json").read_text())
    assert info["kind"] == "unlearned" and info["method"] == "finetune" and info["forget_spec"] == "class:3"
    assert info["parent"] == str(digits_run.resolve())
    metrics = json.loads((out / "metrics.json").read_text())
    assert {"retain_acc", "forget_acc", "test_acc", "unlearn_seconds", "peak_memory_mb"} <= set(metrics)
    split = json.loads((out / "split.json").read_text())
    assert split["forget_spec"] == "class:3" and len(split["forget"]) == split["counts"]["forget"] > 0
    assert before == {p.name: p.read_bytes() for p in digits_run.iterdir()}


def test_listing_commands(capsys):
    for argv, needle in [(["presets"], "cifar10-cpu"), (["presets", "digits"], "train.epochs"), (["methods"], "retrain")]:
        code, out, _ = run_cli(capsys, *argv)
        assert code == 0 and needle in out


def test_console_script_reports_errors_with_exit_status_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "unlearnkit", "train", "--preset", "nope", "--out", str(tmp_path / "x")],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and proc.stderr.strip() == "error: unknown preset 'nope'; choose one of: digits, cifar10-cpu, cifar100-cpu, cifar10-resnet18, cifar10-salun (see `unlearnkit presets`)"


def test_a_relative_data_path_is_recorded_absolute_so_later_commands_work_anywhere(capsys, tmp_path, monkeypatch, cache_dir):
    import numpy as np
    from PIL import Image

    root = tmp_path / "work" / "imgs"
    for split, n in (("train", 12), ("test", 4)):
        for c in ("a", "b"):
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                Image.fromarray(np.full((8, 8, 3), 40 * i % 255, np.uint8)).save(root / split / c / f"{i}.png")
    monkeypatch.chdir(tmp_path / "work")
    code, _, err = run_cli(capsys, "train", "--data", "imgs", "--out", "run", "--set", "model.width=4", "--set", "train.epochs=1")
    assert code == 0, err
    cfg = json.loads((tmp_path / "work" / "run" / "config.json").read_text())
    assert cfg["data"]["source"] == str(root)
    monkeypatch.chdir(tmp_path)  # elsewhere: the run still finds its data
    code, _, err = run_cli(capsys, "forget", "work/run", "--method", "finetune", "--forget", "random:2", "--out", "ft")
    assert code == 0, err


def test_tables_print_data_verbatim_no_markup_or_emoji_codes(capsys):
    # A forget spec like class:cat:0.5 holds the emoji code ":cat:", and a path may hold "[red]":
    # printed as data, both must come out exactly as given.
    from unlearnkit.tables import console, print_mapping

    print_mapping("finetune on class:cat:0.5", {"run_dir": "runs/[red]x", "forget": "class:cat:0.5"})
    console.print("forget class:dog:0.1 in runs/[bold]y")
    out = capsys.readouterr().out
    assert out.count("class:cat:0.5") == 2 and "runs/[red]x" in out and "class:dog:0.1 in runs/[bold]y" in out
