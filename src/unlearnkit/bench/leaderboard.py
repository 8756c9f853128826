"""The leaderboard: per scenario, one row per method, mean and 95% CI over seeds, sorted by gap.

Written as leaderboard.md (terminals, diffs), leaderboard.csv (analysis) and a self-contained
leaderboard.html (plots embedded), beside the bench's plan.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
from scipy import stats

from unlearnkit.bench.plan import FLOOR_ROW
from unlearnkit.outputs import write_outputs

# Every file the leaderboard writes into the bench folder (checked before a bench starts).
FILES = ("leaderboard.md", "leaderboard.csv", "leaderboard.html", "gap_vs_time.png", "confidence.png")

# (column key, header, format) in table order; "gap" = |method - retrain| averaged over UA, RA, TA, MIA.
COLUMNS = [
    ("UA", "UA %", "{:.2f}"),
    ("RA", "RA %", "{:.2f}"),
    ("TA", "TA %", "{:.2f}"),
    ("MIA", "MIA-eff. %", "{:.2f}"),
    ("avg_gap", "avg gap", "{:.2f}"),
    ("score", "comp. score", "{:.3f}"),
    ("seconds", "time s", "{:.1f}"),
    ("time_ratio", "time / retrain", "{:.3f}"),
]


def mean_ci(values: list[float]) -> tuple[float, float]:
    """Mean and the half-width of its 95% t-interval (nan with a single value)."""
    v = np.asarray([x for x in values if x is not None and not math.isnan(x)], dtype=float)
    if len(v) == 0:
        return math.nan, math.nan
    if len(v) == 1:
        return float(v[0]), math.nan
    half = stats.t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / math.sqrt(len(v))
    return float(v.mean()), float(half)


def build_rows(per_run: list[dict[str, Any]], scores: dict[tuple[str, str], dict[str, Any]]) -> dict[str, list[dict]]:
    """per_run: one dict per (scenario, method, seed) with the COLUMNS' keys. -> rows per scenario."""
    table: dict[str, list[dict]] = {}
    for scenario in dict.fromkeys(r["scenario"] for r in per_run):
        rows = []
        for method in dict.fromkeys(r["method"] for r in per_run if r["scenario"] == scenario):
            runs = [r for r in per_run if r["scenario"] == scenario and r["method"] == method]
            row: dict[str, Any] = {"method": method, "n": len(runs)}
            for key, _, _ in COLUMNS:
                if key == "score":
                    s = scores.get((scenario, method))
                    row[key] = (s["score"], math.nan) if s else (math.nan, math.nan)
                else:
                    row[key] = mean_ci([r.get(key) for r in runs])
            rows.append(row)
        rows.sort(key=row_order)
        table[scenario] = rows
    return table


def _nan_last(x: float) -> float:
    return math.inf if math.isnan(x) else x


def row_order(row: dict[str, Any]) -> tuple:
    """Sort key of a scenario's rows: retrain (the reference) first, then the gap's noise floor if
    measured, then the methods by their average gap to retraining (a missing gap last)."""
    return row["method"] != "retrain", row["method"] != FLOOR_ROW, _nan_last(row["avg_gap"][0])


def _cell(value: tuple[float, float], fmt: str) -> str:
    mean, half = value
    if math.isnan(mean):
        return "—"
    return fmt.format(mean) + ("" if math.isnan(half) else " ± " + fmt.format(half))


def to_markdown(table: dict[str, list[dict]], header: str, floors: dict[str, Any], notes: list[str] = ()) -> str:
    lines = [header, ""] + [line for n in notes for line in (n, "")]  # e.g. which tuned defaults, tuned on which seeds
    if not table:
        lines += ["No audit finished, so there is nothing to rank: see the failed jobs' logs (listed by the bench).", ""]
    for scenario, rows in table.items():
        lines += [f"## forget `{scenario}`", "", "| method | n | " + " | ".join(h for _, h, _ in COLUMNS) + " |",
                  "|---|---:|" + "---:|" * len(COLUMNS)]
        for r in rows:
            lines.append(f"| {r['method']} | {r['n']} | " + " | ".join(_cell(r[k], f) for k, _, f in COLUMNS) + " |")
        if scenario in floors:
            fl = floors[scenario]
            if fl["floor"] is None:
                lines += ["", f"Competition score: N={fl['n']} retrained runs; no noise floor ({fl['note']})."]
            else:
                lines += ["", f"Competition score noise floor ({fl['n']} retrained runs; shown in the retrain row): "
                              f"{fl['floor']:.3f}; {fl['note']} (see docs/audit.md)."]
        lines.append("")
    if any(r["method"] == FLOOR_ROW for rows in table.values() for r in rows):
        lines += [f"`{FLOOR_ROW}`: a second exact retraining (another initial seed and augmentation order; the same "
                  "original, split and forget set) audited against the reference — the gap a perfect method would "
                  "score, so gaps at or below it are within the noise of retraining itself.", ""]
    lines.append("Mean ± half-width of the 95% t-interval over seeds. UA = 100 - forget accuracy; RA/TA = retain/test "
                 "accuracy; MIA-eff. = share of forget samples an SVC on confidence calls non-member; avg gap = mean "
                 "|method - retrain| over UA, RA, TA, MIA-eff. (lower is better).")
    return "\n".join(lines) + "\n"


