"""Replace one scenario's section of a committed leaderboard with the same scenario from a newer bench.

    python benchmarks/replace_leaderboard_section.py COMMITTED_DIR NEW_BENCH_DIR SCENARIO [SCENARIO ...]

When a code change moves one scenario's numbers (and only that one: the others are bit-identical),
re-running that scenario is hours on 2 CPU cores, re-running all five is a day. This rewrites
COMMITTED_DIR's leaderboard.{md,csv,html} with each SCENARIO's section taken from NEW_BENCH_DIR's
(a bench of that scenario, same preset, seeds and methods); every other byte stays as committed,
and gap_vs_time.png (also inside the html) is redrawn from the combined table. confidence.png
(seed 0 of the first scenario) is kept as it is, so the first scenario cannot be replaced here. A
scenario missing from either file, or a method set that differs, is an error: nothing is written.

    python benchmarks/replace_leaderboard_section.py COMMITTED_DIR NEW_BENCH_DIR SCENARIO --methods gan

replaces only those methods' rows of each SCENARIO (a code change that moves one method: a bench of
that method alone, same seeds), the section re-sorted by average gap; every other row stays byte for
byte. The new bench's retraining row must equal the committed one in every accuracy column (its
references are the same models), else the rows would not be comparable and nothing is written.
"""

from __future__ import annotations

import argparse
import base64
import csv
import math
import re
import sys
from pathlib import Path

from unlearnkit.bench.leaderboard import COLUMNS, gap_vs_time_plot, row_order
from unlearnkit.files import atomic_write_with


def read_table(path: Path) -> dict[str, list[dict]]:
    table: dict[str, list[dict]] = {}
    with path.open(newline="") as f:
        for r in csv.DictReader(f):
            row = {"method": r["method"], "n": int(r["n"])}
            for key, _, _ in COLUMNS:
                row[key] = tuple(float(r[k]) if r[k] != "" else math.nan for k in (key, key + "_ci95"))
            table.setdefault(r["scenario"], []).append(row)
    return table


def md_section(md: str, scenario: str) -> tuple[int, int]:
    """(start, end) of a scenario's section in leaderboard.md: its heading up to the next heading or the legend."""
    start = md.index(f"## forget `{scenario}`")
    nxt = [i for i in (md.find("\n## ", start + 1), md.find("\nMean ± half-width", start + 1)) if i >= 0]
    return start, min(nxt) + 1


def html_section(text: str, scenario: str) -> tuple[int, int]:
    start = text.index(f"<h2>forget <code>{scenario}</code></h2>")
    return start, text.index("</table>", start) + len("</table>")


def splice(old: str, new: str, scenario: str, find) -> str:
    a, b = find(old, scenario)
    c, d = find(new, scenario)
    return old[:a] + new[c:d] + old[b:]


def md_rows(section: str) -> tuple[str, dict[str, str], str]:
    """A section's text before its first data row, {method: row line}, and the text after the last."""
    lines = section.splitlines(keepends=True)
    at = [i for i, line in enumerate(lines) if line.startswith("| ") and not line.startswith("| method ")]
    rows = {lines[i].split("|")[1].strip(): lines[i] for i in at}
    return "".join(lines[:at[0]]), rows, "".join(lines[at[-1] + 1:])


def html_rows(section: str) -> tuple[str, dict[str, str], str]:
    """The same for a section of leaderboard.html: its <tr> rows after the header row."""
    starts = [m.start() for m in re.finditer("<tr", section)][1:]  # [0] is the header
    end = section.rindex("</tr>") + len("</tr>")
    bounds = starts + [end]
    rows = {}
    for a, b in zip(bounds, bounds[1:]):
        cell = section.index("<td>", a) + len("<td>")
        rows[section[cell:section.index("</td>", cell)]] = section[a:b]
    return section[:starts[0]], rows, section[end:]


def splice_rows(old: str, new: str, scenario: str, find, split, methods: set[str], order: list[str]) -> str:
    """old's section of `scenario` with the rows of `methods` taken from new's, in `order`."""
    a, b = find(old, scenario)
    c, d = find(new, scenario)
    head, rows, tail = split(old[a:b])
    rows |= {m: r for m, r in split(new[c:d])[1].items() if m in methods}
    return old[:a] + head + "".join(rows[m] for m in order) + tail + old[b:]


def _same(x: float, y: float) -> bool:
    """Equal to the CSV's 6 decimals; a missing CI (one seed) on both sides is equal."""
    return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, abs_tol=1e-5)


REFERENCE_COLUMNS = ("UA", "RA", "TA", "MIA")  # seconds may differ: the same models, timed again


