"""The audit of one unlearned run: its models side by side, the gaps to retraining, the report.

`audit(run, reference=..., original=..., refs=...)` loads the unlearned run (and, when given, the
retrained reference run, the original run and a reference-model pool), runs each model once over
the parts of the unlearned run's split it needs (`caches`), computes every model's numbers
(`per_model`) and writes ``audit.json``, ``report.md`` (+ ``audit_plots/*.png``) and a
self-contained ``report.html`` into the run directory. Everything is computed before the first
file is written, so a failure leaves no half-written report; every file is written atomically.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .. import divergence
from ..attacks import check_max_per_class
from .caches import _forward
from .common import (AUDIT_FILE, AUDIT_FORMAT, ORIGINAL_SUBSAMPLE, PARTS, PLOTS_DIR, REPORT_HTML, REPORT_MD, ROLES,
                     PLOT_NAMES, _jsonable, _seconds, _Timer, check_seed)
from .loading import _check_original, _check_reference, _Model, _open_companion, _open_target
from .per_model import MIA_DEFAULTS, model_results, model_steps

# --------------------------------------------------------------------------- result


@dataclass
class AuditResult:
    """What `audit` returns: the numbers of audit.json (`to_dict()`), and where the files went."""

    run: dict[str, Any]
    original: dict[str, Any] | None
    reference: dict[str, Any] | None
    refs: dict[str, Any] | None
    accuracy: dict[str, dict]
    per_class_accuracy: dict[str, Any]
    seed_attack: dict[str, dict]
    mia_efficacy: dict[str, dict]
    threshold_attacks: dict[str, dict]
    reference_attacks: dict[str, dict] | None
    against_retraining: dict[str, Any] | None
    verdict: str
    summary: dict[str, Any]
    notes: list[str]
    timings: dict[str, float]
    created: str = ""
    files: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "files"}
        return _jsonable({"format": AUDIT_FORMAT, **d})

    # Convenience accessors for the headline numbers.
    @property
    def ua(self) -> float:
        return self.accuracy["unlearned"]["ua"]

    @property
    def avg_gap(self) -> float | None:
        return None if self.against_retraining is None else self.against_retraining["avg_gap"]


def _describe_run(lr, target: bool = True) -> dict:
    """Who a run is; companions share the target's split, so their forget set comes from run.json."""
    info, split = lr.info, lr.split
    return {
        "path": str(lr.dir.path.resolve()),
        "name": lr.dir.path.name,
        "kind": info.get("kind"),
        "method": info.get("method"),
        "forget_spec": (split.forget_spec or info.get("forget_spec")) if target else info.get("forget_spec"),
        "n_forget": int(len(split.forget_idx)) if target else None,
        "forget_sha256": info.get("forget_sha256"),  # compare tells runs of different forget sets apart by it
        "seed": info.get("seed", lr.config.seed),
        "dataset": info.get("dataset", {}).get("name"),
        "fingerprint": info.get("dataset", {}).get("fingerprint"),
        "model": f"{lr.config.model.name} (width {lr.config.model.width})",
        "unlearn_seconds": _seconds(info, lr.metrics),
        "metrics_json": {k: lr.metrics.get(k) for k in ("retain_acc", "forget_acc", "val_acc", "test_acc")
                         if k in lr.metrics},
    }


