"""`unlearnkit tune`: hyperparameter search for one method and one scenario kind (see unlearnkit.tuning)."""

from __future__ import annotations

import argparse
import shlex

from unlearnkit.cli.registry import command, with_arguments
from unlearnkit.tables import console, print_table


def _tune_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits", help="recipe of the tuning originals and retrained models (default: digits)")
    p.add_argument("--data", help="dataset for presets that need one")
    p.add_argument("--method", required=True, help="the method to tune (see `unlearnkit methods`)")
    p.add_argument("--forget", default="random:0.1", metavar="KIND",
                   help="scenario kind: random[:FRACTION] (default random:0.1), class (a different whole class per tuning seed) "
                        "or class-share[:SHARE] (that share of a different class per tuning seed, default 0.5)")
    p.add_argument("--trials", type=int, required=True, help="finished trials to reach (a rerun continues up to this count)")
    p.add_argument("--sets", type=int, default=3, help="tuning forget sets, one seed each (default: 3)")
    p.add_argument("--seed-start", type=int, default=100, help="first tuning seed (>= 100; evaluation uses 0, 1, 2, ...)")
    p.add_argument("--budget", type=float, default=0.05,
                   help="largest cost as a share of retraining (default 0.05 = 5%%); settings estimated above 90%% of it "
                        "(10%% kept for the estimates' error) are never run; a resumed search may lower it")
    p.add_argument("--margin", type=float, default=2.0,
                   help="largest RA and TA drop vs retraining, in points, for a feasible trial (default: 2)")
    p.add_argument("--jobs", type=int, default=1, help="search processes sharing the study (default: 1)")
    p.add_argument("--executor", default="local", choices=["local", "ray"], help="run the search processes as Ray tasks")
    p.add_argument("--ray-address", help="join an existing Ray cluster")
    p.add_argument("--store", help="bench folder (store/, logs/) of the tuning originals and retrained models, shared between searches (default: tune-store beside --out)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the recipe, e.g. --set train.epochs=5 (repeatable)")
    p.add_argument("--trial-retain", default="auto", metavar="N",
                   help="each trial's audit computes RA on a seeded random subset of N retain samples (default auto: as many "
                        "as MIA-efficacy's members, |test|; all or -1: full audits); the best setting's final numbers are full audits")
    p.add_argument("--start", dest="starts", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE...]",
                   help="a point tried before the sampler's own, after the paper defaults, e.g. --start epochs=0.7,lr=0.02 "
                        "(a paper default scaled to the budget); repeatable, queued once per study")
    p.add_argument("--export", action="store_true", help="write the best setting as the tuned default for this preset and kind")
    p.add_argument("--out", required=True, help="folder of the search: study.db, best.json, trials.csv, report.*")


def _command_line(args: argparse.Namespace) -> str:
    """The command that reproduces this search (what an exported entry records)."""
    parts = ["unlearnkit", "tune", "--preset", args.preset] + (["--data", args.data] if args.data else [])
    parts += ["--method", args.method, "--forget", args.forget, "--trials", str(args.trials), "--sets", str(args.sets),
              "--seed-start", str(args.seed_start), "--budget", str(args.budget), "--margin", str(args.margin)]
    parts += ["--trial-retain", str(args.trial_retain)]
    for item in args.overrides:
        parts += ["--set", item]
    for item in args.starts:
        parts += ["--start", item]
    # The store holds the references a rerun reuses; without it a rerun trains them again beside --out.
    parts += (["--store", str(args.store)] if args.store else []) + ["--out", args.out] + (["--export"] if args.export else [])
    return shlex.join(parts)


def _parse_start(text: str) -> dict[str, str]:
    from unlearnkit.errors import UnlearnkitError  # noqa: PLC0415

    point = {}
    for pair in filter(None, (x.strip() for x in text.split(","))):
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise UnlearnkitError(f"--start {text!r}: write KEY=VALUE pairs separated by commas, e.g. lr=0.01,epochs=0.5")
        point[key.strip()] = value.strip()
    return point


@command("tune", "Search one method's hyperparameters for a scenario kind against retrained references (Optuna).")
@with_arguments(_tune_args)
def tune_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.config import resolve_config  # noqa: PLC0415
    from unlearnkit.tuning.search import tune  # noqa: PLC0415

    recipe = list(args.overrides) + ([f"data.source={args.data}"] if args.data else [])
    cfg = resolve_config(args.preset, recipe)
    result = tune(cfg, args.method, args.forget, args.out, trials=args.trials, sets=args.sets, seed_start=args.seed_start,
                  budget=args.budget, margin=args.margin, jobs=args.jobs, executor=args.executor,
                  ray_address=args.ray_address, store=args.store, export=args.export, command=_command_line(args),
                  trial_retain=args.trial_retain, starts=[_parse_start(item) for item in args.starts])
    c = result.counts
    rows = []
    for label, t in (("chosen", result.best), ("paper defaults", result.default), ("lowest gap (any)", result.lowest)):
        if t is not None:
            rows.append([label, t["number"], ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["values"].items()),
                         t["avg_gap"], t["ra_drop"], t["ta_drop"], t["time_ratio"]])
    print_table(f"tune {args.method} / {result.settings['forget']}: {result.ran} trial(s) this run; {c['complete']} complete, "
                f"{c['pruned']} pruned, {c['budget']} over budget, {c.get('budget_fits', 0)} budget fits", ["", "trial", "values", "avg gap", "RA drop", "TA drop",
                                                                     "time / retrain"], rows)
    if result.best is None:
        console.print(f"no trial kept RA and TA within {args.margin} points of retraining")
    elif result.best.get("incumbent"):
        from unlearnkit.tuning.report import incumbent_lines  # noqa: PLC0415

        console.print(incumbent_lines(result.best, None)[0])
    if result.entry is not None:
        console.print(f"tuned default {result.entry['id']} written to {result.entry_path}")
    console.print(f"report: {result.files['report_md']}  (html: {result.files['report_html']})")
    return 0
