"""`unlearnkit audit` / `compare` / `refs` through the CLI entry: a summary on success; on bad input
exit status 2, exactly one `error: ...` line, and no audit.json or report written."""

import json
import re
import shutil
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file, save_file

from unlearnkit.methods import forget_run
from helpers import assert_one_line_error, run_cli

OUTPUTS = ("audit.json", "report.md", "report.html", "audit_plots")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def runs(digits_run, tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("cli")
    forget_run(digits_run, "finetune", "random:0.1", base / "ft")
    forget_run(digits_run, "retrain", "random:0.1", base / "rt")
    return SimpleNamespace(base=base, ft=base / "ft", rt=base / "rt", orig=digits_run)


def assert_nothing_written(run_dir):
    present = [name for name in OUTPUTS if (run_dir / name).exists()]
    assert not present, f"{run_dir} has {present} after a failed audit"


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*OUTPUTS))
    return dst


def edit_json(path, fn):
    data = json.loads(path.read_text())
    fn(data)
    path.write_text(json.dumps(data))


def test_audit_prints_a_summary(runs, capsys, tmp_path):
    target = copy_run(runs.ft, tmp_path / "ft")
    code, out, err = run_cli(capsys, "audit", target, "--reference", runs.rt, "--no-plots")
    assert code == 0, err
    assert "UA % (100 - forget acc)" in out and "MIA-efficacy %" in out and "seed attack FNR on forget" in out
    assert "verdict: finetune on random:0.1: average gap to retraining" in out
    assert "original" in out and "retrained" in out and "gap" in out
    for name in ("audit.json", "report.md", "report.html"):
        assert (target / name).is_file()
    assert not (target / "audit_plots").exists()  # --no-plots

    alone = copy_run(runs.ft, tmp_path / "alone")  # no reference, no original: the tables still work
    code, out, err = run_cli(capsys, "audit", alone, "--no-original", "--no-plots")
    assert code == 0, err
    assert "no reference run" in out and "original" not in out.split("verdict:")[0]
    audit_json = json.loads((alone / "audit.json").read_text())
    assert audit_json["original"] is None and audit_json["against_retraining"] is None
    assert "## Against retraining" not in (alone / "report.md").read_text()


def test_audit_run_without_model_or_split(runs, capsys, tmp_path):
    no_model = copy_run(runs.ft, tmp_path / "no-model")
    (no_model / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "audit", no_model)
    assert_one_line_error(code, err, "has no finished model")
    assert_nothing_written(no_model)

    no_split = copy_run(runs.ft, tmp_path / "no-split")
    (no_split / "split.json").unlink()
    code, _, err = run_cli(capsys, "audit", no_split)
    assert_one_line_error(code, err, r"split manifest .*split\.json does not exist")
    assert_nothing_written(no_split)

    code, _, err = run_cli(capsys, "audit", tmp_path / "missing")
    assert_one_line_error(code, err, "does not exist")

    code, _, err = run_cli(capsys, "audit", runs.orig)
    assert_one_line_error(code, err, "has no forget set .*audit an unlearned run")
    assert_nothing_written(runs.orig)

    bad_ref = copy_run(runs.rt, tmp_path / "ref-no-model")
    (bad_ref / "model.safetensors").unlink()
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", bad_ref)
    assert_one_line_error(code, err, "reference run .*ref-no-model has no finished model")
    assert_nothing_written(runs.ft)


def test_reference_or_original_from_other_data_or_split(runs, capsys, tmp_path):
    other_data = copy_run(runs.rt, tmp_path / "other-data")
    edit_json(other_data / "run.json", lambda d: d["dataset"].update(fingerprint="0" * 64))
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", other_data)
    assert_one_line_error(code, err, r"reference run .*other-data was trained on another dataset \(fingerprint 000000000000")

    def swap_forget(d):  # forget one other member instead of the last forgotten one
        spare = next(i for i in d["train"] if i not in set(d["forget"]))
        d["forget"] = sorted(d["forget"][:-1] + [spare])

    other_forget = copy_run(runs.rt, tmp_path / "other-forget")
    edit_json(other_forget / "split.json", swap_forget)
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", other_forget)
    assert_one_line_error(code, err, "reference run .*other-forget forgot another set \\(split.json forget: .*retrain with the same --forget")

    def swap_val(d):
        d["val"], d["train"] = sorted(d["val"][1:] + d["train"][:1]), sorted(d["train"][1:] + d["val"][:1])

    other_split = copy_run(runs.rt, tmp_path / "other-split")
    edit_json(other_split / "split.json", swap_val)
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", other_split)
    assert_one_line_error(code, err, r"reference run .*other-split has another split \(members \(train\) set differs")

    other_orig = copy_run(runs.orig, tmp_path / "other-orig")
    edit_json(other_orig / "run.json", lambda d: d["dataset"].update(fingerprint="1" * 64))
    code, _, err = run_cli(capsys, "audit", runs.ft, "--original", other_orig)
    assert_one_line_error(code, err, "original run .*other-orig was trained on another dataset")

    code, _, err = run_cli(capsys, "audit", runs.ft, "--original", runs.orig, "--no-original")
    assert_one_line_error(code, err, "contradict")
    assert_nothing_written(runs.ft)


