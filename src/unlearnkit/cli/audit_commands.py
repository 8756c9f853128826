"""`unlearnkit audit`, `unlearnkit compare` and `unlearnkit refs build`: thin wrappers over unlearnkit.audit."""

from __future__ import annotations

import argparse

from unlearnkit.cli.registry import command
from unlearnkit.tables import console, print_table

ROLES = ("original", "unlearned", "retrained")


def _with_args(add):
    def deco(fn):
        fn.arguments = add
        return fn

    return deco


# --------------------------------------------------------------------------- audit


def _audit_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the unlearned run directory to audit (from `unlearnkit forget`)")
    p.add_argument("--reference", metavar="RETRAIN_RUN",
                   help="a run retrained without the same forget set (`unlearnkit forget ORIG --method retrain`)")
    p.add_argument("--original", metavar="ORIGINAL_RUN",
                   help="the run before unlearning (default: the parent recorded in run.json, when it exists)")
    p.add_argument("--no-original", action="store_true", help="leave the original model out")
    p.add_argument("--refs", metavar="DIR", help="a reference-model pool (`unlearnkit refs build`) for LiRA and RMIA")
    p.add_argument("--fix-variance", action="store_true",
                   help="LiRA with one global variance (needs half as many reference models)")
    p.add_argument("--seed", type=int, default=0, help="seed of the attacks' subsampling and classifiers (default 0)")
    p.add_argument("--data", help="dataset path, if it moved since training (must be the same data)")
    p.add_argument("--no-plots", action="store_true", help="skip the figures (faster; the report has tables only)")


def _f(v, scale: float = 1.0):
    return None if v is None else float(v) * scale


@command("audit", "Audit an unlearned run (accuracy, membership attacks, gap to retraining); writes audit.json and report.{md,html}.")
@_with_args(_audit_args)
def audit_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.audit import audit  # noqa: PLC0415
    from unlearnkit.errors import UnlearnkitError  # noqa: PLC0415

    if args.no_original and args.original:
        raise UnlearnkitError("--original and --no-original contradict each other; pass one")
    result = audit(args.run, reference=args.reference, original=False if args.no_original else args.original,
                   refs=args.refs, fix_variance=args.fix_variance, seed=args.seed, data=args.data,
                   plots=not args.no_plots)
    a = result.to_dict()
    roles = [r for r in ROLES if r in a["accuracy"]]
    ag = a["against_retraining"]
    rows = []

    def add(label, values, gap_key=None):
        gap = ag["gaps"][gap_key]["gap"] if (ag and gap_key) else None
        rows.append([label, *values] + ([gap] if ag else []))

    acc, mia, sa, th = a["accuracy"], a["mia_efficacy"], a["seed_attack"], a["threshold_attacks"]
    add("UA % (100 - forget acc)", [acc[r]["ua"] for r in roles], "UA")
    add("RA % (retain acc)", [acc[r]["retain_acc"] for r in roles], "RA")
    add("TA % (test acc)", [acc[r]["test_acc"] for r in roles], "TA")
    add("val acc %", [acc[r]["val_acc"] for r in roles], "val acc")
    add("MIA-efficacy %", [_f(mia[r]["efficacy"], 100) for r in roles], "MIA-efficacy")
    add("seed attack FNR on forget", [sa[r]["sets"]["forget"]["fnr"] for r in roles])
    add("loss-threshold AUC forget vs val", [th[r]["loss"]["auc"] for r in roles])
    ra = a.get("reference_attacks")
    if ra:
        add("LiRA offline AUC forget vs test", [ra[r]["lira_offline"]["auc"] for r in roles])
        add("LiRA online AUC forget vs val", [ra[r]["lira_online"]["auc"] for r in roles])
        add("RMIA offline AUC forget vs test", [ra[r]["rmia_offline"]["auc"] for r in roles])
    if ag:
        rows.append(["JS divergence to retrained (forget)", *[None] * len(roles), ag["js_divergence"]["forget"]])
        rows.append(["average gap (UA, RA, TA, MIA)", *[None] * len(roles), ag["avg_gap"]])
        rows.append(["time ratio to reference", *[None] * len(roles), ag["time_ratio"]])
    print_table(f"audit of {a['run']['path']}", ["metric", *roles] + (["gap"] if ag else []), rows)
    console.print(f"verdict: {a['verdict']}")
    for note in a.get("notes") or []:  # e.g. why the recorded parent was left out: not only in the report
        console.print(f"note: {note}")
    console.print(f"audit took {a['timings']['total']:.1f} s; report: {result.files['report_html']} "
                  f"(also report.md, audit.json)")
    return 0