def to_csv(table: dict[str, list[dict]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["scenario", "method", "n"] + [x for k, _, _ in COLUMNS for x in (k, k + "_ci95")])
    for scenario, rows in table.items():
        for r in rows:
            w.writerow([scenario, r["method"], r["n"]] + [("" if math.isnan(v) else round(v, 6)) for k, _, _ in COLUMNS for v in r[k]])
    return buf.getvalue()


def gap_vs_time_plot(table: dict[str, list[dict]]) -> bytes:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    fig, axes = plt.subplots(1, len(table), figsize=(6 * len(table), 4.5), squeeze=False)
    for ax, (scenario, rows) in zip(axes[0], table.items()):
        for r in rows:
            if r["method"] == FLOOR_ROW and not math.isnan(r["avg_gap"][0]):
                # A line rather than a point: no method can be told apart from retraining below it.
                ax.axhline(r["avg_gap"][0], color="grey", linestyle="--", linewidth=1)
                ax.annotate("gap of a second retraining", (1, r["avg_gap"][0]), xycoords=("axes fraction", "data"),
                            textcoords="offset points", xytext=(-4, 3), ha="right", fontsize=8, color="grey")
                continue
            (x, xe), (y, ye) = r["time_ratio"], r["avg_gap"]
            if math.isnan(x) or math.isnan(y):
                continue
            ax.errorbar(x, y, xerr=None if math.isnan(xe) else xe, yerr=None if math.isnan(ye) else ye,
                        fmt="o", capsize=3, label=r["method"])
            ax.annotate(r["method"], (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        ax.set_xscale("log")
        ax.set_xlabel("time / retrain (log)")
        ax.set_ylabel("average gap to retrain (points)")
        ax.set_title(f"forget {scenario}")
        ax.grid(alpha=0.3)
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=110)
    plt.close(fig)
    return out.getvalue()


def confidence_plot(hists: dict[str, dict[str, np.ndarray]]) -> bytes:
    """Per method: true-label confidence on forget vs test (seed 0, first scenario)."""
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    n = len(hists)
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    bins = np.linspace(0, 1, 26)
    for ax, (method, h) in zip(axes.flat, hists.items()):
        ax.hist(h["test"], bins=bins, alpha=0.55, density=True, label="test")
        ax.hist(h["forget"], bins=bins, alpha=0.55, density=True, label="forget")
        ax.set_title(method, fontsize=9)
        ax.set_yscale("log")
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=8)
    fig.supxlabel("true-label confidence")
    fig.tight_layout()
    out = io.BytesIO()
    fig.savefig(out, format="png", dpi=100)
    plt.close(fig)
    return out.getvalue()


def to_html(markdown_text: str, table: dict[str, list[dict]], images: dict[str, bytes], title: str,
            notes: list[str] = ()) -> str:
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
             "td:first-child,th:first-child{text-align:left}tr.ref{background:#eef6ee}img{max-width:100%}</style>",
             f"</head><body><h1>{html.escape(title)}</h1>"] + [f"<p>{html.escape(n)}</p>" for n in notes]
    for scenario, rows in table.items():
        parts.append(f"<h2>forget <code>{html.escape(scenario)}</code></h2><table><tr><th>method</th><th>n</th>"
                     + "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS) + "</tr>")
        for r in rows:
            cls = " class='ref'" if r["method"] in ("retrain", FLOOR_ROW) else ""
            parts.append(f"<tr{cls}><td>{html.escape(r['method'])}</td><td>{r['n']}</td>"
                         + "".join(f"<td>{html.escape(_cell(r[k], f))}</td>" for k, _, f in COLUMNS) + "</tr>")
        parts.append("</table>")
    notes = markdown_text.strip().splitlines()[-1]
    parts.append(f"<p>{html.escape(notes)}</p>")
    for caption, png in images.items():
        data = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


def write_leaderboard(out: Path, table: dict[str, list[dict]], header: str, floors: dict[str, Any],
                      hists: dict[str, dict[str, np.ndarray]], notes: list[str] = ()) -> dict[str, Path]:
    md = to_markdown(table, header, floors, notes)
    plots: dict[str, tuple[str, bytes]] = {}  # file name -> (caption, png)
    if table:  # a bench whose every audit failed still gets its (empty) tables, just no plot
        plots["gap_vs_time.png"] = ("average gap to retraining vs. time", gap_vs_time_plot(table))
    if hists:
        plots["confidence.png"] = ("confidence on forget vs. test, per method", confidence_plot(hists))
    images = dict(plots.values())
    files = {"leaderboard.md": md, "leaderboard.csv": to_csv(table),
             "leaderboard.html": to_html(md, table, images, header.lstrip("# ").strip(), notes),
             **{name: png for name, (_, png) in plots.items()}}
    written = write_outputs(out, files)
    return {"md": written["leaderboard.md"], "csv": written["leaderboard.csv"], "html": written["leaderboard.html"]}
