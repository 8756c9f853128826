"""`tune`: an Optuna search for one method and one scenario kind against retrained references.

OUT holds the whole search: `study.db` (SQLite: a killed search resumes — rerun the same
command and it continues until --trials trials are finished — and `--jobs N` processes share
it), `best.json`, `trials.csv`, `report.{md,html}` and `plots/`. The originals and retrained
models of the tuning forget sets live in a bench store (default: `tune-store` beside OUT), so a
second search reuses them.

The algorithm is Optuna's: a seeded TPE sampler with the RA/TA constraint (`constraints_func`)
and a median pruner between tuning forget sets; the paper defaults are trial 0.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import multiprocessing
import os
import shutil
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from unlearnkit.config import RunConfig
from unlearnkit.errors import UnlearnkitError
from unlearnkit.files import check_output_dir
from unlearnkit.tuning import defaults as tuned
from unlearnkit.tuning.objective import (BUDGET, BUDGET_FIT, SET_CONSTRAINT, Objective, constraints, estimate_cost, parse_trial_retain,
                                         trial_eval)
from unlearnkit.tuning.references import Reference, build_references, execute, tuning_plan
from unlearnkit.tuning.scenarios import parse_kind, tuning_seeds
from unlearnkit.tuning.space import conditions, default_point, distributions, entry_point, filled_start, probe_budget, start_point

STUDY = "study.db"
STUDY_NAME = "tune"
# The share of the budget kept free for the error of the cost estimates (see `tune`).
ESTIMATE_MARGIN = 0.1

# Over-budget trials cost nothing and do not count towards --trials; a search whose sampler keeps
# proposing them stops after this many per requested trial (the budget excludes most of the space).
MAX_BUDGET_SKIPS_PER_TRIAL = 10


@dataclass
class TuneResult:
    out: Path
    settings: dict[str, Any]
    ran: int  # trials finished by this call
    counts: dict[str, int]
    best: dict[str, Any] | None  # number, values, avg_gap, ra_drop, ta_drop, final (full audits per set)
    default: dict[str, Any] | None  # the paper-defaults trial
    lowest: dict[str, Any] | None  # the lowest gap among all complete trials, feasible or not
    rows: list[dict[str, Any]] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    entry: dict[str, Any] | None = None
    entry_path: str | None = None


def tune(
    cfg: RunConfig,
    method: str,
    forget: str,
    out: str | Path,
    *,
    trials: int,
    sets: int = 3,
    seed_start: int = 100,
    budget: float = 0.05,
    margin: float = 2.0,
    jobs: int = 1,
    executor: str = "local",
    ray_address: str | None = None,
    store: str | Path | None = None,
    export: bool = False,
    defaults_dir: Path | None = None,
    command: str | None = None,
    heartbeat: int = 30,
    trial_retain: int | str | None = 0,
    starts: list[dict[str, Any]] | None = None,
) -> TuneResult:
    """Search `method`'s hyperparameters for the scenario kind `forget` (random[:FRACTION], class or class-share[:SHARE]).

    `trial_retain`: each trial's audit computes RA on a seeded random subset of this many retain
    samples (0 / "auto": MIA-efficacy's member count, |test|; None / -1 / "all": full audits); the
    best setting's final numbers are always full audits. `starts`: points ({field: value} of
    tunable fields) tried before TPE's own, after the paper defaults -- e.g. a paper default scaled
    to fit the budget; each is queued once per study. Every input is checked before anything is
    trained or written; see the module docstring.
    """
    import optuna  # noqa: PLC0415

    from unlearnkit.data.splits import make_split  # noqa: PLC0415
    from unlearnkit.methods.base import get_method, hparam_defaults  # noqa: PLC0415
    from unlearnkit.methods.common import request_sizes  # noqa: PLC0415
    from unlearnkit.training.pipeline import load_data, with_absolute_paths  # noqa: PLC0415

    # ---- validate everything first
    check_output_dir(out)  # a file (or a path through one) as --out: one line now, not a traceback at mkdir
    if trials < 1:
        raise UnlearnkitError(f"--trials must be >= 1, got {trials}")
    if jobs < 1:
        raise UnlearnkitError(f"--jobs must be >= 1 process, got {jobs}")
    if not 0 < budget <= 1:
        raise UnlearnkitError(f"--budget {budget} must be a share of retraining in (0, 1], e.g. 0.05 for 5%")
    if not margin >= 0:
        raise UnlearnkitError(f"--margin {margin} must be >= 0 accuracy points")
    if executor not in ("local", "ray"):
        raise UnlearnkitError(f"--executor {executor!r} is not known; use local or ray")
    retain_limit = parse_trial_retain(trial_retain)
    get_method(method)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    kind, arg = parse_kind(forget)
    dists = distributions(method, kind.name)
    seeds = tuning_seeds(seed_start, sets)
    cfg = with_absolute_paths(cfg)
    bundle = load_data(cfg)
    specs = [kind.spec(arg, s, tuple(bundle.classes)) for s in seeds]
    sizes = [request_sizes(make_split(bundle, cfg.data.val_fraction, s).with_forget(spec)) for s, spec in zip(seeds, specs)]
    fixed = {k: v for k, v in hparam_defaults(method).items() if k not in dists}
    start_points = [(given, filled_start(method, dists, given))
                    for given in (start_point(method, dists, point) for point in (starts or []))]
    # Retraining costs the recipe's epochs in REE. The search keeps ESTIMATE_MARGIN below the budget
    # because it can only judge a setting by its cost estimate, and a run's measured time lands up
    # to ~10% either side of that (cifar10-cpu, 3 seeds: median measured/estimated 0.93-1.12 per
    # method); a setting estimated at 4.9% measured 5.1% on average there.
    budget_ree = budget * cfg.train.epochs * (1 - ESTIMATE_MARGIN)
    probe = probe_budget(method, dists, lambda v: estimate_cost(method, {**fixed, **v}, sizes, cfg.train),
                         budget_ree, seed_start)
    out = Path(out)
    db = out / STUDY
    if out.exists() and not db.is_file() and any(out.iterdir()):
        raise UnlearnkitError(f"--out {out} exists and holds no tuning study; choose a new directory (or the folder of this search to resume it)")
    # A bench folder (its store/ and logs/); the default is shared by every search beside OUT.
    store = (Path(store) if store is not None else out.resolve().parent / "tune-store") / "store"
    settings = {
        "method": method, "preset": cfg.preset, "recipe_hash": tuned.recipe_hash(cfg), "kind": kind.name,
        "forget": f"{kind.name}:{arg}" if arg else kind.name, "seeds": seeds, "forget_sets": specs,
        "budget": budget, "budget_ree": budget_ree, "estimate_margin": ESTIMATE_MARGIN, "retrain_ree": cfg.train.epochs,
        "margin": margin,
        "search_space": {k: repr(d) for k, d in dists.items()},
        # The method's code version (`Method.revision`, only from 1 on, as in bench keys): trials of an
        # older revision scored another algorithm, so a study of it is not resumed with the new code.
        **({"method_revision": rev} if (rev := get_method(method).revision) else {}),
        # Not in the identity either (studies from before it resume): fields sampled only under a condition.
        "search_conditions": {k: list(v) for k, v in conditions(method).items()},
        # Not part of the study's identity: a resumed search may change it (each trial records its own).
        "trial_retain": "all" if retain_limit is None else retain_limit,
        "evaluation": trial_eval(retain_limit, [n["retain"] for n in sizes], len(bundle.test.labels)),
    }

    # ---- study (created or resumed)
    out.mkdir(parents=True, exist_ok=True)
    study = _open_study(db, seed_start, trials, heartbeat)
    stored = study.user_attrs.get("settings")
    if stored is None:
        study.set_user_attr("settings", settings)
        study.set_user_attr("budget_probe", probe)
        shipped = _shipped_entry_trial(method, cfg, specs[0], dists, defaults_dir)
        same = shipped is not None and shipped[1] == default_point(method, dists)
        # An entry equal to the paper defaults is tried once, as trial 0, which then also names it
        # (the incumbent `_keep_incumbent` weighs the pick against).
        study.enqueue_trial(default_point(method, dists),
                            user_attrs={"origin": "paper defaults", **({"entry": shipped[0]} if same else {})})
        if shipped is not None and not same:
            study.enqueue_trial(shipped[1], user_attrs={"origin": SHIPPED, "entry": shipped[0]})
    elif _identity(stored) != _identity(settings):
        diff = next(k for k in _identity(settings) if _identity(stored).get(k) != _identity(settings)[k])
        raise UnlearnkitError(
            f"--out {out} holds a search with other settings ({diff}: {stored.get(diff)!r}, now {settings.get(diff)!r}); "
            "rerun it with the same settings or choose another --out"
        )
    elif budget_ree > stored.get("budget_ree", budget_ree) * (1 + 1e-9):
        # Trials pruned under the lower budget never ran and their recorded violations would
        # mislead the sampler: a larger budget is a new search.
        raise UnlearnkitError(
            f"--out {out} holds a search with a budget of {stored['budget_ree']:.3g} REE; a resumed search may lower "
            f"its budget but not raise it to {budget_ree:.3g} REE (--budget {budget}): choose another --out"
        )
    elif budget_ree < stored.get("budget_ree", budget_ree) * (1 - 1e-9):
        # Tightening (a lower --budget, or a search from before ESTIMATE_MARGIN): complete trials
        # above the new budget stay in the study (the sampler learns from them) but can no longer
        # be the best (`_feasible_best`), and no new one runs.
        study.set_user_attr("settings", {
            **stored, "budget": budget, "budget_ree": budget_ree, "estimate_margin": ESTIMATE_MARGIN,
            "budget_ree_before": stored.get("budget_ree_before", []) + [stored["budget_ree"]]})
    if command:
        study.set_user_attr("command", command)  # the latest invocation: what an exported entry records
    _enqueue_starts(study, start_points)

    # ---- references, then trials (with Ray: one local instance for all three stages)
    ray = _start_ray(ray_address) if executor == "ray" else None
    try:
        return _search(cfg, bundle, method, out, db, store, settings, seeds, specs, sizes, dists, fixed, budget_ree,
                       margin, trials, jobs, executor, ray_address, seed_start, heartbeat, export, defaults_dir, study,
                       retain_limit)
    finally:
        if ray is not None:
            ray.shutdown()


def _start_ray(address: str | None):
    """Ray started here (and shut down at the end); None when it was already running."""
    try:
        import ray  # noqa: PLC0415  (optional extra)
    except ImportError:
        raise UnlearnkitError("--executor ray needs Ray; install it with `pip install unlearnkit[ray]`") from None
    if ray.is_initialized():
        return None
    ray.init(address=address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    return ray


def _search(cfg, bundle, method, out, db, store, settings, seeds, specs, sizes, dists, fixed, budget_ree, margin, trials,
            jobs, executor, ray_address, seed_start, heartbeat, export, defaults_dir, study, retain_limit) -> TuneResult:
    refs = build_references(cfg, bundle.fingerprint, list(zip(seeds, specs)), sizes, store, executor, ray_address)
    objective = Objective(method, refs, dists, fixed, cfg.train, budget_ree, margin, out / "trials",
                          retain_limit=retain_limit)
    before = _counts(study)["counted"]
    if before < trials:
        if jobs == 1 and executor == "local":
            _optimize(study, objective, trials)
        else:
            _parallel(db, objective, trials, jobs, seed_start, heartbeat, executor, ray_address, study)
    _remove_stale_trial_dirs(study, out / "trials")
    counts = _counts(study)
    if counts["budget"] > MAX_BUDGET_SKIPS_PER_TRIAL * trials and counts["counted"] < trials:
        raise UnlearnkitError(
            f"method {method!r}: {counts['budget']} proposed settings exceeded the cost budget of {budget_ree:.3g} REE "
            f"and only {counts['counted']} of {trials} trials ran; raise --budget or narrow its search range"
        )

    # ---- best, full audits, report
    result = _collect(study, out, settings, ran=counts["counted"] - before, counts=counts)
    if result.best is not None:
        final = functools.partial(_final_audits, cfg, bundle.fingerprint, refs, method, store=store, executor=executor,
                                  ray_address=ray_address)
        result.best["final"] = final(values=result.best["values"])
        _keep_incumbent(study, result, final, margin)
    from unlearnkit.tuning.report import write_report  # noqa: PLC0415

    result.files = write_report(result, study)
    if export:
        result.entry, result.entry_path = export_entry(result, cfg, study.user_attrs.get("command", ""), defaults_dir)
    return result


# A search replaces the entry it started from (the one runs of its recipe and kind took when the study
# was created) only when its pick beats it by at least this many
# gap points in full audits on the tuning sets. The pick is the lowest of many noisy trial scores
# (a subsampled RA, a few forget sets), so it flatters itself; a tie in full audits is no reason to
# change what every run of the recipe takes.
REPLACE_MIN_GAIN = 0.1


def _keep_incumbent(study, result: TuneResult, final, margin: float) -> None:
    """If the trial of the entry the search started from (origin SHIPPED) is feasible but not the pick, score it with
    full audits too, and keep it unless the pick's full-audit gap is lower by REPLACE_MIN_GAIN."""
    best = result.best
    # `entry` names the tuned entry a trial tried: the SHIPPED trial, or trial 0 when the entry was the paper defaults.
    incumbent = next((t for t in study.get_trials(deepcopy=False)
                      if t.user_attrs.get("entry") and t.number != best["number"] and _eligible(study, t)), None)
    if incumbent is None:
        return
    mine, theirs = _pick(incumbent), _mean(r["avg_gap"] for r in best["final"])
    mine["final"] = final(values=mine["values"])
    gap = _mean(r["avg_gap"] for r in mine["final"])
    drops = [_mean(r[f"{k}_retrain"] - r[k] for r in mine["final"]) for k in ("RA", "TA")]
    record = {"challenger": best["number"], "challenger_avg_gap": theirs, "incumbent": incumbent.number,
              "incumbent_avg_gap": gap, "min_gain": REPLACE_MIN_GAIN, "entry": incumbent.user_attrs.get("entry")}
    if all(d is not None and d <= margin for d in drops) and theirs is not None and gap is not None \
            and theirs > gap - REPLACE_MIN_GAIN:
        result.best = {**mine, "incumbent": {**record, "kept": True}}
    else:
        best["incumbent"] = {**record, "kept": False}


