"""The README's first command: train -> forget -> audit on the embedded digits, ending with a report."""

import json

from unlearnkit.cli.main import main


def test_demo_runs_end_to_end_audits_every_method_and_resumes(capsys, cache_dir, tmp_path):
    out = tmp_path / "demo"
    assert main(["demo", "--out", str(out), "--methods", "finetune,neggrad"]) == 0
    printed = capsys.readouterr().out
    report = out / "report" / "report.html"
    assert report.is_file() and f"report: {report}" in printed.replace("\n", "")
    for name in ("retrain", "finetune", "neggrad"):
        a = json.loads((out / name / "audit.json").read_text())
        assert a["run"]["method"] == name
        # Methods are measured against the retrained run; retraining itself has no reference.
        assert (a["against_retraining"] is None) == (name == "retrain")
    compared = json.loads((out / "report" / "compare.json").read_text())
    assert [r["method"] for r in compared["rows"]] == ["retrain", "finetune", "neggrad"]
    assert "finetune" in printed and "avg gap" in printed

    # A second run finds every finished run and audit and redoes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/audit.json")}
    assert main(["demo", "--out", str(out), "--methods", "finetune,neggrad"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/audit.json")} == stamps


def test_demo_rejects_an_unknown_method(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--methods", "finetune,nope"]) != 0
    err = capsys.readouterr().err
    assert "nope" in err and "choose from" in err and "\n" not in err.strip()
    assert not (tmp_path / "d").exists()