def _against(u: dict, r: dict, models: dict[str, _Model], original: _Model | None) -> dict:
    ua, ur = u["accuracy"], r["accuracy"]
    pairs = {
        "UA": (ua["ua"], ur["ua"]),
        "RA": (ua["retain_acc"], ur["retain_acc"]),
        "TA": (ua["test_acc"], ur["test_acc"]),
        "MIA-efficacy": (100.0 * u["mia"]["efficacy"], 100.0 * r["mia"]["efficacy"]),
    }
    extra = {"val acc": (ua["val_acc"], ur["val_acc"]), "forget acc": (ua["forget_acc"], ur["forget_acc"])}
    gaps = {k: {"unlearned": a, "retrained": b, "diff": a - b, "gap": abs(a - b)} for k, (a, b) in {**pairs, **extra}.items()}
    mu, mr = models["unlearned"], models["retrained"]
    t_u, t_r = _seconds(mu.loaded.info, mu.loaded.metrics), _seconds(mr.loaded.info, mr.loaded.metrics)
    out = {
        "gaps": gaps,
        "avg_gap": float(np.mean([gaps[k]["gap"] for k in pairs])),
        "avg_gap_over": list(pairs),
        "js_divergence": {
            "forget": divergence.js_divergence(mu.logits["forget"], mr.logits["forget"]),
            "test": divergence.js_divergence(mu.logits["test"], mr.logits["test"]),
        },
        "unlearn_seconds": t_u,
        "reference_seconds": t_r,
        "time_ratio": (t_u / t_r) if (t_u and t_r) else None,
        "reference_method": mr.loaded.info.get("method"),
    }
    if original is not None:
        train_s = original.loaded.metrics.get("train_seconds")
        out["original_train_seconds"] = train_s
        out["time_vs_original_training"] = (t_u / train_s) if (t_u and train_s) else None
    return out


def _summary(run: dict, per: dict, against: dict | None, with_refs: bool) -> dict[str, Any]:
    """The headline numbers of the unlearned model, flat (what leaderboards and `compare` read)."""
    u = per["unlearned"]
    out = {
        "UA": u["accuracy"]["ua"], "RA": u["accuracy"]["retain_acc"], "TA": u["accuracy"]["test_acc"],
        "val_acc": u["accuracy"]["val_acc"], "MIA": 100.0 * u["mia"]["efficacy"],
        "seed_fnr_forget": u["seed"]["sets"]["forget"]["fnr"],
        "loss_auc": u["threshold"]["loss"]["auc"],
        "seconds": run.get("unlearn_seconds"),
        "avg_gap": against["avg_gap"] if against else None,
        "time_ratio": against["time_ratio"] if against else None,
        "js_forget": against["js_divergence"]["forget"] if against else None,
    }
    if with_refs:
        out.update(lira_offline_auc=u["refs"]["lira_offline"]["auc"], lira_online_auc=u["refs"]["lira_online"]["auc"],
                   rmia_auc=u["refs"]["rmia_offline"]["auc"])
    return out


def _verdict(run: dict, acc: dict, mia: dict, against: dict | None) -> str:
    who = f"{run.get('method') or run['name']} on {run.get('forget_spec')}"
    if against is None:
        return (f"{who}: UA {acc['ua']:.2f}%, RA {acc['retain_acc']:.2f}%, TA {acc['test_acc']:.2f}%, "
                f"MIA-efficacy {100 * mia['efficacy']:.2f}%; no reference run (pass --reference RETRAIN_RUN "
                "for the gap to retraining).")
    g = against["gaps"]
    detail = ", ".join(f"{k} {g[k]['gap']:.2f}" for k in against["avg_gap_over"])
    cost = (f"at {against['time_ratio']:.3g}x the reference's time ({against['unlearn_seconds']:.3g} s vs "
            f"{against['reference_seconds']:.3g} s)") if against["time_ratio"] is not None else "at unknown cost (no unlearn_seconds recorded)"
    return f"{who}: average gap to retraining {against['avg_gap']:.2f} points ({detail}) {cost}."


def _retain_sample(split, limit: int | None, seed: int, mia_max_per_class: int | None
                   ) -> tuple[dict[str, np.ndarray] | None, np.ndarray | None]:
    """The retain positions a `retain_limit` audit runs, and which of them RA is computed on.

    MIA-efficacy keeps the full audit's members (a seeded random |test| retain samples), so those
    are always run; `limit` 0 (auto) computes RA on exactly them — a seeded random subset, an
    unbiased estimate (the retain order is sorted ids, class by class for an image folder, so the
    first N would not be). Another N draws its own seeded random subset. None, None: a full audit
    (no limit, or one that covers the whole retain set).
    """
    from unlearnkit.audit.attacks import mia_member_positions  # noqa: PLC0415
    from unlearnkit.training.data import stream_seed  # noqa: PLC0415

    if limit is None:
        return None, None
    n = len(split.retain_idx)
    n_test = len(split.part("test").labels)
    members = mia_member_positions(n, n_test, seed, MIA_DEFAULTS["members"], mia_max_per_class)
    k = len(members) if limit == 0 else int(limit)
    if k >= n:
        return None, None
    if limit == 0:
        ra = members
    else:
        ra = np.sort(np.random.default_rng(stream_seed(seed, "audit-retain-limit")).choice(n, size=k, replace=False))
    run = np.union1d(members, ra)
    return {"retain": run}, np.isin(run, ra)


