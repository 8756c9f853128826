"""The search's outputs: best.json, trials.csv, plots, and report.md + a self-contained report.html
(the style of the bench leaderboard: Markdown for terminals and diffs, HTML with plots embedded)."""

from __future__ import annotations

import base64
import csv
import html
import io
import json
import math
from pathlib import Path
from typing import Any

from unlearnkit.runs import atomic_write_bytes, atomic_write_text
from unlearnkit.tuning.objective import FIT_UNTIL


def _f(v: Any, digits: int = 2) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:.{digits}f}" if abs(v) >= 10 ** -digits or v == 0 else f"{v:.3g}"
    return str(v)


def _signed(v: float | None) -> str:
    return "—" if v is None else f"{v:+.2f}"


def _values(values: dict[str, Any]) -> str:
    return ", ".join(f"{k}={_f(v, 4) if isinstance(v, float) else v}" for k, v in values.items())


def write_report(result, study) -> dict[str, str]:
    out: Path = result.out
    files = {}
    best_doc = {"settings": result.settings, "best": result.best, "paper_defaults": result.default,
                "lowest_gap_any": result.lowest, "counts": result.counts,
                "command": study.user_attrs.get("command")}
    atomic_write_text(out / "best.json", json.dumps(best_doc, indent=2, default=str) + "\n")
    files["best"] = str(out / "best.json")
    atomic_write_text(out / "trials.csv", to_csv(result.rows))
    files["trials"] = str(out / "trials.csv")
    images = plots(result, study)
    for name, png in images.items():
        atomic_write_bytes(out / "plots" / f"{name}.png", png)
    md, sections = to_markdown(result, study, images)
    atomic_write_text(out / "report.md", md)
    atomic_write_text(out / "report.html", to_html(sections, images, _title(result.settings)))
    files.update(report_md=str(out / "report.md"), report_html=str(out / "report.html"))
    return files


def _title(s: dict[str, Any]) -> str:
    return f"unlearnkit tune: {s['method']} on {s['preset']}, forget {s['forget']}"


def to_csv(rows: list[dict[str, Any]]) -> str:
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=keys)
    w.writeheader()
    for r in rows:
        w.writerow({k: ("" if r.get(k) is None else r.get(k)) for k in keys})
    return buf.getvalue()


# --------------------------------------------------------------------------- text


