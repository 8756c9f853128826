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
    words = " ".join(printed.split())  # rich wraps long lines at the terminal width
    assert "forgetting class:3" in words and "retrain's UA is the target (not 0, not 100)" in words
    # The default scenario shows forgetting: retraining cannot recognise the forgotten digit.
    assert json.loads((out / "retrain" / "metrics.json").read_text())["forget_acc"] < 10

    # A second run finds every finished run and audit and redoes nothing.
    stamps = {p: p.stat().st_mtime_ns for p in out.glob("*/audit.json")}
    assert main(["demo", "--out", str(out), "--methods", "finetune,neggrad"]) == 0
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/audit.json")} == stamps

    # Another scenario in the same folder is refused (never the old results under the new title).
    models = {p: p.read_bytes() for p in out.glob("*/model.safetensors")}
    code = main(["demo", "--out", str(out), "--methods", "finetune,neggrad", "--forget", "random:0.1"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and "\n" not in err
    assert "retrain holds an exact retrain of class:3" in err and "'class:3' there, 'random:0.1' now" in err
    assert "choose a new --out" in err
    assert {p: p.read_bytes() for p in out.glob("*/model.safetensors")} == models
    code = main(["demo", "--out", str(out), "--methods", "finetune", "--preset", "digits", "--data", "digits"])
    assert code == 0  # the same recipe and scenario spelled out: still reused
    assert {p: p.stat().st_mtime_ns for p in out.glob("*/audit.json")} == stamps


def test_demo_rejects_an_unknown_method(capsys, tmp_path):
    assert main(["demo", "--out", str(tmp_path / "d"), "--methods", "finetune,nope"]) != 0
    err = capsys.readouterr().err
    assert "nope" in err and "choose from" in err and "\n" not in err.strip()
    assert not (tmp_path / "d").exists()


def test_progress_prints_one_line_per_finished_loop_when_not_on_a_terminal(capsys, monkeypatch):
    from unlearnkit.training.loop import progress

    monkeypatch.setenv("UNLEARNKIT_QUIET", "0")  # captured stderr is not a terminal
    for epoch in range(3):
        bar = progress(range(4), 4, f"retrain {epoch + 1}/3")
        for _ in bar:
            bar.set_postfix({"loss": "0.5"}, refresh=False)
        bar.close()
    bar = progress(None, 2, "audit", unit="step")
    bar.set_description_str("audit: plots")
    bar.update(2)
    bar.close()
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2 and "\r" not in "".join(lines)
    assert lines[0].startswith("retrain: 3 epochs, 12 steps in ") and lines[0].endswith("s (loss=0.5)")
    assert lines[1].startswith("audit: 2 steps in ")