# --------------------------------------------------------------------------- audit


def audit(
    run: str | Path,
    *,
    reference: str | Path | None = None,
    original: str | Path | None | bool = None,
    refs: str | Path | None = None,
    fix_variance: bool = False,
    seed: int = 0,
    mia_max_per_class: int | None = None,
    data: str | None = None,
    write: bool = True,
    plots: bool = True,
    retain_limit: int | None = None,
) -> AuditResult:
    """Audit the unlearned run at `run`; write audit.json, report.md and report.html into it.

    Args:
        reference: a run retrained without the forget set (``unlearnkit forget ORIG --method retrain``):
            its values are shown beside the run's, with the gaps, JS divergence and time ratio.
        original: the run before unlearning; default (None): the ``parent`` recorded in run.json when
            that directory exists (left out, with a note, when its model is no longer the recorded
            ``parent_model_sha256``); True: that parent, refused like a path if its model changed; False: none.
            A given original must hold the recorded parent's or lineage root's model (sha256), when recorded.
        refs: a reference-model pool (``unlearnkit refs build``) for LiRA (offline, online) and RMIA.
        fix_variance: LiRA with one global variance (needs half as many reference models).
        seed: seeds every attack's subsampling and classifiers (a whole number >= 0).
        mia_max_per_class: cap on each class of the MIA-efficacy SVC (its fit is O(n^2)); default None:
            SalUn's sizes (a seeded random |test| retain samples vs the whole test set).
        data: the dataset path, if it moved since training.
        write: False computes and returns the numbers without writing any file (nor drawing plots).
        plots: False skips the matplotlib figures (and their time).
        retain_limit: a cheaper audit for tuning trials: RA on a seeded random subset of this many
            retain samples (0: exactly MIA-efficacy's members, a seeded random |test| of retain), for the
            audited run and the reference alike; UA, TA and MIA-efficacy are exactly a full audit's (its
            members are always run). None (default), or at least |retain|: a full audit.

    Raises:
        UnlearnkitError: a missing/unfinished run, a reference or original from other data or another
            split, a reference that forgot another set or was retrained from another original model, an
            original that holds another model, a bad seed or cap, too few reference models, NaN/inf outputs.
    """
    timer = _Timer()
    try:
        return _audit(timer, run, reference=reference, original=original, refs=refs, fix_variance=fix_variance,
                      seed=seed, mia_max_per_class=mia_max_per_class, data=data, write=write, plots=plots and write,
                      retain_limit=retain_limit)
    finally:
        timer.close()


