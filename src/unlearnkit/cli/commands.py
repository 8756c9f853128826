"""Subcommands. Each is a few lines: parse, call the API, print a table."""

from __future__ import annotations

import argparse
import json

from unlearnkit.cli.registry import command
from unlearnkit.cli.registry import with_arguments as _with_args
from unlearnkit.tables import console, print_mapping, print_table
from unlearnkit.config import PRESETS, flatten, resolve_config




def _train_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--preset", default="digits", help="named recipe (see `unlearnkit presets`); default: digits")
    p.add_argument("--data", help="dataset: digits, a CIFAR root, an image-folder tree or archive, or a Kaggle folder")
    p.add_argument("--labels", help="Kaggle layout: the id,label CSV (default: found beside the images)")
    p.add_argument("--out", required=True, help="run directory to create")
    p.add_argument("--seed", type=int, help="one seed for split, initial weights and augmentation order")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set train.epochs=3 (repeatable)")
    p.add_argument("--resume", action="store_true", help="continue an interrupted run in --out")
    p.add_argument("--wandb", action="store_true", help="log to Weights & Biases (needs unlearnkit[wandb])")


@command("train", "Train the original model into a run directory.")
@_with_args(_train_args)
def train_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.training.pipeline import train  # noqa: PLC0415  (keeps `--help` fast)

    overrides = list(args.overrides)
    if args.data:
        overrides.append(f"data.source={args.data}")
    if args.labels:
        overrides.append(f"data.labels_csv={args.labels}")
    if args.seed is not None:
        overrides.append(f"seed={args.seed}")
    cfg = resolve_config(args.preset, overrides)
    result = train(cfg, args.out, resume=args.resume, wandb=args.wandb)
    print_table(
        f"trained {cfg.model.name} (width {cfg.model.width}) on {cfg.data.source}",
        ["epoch", "train loss", "train acc %", "val acc %", "img/s", "seconds"],
        [[r["epoch"], r["train_loss"], r["train_acc"], r.get("val_acc", r.get("val_probe_acc")), r["img_per_s"], r["seconds"]] for r in result.history],
    )
    print_mapping("final metrics", result.metrics)
    console.print(f"run directory: {result.run_dir}")
    return 0


def _presets_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one preset's full resolved config")
    p.add_argument("--json", action="store_true", help="print the resolved config as JSON")


@command("presets", "List the named presets, or show one preset's resolved config.")
@_with_args(_presets_args)
def presets_cmd(args: argparse.Namespace) -> int:
    if args.name is None:
        print_table("presets", ["name", "description"], [[p.name, p.description] for p in PRESETS.values()])
        return 0
    cfg = resolve_config(args.name)
    if args.json:
        print(json.dumps(cfg.to_dict(), indent=2))
    else:
        print_mapping(f"preset {args.name} (override with --set KEY=VALUE)", flatten(cfg))
    return 0


def _parse_sets(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        key, eq, value = item.partition("=")
        if not eq:
            from unlearnkit.errors import UnlearnkitError  # noqa: PLC0415

            raise UnlearnkitError(f"--set {item!r} is not KEY=VALUE; write e.g. --set method.lr=0.01")
        out[key.strip()] = value.strip()
    return out


def _forget_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="the run to forget from: a trained run, or an unlearned one (its forget set is kept)")
    p.add_argument("--method", required=True, help="unlearning method (see `unlearnkit methods`)")
    p.add_argument("--forget", required=True, metavar="SPEC",
                   help="random:<count|fraction>, class:<name|index>[,...] or ids:<file>")
    p.add_argument("--out", required=True, help="run directory to create for the unlearned model")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="method.KEY=VALUE",
                   help="override a method hyperparameter, e.g. --set method.lr=0.01 (repeatable)")
    p.add_argument("--data", help="dataset path, if it moved since training (must be the same data)")
    p.add_argument("--seed", type=int, help="seed for the method's randomness (default: the run's seed)")
    p.add_argument("--resume", action="store_true",
                   help="continue an interrupted run of the same job in --out (same run, method, --forget, --set, --seed)")


@command("forget", "Unlearn a forget set from a trained run with one method; writes a new run directory.")
@_with_args(_forget_args)
def forget_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.methods import forget_run  # noqa: PLC0415

    result = forget_run(args.run, args.method, args.forget, args.out, hparams=_parse_sets(args.overrides),
                        data=args.data, seed=args.seed, resume=args.resume)
    original = result.pop("original", {})
    hp = result.pop("hparams")
    decided = result.pop("method_report", None)  # one line, like the hparams: e.g. ssd's searched alpha
    cost = result.pop("estimated_cost", None)
    if cost:
        result["estimated_cost"] = f"{cost['ree']:.3g} REE = {cost['share_of_retraining']:.1%} of retraining (the method's own estimate)"
    extra = {"method decided": ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in decided.items())} if decided else {}
    print_mapping(f"{args.method} on {args.forget}", {**result, "hparams": ", ".join(f"{k}={v}" for k, v in hp.items()),
                                                       **extra, "original test_acc": original.get("test_acc")})
    console.print(f"run directory: {result['run_dir']}")
    return 0


def _methods_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("name", nargs="?", help="show one method's hyperparameters and source")


@command("methods", "List the unlearning methods and their hyperparameters with defaults.")
@_with_args(_methods_args)
def methods_cmd(args: argparse.Namespace) -> int:
    from unlearnkit.methods import get_method, hparam_defaults, list_methods  # noqa: PLC0415

    names = [args.name] if args.name else list_methods()
    rows = []
    for name in names:
        cls = get_method(name)
        hp = ", ".join(f"{k}={v}" for k, v in hparam_defaults(name).items())
        rows.append([name, cls.summary, hp, cls.paper] if args.name else [name, cls.summary, hp])
    cols = ["method", "what it does", "hyperparameters (defaults)"] + (["source"] if args.name else [])
    print_table("unlearning methods (override with --set method.KEY=VALUE)", cols, rows)
    if args.name:
        from unlearnkit.tuning.views import print_tuned_defaults  # noqa: PLC0415

        print_tuned_defaults(args.name)
    return 0


def _demo_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/demo", help="folder for the demo's run directories (default: runs/demo)")
    p.add_argument("--preset", default="digits", help="preset to train (default: digits, the embedded set)")
    p.add_argument("--data", help="dataset for presets that need one")
    p.add_argument("--forget", default="class:3", metavar="SPEC",
                   help="forget request (default: class:3, a whole digit: what retraining forgets is plain to see)")
    p.add_argument("--methods", default="all", help="comma-separated methods, or all (default)")


@command("demo", "Train -> forget (every method + retraining) -> audit, end to end; ends with the report path.")
@_with_args(_demo_args)
def demo_cmd(args: argparse.Namespace) -> int:
    from pathlib import Path  # noqa: PLC0415

    from unlearnkit.pipeline import run_demo  # noqa: PLC0415

    report = run_demo(Path(args.out), preset=args.preset, data=args.data, forget=args.forget, methods=args.methods)
    console.print(f"report: {report}")
    return 0
