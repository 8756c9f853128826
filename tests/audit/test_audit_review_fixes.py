"""Audit fixes from review: an original retrained in place is caught by its model hash, bad seeds are
refused before any forward pass, the result cache's code digest covers every module that computes a
cached number, `compare` keeps runs of one directory name apart, the reports show audit.json's
timings, and a re-audit leaves no figure of an earlier audit behind."""

import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unlearnkit.audit import audit, compare
from unlearnkit.audit.attacks import mia_efficacy
from unlearnkit.audit.pipeline import caches
from unlearnkit.audit.report import fmt_s
from unlearnkit.config import resolve_config
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run
from unlearnkit.training.pipeline import train
from helpers import assert_one_line_error, needs_symlinks, run_cli

OUTPUTS = ("audit.json", "report.md", "report.html", "audit_plots")
FAST_RETRAIN = {"epochs": 1}  # a reference's lineage is what is checked here, not its quality


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


def copy_run(src, dst):
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns(*OUTPUTS))
    return dst


@pytest.fixture(scope="module")
def lineage(digits_run, tmp_path_factory):
    """Runs unlearned from an original at `orig` that is then retrained in place (same path, another model).

    old_ft, old_rt, chain (class:3 forgotten from old_ft) and chain_rt (its exact reference) come from the
    model before; new_ft from the one after. copy holds the model before at another path.
    """
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("lineage")
    orig = copy_run(digits_run, base / "orig")
    copy = copy_run(digits_run, base / "copy")
    old_ft, old_rt = base / "old-ft", base / "old-rt"
    forget_run(orig, "finetune", "random:0.1", old_ft)
    forget_run(orig, "retrain", "random:0.1", old_rt, hparams=FAST_RETRAIN)
    chain, chain_rt = base / "chain", base / "chain-rt"
    forget_run(old_ft, "finetune", "class:3", chain)
    forget_run(old_ft, "retrain", "class:3", chain_rt, hparams=FAST_RETRAIN)
    shutil.rmtree(orig)
    train(resolve_config("digits", {"train.epochs": 1}), orig)  # retrained in place: same path and split
    new_ft = base / "new-ft"
    forget_run(orig, "finetune", "random:0.1", new_ft)
    return SimpleNamespace(orig=orig, copy=copy, old_ft=old_ft, old_rt=old_rt, chain=chain, chain_rt=chain_rt,
                           new_ft=new_ft, base=base)


def test_a_reference_from_an_original_retrained_in_place_is_refused(lineage, capsys, tmp_path):
    code, _, err = run_cli(capsys, "audit", lineage.new_ft, "--reference", lineage.old_rt, "--no-plots")
    assert_one_line_error(code, err, r"reference run .*old-rt was retrained from another model than run .*new-ft's original "
                                     r"\(run.json parent_model_sha256 \w+… there, original_model_sha256 \w+… here: .*orig "
                                     r"was retrained or replaced in between\); retrain the reference from this run's original")
    assert not any((lineage.new_ft / name).exists() for name in OUTPUTS)

    # The runs made from the same model still belong together, a chain's included: its reference
    # retrains the root, its default original is its (unlearned) parent.
    ok = audit(lineage.old_ft, reference=lineage.old_rt, original=False, write=False, plots=False)
    assert ok.reference["path"] == str(lineage.old_rt.resolve())
    chain = audit(lineage.chain, reference=lineage.chain_rt, write=False, plots=False)
    assert chain.original["path"] == str(lineage.old_ft.resolve()) and chain.against_retraining is not None
    assert not any("left out" in n for n in chain.notes)


def test_an_original_retrained_in_place_is_left_out_by_default_and_refused_when_named(lineage, capsys):
    result = audit(lineage.old_ft, write=False, plots=False)  # the recorded parent holds another model now
    assert result.original is None and "original" not in result.accuracy
    assert any(re.search(r"recorded parent was left out: original run .*orig holds another model", n) for n in result.notes)
    code, out, err = run_cli(capsys, "audit", copy_run(lineage.old_ft, lineage.base / "shown"), "--no-plots")
    assert code == 0, err
    assert "note: The recorded parent was left out" in out  # the CLI shows it, not only the report

    code, _, err = run_cli(capsys, "audit", lineage.old_ft, "--original", lineage.orig, "--no-plots")
    assert_one_line_error(code, err, r"original run .*orig holds another model \(sha256 \w+…\) than the one run .*old-ft "
                                     r"was unlearned from \(run.json parent_model_sha256 \w+…, original_model_sha256 \w+…\)"
                                     r".*pass the run it was unlearned from as --original, or --no-original")
    with pytest.raises(UnlearnkitError, match="holds another model"):
        audit(lineage.old_ft, original=True, write=False, plots=False)  # "the recorded parent", asked for
    with pytest.raises(UnlearnkitError, match="holds another model"):
        audit(lineage.chain, original=lineage.orig, write=False, plots=False)  # the chain's root, replaced
    assert not any((lineage.old_ft / name).exists() for name in OUTPUTS)

    # The model, not the path: a copy of the original elsewhere is the original (of a chain too).
    assert audit(lineage.old_ft, original=lineage.copy, write=False, plots=False).original is not None
    assert audit(lineage.chain, original=lineage.copy, write=False, plots=False).original is not None
    assert audit(lineage.new_ft, write=False, plots=False).original["path"] == str(lineage.orig.resolve())