def _audit(timer: _Timer, run, *, reference, original, refs, fix_variance, seed, mia_max_per_class, data, write,
           plots, retain_limit=None) -> AuditResult:
    t_start = time.perf_counter()
    notes: list[str] = []
    if retain_limit is not None and (isinstance(retain_limit, bool) or not isinstance(retain_limit, (int, np.integer))
                                     or retain_limit < 0):
        raise UnlearnkitError(f"retain_limit must be None (a full audit) or a whole number >= 0 (0: auto), got {retain_limit!r}")
    # Checked here, not where numpy first meets them (after every forward pass, with a traceback).
    check_seed(seed)
    check_max_per_class(mia_max_per_class)
    explicit = original is not None  # the caller named the original (True: "yes, the recorded parent")
    if original is True:
        original = None
    with timer("load"):
        target = _open_target(run, data)
        ref_run = None
        if reference is not None:
            if Path(reference).resolve() != target.dir.path.resolve():
                ref_run = _open_companion(reference, "retrained", target, same_forget=True, reference=True)
            else:  # only an exact retrain is its own reference
                _check_reference(target.dir, target.info, target)
                ref_run = target
                notes.append("The reference is the audited run itself (an exact retrain): every gap is zero by construction.")
        orig_run = None
        if original is None:
            parent = target.info.get("parent")
            if parent and Path(parent).is_dir():
                orig_run = _open_companion(parent, "original", target, same_forget=False)
            elif parent:
                notes.append(f"The parent run {parent} recorded in run.json was not found; pass --original to include it.")
        elif original is not False:
            orig_run = _open_companion(original, "original", target, same_forget=False)
        why = _check_original(orig_run, target) if orig_run is not None else None
        if why and explicit:
            raise UnlearnkitError(f"{why}; pass the run it was unlearned from as --original, or --no-original")
        if why:
            # Only the default was taken: leave out a column about another model rather than refuse the audit.
            notes.append(f"The recorded parent was left out: {why}; pass --original RUN to include the right one.")
            orig_run = None
        pool = None
        if refs is not None:
            from ..refs import load_refs  # noqa: PLC0415

            pool = load_refs(refs)
            if pool.fingerprint != target.split.bundle.fingerprint:
                raise UnlearnkitError(
                    f"reference pool {pool.dir} was built on another dataset (fingerprint {pool.fingerprint[:12]}…) "
                    f"than run {target.dir.path}; build one with `unlearnkit refs build` on this run's original"
                )
            if pool.manifest.get("recipe", {}).get("model") != target.config.recipe().get("model"):
                notes.append("The reference models use another architecture than the audited run; LiRA/RMIA assume the same recipe.")
            if pool.n_finished != pool.k or pool.k < int(pool.manifest.get("k", pool.k)):
                notes.append(f"The reference pool is incomplete: {pool.k} of {pool.manifest.get('k')} models used.")

    n_models = 1 + (orig_run is not None) + (ref_run is not None)
    timer.start_bar(n_models - (ref_run is target) + n_models * model_steps(pool is not None)
                    + (ref_run is not None) + plots)
    take, ra_mask = _retain_sample(target.split, retain_limit, seed, mia_max_per_class)
    pos = None if take is None else take["retain"]
    models: dict[str, _Model] = {"unlearned": _Model("unlearned", target, retain_ra=ra_mask, retain_pos=pos)}
    with timer("forward/unlearned"):
        _forward(models["unlearned"], PARTS, seed, take=take)
    if orig_run is not None:
        models["original"] = _Model("original", orig_run)
        with timer("forward/original"):
            _forward(models["original"], PARTS, seed, ORIGINAL_SUBSAMPLE)
    if ref_run is target:
        models["retrained"] = dataclasses.replace(models["unlearned"], role="retrained")
    elif ref_run is not None:
        models["retrained"] = _Model("retrained", ref_run, retain_ra=ra_mask, retain_pos=pos)  # RA on the same samples
        with timer("forward/retrained"):
            _forward(models["retrained"], PARTS, seed, take=take)
    roles = [r for r in ROLES if r in models]

    per: dict[str, dict] = {}
    curves: dict[str, dict[str, tuple]] = {}
    mia = {**MIA_DEFAULTS, "max_per_class": mia_max_per_class}
    for r in roles:
        # The original and the reference are audited against every method of a bench: their numbers are cached.
        per[r], c = model_results(models[r], target.split.num_classes, seed=seed, mia=mia, pool=pool,
                                  fix_variance=fix_variance, timer=timer, cache=r != "unlearned")
        for name, curve in c.items():
            curves.setdefault(name, {})[r] = curve
    against = None
    if "retrained" in models:
        with timer("js_divergence"):
            against = _against(per["unlearned"], per["retrained"], models, models.get("original"))
    if "original" in models and models["original"].n_full != {p: len(v) for p, v in models["original"].labels.items()}:
        caps = ", ".join(f"{p} {c}" for p, c in ORIGINAL_SUBSAMPLE.items())
        notes.append(f"The original model is evaluated on random subsamples ({caps} samples) of the larger parts.")
    if ra_mask is not None:
        n_ra, n_ret = int(ra_mask.sum()), models["unlearned"].n_full["retain"]
        notes.append(f"RA is on a seeded random subset of {n_ra} of {n_ret} retain samples (a trial's audit, retain_limit), "
                     "for every model audited; UA, TA and MIA-efficacy are a full audit's; the seed attack's members are "
                     f"the {len(ra_mask)} retain samples run.")

    run_desc = _describe_run(target)
    result = AuditResult(
        run=run_desc,
        original=_describe_run(orig_run, target=False) if orig_run is not None else None,
        reference=_describe_run(ref_run, target=ref_run is target) if ref_run is not None else None,
        refs=None,
        accuracy={r: per[r]["accuracy"] for r in roles},
        per_class_accuracy={"classes": list(target.split.classes), **{r: per[r]["per_class"] for r in roles}},
        seed_attack={r: per[r]["seed"] for r in roles},
        mia_efficacy={r: per[r]["mia"] for r in roles},
        threshold_attacks={r: per[r]["threshold"] for r in roles},
        reference_attacks={r: per[r]["refs"] for r in roles} if pool is not None else None,
        against_retraining=against,
        verdict=_verdict(run_desc, per["unlearned"]["accuracy"], per["unlearned"]["mia"], against),
        summary=_summary(run_desc, per, against, pool is not None),
        notes=notes,
        timings={},
        created=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    if pool is not None:
        from ..refs import describe  # noqa: PLC0415

        result.refs = describe(pool)

    images: dict[str, bytes] = {}
    if plots:
        from .. import plots as P  # noqa: PLC0415

        with timer("plots"):
            hist = {r: {part: (models[r].lsc(part), models[r].loss(part)) for part in ("forget", "test", "retain")}
                    for r in roles}
            images["histograms"] = P.score_histograms(hist)
            images["roc"] = P.roc_loglog(curves)
            images["per_class"] = P.per_class_accuracy(result.per_class_accuracy)
    result.timings = {**timer.t, "total": round(time.perf_counter() - t_start, 3)}
    if write:
        from ..report import audit_document  # noqa: PLC0415

        def render() -> tuple[str, str]:
            doc = audit_document(result.to_dict(), images)
            return doc.to_markdown(PLOTS_DIR), doc.to_html()

        # The reports show the timings, their own step and the total included, so the step is timed on a
        # first render and the reports rendered again with the final timings: report.md/html and audit.json
        # then show the same numbers (the total leaves out only the second render and the file writes).
        t0 = time.perf_counter()
        render()
        result.timings["report"] = round(time.perf_counter() - t0, 3)
        result.timings["total"] = round(time.perf_counter() - t_start, 3)
        md, html = render()
        result.files = _write_outputs(target.dir.path, result, md, html, images)
    return result


def _write_outputs(out: Path, result: AuditResult, md: str, html: str, images: dict[str, bytes]) -> dict[str, str]:
    from unlearnkit.runs import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: PLC0415

    files = {}
    for name, png in images.items():
        path = out / PLOTS_DIR / f"{name}.png"
        atomic_write_bytes(path, png)
        files[f"plot_{name}"] = str(path)
    atomic_write_text(out / REPORT_MD, md)
    atomic_write_text(out / REPORT_HTML, html)
    _remove_stale_plots(out / PLOTS_DIR, set(images))
    atomic_write_json(out / AUDIT_FILE, result.to_dict())  # last: its presence means "audited"
    files.update(audit=str(out / AUDIT_FILE), report_md=str(out / REPORT_MD), report_html=str(out / REPORT_HTML))
    return files


def _remove_stale_plots(folder: Path, written: set[str]) -> None:
    """Remove the plots an earlier audit left in the run's plot folder that this one did not draw.

    A re-audit with --no-plots would otherwise leave the figures of another audit beside the new
    report. Only the audit's own file names go, as files or links (a link, not what it points to);
    anything else in the folder is the user's and stays, and so does the folder then.
    """
    if folder.is_symlink() or not folder.is_dir():
        return  # a linked folder is not the run's own: nothing in it is removed
    for name in PLOT_NAMES:
        path = folder / f"{name}.png"
        if name not in written and (path.is_symlink() or path.is_file()):
            path.unlink()
    try:
        folder.rmdir()  # only when nothing is left in it
    except OSError:
        pass