def _shipped_entry_trial(method: str, cfg: RunConfig, spec: str, dists: dict[str, Any],
                         defaults_dir: Path | None) -> tuple[str, dict[str, Any]] | None:
    """(entry id, trial) of the tuned entry a run of this recipe and kind takes today — the kind's
    own or its fallback's (a class share takes the random entry) — or None. A search tries it right
    after the paper defaults, so what it exports is never worse on its tuning sets than what users
    already get (a first class-share search starts from the random entry it replaces)."""
    values, source = tuned.resolve(method, cfg, spec, defaults_dir)
    if source["kind"] != "tuned":
        return None
    trial = entry_point(method, dists, values)
    return None if trial is None else (source["entry"], trial)


def _enqueue_starts(study, points: list[tuple[dict[str, Any], dict[str, Any]]]) -> None:
    """Queue each --start point (the given values, the rest at their paper defaults: `filled_start`)
    unless the study already holds it (a rerun of the same command): a study remembers the values given."""
    seen = [t.user_attrs.get("start") for t in study.get_trials(deepcopy=False) if t.user_attrs.get("origin") == START]
    for given, trial in points:
        if given not in seen:
            study.enqueue_trial(trial, user_attrs={"origin": START, "start": given})
            seen.append(given)


def _remove_stale_trial_dirs(study, work: Path) -> None:
    """A trial removes its run directories itself; a killed one leaves them (a running one, maybe
    in another process on the same study, keeps them)."""
    from optuna.trial import TrialState  # noqa: PLC0415

    running = {t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))}
    for d in work.glob("trial*"):
        if d.name.removeprefix("trial").isdigit() and int(d.name.removeprefix("trial")) not in running:
            shutil.rmtree(d, ignore_errors=True)