def _poison(run_dir):
    state = load_file(str(run_dir / "model.safetensors"))
    save_file({k: torch.full_like(v, float("nan")) if v.is_floating_point() else v for k, v in state.items()},
              str(run_dir / "model.safetensors"))


def test_nan_outputs_name_the_run(runs, capsys, tmp_path):
    broken = copy_run(runs.ft, tmp_path / "broken")
    _poison(broken)
    code, _, err = run_cli(capsys, "audit", broken)
    assert_one_line_error(code, err, rf"outputs of the unlearned model \(run {re.escape(str(broken))}\) contain NaN")
    assert_nothing_written(broken)

    broken_ref = copy_run(runs.rt, tmp_path / "broken-ref")
    _poison(broken_ref)
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", broken_ref)
    assert_one_line_error(code, err, rf"the retrained model \(run {re.escape(str(broken_ref))}\) contain NaN")
    assert_nothing_written(runs.ft)


def test_compare_and_refs_bad_input(runs, capsys, tmp_path):
    code, _, err = run_cli(capsys, "compare", tmp_path / "nope")
    assert_one_line_error(code, err, "does not exist")
    code, _, err = run_cli(capsys, "compare", runs.ft, runs.rt, "--score")
    assert_one_line_error(code, err, "--score needs at least 3 retrain runs .*got 1 retrain run\\(s\\) and finetune: 1")
    code, _, err = run_cli(capsys, "compare", runs.ft, runs.orig, "--score")
    assert_one_line_error(code, err, "is not an unlearned run")
    code, _, err = run_cli(capsys, "refs", "build", tmp_path / "nope", "--k", "2")
    assert_one_line_error(code, err, "does not exist")
    code, out, err = run_cli(capsys, "compare", runs.ft, runs.rt)
    assert code == 0 and "2 run(s)" in out and "not audited" in out


def test_reference_must_be_an_exact_retrain_of_the_same_original_and_forget_set(runs, capsys, tmp_path):
    fix = "make one with `unlearnkit forget .* --method retrain --forget random:0.1 --out DIR`"
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", runs.ft)  # a method run as its own reference
    assert_one_line_error(code, err, f"reference run .*ft is not an exact retrain \\(run.json exact: False, method 'finetune'\\); {fix}")

    method_run = copy_run(runs.ft, tmp_path / "finetune-copy")  # same original and forget set, but not a retrain
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", method_run)
    assert_one_line_error(code, err, f"finetune-copy is not an exact retrain \\(run.json exact: False, method 'finetune'\\); {fix}")

    unrecorded = copy_run(runs.rt, tmp_path / "no-exact")  # a run.json without the field is not taken on trust
    edit_json(unrecorded / "run.json", lambda d: d.pop("exact"))
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", unrecorded)
    assert_one_line_error(code, err, "no-exact is not an exact retrain \\(run.json exact: None")

    other_parent = copy_run(runs.rt, tmp_path / "other-parent")  # another original: another path and model
    edit_json(other_parent / "run.json", lambda d: d.update(parent=str(tmp_path / "another-original"),
                                                            parent_model_sha256="0" * 64))
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", other_parent)
    assert_one_line_error(code, err, "other-parent was retrained from another original \\(run.json parent: .*another-original\\)")
    assert_nothing_written(runs.ft)

    # The same original moved: a bench store copied to another folder or machine records the old
    # paths, and the model hashes say the runs still belong together.
    moved = copy_run(runs.rt, tmp_path / "moved-store-retrain")
    edit_json(moved / "run.json", lambda d: d.update(parent=str(tmp_path / "old-folder" / "original")))
    code, _, err = run_cli(capsys, "audit", copy_run(runs.ft, tmp_path / "moved-target"), "--reference", moved,
                           "--no-plots", "--no-original")
    assert code == 0, err

    target, same = copy_run(runs.ft, tmp_path / "target"), copy_run(runs.rt, tmp_path / "retrain-copy")
    code, out, err = run_cli(capsys, "audit", target, "--reference", same, "--no-plots", "--no-original")  # accepted
    assert code == 0, err


def test_ctrl_c_in_audit_does_not_suggest_resume(runs, capsys, monkeypatch):
    import unlearnkit.audit.pipeline as pipeline

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(pipeline, "audit", interrupted)
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", runs.rt)
    assert code == 130 and "--resume" not in err
    assert err.strip() == "interrupted: nothing was written (audit.json and the reports are written last); run the audit again"
