import json

import pytest
import torch

from unlearnkit.errors import UnlearnkitError
from unlearnkit.models import create_model
from unlearnkit.runs import atomic_write_json, load_weights, prepare_out_dir, save_model


def test_atomic_write_leaves_old_file_on_failure(tmp_path):
    path = tmp_path / "m.json"
    atomic_write_json(path, {"a": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"a": object()})
    assert json.loads(path.read_text()) == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["m.json"]  # no temp file left behind


def test_weights_round_trip_and_wrong_architecture(tmp_path):
    torch.manual_seed(0)
    model = create_model("resnet18", 10, width=8)
    save_model(model, tmp_path / "w.safetensors")
    again = load_weights(create_model("resnet18", 10, width=8), tmp_path / "w.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))
    with pytest.raises(UnlearnkitError, match="does not fit resnet18 .*another architecture or width"):
        load_weights(create_model("resnet18", 10, width=16), tmp_path / "w.safetensors", "resnet18 (width 16)")
    with pytest.raises(UnlearnkitError, match="does not fit small_cnn.*missing"):
        load_weights(create_model("small_cnn", 10), tmp_path / "w.safetensors", "small_cnn")
    (tmp_path / "bad.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(UnlearnkitError, match="bad.safetensors is not a readable safetensors file"):
        load_weights(model, tmp_path / "bad.safetensors")


def test_out_dir_rules(tmp_path):
    prepare_out_dir(tmp_path / "new", resume=False)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(UnlearnkitError, match="is not empty; choose a new --out, or pass --resume"):
        prepare_out_dir(tmp_path / "full", resume=False)
    with pytest.raises(UnlearnkitError, match="holds no started run"):
        prepare_out_dir(tmp_path / "full", resume=True)
    atomic_write_json(tmp_path / "full" / "config.json", {"train": {"epochs": 3}, "runtime": {}})
    with pytest.raises(UnlearnkitError, match=r"another config \(train.epochs: 3 there, 4 now\)"):
        prepare_out_dir(tmp_path / "full", resume=True, recipe={"train": {"epochs": 4}})


# --------------------------------------------------------------------------- the I/O layer (issue #13)

import errno  # noqa: E402
import os  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import textwrap  # noqa: E402
from pathlib import Path  # noqa: E402

from unlearnkit import files  # noqa: E402
from unlearnkit.files import OutputError, atomic_write_bytes, temp_path  # noqa: E402
from unlearnkit.locks import LOCK_FILE, BusyError, acquire_lock, locked, release_lock, try_lock  # noqa: E402
from unlearnkit.outputs import check_outputs, write_outputs  # noqa: E402
from unlearnkit.runs import RunDir, claim_run_dir  # noqa: E402

SRC = str(Path(files.__file__).resolve().parents[1])


def test_written_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_json(tmp_path / "a.json", {"a": 1})
        save_model(create_model("small_cnn", 10), tmp_path / "m.safetensors")
        from unlearnkit.training.loop import save_checkpoint

        save_checkpoint(tmp_path / "checkpoint.pt", {"epoch": 1})
    finally:
        os.umask(old)
    for name in ("a.json", "m.safetensors", "checkpoint.pt"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "checkpoint.pt", "m.safetensors"]


def test_temp_names_are_unique_per_process_and_call(tmp_path):
    a, b = temp_path(tmp_path / "checkpoint.pt"), temp_path(tmp_path / "checkpoint.pt")
    assert a != b and f"-{os.getpid()}-" in a.name and a.name.startswith(".checkpoint.pt.") and a.name.endswith(".tmp")


def test_failed_write_removes_its_temp_file_and_new_directories(tmp_path, monkeypatch):
    def full(tmp, data):
        Path(tmp).write_bytes(data[:3])  # a partial write, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setattr(files, "_write_file", full)
    with pytest.raises(OutputError, match=r"cannot write .*x\.png.*No space left on device; the disk is full"):
        atomic_write_bytes(tmp_path / "out" / "plots" / "x.png", b"0123456789")
    assert list(tmp_path.iterdir()) == []  # neither the temp file nor the empty plots/ (or out/) stays


def test_non_utf8_and_damaged_run_files_are_named(tmp_path):
    run = RunDir(tmp_path)
    (tmp_path / "run.json").write_bytes(b'{"kind": "orig\xff"}')
    with pytest.raises(UnlearnkitError, match=r"run record .*run.json is not UTF-8 text"):
        run.read_json("run.json", "run record")
    atomic_write_json(tmp_path / "run.json", {"kind": "original", "dataset": {"fingerprint": "abc"}})
    with pytest.raises(UnlearnkitError, match=r"run.json has no 'normalizer.mean'; the run directory is damaged"):
        run.read_json("run.json", "run record")
    atomic_write_json(tmp_path / "run.json", ["not", "an", "object"])
    with pytest.raises(UnlearnkitError, match=r"holds a JSON list, not an object"):
        run.read_json("run.json", "run record")
    atomic_write_json(tmp_path / "run.json", {"kind": "original", "dataset": {"fingerprint": "abc"},
                                              "normalizer": {"mean": [0.5], "std": [0.2]}})
    split = {"dataset_fingerprint": "abc", "seed": 0, "forget_spec": None, "counts": {"train": 2, "val": 1, "forget": 0},
             "train": ["1", "2"], "val": ["3"], "forget": []}
    atomic_write_json(tmp_path / "split.json", split)
    assert run.read_json("split.json") == split
    atomic_write_json(tmp_path / "split.json", {**split, "train": ["1"]})  # an id lost
    with pytest.raises(UnlearnkitError, match=r"lists 1 train ids but counts 2"):
        run.read_json("split.json", "split manifest")
    atomic_write_json(tmp_path / "split.json", {**split, "seed": "zero"})
    with pytest.raises(UnlearnkitError, match=r"'seed' should be an integer"):
        run.read_json("split.json", "split manifest")
    # A damaged fingerprint is the file's fault, not --data's.
    atomic_write_json(tmp_path / "split.json", {**split, "dataset_fingerprint": "abd"})
    with pytest.raises(UnlearnkitError, match=r"names dataset abd…, but its run.json names abc… — one of the two is damaged"):
        run.read_json("split.json", "split manifest")


_HOLDER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {src!r})
    from unlearnkit.locks import acquire_lock
    acquire_lock({out!r})
    print("locked", flush=True)
    time.sleep(120)
""")


def _hold_lock(out: Path) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", _HOLDER.format(src=SRC, out=str(out))], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_is_told_who_holds_the_directory_and_a_dead_holder_blocks_nobody(tmp_path, capsys):
    import threading

    out = tmp_path / "run"
    holder = _hold_lock(out)
    try:
        with pytest.raises(BusyError, match=rf"output directory {out} is in use by pid {holder.pid} on .*since 20"):
            acquire_lock(out)
        assert try_lock(out) is False
        # A second `train` into the same --out stops at once, naming the first (and leaves its directory alone).
        from unlearnkit.cli.main import main

        assert main(["train", "--preset", "digits", "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by pid {holder.pid}" in err[0] and "unlearnkit.runs" not in err[0], err
        assert sorted(p.name for p in out.iterdir()) == [LOCK_FILE]
        # kill -9 in half a second: the kernel drops its lock, so the waiter below gets it.
        threading.Timer(0.5, holder.kill).start()
        acquire_lock(out, wait=True)
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_FILE).exists()  # the killed holder's file was taken over, not in the way
    with locked(out):  # re-entrant within one process
        pass
    assert (out / LOCK_FILE).exists()
    release_lock(out)
    assert not (out / LOCK_FILE).exists()  # released and removed


def test_claim_run_dir_undoes_only_what_it_made(tmp_path):
    new = tmp_path / "new"
    with pytest.raises(RuntimeError):
        with claim_run_dir(new):
            atomic_write_json(new / "config.json", {})
            raise RuntimeError("boom")
    assert not new.exists()  # created here, failed before holding a model: gone
    kept = tmp_path / "kept"
    with pytest.raises(KeyboardInterrupt):
        with claim_run_dir(kept):
            atomic_write_json(kept / "config.json", {})
            (kept / "checkpoint.pt").write_bytes(b"state")
            raise KeyboardInterrupt
    assert sorted(p.name for p in kept.iterdir()) == ["checkpoint.pt", "config.json"]  # resumable: kept
    user = tmp_path / "user"
    user.mkdir()
    (user / "notes.txt").write_text("mine")
    with pytest.raises(RuntimeError):
        with claim_run_dir(user):
            atomic_write_json(user / "config.json", {})
            raise RuntimeError("boom")
    assert (user / "notes.txt").read_text() == "mine"  # a directory that held anything is never touched
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(OutputError, match=r"cannot write .*empty.*No space left"):
        with claim_run_dir(empty):
            atomic_write_json(empty / "config.json", {})
            raise OSError(errno.ENOSPC, "No space left on device")
    assert empty.is_dir() and list(empty.iterdir()) == []  # the user's empty directory stays, emptied


def test_outputs_never_replace_a_file_unlearnkit_did_not_write(tmp_path):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("my own notes")
    with pytest.raises(OutputError, match=r"report.md exists and was not written by unlearnkit"):
        write_outputs(out, {"report.md": "# generated", "plots/a.png": b"png"})
    assert (out / "report.md").read_text() == "my own notes" and not (out / "plots").exists()
    (out / "report.md").unlink()
    write_outputs(out, {"report.md": "# generated", "plots/a.png": b"png"})
    write_outputs(out, {"report.md": "# generated again"})  # ours and unchanged since: replaced
    assert (out / "report.md").read_text() == "# generated again"
    (out / "report.md").write_text("# generated again, edited by hand")
    with pytest.raises(OutputError, match="or was edited since"):
        check_outputs(out, ["report.md"])
    check_outputs(out, ["plots/a.png", "new.html"])


def test_a_failed_output_write_leaves_no_new_file(tmp_path, monkeypatch):
    calls = []
    real = files._write_file

    def second_fails(tmp, data):
        calls.append(tmp)
        if len(calls) == 3:  # manifest, a.md, then b.html fails
            raise OSError(errno.EROFS, "Read-only file system", str(tmp))
        real(tmp, data)

    monkeypatch.setattr(files, "_write_file", second_fails)
    with pytest.raises(OutputError, match=r"b.html: Read-only file system; the file system is read-only"):
        write_outputs(tmp_path / "cmp", {"a.md": "a", "sub/b.html": "b"})
    assert not (tmp_path / "cmp").exists()


def test_a_never_started_run_is_started_over_but_real_content_is_kept(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    atomic_write_json(out / "config.json", {"data": {}, "model": {}, "train": {}})  # killed right after this
    (out / LOCK_FILE).write_text("")  # and its stale lock file
    with pytest.raises(UnlearnkitError, match=r"was stopped before its run was set up \(no split.json\); drop --resume"):
        prepare_out_dir(out, resume=True, recipe={"data": {}, "model": {}, "train": {}})
    prepare_out_dir(out, resume=False)
    assert [p.name for p in out.iterdir()] == [LOCK_FILE]
    atomic_write_json(out / "config.json", {"data": {}, "model": {}, "train": {}})
    (out / "checkpoint.pt").write_bytes(b"epoch 1")
    with pytest.raises(UnlearnkitError, match="is not empty"):
        prepare_out_dir(out, resume=False)


def test_temp_files_of_dead_writers_are_swept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    stale = temp_path(tmp_path / "run.json").name.replace(f"-{os.getpid()}-", f"-{int(dead.stdout)}-")
    (tmp_path / stale).write_bytes(b"half")  # left by a writer killed mid-write
    alive = temp_path(tmp_path / "log.jsonl")
    alive.write_bytes(b"being written")  # ours, in flight
    (tmp_path / ".user.tmp").write_bytes(b"not our name")
    atomic_write_json(tmp_path / "run.json", {})
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([".user.tmp", alive.name, "run.json"])
