"""benchmarks/replace_leaderboard_section.py: one scenario re-measured, every other byte as committed."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from unlearnkit.bench.leaderboard import COLUMNS, write_leaderboard

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "replace_leaderboard_section.py"


def _script():
    spec = importlib.util.spec_from_file_location("replace_leaderboard_section", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _table(scenarios: dict[str, float], methods=("retrain", "a", "b")) -> dict[str, list[dict]]:
    table = {}
    for scenario, base in scenarios.items():
        rows = []
        for i, method in enumerate(methods):
            row = {"method": method, "n": 3}
            for j, (key, _, _) in enumerate(COLUMNS):
                row[key] = (math.nan, math.nan) if key == "score" else (base + i + j / 7, 0.125 + i)
            rows.append(row)
        table[scenario] = rows
    return table


def _write(out: Path, table) -> None:
    write_leaderboard(out, table, "# unlearnkit leaderboard: test, 3 methods, 3 seed(s)", {}, {}, ["Tuned defaults used: none."])


def test_one_section_is_replaced_and_the_rest_kept(tmp_path):
    committed, new = tmp_path / "committed", tmp_path / "new"
    _write(committed, _table({"random:0.1": 10.0, "class:cat": 20.0, "class:cat:0.5": 30.0}))
    _write(new, _table({"class:cat": 50.0}))
    before = {f: (committed / f).read_bytes() for f in ("leaderboard.md", "leaderboard.csv")}
    assert _script().main([str(committed), str(new), "class:cat"]) == 0
    md = (committed / "leaderboard.md").read_text()
    new_md = (new / "leaderboard.md").read_text()
    section = new_md[new_md.index("## forget `class:cat`"):new_md.index("\nMean ± half-width") + 1]
    assert section in md
    old_md = before["leaderboard.md"].decode()
    # The sections before and after, the header, notes and legend: byte for byte.
    assert md.startswith(old_md[:old_md.index("## forget `class:cat`")])
    assert md.endswith(old_md[old_md.index("## forget `class:cat:0.5`"):])
    csv_rows = (committed / "leaderboard.csv").read_bytes().decode().splitlines(keepends=True)
    old_rows = before["leaderboard.csv"].decode().splitlines(keepends=True)
    assert [r.split(",")[0] for r in csv_rows] == [r.split(",")[0] for r in old_rows]  # order kept
    assert all(r.endswith("\r\n") for r in csv_rows)
    assert [r for r in csv_rows if r.startswith("class:cat,")] == \
        [r for r in (new / "leaderboard.csv").read_bytes().decode().splitlines(keepends=True) if r.startswith("class:cat,")]
    assert [r for r in csv_rows if not r.startswith("class:cat,")] == [r for r in old_rows if not r.startswith("class:cat,")]
    html = (committed / "leaderboard.html").read_text()
    assert "<td>50.00 ± 0.12</td>" in html and "<td>20.00 ± 0.12</td>" not in html


@pytest.mark.parametrize("case", ["first scenario", "missing", "other methods", "no leaderboard"])
def test_refusals_write_nothing(tmp_path, case):
    committed, new = tmp_path / "committed", tmp_path / "new"
    _write(committed, _table({"random:0.1": 10.0, "class:cat": 20.0}))
    _write(new, _table({"random:0.1": 50.0, "class:cat": 50.0}, methods=("retrain", "a", "c") if case == "other methods" else ("retrain", "a", "b")))
    before = {p.name: p.read_bytes() for p in committed.iterdir() if p.is_file()}
    scenario = {"first scenario": "random:0.1", "missing": "class:dog", "other methods": "class:cat", "no leaderboard": "class:cat"}[case]
    if case == "no leaderboard":
        (new / "leaderboard.html").unlink()
    with pytest.raises(SystemExit) as err:
        _script().main([str(committed), str(new), scenario])
    assert (str(new) if case == "no leaderboard" else scenario) in str(err.value)
    assert {p.name: p.read_bytes() for p in committed.iterdir() if p.is_file()} == before


def _new_b(table: dict, scenario: str, value: float, retrain_shift: float = 0.0) -> dict:
    """A bench of retrain and b alone: retrain as committed (shifted on request), b at `value` everywhere."""
    retrain, _, b = table[scenario]
    retrain = {**retrain, **{k: (v[0] + retrain_shift, v[1]) for k, v in retrain.items() if k in ("UA", "RA")}}
    b = {**b, **{key: (value, 0.5) for key, _, _ in COLUMNS if key != "score"}}
    return {scenario: [retrain, b]}


def test_only_the_named_methods_rows_are_replaced_and_the_section_re_sorted(tmp_path):
    committed, new = tmp_path / "committed", tmp_path / "new"
    old = _table({"random:0.1": 10.0, "class:cat": 20.0, "class:cat:0.5": 30.0})
    _write(committed, old)
    _write(new, _new_b(old, "class:cat", 5.0))  # b's gap 5.00 now beats a's 21.57: b moves above a
    before_md = (committed / "leaderboard.md").read_text()
    assert _script().main([str(committed), str(new), "class:cat", "--methods", "b"]) == 0
    md = (committed / "leaderboard.md").read_text()
    section = md[md.index("## forget `class:cat`"):md.index("## forget `class:cat:0.5`")]
    rows = [line for line in section.splitlines() if line.startswith("| ") and not line.startswith("| method")]
    assert [r.split("|")[1].strip() for r in rows] == ["retrain", "b", "a"]
    old_lines = before_md.splitlines()
    assert rows[0] in old_lines and rows[2] in old_lines and rows[1] not in old_lines  # retrain and a byte for byte
    assert "| 5.00 ± 0.50 |" in rows[1]
    assert md.replace(section, "") == before_md.replace(
        before_md[before_md.index("## forget `class:cat`"):before_md.index("## forget `class:cat:0.5`")], "")
    csv_rows = [r for r in (committed / "leaderboard.csv").read_text().splitlines() if r.startswith("class:cat,")]
    assert [r.split(",")[1] for r in csv_rows] == ["retrain", "b", "a"]
    html = (committed / "leaderboard.html").read_text()
    at = html.index("<h2>forget <code>class:cat</code></h2>")
    table = html[at:html.index("</table>", at)]
    assert table.index("<td>b</td>") < table.index("<td>a</td>") and "<td>5.00 ± 0.50</td>" in table


@pytest.mark.parametrize("case", ["other references", "unknown method", "retrain alone"])
def test_a_row_replacement_that_would_mix_references_writes_nothing(tmp_path, case):
    committed, new = tmp_path / "committed", tmp_path / "new"
    old = _table({"random:0.1": 10.0, "class:cat": 20.0})
    _write(committed, old)
    _write(new, _new_b(old, "class:cat", 5.0, retrain_shift=0.5 if case == "other references" else 0.0))
    before = {p.name: p.read_bytes() for p in committed.iterdir() if p.is_file()}
    methods = {"other references": "b", "unknown method": "c", "retrain alone": "retrain"}[case]
    with pytest.raises(SystemExit) as err:
        _script().main([str(committed), str(new), "class:cat", "--methods", methods])
    assert {"other references": "retrained references differ", "unknown method": "c not in both",
            "retrain alone": "reference row"}[case] in str(err.value)
    assert {p.name: p.read_bytes() for p in committed.iterdir() if p.is_file()} == before