def _sections(result, study) -> list[tuple[str, list[Any]]]:
    """[(heading, blocks)]: a block is a paragraph (str) or a table (columns, rows)."""
    s, c = result.settings, result.counts
    best, default, lowest = result.best, result.default, result.lowest
    setup = [
        f"Objective: the audit's average gap to retraining (mean |method - retrain| over UA, RA, TA, MIA-efficacy), "
        f"averaged over {len(s['seeds'])} tuning forget sets: {', '.join(f'{f} (seed {sd})' for f, sd in zip(s['forget_sets'], s['seeds']))}. "
        f"Each set has its own original and retrained model (bench store). Tuning seeds start at 100; the bench and "
        f"leaderboards evaluate on seeds 0, 1, 2, ..., which never overlap them.",
        f"Constraint: mean RA and mean TA at most {_f(s['margin'])} points below retraining (a trial outside it is "
        f"infeasible, whatever its gap). Budget: estimated cost at most {_f(100 * s['budget'])}% of retraining = "
        f"{_f(s['budget_ree'])} REE of {s['retrain_ree']} (settings above it are never run).",
        f"Trials: {c['complete']} complete, {c['pruned']} pruned (median pruner or method error), {c['budget']} over "
        f"budget (not run), {c['failed']} failed or interrupted; {c.get('budget_fits', 0)} of the trials that ran were budget fits "
        "(an over-budget draw's nearest in-budget point, run while its categorical options had run fewer than "
        f"{FIT_UNTIL} times). Sampler: TPE (seeded, with the constraint); pruner: median between tuning forget sets.",
        f"Evaluation: {s.get('evaluation', 'trials: full audits; final: full audits')}.",
    ]
    sections: list[tuple[str, list[Any]]] = [("Setup", setup)]
    choice: list[Any] = []
    if best is None:
        choice.append(f"No trial kept RA and TA within {_f(s['margin'])} points of retraining: there is no tuned "
                      "setting to recommend (more --trials, a wider --margin, or another method).")
    else:
        choice.append(f"Chosen: trial #{best['number']} — {_values(best['values'])}: average gap {_f(best['avg_gap'])} "
                      f"points, RA {_signed(-best['ra_drop'])} and TA {_signed(-best['ta_drop'])} points vs retraining, "
                      f"estimated cost {_f(best['cost_ree'])} REE, measured time {_f(best['time_ratio'], 3)}x retraining.")
    if default is not None:
        if default.get("avg_gap") is None:
            choice.append(f"Paper defaults (trial #{default['number']}): not scored ({_reason(study, default['number'])}).")
        else:
            choice.append(f"Paper defaults (trial #{default['number']}): average gap {_f(default['avg_gap'])}, RA "
                          f"{_signed(-default['ra_drop'])}, TA {_signed(-default['ta_drop'])} points vs retraining"
                          + ("" if default.get("feasible") else " — outside the margin") + ".")
    choice += incumbent_lines(best, lowest)  # including a feasible lower trial score that was not chosen
    if lowest is not None and best is not None and lowest["number"] != best["number"]:
        if not lowest.get("feasible"):
            choice.append(f"Trade-off: the lowest gap of any trial, {_f(lowest['avg_gap'])} (#{lowest['number']}), lost "
                          f"{_f(lowest['ra_drop'])} RA and {_f(lowest['ta_drop'])} TA points against retraining — more than "
                          f"the {_f(s['margin'])}-point margin — so it was rejected: its small gap comes from a damaged model.")
    elif best is not None:
        choice.append("Trade-off: the chosen trial also has the lowest gap of all trials; the margin excluded nothing better.")
    sections.append(("Choice and trade-off", choice))
    if best is not None and best.get("final"):
        rows = [[r["forget"], r["seed"], _f(r["UA"]), _f(r["RA"]), _f(r["RA_retrain"]), _f(r["TA"]), _f(r["TA_retrain"]),
                 _f(r["MIA"]), _f(r["avg_gap"]), _f(r["time_ratio"], 3)] for r in best["final"]]
        sections.append(("Best setting, full audits", [
            "The chosen values re-run as bench jobs on every tuning set, each with a full audit (report.html in the store):",
            (["forget set", "seed", "UA %", "RA %", "RA retrain", "TA %", "TA retrain", "MIA-eff. %", "avg gap", "time / retrain"], rows),
        ]))
    params = sorted({k for r in result.rows for k in r if k.startswith("param:")})
    rows = [[r["number"], r["state"] + (f" ({r['reason']})" if r["reason"] else ""), r["origin"],
             *[_f(r.get(p), 4) for p in params], _f(r["avg_gap"]), _f(r["ra_drop"]), _f(r["ta_drop"]), _f(r["feasible"]),
             _f(r["cost_share"], 3), _f(r["time_ratio"], 3), _f(r["seconds"], 1)] for r in result.rows]
    sections.append(("Trials", [([
        "#", "state", "origin", *[p.removeprefix("param:") for p in params], "avg gap", "RA drop", "TA drop", "feasible",
        "est. cost / retrain", "time / retrain", "seconds"], rows),
        "RA/TA drop = retraining's accuracy minus the trial's (mean over the tuning sets; positive = worse).",
    ]))
    return sections


def _reason(study, number: int) -> str:
    t = study.trials[number]
    return {"budget": f"over the cost budget ({_f(t.user_attrs.get('cost_ree'))} REE)", "median": "pruned",
            "error": f"method error: {t.user_attrs.get('error')}"}.get(t.user_attrs.get("reason", ""), t.state.name.lower())


def to_markdown(result, study, images: dict[str, bytes]) -> tuple[str, list]:
    sections = _sections(result, study)
    lines = [f"# {_title(result.settings)}", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for b in blocks:
            if isinstance(b, str):
                lines += [b, ""]
            else:
                cols, rows = b
                lines += ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
                lines += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows] + [""]
    for name, caption in _CAPTIONS.items():
        if name in images:
            lines += [f"![{caption}](plots/{name}.png)", "", f"*{caption}*", ""]
    notes = [n for n in _plot_notes(result) if n]
    lines += notes + ([""] if notes else [])
    return "\n".join(lines).rstrip() + "\n", sections


