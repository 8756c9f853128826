"""Fault injection: a full disk (ENOSPC) at every write of `train` and `forget`, and a read-only --out.

Every atomic write of a run (JSON files, the log, checkpoints, safetensors weights) goes through
`files._write_temp` (write the temp file) and `files._rename` (put it in place). Making the k-th
call fail, for every k of a clean run, must always give: exit status 2 and one `error:` line
naming a path; no temp file anywhere; and no half run directory — the output is either gone or
a run that `--resume` continues, to the very same weights as a run that never failed.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from helpers import assert_one_line_error, run_cli

from unlearnkit import files

TRAIN = ["train", "--preset", "digits", "--set", "train.epochs=2"]


class Faults:
    """Count calls of files._write_temp / files._rename; make call number `fail_at` of `stage` fail."""

    def __init__(self, monkeypatch, stage: str | None = None, fail_at: int = 0):
        self.calls = {"write": 0, "rename": 0}
        self.stage, self.fail_at = stage, fail_at
        real_write, real_rename = files._write_temp, files._rename

        def write(writer, tmp):
            if self._hit("write"):
                Path(tmp).write_bytes(b"partial")  # the disk filled up mid-file
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
            real_write(writer, tmp)

        def rename(tmp, path):
            if self._hit("rename"):
                raise OSError(errno.ENOSPC, "No space left on device", str(tmp))
            real_rename(tmp, path)

        monkeypatch.setattr(files, "_write_temp", write)
        monkeypatch.setattr(files, "_rename", rename)

    def _hit(self, stage: str) -> bool:
        self.calls[stage] += 1
        return stage == self.stage and self.calls[stage] == self.fail_at


def _temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp")]


def _assert_no_half_run(out: Path) -> bool:
    """The output is gone, or holds a resumable run with work in it. Returns whether it is there."""
    if not out.exists():
        return False
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "split.json", "run.json"} <= names, names
    assert names & {"checkpoint.pt", "model.safetensors"}, names
    return True


@pytest.fixture(scope="module")
def clean(tmp_path_factory, cache_dir):
    """One uninterrupted train and forget, and how many writes and renames each made."""
    from unlearnkit.cli.main import main

    root = tmp_path_factory.mktemp("clean")
    mp = pytest.MonkeyPatch()
    f = Faults(mp)
    assert main([*TRAIN, "--out", str(root / "base")]) == 0
    train_calls = dict(f.calls)
    f.calls = {"write": 0, "rename": 0}
    assert main(["forget", str(root / "base"), "--method", "finetune", "--forget", "random:0.1", "--out", str(root / "ft")]) == 0
    forget_calls = dict(f.calls)
    mp.undo()
    return root, train_calls, forget_calls


def _error_names_path(err: str, root: Path) -> None:
    assert_one_line_error(2, err, rf"cannot write {root}\S*: No space left on device; the disk is full")


@pytest.mark.parametrize("stage", ["write", "rename"])
def test_train_survives_a_full_disk_at_every_write(clean, tmp_path, monkeypatch, capsys, stage):
    root, calls, _ = clean
    assert calls["write"] >= 8  # start files, a checkpoint and a log per epoch, weights, final records
    for k in range(1, calls[stage] + 1):
        out = tmp_path / f"k{k}"
        with pytest.MonkeyPatch.context() as mp:
            Faults(mp, stage, k)
            code, _, err = run_cli(capsys, *TRAIN, "--out", out)
        assert code == 2, (k, err)
        _error_names_path(err, out)
        assert not _temp_files(tmp_path), k
        if _assert_no_half_run(out):
            code, _, err = run_cli(capsys, *TRAIN, "--resume", "--out", out)
            assert code == 0, (k, err)
            assert (out / "model.safetensors").read_bytes() == (root / "base" / "model.safetensors").read_bytes(), k
            assert not (out / "checkpoint.pt").exists()
    assert not _temp_files(tmp_path)


@pytest.mark.parametrize("stage", ["write", "rename"])
def test_forget_survives_a_full_disk_at_every_write(clean, tmp_path, capsys, stage):
    root, _, calls = clean
    for k in range(1, calls[stage] + 1):
        out = tmp_path / f"k{k}"
        argv = ["forget", root / "base", "--method", "finetune", "--forget", "random:0.1", "--out", out]
        with pytest.MonkeyPatch.context() as mp:
            Faults(mp, stage, k)
            code, _, err = run_cli(capsys, *argv)
        assert code == 2, (k, err)
        _error_names_path(err, out)
        assert not _temp_files(tmp_path) and not _temp_files(root), k
        if _assert_no_half_run(out):
            code, _, err = run_cli(capsys, *argv, "--resume")
            assert code == 0, (k, err)
            assert (out / "model.safetensors").read_bytes() == (root / "ft" / "model.safetensors").read_bytes(), k


def _read_only(monkeypatch, ro: Path) -> None:
    """Make every write under `ro` fail as on a read-only mount (tests run as root: chmod stops nothing)."""
    real_mkdir, real_open = os.mkdir, os.open
    writes = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def under(path) -> bool:
        return str(Path(path).absolute()).startswith(str(ro))

    def mkdir(path, *a, **k):
        if under(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *a, **k)

    def open_(path, flags, *a, **k):
        if flags & writes and under(path):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_open(path, flags, *a, **k)

    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


@pytest.mark.parametrize("target", ["ro/new", "ro"])
def test_a_read_only_out_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys, cache_dir, target):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    code, _, err = run_cli(capsys, *TRAIN, "--out", tmp_path / target)
    assert_one_line_error(code, err, rf"cannot write {ro}\S*: Read-only file system; the file system is read-only: choose a writable --out")
    assert list(ro.iterdir()) == []


def test_a_read_only_bench_folder_is_one_line(tmp_path, monkeypatch, capsys, cache_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    code, _, err = run_cli(capsys, "bench", "--methods", "finetune", "--set", "train.epochs=1", "--out", ro / "bench")
    assert_one_line_error(code, err, rf"cannot write {ro}/bench\S*: Read-only file system")
    assert list(ro.iterdir()) == []


@pytest.mark.skipif(hasattr(os, "geteuid") and os.geteuid() == 0, reason="root writes through chmod 0555; the monkeypatched read-only tests above cover this")
def test_a_chmod_read_only_out(tmp_path, capsys, cache_dir):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code, _, err = run_cli(capsys, *TRAIN, "--out", ro / "new")
        assert_one_line_error(code, err, rf"cannot write {ro}/new\S*: Permission denied")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)
