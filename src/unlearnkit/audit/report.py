"""Audit reports: one document model rendered as Markdown (terminals, diffs) and as a
self-contained HTML page (inline CSS, plots embedded as base64 PNG; opens offline).

`audit_document(audit_dict, images)` and `compare_document(compare_dict, images)` build a `Doc`
from the JSON-ready dicts that `audit` / `compare` write, so a report can be re-rendered from
``audit.json`` alone (plus the PNGs).
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from typing import Any, Mapping

__all__ = ["Doc", "audit_document", "compare_document", "fmt_pct", "fmt_num"]

ROLES = ("original", "unlearned", "retrained")
DASH = "—"
_NUMERIC = re.compile(r"^([+-]?[\d.,]+(e[+-]?\d+)?%?|—|n/a.*|\d+ / \d+)$")


# --------------------------------------------------------------------------- formatting


def _bad(v: Any) -> bool:
    return v is None or (isinstance(v, float) and not math.isfinite(v))


def fmt_pct(v: Any, digits: int = 2) -> str:
    """A percentage already in 0..100."""
    return DASH if _bad(v) else f"{float(v):.{digits}f}"


def fmt_rate(v: Any, digits: int = 2) -> str:
    """A rate in 0..1 shown as a percentage."""
    return DASH if _bad(v) else f"{100.0 * float(v):.{digits}f}%"


def fmt_num(v: Any, digits: int = 3) -> str:
    if _bad(v):
        return DASH
    if isinstance(v, int):
        return str(v)
    v = float(v)
    return f"{v:.{digits}g}" if (v and abs(v) < 10 ** (-digits + 1)) else f"{v:.{digits}f}"


def fmt_s(v: Any) -> str:
    return DASH if _bad(v) else f"{float(v):.2f}"


# --------------------------------------------------------------------------- document


@dataclass
class Doc:
    title: str
    blocks: list[tuple] = field(default_factory=list)

    def h2(self, text: str) -> None:
        self.blocks.append(("h2", text))

    def p(self, text: str, strong: str | None = None) -> None:
        self.blocks.append(("p", text, strong))

    def bullets(self, items: list[str]) -> None:
        if items:
            self.blocks.append(("ul", list(items)))

    def table(self, columns: list[str], rows: list[list[Any]], caption: str | None = None) -> None:
        self.blocks.append(("table", list(columns), [[str(c) for c in r] for r in rows], caption))

    def image(self, name: str, png: bytes | None, caption: str) -> None:
        if png:
            self.blocks.append(("img", name, png, caption))

    # ----- renderers

    def to_markdown(self, image_dir: str = "audit_plots") -> str:
        out = [f"# {self.title}", ""]
        for b in self.blocks:
            kind = b[0]
            if kind == "h2":
                out += [f"## {b[1]}", ""]
            elif kind == "p":
                out += [(f"**{b[2]}** " if b[2] else "") + b[1], ""]
            elif kind == "ul":
                out += [f"- {item}" for item in b[1]] + [""]
            elif kind == "table":
                _, cols, rows, caption = b
                if caption:
                    out += [f"*{caption}*", ""]
                esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
                out.append("| " + " | ".join(esc(c) for c in cols) + " |")
                numeric = [i > 0 and all(_NUMERIC.match(r[i]) for r in rows) for i in range(len(cols))]
                out.append("|" + "|".join("---:" if n else "---" for n in numeric) + "|")
                out += ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows]
                out.append("")
            elif kind == "img":
                _, name, _, caption = b
                out += [f"![{caption}]({image_dir}/{name}.png)", "", f"*{caption}*", ""]
        return "\n".join(out).rstrip() + "\n"

    def to_html(self) -> str:
        e = html.escape
        body = [f"<h1>{e(self.title)}</h1>"]
        for b in self.blocks:
            kind = b[0]
            if kind == "h2":
                body.append(f"<h2>{e(b[1])}</h2>")
            elif kind == "p":
                strong = f"<strong>{e(b[2])}</strong> " if b[2] else ""
                cls = ' class="verdict"' if b[2] else ""
                body.append(f"<p{cls}>{strong}{e(b[1])}</p>")
            elif kind == "ul":
                body.append("<ul>" + "".join(f"<li>{e(i)}</li>" for i in b[1]) + "</ul>")
            elif kind == "table":
                _, cols, rows, caption = b
                cap = f'<p class="cap">{e(caption)}</p>' if caption else ""
                numeric = [i > 0 and all(_NUMERIC.match(r[i]) for r in rows) for i in range(len(cols))]
                head = "".join(f"<th>{e(c)}</th>" for c in cols)
                trs = "".join("<tr>" + "".join(f'<td class="{"n" if numeric[i] else "t"}">{e(c)}</td>'
                                               for i, c in enumerate(r)) + "</tr>" for r in rows)
                body.append(f'{cap}<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{trs}</tbody></table></div>')
            elif kind == "img":
                _, name, png, caption = b
                data = base64.b64encode(png).decode("ascii")
                body.append(f'<figure><img alt="{e(caption)}" src="data:image/png;base64,{data}">'
                            f"<figcaption>{e(caption)}</figcaption></figure>")
        return _HTML.format(title=e(self.title), css=_CSS, body="\n".join(body))


_CSS = """
body{font-family:-apple-system,"Segoe UI",Roboto,"DejaVu Sans",Helvetica,Arial,sans-serif;max-width:1100px;
margin:24px auto;padding:0 16px;color:#1b1f23;background:#fff;line-height:1.45}
h1{font-size:1.6em;border-bottom:2px solid #d0d7de;padding-bottom:6px}
h2{font-size:1.25em;margin-top:1.8em;border-bottom:1px solid #e5e7eb;padding-bottom:4px}
p.verdict{background:#f0f6ff;border-left:4px solid #1f77b4;padding:10px 14px;font-size:1.05em}
.tw{overflow-x:auto;margin:10px 0 18px}
table{border-collapse:collapse;font-size:0.9em}
p.cap{font-style:italic;color:#57606a;margin:14px 0 4px;max-width:900px}
th,td{border:1px solid #d0d7de;padding:4px 10px;white-space:nowrap}
th{text-align:left;white-space:normal;vertical-align:bottom}
td.n{text-align:right;font-variant-numeric:tabular-nums}
td.t{text-align:left}
thead th{background:#f6f8fa}
tbody tr:nth-child(even){background:#fafbfc}
figure{margin:16px 0 28px}
figure img{max-width:100%;height:auto;border:1px solid #e5e7eb}
figcaption{color:#57606a;font-size:0.9em;margin-top:4px}
li{margin:2px 0}
"""

_HTML = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{css}</style>
</head>
<body>
{body}
</body>
</html>
"""


# --------------------------------------------------------------------------- audit report


def _roles(a: Mapping[str, Any]) -> list[str]:
    return [r for r in ROLES if r in a["accuracy"]]


def audit_document(a: Mapping[str, Any], images: Mapping[str, bytes]) -> Doc:
    run = a["run"]
    roles = _roles(a)
    title = f"Unlearning audit: {run.get('method') or run['name']} on {run.get('forget_spec')} ({run.get('dataset')})"
    doc = Doc(title)
    doc.p(a["verdict"], strong="Verdict:")

    # Runs
    rows = []
    for role, key in (("unlearned", "run"), ("retrained", "reference"), ("original", "original")):
        d = a.get(key)
        if d:
            rows.append([role, d["name"], d.get("method") or d.get("kind") or DASH, d.get("forget_spec") or DASH,
                         d["model"], fmt_s(d.get("unlearn_seconds")), d["path"]])
    doc.table(["model", "run", "method", "forget", "architecture", "unlearn s", "path"], rows, caption="Runs")
    if a.get("refs"):
        r = a["refs"]
        doc.p(f"Reference-model pool: {r['path']} — K = {r['k']} models (complementary halves of the "
              f"{r['n_pool']}-sample training pool, seed {r['seed']}).")

    # Accuracy
    doc.h2("Accuracy")
    acc = a["accuracy"]
    ag = a.get("against_retraining")
    cols = ["metric (%)"] + roles + (["gap to retrained"] if ag else [])
    mia = a["mia_efficacy"]
    lines = [("retain (RA)", "retain_acc", "RA"), ("forget", "forget_acc", "forget acc"), ("UA = 100 − forget", "ua", "UA"),
             ("validation", "val_acc", "val acc"), ("test (TA)", "test_acc", "TA")]
    rows = []
    for label, key, gkey in lines:
        row = [label] + [fmt_pct(acc[r][key]) for r in roles]
        if ag:
            row.append(fmt_pct(ag["gaps"][gkey]["gap"]))
        rows.append(row)
    row = ["MIA-efficacy"] + [fmt_pct(100 * mia[r]["efficacy"]) for r in roles]
    if ag:
        row.append(fmt_pct(ag["gaps"]["MIA-efficacy"]["gap"]))
    rows.append(row)
    doc.table(cols, rows, caption="Accuracy on each part of the split (n: "
              + ", ".join(f"{p} {n}" for p, n in acc["unlearned"]["n"].items()) + ")")

    if ag:
        doc.h2("Against retraining")
        rows = [[k, fmt_pct(g["unlearned"]), fmt_pct(g["retrained"]), f"{g['diff']:+.2f}", fmt_pct(g["gap"])]
                for k, g in ag["gaps"].items()]
        doc.table(["metric", "unlearned", "retrained", "difference", "gap"], rows,
                  caption=f"Average gap over {', '.join(ag['avg_gap_over'])}: {ag['avg_gap']:.2f} points")
        rows = [
            ["average gap (UA, RA, TA, MIA-efficacy)", fmt_pct(ag["avg_gap"])],
            ["JS divergence to retrained, forget", fmt_num(ag["js_divergence"]["forget"], 4)],
            ["JS divergence to retrained, test", fmt_num(ag["js_divergence"]["test"], 4)],
            ["unlearning time (s)", fmt_s(ag["unlearn_seconds"])],
            [f"reference time (s, {ag.get('reference_method')})", fmt_s(ag["reference_seconds"])],
            ["run-time efficiency (time ratio)", fmt_num(ag["time_ratio"])],
        ]
        if ag.get("time_vs_original_training") is not None:
            rows.append(["time / original training time", fmt_num(ag["time_vs_original_training"])])
        doc.table(["quantity", "value"], rows)

    # Seed attack
    doc.h2("Membership inference")
    sa = a["seed_attack"]
    rows = []
    for s in ("forget", "train", "test"):
        for k, label in (("fnr", "FNR"), ("accuracy", "accuracy"), ("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
            if s == "test" and k in ("fnr", "precision", "recall", "f1"):
                continue  # an all-non-member set: only accuracy (= 1 - FPR) is defined
            rows.append([f"{s}: {label}"] + [fmt_num(sa[r]["sets"][s][k]) for r in roles])
    rows.append(["attack train accuracy"] + [fmt_num(sa[r]["attack_train_accuracy"]) for r in roles])
    doc.table(["seed attack"] + roles, rows,
              caption="The seed project's attack: gradient-boosted trees on sorted softmax vectors, trained on retain "
                      "(members) vs validation (non-members), balanced. Forget/train count as members; FNR on forget = "
                      "share of forget samples the attack calls non-members.")
    rows = [["MIA-efficacy %"] + [fmt_pct(100 * mia[r]["efficacy"]) for r in roles],
            ["SVC train accuracy"] + [fmt_num(mia[r]["attack_train_acc"]) for r in roles],
            ["members / non-members"] + [f"{mia[r]['n_members']} / {mia[r]['n_nonmembers']}" for r in roles]]
    doc.table(["MIA-efficacy"] + roles, rows,
              caption="SVC on true-label confidence, retain (members) vs test (non-members); efficacy = share of "
                      "forget predicted non-member (higher = more forgotten).")
    rows = []
    for score in ("loss", "confidence"):
        rows += _roc_rows(f"{score} threshold", {r: a["threshold_attacks"][r][score] for r in roles}, roles)
    doc.table(["threshold attack: forget vs val"] + roles, rows,
              caption="Global-threshold attacks; AUC 0.5 = forget looks like held-out data. TPR at an FPR below "
                      "1/n(non-members) reads the zero-false-positive point.")
    if a.get("reference_attacks"):
        ra = a["reference_attacks"]
        rows = []
        for name, label in (("lira_offline", "LiRA offline (forget vs test)"), ("lira_online", "LiRA online (forget vs val)"),
                            ("rmia_offline", "RMIA offline (forget vs test)")):
            rows += _roc_rows(label, {r: ra[r][name] for r in roles}, roles)
        fv = ra["unlearned"]["lira_offline"].get("fix_variance")
        doc.table(["reference-model attack"] + roles, rows,
                  caption=f"K = {a['refs']['k']} reference models{' (LiRA with one global variance)' if fv else ''}. "
                          "Offline LiRA and RMIA use only the models that did not train on a sample; online LiRA needs "
                          "IN and OUT models for both sides, so it compares forget with validation.")

    if a.get("notes"):
        doc.h2("Notes")
        doc.bullets(list(a["notes"]))

    doc.h2("Plots")
    doc.image("histograms", images.get("histograms"),
              "Logit-scaled confidence and loss of forget, test and retain samples under each model")
    doc.image("roc", images.get("roc"), "Log-log ROC curves of each attack, per model")
    doc.image("per_class", images.get("per_class"), "Per-class accuracy on test and forget")

    doc.h2("Timings")
    t = a["timings"]
    doc.table(["step", "seconds"], [[k, fmt_s(v)] for k, v in t.items()], caption="Wall-clock seconds per step")
    return doc


def _roc_rows(label: str, res: Mapping[str, Mapping[str, Any]], roles: list[str]) -> list[list[str]]:
    rows = [[f"{label}: AUC"] + [fmt_num(res[r]["auc"]) for r in roles]]
    for f in ("0.01", "0.001"):
        rows.append([f"{label}: TPR at {float(f) * 100:g}% FPR"] + [fmt_rate(res[r]["tpr_at_fpr"].get(f)) for r in roles])
    return rows


# --------------------------------------------------------------------------- compare report


def compare_document(c: Mapping[str, Any], images: Mapping[str, bytes]) -> Doc:
    rows = c["rows"]
    doc = Doc(f"Unlearning comparison: {len(rows)} run(s)")
    best = [r for r in rows if r.get("avg gap") is not None and r.get("method") != "retrain"]
    if best:
        b = min(best, key=lambda r: r["avg gap"])
        cost = f" at {fmt_num(b['time ratio'])}x the reference's time" if b.get("time ratio") else ""
        doc.p(f"closest to retraining: {b['run']} ({b.get('method')}), average gap {b['avg gap']:.2f} points{cost}.",
              strong="Verdict:")
    cols = c["columns"]
    pct_cols = {"UA", "RA", "TA", "val acc", "MIA-efficacy", "avg gap"}
    text_cols = {"run", "method", "forget"}
    table = []
    for r in rows:
        line = []
        for k in cols:
            v = r.get(k)
            line.append((v if v is not None else DASH) if k in text_cols else fmt_pct(v) if k in pct_cols
                        else fmt_s(v) if k == "unlearn s" else fmt_num(v))
        table.append(line)
    doc.table(cols, table, caption="One row per run (the audited model of each); percentages in points")
    if c.get("forgetting_scores"):
        doc.h2("Forgetting quality (NeurIPS 2023 competition)")
        rows2 = []
        for s in c["forgetting_scores"]:
            rows2.append([
                s["method"], f"{s['n_unlearned']} / {s['n_retrained']}", s["n_forget"], fmt_num(s["F"]),
                fmt_num(s["noise_floor"]) if s["noise_floor"] is not None else f"n/a ({s['noise_floor_note']})",
                fmt_num(s["competition_score"]), fmt_num(s["max_measurable_epsilon"]), fmt_num(s["scored_epsilon_limit"]),
                s["n_capped"],
            ])
        doc.table(["method", "runs (unlearned / retrained)", "forget samples", "F", "noise floor F",
                   "score F·RA·TA ratios", "max measurable ε", "ε scored below", "capped samples"], rows2,
                  caption="F = mean per-example points from epsilon; compare it with the noise floor (retrained vs "
                          "retrained), not with 1. With N models per side no epsilon above log(N−1) can be measured.")
    doc.bullets(list(c.get("notes") or []))
    doc.image("tradeoff", images.get("tradeoff"), "Accuracy metrics per run, and closeness to retraining vs cost")
    doc.image("roc", images.get("roc"), "Log-log ROC of each attack on each run's unlearned model")
    return doc