# --------------------------------------------------------------------------- study


def make_sampler(seed: int, trials: int, worker: int = 0):
    """The search's TPE sampler (benchmarks/budget_fit.py uses the same one)."""
    import optuna  # noqa: PLC0415

    # Optuna >= 5 reads the constraint the objective sets on the trial (`set_constraint`); older
    # versions take it through constraints_func.
    cons = {} if SET_CONSTRAINT else {"constraints_func": constraints}
    return optuna.samplers.TPESampler(seed=seed * 1000 + worker, n_startup_trials=min(10, max(3, trials // 4)), **cons)


def _open_study(db: Path, seed: int, trials: int, heartbeat: int, worker: int = 0):
    import optuna  # noqa: PLC0415

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        # Heartbeats mark a trial whose process was killed as failed (after the grace period), and
        # the retry callback queues its parameters again, so a kill loses no point of the search.
        retry = (  # Optuna >= 4.9 renamed the callback; both re-queue the killed trial's parameters once
            {"heartbeat_stale_trial_callback": optuna.storages.RetryHeartbeatStaleTrialCallback(max_retry=1)}
            if hasattr(optuna.storages, "RetryHeartbeatStaleTrialCallback")
            else {"failed_trial_callback": optuna.storages.RetryFailedTrialCallback(max_retry=1)})
        storage = optuna.storages.RDBStorage(
            f"sqlite:///{db}", heartbeat_interval=heartbeat, grace_period=2 * heartbeat,
            engine_kwargs={"connect_args": {"timeout": 60}}, **retry,
        )
        sampler = make_sampler(seed, trials, worker)
    pruner = optuna.pruners.MedianPruner(n_startup_trials=3, n_warmup_steps=0)
    return optuna.create_study(study_name=STUDY_NAME, storage=storage, direction="minimize", sampler=sampler,
                               pruner=pruner, load_if_exists=True)


START = "--start"  # origin of a trial queued by --start
SHIPPED = "tuned entry"  # origin of the trial that tries the entry runs take today (`_shipped_entry_trial`)

# Not the budget: a resumed search may lower it (see `tune`).
_IDENTITY = ("method", "preset", "recipe_hash", "kind", "forget", "seeds", "margin", "search_space", "method_revision")


def _identity(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: settings.get(k) for k in _IDENTITY}


def _counts(study) -> dict[str, int]:
    from optuna.trial import TrialState  # noqa: PLC0415

    c = {"complete": 0, "pruned": 0, "budget": 0, "failed": 0, "running": 0, "budget_fits": 0}
    for t in study.get_trials(deepcopy=False):
        if t.state == TrialState.COMPLETE:
            c["complete"] += 1
        elif t.state == TrialState.PRUNED:
            c["budget" if t.user_attrs.get("reason") == BUDGET else "pruned"] += 1
        elif t.state == TrialState.FAIL:
            c["failed"] += 1
        elif t.state == TrialState.RUNNING:
            c["running"] += 1
        # A budget fit that ran (an over-budget draw's nearest in-budget point, see Objective).
        ran = t.state == TrialState.COMPLETE or (t.state == TrialState.PRUNED and t.user_attrs.get("reason") != BUDGET)
        c["budget_fits"] += ran and t.user_attrs.get("origin") == BUDGET_FIT
    c["counted"] = c["complete"] + c["pruned"]  # trials that ran (over-budget ones never ran)
    return c


def _best_so_far(study) -> str:
    best = _feasible_best(study)
    return "no feasible trial yet" if best is None else f"best {best.value:.3g} (#{best.number})"


def _feasible_best(study):
    from optuna.trial import TrialState  # noqa: PLC0415

    ok = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if _eligible(study, t)]
    return min(ok, key=lambda t: t.value) if ok else None


def _eligible(study, t) -> bool:
    """A complete trial that may be the search's answer: within the RA/TA margin and within the
    study's budget now (a search resumed with a lower one no longer picks the costlier trials)."""
    limit = study.user_attrs.get("settings", {}).get("budget_ree", math.inf)
    return t.value is not None and bool(t.user_attrs.get("feasible")) and t.user_attrs.get("cost_ree", 0.0) <= limit * (1 + 1e-9)


class _Stop:
    """Stop when --trials trials are finished (shared count: parallel workers all stop), updating the bar."""

    def __init__(self, target: int, bar=None):
        self.target, self.bar = target, bar

    def __call__(self, study, trial) -> None:
        c = _counts(study)
        if self.bar is not None:
            self.bar.n = min(c["counted"], self.target)
            self.bar.set_postfix_str(_best_so_far(study) + (f", {c['budget']} over budget" if c["budget"] else ""))
            self.bar.refresh()
        if c["counted"] >= self.target or c["budget"] > MAX_BUDGET_SKIPS_PER_TRIAL * self.target:
            study.stop()


def _bar(study, trials: int, desc: str):
    from unlearnkit.training.loop import progress  # noqa: PLC0415

    bar = progress(None, trials, desc, leave=True, initial=min(_counts(study)["counted"], trials), unit="trial")
    bar.set_postfix_str(_best_so_far(study))
    return bar


def _optimize(study, objective: Objective, trials: int) -> None:
    bar = _bar(study, trials, f"tune {objective.method}")
    quiet = os.environ.get("UNLEARNKIT_QUIET")
    os.environ["UNLEARNKIT_QUIET"] = "1"  # one bar over trials, not the method's and the audit's inside each
    try:
        study.optimize(objective, callbacks=[_Stop(trials, bar)], catch=())
    finally:
        bar.close()
        if quiet is None:
            os.environ.pop("UNLEARNKIT_QUIET", None)
        else:
            os.environ["UNLEARNKIT_QUIET"] = quiet


def _worker(db: str, objective: Objective, trials: int, seed: int, heartbeat: int, worker: int, threads: int) -> int:
    """One search process (or Ray task) sharing the SQLite study."""
    import torch  # noqa: PLC0415

    os.environ["UNLEARNKIT_QUIET"] = "1"
    torch.set_num_threads(threads)
    study = _open_study(Path(db), seed, trials, heartbeat, worker=worker)
    if _counts(study)["counted"] < trials:
        study.optimize(objective, callbacks=[_Stop(trials)], catch=())
    return worker


def _parallel(db: Path, objective: Objective, trials: int, jobs: int, seed: int, heartbeat: int, executor: str,
              ray_address: str | None, study) -> None:
    """`jobs` workers share the study; this process only watches it for the progress bar."""
    from unlearnkit.training.runtime import available_cpus  # noqa: PLC0415

    threads = max(1, available_cpus() // jobs)
    args = [(str(db), objective, trials, seed, heartbeat, w + 1, threads) for w in range(jobs)]
    bar = _bar(study, trials, f"tune {objective.method} ({jobs} {'Ray tasks' if executor == 'ray' else 'processes'})")
    try:
        if executor == "ray":
            _run_ray(args, threads, ray_address, lambda: _watch(study, trials, bar))
        else:
            ctx = multiprocessing.get_context("spawn")  # torch and SQLite connections do not survive fork
            procs = [ctx.Process(target=_worker, args=a, daemon=False) for a in args]
            for p in procs:
                p.start()
            try:
                while any(p.is_alive() for p in procs):
                    _watch(study, trials, bar)
                    time.sleep(1.0)
            finally:  # Ctrl-C: stop the workers too (their running trials fail; the study stays valid)
                for p in procs:
                    if p.is_alive():
                        p.terminate()
                    p.join()
            bad = [p.exitcode for p in procs if p.exitcode]
            if bad:
                raise UnlearnkitError(f"{len(bad)} of {jobs} search processes failed (exit status {bad[0]}); rerun the command to resume")
        _watch(study, trials, bar)
    finally:
        bar.close()


def _watch(study, trials: int, bar) -> None:
    c = _counts(study)
    bar.n = min(c["counted"], trials)
    bar.set_postfix_str(_best_so_far(study))
    bar.refresh()


def _run_ray(args: list[tuple], threads: int, address: str | None, tick) -> None:
    import ray  # noqa: PLC0415  (started by `tune`)

    task = ray.remote(_worker).options(num_cpus=threads)
    pending = [task.remote(*a) for a in args]
    while pending:
        done, pending = ray.wait(pending, timeout=1.0)
        ray.get(done)  # a failed task raises here
        tick()


# --------------------------------------------------------------------------- results


def _origin(attrs: dict[str, Any]) -> str:
    origin = attrs.get("origin", "TPE")
    if origin == SHIPPED and "entry" in attrs:
        return f"{origin} {attrs['entry']}"
    if "entry" in attrs:  # the paper defaults, which are also the shipped entry
        return f"{origin} (= tuned entry {attrs['entry']})"
    return f"{origin} of #{attrs['fitted_from']}" if origin == BUDGET_FIT and "fitted_from" in attrs else origin


def _trial_row(t) -> dict[str, Any]:
    a = t.user_attrs
    return {
        "number": t.number, "state": t.state.name.lower(), "reason": a.get("reason", ""),
        "origin": _origin(a), **{f"param:{k}": v for k, v in t.params.items()},
        "avg_gap": t.value, "ra_drop": a.get("ra_drop"), "ta_drop": a.get("ta_drop"), "feasible": a.get("feasible"),
        "cost_ree": a.get("cost_ree"), "cost_share": a.get("cost_share"), "time_ratio": a.get("time_ratio"),
        "seconds": t.duration.total_seconds() if t.duration is not None else None,
        # RA's retain samples in this trial's audits (0: MIA-efficacy's member count; all: a full audit;
        # trials of searches from before this option were full audits).
        "trial_retain": a.get("trial_retain", "all"),
    }


def _pick(t) -> dict[str, Any] | None:
    if t is None:
        return None
    a = t.user_attrs
    return {"number": t.number, "values": dict(t.params), "avg_gap": t.value, "ra_drop": a.get("ra_drop"),
            "ta_drop": a.get("ta_drop"), "feasible": a.get("feasible"), "time_ratio": a.get("time_ratio"),
            "cost_ree": a.get("cost_ree"), "cost_share": a.get("cost_share"), "sets": a.get("sets")}


def _collect(study, out: Path, settings: dict[str, Any], *, ran: int, counts: dict[str, int]) -> TuneResult:
    from optuna.trial import TrialState  # noqa: PLC0415

    trials = study.get_trials(deepcopy=False)
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    default = next((t for t in trials if t.user_attrs.get("origin") == "paper defaults"), None)
    lowest = min(complete, key=lambda t: t.value) if complete else None
    return TuneResult(out, settings, ran, counts, _pick(_feasible_best(study)), _pick(default), _pick(lowest),
                      [_trial_row(t) for t in trials])


def _final_audits(cfg: RunConfig, fingerprint: str, refs: list[Reference], method: str, values: dict[str, Any],
                  store: Path, executor: str, ray_address: str | None) -> list[dict[str, Any]]:
    """The best values as bench jobs on every tuning set: a stored model and a full audit (report.html) each."""
    from unlearnkit.bench.jobs import SUMMARY  # noqa: PLC0415

    pairs = [(r.seed, r.forget) for r in refs]
    plan = tuning_plan(cfg, fingerprint, pairs, store, methods=[method], hparams={method: values})
    execute(plan, cfg.data.source, executor, ray_address)
    rows = []
    for r in refs:
        job = plan.jobs[f"audit/{r.forget}/{method}/seed{r.seed}"]
        summary = json.loads((plan.path(job) / SUMMARY).read_text())
        s = summary["audit"]["summary"]
        ag = summary["audit"]["against_retraining"]
        n_ra = summary["audit"]["accuracy"]["unlearned"]["n"]["retain"]
        rows.append({"seed": r.seed, "forget": r.forget, "run": summary["target"], **{k: s[k] for k in ("UA", "RA", "TA", "MIA")},
                     "RA_retrain": ag["gaps"]["RA"]["retrained"], "TA_retrain": ag["gaps"]["TA"]["retrained"],
                     "avg_gap": s["avg_gap"], "time_ratio": s["time_ratio"],
                     "evaluation": f"full audit (RA on all {n_ra} retain samples)"})
    return rows


def export_entry(result: TuneResult, cfg: RunConfig, command: str, directory: Path | None = None) -> tuple[dict[str, Any], str]:
    """Write the best values as the tuned default for (preset, recipe, kind, method)."""
    from unlearnkit.runs import environment  # noqa: PLC0415

    best, s, env = result.best, result.settings, environment()
    if best is None:
        raise UnlearnkitError(
            f"--export: no trial kept RA and TA within {s['margin']} points of retraining; nothing to export "
            "(run more --trials, or widen --margin)"
        )
    final = best.get("final") or []
    entry = {
        "id": tuned.entry_id(s["method"], s["preset"], s["kind"], s["recipe_hash"]),
        "method": s["method"], "preset": s["preset"], "kind": s["kind"], "forget": s["forget"],
        "recipe_hash": s["recipe_hash"], "recipe": tuned.weight_recipe(cfg),
        "values": best["values"],
        "seeds": s["seeds"], "forget_sets": s["forget_sets"],
        "objective": {"avg_gap": _mean(r["avg_gap"] for r in final), "ra_drop": _mean(r["RA_retrain"] - r["RA"] for r in final),
                      "ta_drop": _mean(r["TA_retrain"] - r["TA"] for r in final), "time_ratio": _mean(r["time_ratio"] for r in final),
                      "paper_defaults_avg_gap": (result.default or {}).get("avg_gap")},
        "budget": s["budget"], "margin": s["margin"], "trials": result.counts,
        # The share of the budget the search left free for the cost estimates' error (entries
        # without it were searched against the whole budget).
        "estimate_margin": s.get("estimate_margin", 0.0), "budget_ree": s["budget_ree"],
        "trial": best["number"], "command": command,
        # Where the search kept the entry it started from (REPLACE_MIN_GAIN), or replaced it: both scores.
        **({"incumbent": best["incumbent"]} if best.get("incumbent") else {}),
        # The method's code version the trials ran (`Method.revision`): a later revision marks the
        # entry as searched with older code wherever it is shown (`defaults.revision_note`).
        "method_revision": s.get("method_revision", 0),
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "unlearnkit": env["packages"].get("unlearnkit"), "git_commit": env["git_commit"],
    }
    path = tuned.write_entry(entry, directory)
    return entry, str(path)


def _mean(xs) -> float | None:
    xs = [x for x in xs if x is not None and not (isinstance(x, float) and math.isnan(x))]
    return round(sum(xs) / len(xs), 4) if xs else None


def as_dict(result: TuneResult) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in dataclasses.asdict(result).items() if k != "rows"}