# What Ctrl-C leaves behind (cli/main.py prints it): audit and compare write their files only at the end.
audit_cmd.interrupt_hint = "nothing was written (audit.json and the reports are written last); run the audit again"


# --------------------------------------------------------------------------- compare


def _compare_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run directories (audited with `unlearnkit audit` first)")
    p.add_argument("--out", metavar="DIR", help="write compare.json and report.{md,html} for all runs into DIR")
    p.add_argument("--score", action="store_true",
                   help="NeurIPS 2023 forgetting score per method: needs >= 3 runs of a method and >= 3 retrain runs "
                        "(different seeds, same forget set)")
    p.add_argument("--seed", type=int, default=0, help="seed of the noise-floor split (default 0)")
    p.add_argument("--data", help="dataset path, if it moved since training")


@command("compare", "Put several audited runs in one table (and with --out, one report); --score adds the competition metric.")
@_with_args(_compare_args)
def compare_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.audit import compare  # noqa: PLC0415

    result = compare(args.runs, out=args.out, score=args.score, seed=args.seed, data=args.data)
    cols, rows = result["columns"], result["rows"]
    # One column per run, one row per metric: fits a terminal however many metrics there are.
    print_table(f"{len(rows)} run(s)", ["metric", *[r["run"] for r in rows]],
                [[c, *[r.get(c) for r in rows]] for c in cols if c != "run"])
    for s in result.get("forgetting_scores") or []:
        print_table(
            f"forgetting quality of {s['method']} ({s['n_unlearned']} unlearned vs {s['n_retrained']} retrained models, "
            f"{s['n_forget']} forget samples)",
            ["quantity", "value"],
            [["F (mean points)", s["F"]],
             ["noise floor F (retrained vs retrained)",
              s["noise_floor"] if s["noise_floor"] is not None else f"n/a: {s['noise_floor_note']}"],
             ["competition score F x RA ratio x TA ratio", s["competition_score"]],
             ["largest measurable epsilon with N models", s["max_measurable_epsilon"]],
             ["epsilon scored below", s["scored_epsilon_limit"]],
             ["samples at the epsilon cap", s["n_capped"]]],
        )
        if s["noise_floor"] is not None:
            console.print(f"noise floor: {s['noise_floor_note']}")
        for note in s.get("notes") or []:
            console.print(f"note: {note}")
    for note in result.get("notes") or []:
        console.print(f"note: {note}")
    if result["files"]:
        console.print(f"report: {result['files']['report_html']} (also report.md, compare.json)")
    return 0


compare_cmd.interrupt_hint = "nothing was written; run compare again"


# --------------------------------------------------------------------------- refs


def _refs_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("action", choices=["build"], help="build: train (or finish) the pool")
    p.add_argument("run", help="the run whose recipe and training pool the reference models use (the original run)")
    p.add_argument("--k", type=int, required=True, help="number of reference models (even: they come in complementary pairs)")
    p.add_argument("--out", metavar="DIR", help="pool directory (default: RUN/refs); re-running continues a killed build")
    p.add_argument("--seed", type=int, default=0, help="seed of the halves and of the models (default 0)")
    p.add_argument("--data", help="dataset path, if it moved since training")


@command("refs", "Build a pool of reference models (random halves of train+val) for LiRA and RMIA; resumable.")
@_with_args(_refs_args)
def refs_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.audit.refs import build_refs  # noqa: PLC0415

    pool = build_refs(args.run, args.k, args.out, seed=args.seed, data=args.data)
    console.print(f"reference pool: {pool.dir} ({pool.k} models, {len(pool.pool_ids)} pool samples, "
                  f"{len(pool.test_ids)} test samples)")
    console.print(f"use it with: unlearnkit audit UNLEARNED_RUN --refs {pool.dir}")
    return 0


refs_cmd.interrupt_hint = "run the same `unlearnkit refs build` again: it reuses finished models and resumes the one in training"