# --------------------------------------------------------------------------- runs of the original fixture


@pytest.fixture(scope="module")
def runs(digits_run, tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("fixes")
    forget_run(digits_run, "finetune", "random:0.1", base / "ft")
    forget_run(digits_run, "retrain", "random:0.1", base / "rt", hparams=FAST_RETRAIN)
    return SimpleNamespace(ft=base / "ft", rt=base / "rt", base=base)


def test_bad_seeds_and_caps_are_refused_before_any_forward_pass(runs, capsys, monkeypatch):
    from unlearnkit.audit.pipeline import audit_run

    def no_forward(*args, **kwargs):
        raise AssertionError("a model was run before the options were checked")

    monkeypatch.setattr(audit_run, "_forward", no_forward)
    code, _, err = run_cli(capsys, "audit", runs.ft, "--reference", runs.rt, "--seed", "-1")
    assert_one_line_error(code, err, r"seed must be a whole number >= 0 \(command line: --seed\), got -1")
    assert not any((runs.ft / name).exists() for name in OUTPUTS)
    for bad in (1.5, True, "3"):
        with pytest.raises(UnlearnkitError, match="seed must be a whole number >= 0"):
            audit(runs.ft, seed=bad, write=False)
    for bad in (2.5, 0, True):
        with pytest.raises(UnlearnkitError, match="max_per_class must be a whole number >= 1"):
            audit(runs.ft, mia_max_per_class=bad, write=False)
    with pytest.raises(UnlearnkitError, match="seed must be a whole number >= 0"):
        compare([runs.ft], seed=-1)
    code, _, err = run_cli(capsys, "compare", runs.ft, runs.rt, "--seed", "-2")
    assert_one_line_error(code, err, "seed must be a whole number >= 0")


def test_mia_efficacy_refuses_a_fractional_cap():
    rng = np.random.default_rng(0)
    z, y = rng.normal(size=(40, 3)), rng.integers(0, 3, 40)
    with pytest.raises(UnlearnkitError, match=r"max_per_class must be a whole number >= 1 or None \(no cap\), got 2.5"):
        mia_efficacy(z, y, z, y, z, y, max_per_class=2.5)
    assert mia_efficacy(z, y, z, y, z, y, max_per_class=np.int64(5))["n_nonmembers"] == 5  # numpy integers are whole


@pytest.mark.parametrize("module", ["refs.py", "pipeline/loading.py", "pipeline/caches.py"])
def test_result_cache_key_changes_with_every_module_that_computes_a_cached_number(module, tmp_path, monkeypatch):
    # refs.py picks the pool's OUT models and test mask; loading.py turns logits into confidences and losses.
    package = Path(caches.__file__).resolve().parents[1]
    copy = tmp_path / "audit"
    shutil.copytree(package, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(caches, "__file__", str(copy / "pipeline" / "caches.py"))
    caches._code_digest.cache_clear()
    try:
        before = caches._code_digest()
        with open(copy / module, "a") as f:
            f.write("\n# an edit\n")
        caches._code_digest.cache_clear()
        assert caches._code_digest() != before, f"an edit to {module} keeps the cached numbers"
    finally:
        caches._code_digest.cache_clear()


def test_compare_keeps_runs_of_one_name_apart(runs, capsys, monkeypatch, tmp_path):
    from unlearnkit.audit import plots

    a = copy_run(runs.ft, tmp_path / "a" / "ft")
    audit(a, reference=runs.rt, original=False, plots=False)
    b = tmp_path / "b" / "ft"
    shutil.copytree(a, b)  # the same audit under another parent folder
    seen = []
    real = plots.compare_roc
    monkeypatch.setattr(plots, "compare_roc", lambda audits: seen.append(list(audits)) or real(audits))
    result = compare([a, b], out=tmp_path / "cmp")
    assert seen == [["a/ft", "b/ft"]]  # one ROC curve per run, not one for both
    assert [r["run"] for r in result["rows"]] == ["a/ft", "b/ft"]
    md = (tmp_path / "cmp" / "report.md").read_text()
    assert "| a/ft |" in md and "| b/ft |" in md
    code, out, err = run_cli(capsys, "compare", a, b)
    assert code == 0 and "a/ft" in out and "b/ft" in out, err
    # a unique directory name stays the label; a run given twice is refused
    assert [r["run"] for r in compare([a, runs.rt])["rows"]] == ["ft", "rt"]
    with pytest.raises(UnlearnkitError, match="is given twice"):
        compare([a, tmp_path / "a" / ".." / "a" / "ft"])


def test_reports_show_the_timings_of_audit_json(runs, tmp_path):
    target = copy_run(runs.ft, tmp_path / "ft")
    result = audit(target, reference=runs.rt, original=False, plots=False)
    timings = json.loads((target / "audit.json").read_text())["timings"]
    assert timings == result.timings and "report" in timings
    md = (target / "report.md").read_text().split("## Timings", 1)[1]
    shown = dict(re.findall(r"^\| ([\w/]+) \| +([\d.]+) \|$", md, flags=re.M))
    assert shown == {k: fmt_s(v) for k, v in timings.items()}
    html = (target / "report.html").read_text()
    assert all(f"{k}</td>" in html for k in timings) and fmt_s(timings["total"]) in html


@needs_symlinks
def test_a_reaudit_removes_the_figures_it_did_not_draw(runs, tmp_path):
    target = copy_run(runs.ft, tmp_path / "ft")
    plots_dir = target / "audit_plots"
    plots_dir.mkdir()
    for name in ("histograms", "roc", "per_class"):  # an earlier audit's figures
        (plots_dir / f"{name}.png").write_bytes(b"\x89PNG old")
    audit(target, reference=runs.rt, original=False, plots=False)
    assert not plots_dir.exists()  # --no-plots: no figure of another audit beside the new report

    plots_dir.mkdir()
    (plots_dir / "roc.png").write_bytes(b"\x89PNG old")
    (plots_dir / "mine.txt").write_text("the user's")  # not the audit's: kept, and the folder with it
    other = tmp_path / "elsewhere.png"
    other.write_bytes(b"keep")
    (plots_dir / "histograms.png").symlink_to(other)
    audit(target, reference=runs.rt, original=False, plots=False)
    assert sorted(p.name for p in plots_dir.iterdir()) == ["mine.txt"]
    assert other.read_bytes() == b"keep"  # a link is removed, not what it points to


def test_a_comparison_without_audited_runs_removes_the_figures_of_an_earlier_one(runs, tmp_path):
    audited = copy_run(runs.ft, tmp_path / "audited")
    audit(audited, reference=runs.rt, original=False, plots=False)
    out = tmp_path / "cmp"
    compare([audited, runs.rt], out=out)
    figures = [out / "audit_plots" / f"{n}.png" for n in ("roc", "tradeoff")]
    assert all(f.is_file() for f in figures)
    plain = copy_run(runs.ft, tmp_path / "plain")  # copied without its audit: no curve to draw
    result = compare([plain], out=out)
    assert result["rows"] and not any(f.exists() for f in figures)
    assert "audit_plots/" not in (out / "report.md").read_text()
    # A figure the user put there (not unlearnkit's bytes) stays.
    compare([audited, runs.rt], out=out)
    figures[0].write_bytes(b"mine")
    compare([plain], out=out)
    assert figures[0].read_bytes() == b"mine" and not figures[1].exists()


def test_compare_notes_runs_that_forgot_different_sets(runs, digits_run, capsys, tmp_path):
    other = tmp_path / "ft-class"
    forget_run(digits_run, "finetune", "class:3", other)
    audited = copy_run(runs.ft, tmp_path / "ft")
    audit(audited, reference=runs.rt, original=False, plots=False)
    # One audited (its record from audit.json) and one not (from run.json): both carry the forget digest.
    notes = compare([audited, other])["notes"]
    different = [n for n in notes if "forgot different sets" in n]
    assert len(different) == 1 and "random:0.1 (ft)" in different[0] and "class:3 (ft-class)" in different[0]
    # The same forget set (a method and its retrained reference) gets no such note; nor does the original.
    assert not any("forgot different sets" in n for n in compare([audited, runs.rt, digits_run])["notes"])
    code, out, _ = run_cli(capsys, "compare", audited, other)
    assert code == 0 and "forgot different sets" in out.replace("\n", " ")
