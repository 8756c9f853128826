"""`unlearnkit bench`: methods x forget scenarios x seeds, cached, local or on Ray."""

from __future__ import annotations

import argparse

from unlearnkit.cli.registry import command, with_arguments
from unlearnkit.errors import UnlearnkitError
from unlearnkit.tables import console, print_table


def _bench_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits", help="recipe of every original and retrained model (default: digits)")
    p.add_argument("--data", help="dataset for presets that need one")
    p.add_argument("--methods", default="all", help="all, or a comma-separated list (retrain always runs: the reference)")
    p.add_argument("--forget", default="random:0.1", help="comma-separated scenarios, e.g. random:0.1,class:cat (a new one starts at a spec kind: random:0.1,class:3,5 is two)")
    p.add_argument("--seeds", type=int, default=1, help="independent seeds (split, init, order) per scenario")
    p.add_argument("--seed-start", type=int, default=0, metavar="S",
                   help="first seed: the bench runs seeds S..S+SEEDS-1 (default 0); benches of other seeds on the "
                        "same --out share its store, e.g. one machine or core per seed, then --seeds N from 0 gathers them")
    p.add_argument("--score-models", type=int, default=0, metavar="N",
                   help="also run N method/retrain seeds on seed 0 for the competition's epsilon score (N >= 3; the noise floor needs N >= 6)")
    p.add_argument("--retrain-floor", action="store_true",
                   help="also retrain each (seed, scenario) with a second initial seed and audit it against the reference: "
                        "a leaderboard row with the gap a perfect method scores (one more retraining per seed and scenario)")
    p.add_argument("--executor", default="local", choices=["local", "ray"], help="where jobs run (default: local)")
    p.add_argument("--workers", type=int, default=1, metavar="N",
                   help="local executor: run jobs in N processes, one training/unlearning job at a time (so its time "
                        "stays comparable) with audits beside it; for a GPU machine with spare cores (default 1)")
    p.add_argument("--ray-address", help="join an existing Ray cluster (default: start a local instance)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override the recipe (train.epochs=3) or a method (finetune.lr=0.01); repeatable")
    p.add_argument("--out", default="runs/bench", help="bench folder: store/, logs/, leaderboard.* (default: runs/bench)")
    p.add_argument("--dry-run", action="store_true", help="print the plan and its estimated cost, run nothing")
    # Ctrl-C: the bench has no --resume; running it again reuses every finished job.
    p.set_defaults(on_interrupt="run the same bench command again: every finished job is reused")


@command("bench", "Run methods x forget scenarios x seeds (reusing every stored model) and write a leaderboard.")
@with_arguments(_bench_args)
def bench_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from unlearnkit.bench.runner import run_bench  # noqa: PLC0415
    from unlearnkit.config import resolve_config  # noqa: PLC0415
    from unlearnkit.methods import list_methods  # noqa: PLC0415

    recipe, hparams = [], {}
    for item in args.overrides:
        key, _, value = item.partition("=")
        head = key.split(".", 1)[0]
        if head == "method":
            # forget's `method.lr` does not say which method a bench means.
            raise UnlearnkitError(f"--set {key}: a bench sets hyperparameters per method, e.g. --set finetune.{key.split('.', 1)[-1]}=...")
        if head in list_methods() and "." in key:
            hparams.setdefault(head, {})[key.split(".", 1)[1]] = value
        else:
            recipe.append(item)
    if args.data:
        recipe.append(f"data.source={args.data}")
    cfg = resolve_config(args.preset, recipe)
    for method, values in hparams.items():
        from unlearnkit.methods import make_hparams  # noqa: PLC0415

        make_hparams(method, values)  # bad names/types fail before any job runs
    result = run_bench(cfg, Path(args.out), methods=args.methods, forget=args.forget, seeds=args.seeds,
                       seed_start=args.seed_start, executor=args.executor, ray_address=args.ray_address, workers=args.workers, score_models=args.score_models,
                       retrain_floor=args.retrain_floor,
                       hparams=hparams, dry_run=args.dry_run, print_table=print_table)
    if args.dry_run:
        for job in result["jobs"]:
            console.print(f"  {job}")
        return 0
    for scenario, rows in result["table"].items():
        print_table(f"leaderboard: forget {scenario}", ["method", "UA %", "RA %", "TA %", "MIA-eff. %", "avg gap", "time / retrain"],
                    [[r["method"], *(r[k][0] for k in ("UA", "RA", "TA", "MIA", "avg_gap", "time_ratio"))] for r in rows])
    console.print(f"leaderboard: {result['leaderboard']['md']}  (html: {result['leaderboard']['html']})")
    for r in result["failed"]:
        console.print(f"failed {r['id']}: see {r['log']}", style="red")
    for r in result["skipped"]:
        console.print(f"skipped {r['id']} (depends on failed {r['because']})")
    return 1 if result["failed"] else 0
