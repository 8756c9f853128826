"""Replace one scenario's section of a committed leaderboard with the same scenario from a newer bench.

    python benchmarks/replace_leaderboard_section.py COMMITTED_DIR NEW_BENCH_DIR SCENARIO [SCENARIO ...]

When a code change moves one scenario's numbers (and only that one: the others are bit-identical),
re-running that scenario is hours on 2 CPU cores, re-running all five is a day. This rewrites
COMMITTED_DIR's leaderboard.{md,csv,html} with each SCENARIO's section taken from NEW_BENCH_DIR's
(a bench of that scenario, same preset, seeds and methods); every other byte stays as committed,
and gap_vs_time.png (also inside the html) is redrawn from the combined table. confidence.png
(seed 0 of the first scenario) is kept as it is, so the first scenario cannot be replaced here. A
scenario missing from either file, or a method set that differs, is an error: nothing is written.
"""

from __future__ import annotations

import argparse
import base64
import csv
import math
import sys
from pathlib import Path

from unlearnkit.bench.leaderboard import COLUMNS, gap_vs_time_plot
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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("committed", type=Path)
    ap.add_argument("new", type=Path)
    ap.add_argument("scenarios", nargs="+")
    a = ap.parse_args(argv)
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