def to_html(sections: list, images: dict[str, bytes], title: str) -> str:
    e = html.escape
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{e(title)}</title>",
             "<style>body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em}"
             "table{border-collapse:collapse;margin:1em 0;font-size:0.9em}td,th{border:1px solid #ccc;padding:4px 8px;"
             "text-align:right}td:first-child,th:first-child{text-align:left}img{max-width:100%}</style>",
             f"</head><body><h1>{e(title)}</h1>"]
    for heading, blocks in sections:
        parts.append(f"<h2>{e(heading)}</h2>")
        for b in blocks:
            if isinstance(b, str):
                parts.append(f"<p>{e(b)}</p>")
            else:
                cols, rows = b
                parts.append("<table><tr>" + "".join(f"<th>{e(str(c))}</th>" for c in cols) + "</tr>"
                             + "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in rows)
                             + "</table>")
    for name, caption in _CAPTIONS.items():
        if name in images:
            data = base64.b64encode(images[name]).decode()
            parts.append(f"<h2>{e(caption)}</h2><img alt='{e(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- plots

_CAPTIONS = {
    "history": "optimisation history: average gap per trial (feasible / outside the RA-TA margin) and the best feasible so far",
    "tradeoff": "trade-off: average gap vs. retain-accuracy drop (the margin is the dashed line)",
    "importance": "parameter importances (fANOVA over the complete trials)",
}


def _complete(result) -> list[dict[str, Any]]:
    return [r for r in result.rows if r["state"] == "complete" and r["avg_gap"] is not None]


def _plot_notes(result) -> list[str]:
    done = _complete(result)
    if len(done) < 2 or len({r["avg_gap"] for r in done}) < 2:
        return [f"Parameter importances need at least 2 complete trials with different scores (this search has "
                f"{len(done)} complete); run more --trials."]
    return []


def plots(result, study) -> dict[str, bytes]:
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415

    done = _complete(result)
    images: dict[str, bytes] = {}
    if not done:
        return images
    fig, ax = plt.subplots(figsize=(7, 4))
    xs = [r["number"] for r in done]
    ok = [r for r in done if r["feasible"]]
    bad = [r for r in done if not r["feasible"]]
    ax.scatter([r["number"] for r in ok], [r["avg_gap"] for r in ok], label="feasible", color="tab:blue")
    ax.scatter([r["number"] for r in bad], [r["avg_gap"] for r in bad], label="outside the RA/TA margin", color="tab:red", marker="x")
    best, line = math.inf, []
    for r in sorted(done, key=lambda r: r["number"]):
        if r["feasible"]:
            best = min(best, r["avg_gap"])
        line.append(best)
    ax.step(sorted(xs), line, where="post", color="tab:green", label="best feasible so far")
    ax.set_xlabel("trial")
    ax.set_ylabel("average gap to retraining (points)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    images["history"] = _png(fig, plt)

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter([r["ra_drop"] for r in ok], [r["avg_gap"] for r in ok], color="tab:blue", label="feasible")
    ax.scatter([r["ra_drop"] for r in bad], [r["avg_gap"] for r in bad], color="tab:red", marker="x", label="infeasible")
    ax.axvline(result.settings["margin"], ls="--", color="grey")
    if result.best is not None:
        ax.scatter([result.best["ra_drop"]], [result.best["avg_gap"]], s=160, facecolors="none", edgecolors="k", label="chosen")
    ax.set_xlabel("RA drop vs retraining (points)")
    ax.set_ylabel("average gap (points)")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    images["tradeoff"] = _png(fig, plt)

    if not _plot_notes(result):
        import optuna  # noqa: PLC0415

        # fANOVA over complete trials; fixed seed so the figure is reproducible.
        imp = optuna.importance.get_param_importances(
            study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        if imp:
            fig, ax = plt.subplots(figsize=(6, 0.5 + 0.5 * len(imp)))
            names = list(imp)[::-1]
            ax.barh(names, [imp[n] for n in names], color="tab:blue")
            ax.set_xlabel("importance (share of the objective's variance)")
            images["importance"] = _png(fig, plt)
    return images


def _png(fig, plt) -> bytes:
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def incumbent_lines(best: dict[str, Any] | None, lowest: dict[str, Any] | None) -> list[str]:
    """What the search did with the entry it started from (search._keep_incumbent), and why a
    feasible trial with a lower trial score than the chosen one was not chosen."""
    out: list[str] = []
    kept = (best or {}).get("incumbent")
    if kept is not None:
        # The entry the study started from: what runs took when it was created (a later export may have replaced it).
        entry = f"the entry this search started from, {kept['entry']}" if kept.get("entry") else "the entry this search started from"
        if kept["kept"]:
            out.append(f"Kept {entry} (trial #{kept['incumbent']}): in full audits on the tuning sets it scores "
                       f"{_f(kept['incumbent_avg_gap'])} against {_f(kept['challenger_avg_gap'])} for the best new trial "
                       f"(#{kept['challenger']}); a search replaces it only when it gains at least "
                       f"{_f(kept['min_gain'])} points there.")
        else:
            out.append(f"Replaces {entry} (trial #{kept['incumbent']}): full audits on the tuning sets "
                       f"{_f(kept['incumbent_avg_gap'])} -> {_f(kept['challenger_avg_gap'])}.")
    if lowest is not None and best is not None and lowest["number"] != best["number"] and lowest.get("feasible"):
        why = ("the entry it started from was kept (above)" if kept is not None and kept["kept"] and lowest["number"] == kept["challenger"]
               else "its estimated cost is above the search's (lowered) budget")
        out.append(f"Trade-off: the lowest trial score, {_f(lowest['avg_gap'])} (#{lowest['number']}), was not chosen: {why}.")
    return out
