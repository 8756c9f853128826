"""Report files: Markdown with linked PNGs, self-contained HTML, the compare report, and a real browser render."""

import importlib.util
import json
import re
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from unlearnkit.audit import audit, compare
from unlearnkit.audit.report import audit_document
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run

REPO = Path(__file__).resolve().parents[2]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def audited(digits_run, tmp_path_factory):
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("report")
    forget_run(digits_run, "finetune", "random:0.1", base / "ft")
    forget_run(digits_run, "retrain", "random:0.1", base / "rt")
    result = audit(base / "ft", reference=base / "rt")  # with plots
    return SimpleNamespace(base=base, ft=base / "ft", rt=base / "rt", result=result)


def test_report_files_markdown_and_plots(audited):
    ft = audited.ft
    for name in ("audit.json", "report.md", "report.html"):
        assert (ft / name).is_file()
    pngs = sorted(p.name for p in (ft / "audit_plots").iterdir())
    assert pngs == ["histograms.png", "per_class.png", "roc.png"]
    for p in (ft / "audit_plots").iterdir():
        assert p.read_bytes()[:8] == PNG_MAGIC and p.stat().st_size > 10_000
    md = (ft / "report.md").read_text()
    lines = md.splitlines()
    assert lines[0].startswith("# Unlearning audit: finetune on random:0.1")
    assert lines[2].startswith("**Verdict:** finetune on random:0.1: average gap to retraining")
    # tables first, then plots, then timings
    assert md.index("## Accuracy") < md.index("## Against retraining") < md.index("## Membership inference") \
        < md.index("## Plots") < md.index("## Timings")
    for name in ("histograms", "roc", "per_class"):
        assert f"](audit_plots/{name}.png)" in md
    assert "| forget: FNR |" in md and "| MIA-efficacy |" in md and "| UA = 100 − forget |" in md
    assert audited.result.files["report_html"] == str(ft / "report.html")
    assert "plots" in audited.result.timings


def test_html_is_self_contained(audited):
    html = (audited.ft / "report.html").read_text()
    assert html.startswith("<!DOCTYPE html>") and html.rstrip().endswith("</html>")
    assert html.count('src="data:image/png;base64,') == 3
    assert not re.search(r'(src|href)="(https?:)?//', html)  # nothing fetched from the network
    assert "<table>" in html and "Verdict:" in html
    # the report re-renders from audit.json alone
    doc = audit_document(json.loads((audited.ft / "audit.json").read_text()), {})
    assert doc.to_markdown().splitlines()[0] == (audited.ft / "report.md").read_text().splitlines()[0]


def test_compare_report(audited, tmp_path, capsys):
    fresh = tmp_path / "ft-unaudited"
    shutil.copytree(audited.ft, fresh, ignore=shutil.ignore_patterns("audit*", "report*"))
    result = compare([audited.ft, audited.rt, fresh], out=tmp_path / "cmp")
    rows = result["rows"]
    assert [r["run"] for r in rows] == ["ft", "rt", "ft-unaudited"]
    assert rows[0]["audited"] and not rows[1]["audited"] and not rows[2]["audited"]
    assert rows[0]["avg gap"] == pytest.approx(audited.result.avg_gap)
    assert rows[0]["UA"] == pytest.approx(audited.result.ua)
    assert rows[2]["UA"] == pytest.approx(100 - json.loads((fresh / "metrics.json").read_text())["forget_acc"])
    assert any("not audited" in n for n in result["notes"])
    html = (tmp_path / "cmp" / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2
    assert json.loads((tmp_path / "cmp" / "compare.json").read_text())["rows"][0]["run"] == "ft"
    assert (tmp_path / "cmp" / "report.md").read_text().startswith("# Unlearning comparison: 3 run(s)")
    with pytest.raises(UnlearnkitError, match="is a run directory"):
        compare([audited.ft], out=audited.rt)
    # Its own files are rewritten; a report the user wrote there is never replaced.
    compare([audited.ft], out=tmp_path / "cmp")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my notes")
    with pytest.raises(UnlearnkitError, match="report.md"):
        compare([audited.ft], out=mine)
    assert (mine / "report.md").read_text() == "my notes" and not (mine / "report.html").exists()
    with pytest.raises(UnlearnkitError, match="does not exist"):
        compare([tmp_path / "nope"])


def _checker():
    spec = importlib.util.spec_from_file_location("check_report_html", REPO / "benchmarks" / "check_report_html.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_report_renders_in_headless_chromium(audited, tmp_path):
    check = _checker()
    if check.find_browser() is None:
        pytest.skip("chromium not installed (apt-get install -y chromium)")
    shot = check.screenshot(audited.ft / "report.html", tmp_path / "shot.png")
    stats = check.analyse(shot)
    assert stats["width"] == 1200 and stats["height"] == 3000
    assert check.check(stats) == [], stats
