"""`run_bench`: plan -> print plan and estimate -> execute -> leaderboard."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.bench.executors import run_local, run_ray
from unlearnkit.bench.jobs import SUMMARY
from unlearnkit.bench.leaderboard import FILES, build_rows, write_leaderboard
from unlearnkit.bench.plan import Plan, build_plan, parse_methods, parse_scenarios
from unlearnkit.config import RunConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import json_text
from unlearnkit.outputs import OWNED_MANIFEST, adopt_outputs, check_outputs, write_outputs
from unlearnkit.runs import read_json
from unlearnkit.training.pipeline import load_data, with_absolute_paths
from unlearnkit.training.runtime import available_cpus, cuda_available


def estimate_original_seconds(cfg: RunConfig, n_train: int, store: Path) -> float:
    """Seconds for one original training: measured if the store has one, else a rough guess."""
    for metrics in sorted(store.glob("original-*/metrics.json")):
        try:
            return float(json.loads(metrics.read_bytes().decode("utf-8"))["train_seconds"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a damaged record only costs the estimate its measurement
    # Measured on 2 CPU cores: ResNet-18 width 64 ~95 img/s, width 16 ~850 img/s; small CNN on digits ~3000.
    img_s = 3000.0 if cfg.model.name == "small_cnn" else 850.0 * (16 / cfg.model.width) ** 2
    return cfg.train.epochs * n_train / img_s


def describe_plan(plan: Plan, original_seconds: float, store: Path) -> tuple[list[list[Any]], float]:
    from unlearnkit.bench.jobs import is_done  # noqa: PLC0415

    counts: dict[str, list[int]] = {}
    todo_cost = 0.0
    for job in plan.order():
        done = is_done(job, plan.path(job))
        c = counts.setdefault(job.kind, [0, 0])
        c[0] += 1
        c[1] += int(done)
        if not done:
            todo_cost += job.cost * original_seconds
    rows = [[kind, n, cached, n - cached] for kind, (n, cached) in counts.items()]
    return rows, todo_cost


def run_bench(
    cfg: RunConfig,
    out: Path,
    *,
    methods: str = "all",
    forget: str = "random:0.1",
    seeds: int = 1,
    seed_start: int = 0,
    executor: str = "local",
    ray_address: str | None = None,
    workers: int = 1,
    score_models: int = 0,
    retrain_floor: bool = False,
    hparams: dict[str, dict[str, Any]] | None = None,
    dry_run: bool = False,
    print_table=None,
) -> dict[str, Any]:
    """Run (or reuse) every job of the grid and write the leaderboard into `out`."""
    if executor not in ("local", "ray"):
        raise UnlearnkitError(f"--executor {executor!r} is not known; use local or ray")
    if score_models in (1, 2):
        # With 2 samples per side every algorithm scores F = 0 (see audit/epsilon.py).
        raise UnlearnkitError(f"--score-models {score_models} is too few: the epsilon score needs at least 3 models per side (or 0 to skip it)")
    if seed_start < 0:
        raise UnlearnkitError(f"--seed-start {seed_start} must be >= 0 (the first seed of the bench)")
    if score_models and seed_start:
        # The score's extra method/retrain models are trained on the first evaluation seed, 0.
        raise UnlearnkitError(f"--score-models runs its models on seed 0; run it with --seed-start 0 (not {seed_start})")
    if seeds < 1:
        raise UnlearnkitError(f"--seeds must be >= 1, got {seeds}")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UnlearnkitError(f"--workers must be a whole number >= 1, got {workers!r}")
    if workers > 1 and executor != "local":
        raise UnlearnkitError(f"--workers {workers} is for the local executor; Ray schedules its own tasks (drop --workers)")
    seed_list = list(range(seed_start, seed_start + seeds))
    names = parse_methods(methods)
    unused = sorted(set(hparams or {}) - set(names) - {"retrain"})
    if unused:
        # A setting for a method that is not in the bench would be validated and then silently ignored.
        raise UnlearnkitError(f"--set {unused[0]}.* applies to a method that is not in --methods ({', '.join(names)}); "
                              f"add {unused[0]} to --methods or drop the setting")
    cfg = with_absolute_paths(cfg)  # jobs (and Ray workers) may run in another working directory
    scenarios = parse_scenarios(forget)
    bundle = load_data(cfg)  # validates --data and gives the fingerprint every key depends on
    from unlearnkit.data.splits import make_split  # noqa: PLC0415

    probe = make_split(bundle, cfg.data.val_fraction, 0)
    for scenario in scenarios:
        probe.with_forget(scenario)  # a bad scenario fails now, not after an hour of training
    store = out / "store"
    gpus = 1.0 if cuda_available() else 0.0
    if workers > 1 and not gpus:
        import warnings  # noqa: PLC0415

        # Allowed (a many-core CPU can spare cores for audits), but the timed jobs then share the cores.
        warnings.warn(f"--workers {workers} without a GPU: audits share the CPU cores with the timed training and "
                      "unlearning jobs, so the leaderboard's times (and their ratios to retraining) may be inflated",
                      stacklevel=2)
    cpus = 1 if gpus else max(1, available_cpus())
    plan = build_plan(cfg, bundle.fingerprint, methods=names, scenarios=scenarios, seeds=seed_list, store=store,
                      hparams=hparams, score_models=score_models, retrain_floor=retrain_floor, num_cpus=cpus, num_gpus=gpus)
    rows, todo = describe_plan(plan, estimate_original_seconds(cfg, len(probe.train_idx), store), store)
    if print_table:
        print_table(f"bench plan ({len(plan.jobs)} jobs, about {todo / 60:.1f} min of work left)",
                    ["job kind", "jobs", "in store", "to run"], rows)
    if dry_run:
        return {"plan": rows, "estimated_seconds": todo, "jobs": [j.id for j in plan.order()]}
    # Before hours of jobs: the bench folder must not hold files of the user's that it would replace.
    outputs = ("plan.json", "results.json", *FILES)
    if _pre_manifest_bench(out):
        adopt_outputs(out, outputs)
    check_outputs(out, outputs)
    write_outputs(out, {"plan.json": json_text({**plan.config, "jobs": {j.id: {"kind": j.kind, "key": j.key, "deps": j.deps}
                                                                       for j in plan.order()}})})
    data = cfg.data.source
    if executor == "ray":
        results = run_ray(plan, data=data, address=ray_address, num_cpus=available_cpus())
    else:
        results = run_local(plan, data=data, workers=workers)
    write_outputs(out, {"results.json": json_text(results)})
    failed = [r for r in results.values() if r["status"] == "failed"]
    skipped = [r for r in results.values() if r["status"] == "skipped"]
    table, floors, hists = aggregate(plan, cfg, score_models)
    shown = f"{seeds} seed(s)" if not seed_start else f"{seeds} seed(s): {', '.join(map(str, seed_list))}"
    header = f"# unlearnkit leaderboard: {cfg.preset}, {len(names)} methods, {shown}"
    from unlearnkit.tuning.defaults import provenance_note  # noqa: PLC0415

    notes = [provenance_note(names, cfg, scenarios, seed_list)]  # evaluation seeds vs the defaults' tuning seeds
    paths = write_leaderboard(out, table, header, floors, hists, notes)
    return {"results": results, "failed": failed, "skipped": skipped, "leaderboard": paths, "table": table}


def _pre_manifest_bench(out: Path) -> bool:
    """A bench folder written before benches kept a manifest: its plan.json is a bench plan, beside its store."""
    if (out / OWNED_MANIFEST).exists() or not (out / "store").is_dir():
        return False
    try:
        plan = json.loads((out / "plan.json").read_bytes().decode("utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(plan, dict) and isinstance(plan.get("jobs"), dict) and "scenarios" in plan


def summary_metrics(summary: dict[str, Any]) -> dict[str, float]:
    """The leaderboard's numbers from one audit job's summary.json."""
    s = summary["audit"]["summary"]
    return {k: s.get(k, math.nan) for k in ("UA", "RA", "TA", "MIA", "avg_gap", "seconds", "time_ratio")}


def aggregate(plan: Plan, cfg: RunConfig, score_models: int):
    per_run = []
    for job in plan.order():
        if job.kind != "audit":
            continue
        path = plan.path(job) / SUMMARY
        if not path.is_file():
            continue
        per_run.append({"scenario": job.spec["scenario"], "method": job.spec["method"], "seed": job.spec["seed"],
                        **summary_metrics(read_json(path, "audit summary"))})
    scores, floors = {}, {}
    if score_models >= 3:
        scores, floors = _competition_scores(plan)
    hists = _confidence_hists(plan)
    return build_rows(per_run, scores), floors, hists


def _runs(plan: Plan, scenario: str, method: str) -> list[str]:
    kind = "retrain" if method == "retrain" else "method"
    return [str(plan.path(j)) for j in plan.order()
            if j.kind == kind and j.spec["seed"] == 0 and j.spec["scenario"] == scenario and j.spec["method"] == method
            and (plan.path(j) / "metrics.json").is_file()]


def _competition_scores(plan: Plan):
    """Competition score per (scenario, method) from the seed-0 replicas (needs >= 3 per side).

    Retraining is the reference, so it is never scored against itself: its row shows the noise
    floor instead (retrained vs retrained in two halves, which needs >= 6 retrained runs).
    """
    from unlearnkit.audit import forgetting_score  # noqa: PLC0415

    scores, floors = {}, {}
    for scenario in plan.config["scenarios"]:
        retrained = _runs(plan, scenario, "retrain")
        if len(retrained) < 3:
            continue
        for method in plan.config["methods"]:
            unlearned = _runs(plan, scenario, method)
            if len(unlearned) >= 3:
                res = forgetting_score(unlearned, retrained)
                scores[(scenario, method)] = {"score": res["competition_score"], "F": res["F"]}
                floors[scenario] = {"floor": res["noise_floor"], "n": len(retrained), "note": res["noise_floor_note"]}
        if scenario in floors and floors[scenario]["floor"] is not None:
            scores[(scenario, "retrain")] = {"score": floors[scenario]["floor"], "F": floors[scenario]["floor"]}
    return scores, floors


def _confidence_hists(plan: Plan) -> dict[str, dict[str, np.ndarray]]:
    """True-label confidence on forget and test for seed 0 of the first scenario, per method.

    The logits come from the audit's cache (the audits computed them), so a rerun costs no forward pass.
    """
    from scipy.special import softmax  # noqa: PLC0415

    from unlearnkit.audit.pipeline import model_outputs  # noqa: PLC0415

    scenario = plan.config["scenarios"][0]
    out = {}
    for method in ["retrain"] + plan.config["methods"]:
        runs = _runs(plan, scenario, method)
        if not runs:
            continue
        outputs = model_outputs(runs[0], ("forget", "test"))
        out[method] = {part: np.take_along_axis(softmax(logits, axis=1), labels[:, None], 1)[:, 0]
                       for part, (logits, labels) in outputs.items()}
    return out