def replace_rows(texts: dict[str, list[str]], old: dict, new: dict, scenario: str, methods: set[str]) -> None:
    """Replace `methods`' rows of one scenario in the committed texts and table (`old`), re-sorted."""
    by_old = {r["method"]: r for r in old[scenario]}
    by_new = {r["method"]: r for r in new[scenario]}
    missing = sorted(m for m in methods if m not in by_old or m not in by_new)
    if missing or "retrain" in methods:
        sys.exit(f"{scenario}: --methods {', '.join(sorted(methods))}: "
                 + (f"{', '.join(missing)} not in both leaderboards" if missing else "the reference row is not replaced alone")
                 + "; nothing written")
    ref_old, ref_new = by_old.get("retrain"), by_new.get("retrain")
    if ref_old is None or ref_new is None or any(
            not all(_same(x, y) for x, y in zip(ref_old[k], ref_new[k])) or ref_old["n"] != ref_new["n"]
            for k in REFERENCE_COLUMNS):
        sys.exit(f"{scenario}: the new bench's retrained references differ from the committed ones (UA, RA, TA, "
                 "MIA-efficacy or seeds); re-run the whole section; nothing written")
    rows = sorted([by_new[m] if m in methods else r for m, r in by_old.items()], key=row_order)
    old[scenario] = rows
    order = [r["method"] for r in rows]
    md, new_md = texts["leaderboard.md"]
    texts["leaderboard.md"][0] = splice_rows(md, new_md, scenario, md_section, md_rows, methods, order)
    page, new_page = texts["leaderboard.html"]
    texts["leaderboard.html"][0] = splice_rows(page, new_page, scenario, html_section, html_rows, methods, order)
    lines, new_lines = (t.splitlines(keepends=True) for t in texts["leaderboard.csv"])
    at = [i for i, r in enumerate(lines) if r.startswith(scenario + ",")]
    mine = {r.split(",")[1]: r for r in lines[at[0]:at[-1] + 1]}
    mine |= {r.split(",")[1]: r for r in new_lines if r.startswith(scenario + ",") and r.split(",")[1] in methods}
    texts["leaderboard.csv"][0] = "".join(lines[:at[0]] + [mine[m] for m in order] + lines[at[-1] + 1:])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("committed", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("scenarios", nargs="+")
    ap.add_argument("--methods", help="comma-separated: replace only these methods' rows (default: the whole section)")
    a = ap.parse_args(argv)
    only = set(a.methods.split(",")) if a.methods else None
    for d in (a.committed, a.new):
        missing = [n for n in ("leaderboard.md", "leaderboard.csv", "leaderboard.html") if not (d / n).is_file()]
        if missing:
            sys.exit(f"{d}: no {', '.join(missing)}; give a leaderboard folder (a bench's --out or docs/leaderboards/NAME)")
    old, new = read_table(a.committed / "leaderboard.csv"), read_table(a.new / "leaderboard.csv")
    first = next(iter(old), None)
    texts = {name: [(d / name).read_bytes().decode("utf-8") for d in (a.committed, a.new)]  # keeps the CSV's \r\n
             for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.html")}
    for scenario in a.scenarios:
        if scenario not in old or scenario not in new:
            sys.exit(f"{scenario}: not in both leaderboards ({sorted(old)} / {sorted(new)}); nothing written")
        if scenario == first:
            sys.exit(f"{scenario}: the first scenario feeds confidence.png, which this script keeps; re-run the bench")
        if only is not None:
            replace_rows(texts, old, new, scenario, only)
            continue
        if {r["method"] for r in old[scenario]} != {r["method"] for r in new[scenario]}:
            sys.exit(f"{scenario}: the two benches ran different methods; nothing written")
        old[scenario] = new[scenario]  # keeps the committed scenario order
        # Text is spliced, not re-rendered: the other sections stay byte for byte as committed
        # (re-rendering them from the CSV's 6 decimals can flip a last rounded digit).
        md, new_md = texts["leaderboard.md"]
        texts["leaderboard.md"][0] = splice(md, new_md, scenario, md_section)
        html, new_html = texts["leaderboard.html"]
        texts["leaderboard.html"][0] = splice(html, new_html, scenario, html_section)
        rows, new_rows = (t.splitlines(keepends=True) for t in texts["leaderboard.csv"])
        at = [i for i, r in enumerate(rows) if r.startswith(scenario + ",")]
        texts["leaderboard.csv"][0] = "".join(rows[:at[0]] + [r for r in new_rows if r.startswith(scenario + ",")] + rows[at[-1] + 1:])
    plot = gap_vs_time_plot(old)
    html = texts["leaderboard.html"][0]
    tag = "<h2>average gap to retraining vs. time</h2><img alt='average gap to retraining vs. time' src='data:image/png;base64,"
    i = html.index(tag) + len(tag)
    texts["leaderboard.html"][0] = html[:i] + base64.b64encode(plot).decode() + html[html.index("'", i):]
    files = {name: t[0].encode() for name, t in texts.items()} | {"gap_vs_time.png": plot}
    for name, data in files.items():  # committed files: no bench manifest, so plain atomic replaces
        atomic_write_with(a.committed / name, lambda tmp, data=data: tmp.write_bytes(data))
    print(f"{a.committed}: {', '.join(a.scenarios)} replaced from {a.new}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
