"""The audit pipeline: run directories in, numbers + report out.

`audit(run, reference=..., original=..., refs=...)` loads the unlearned run (and, when given,
the retrained reference run, the original run and a reference-model pool), runs each model once
over the parts of the unlearned run's split it needs, computes every metric with the numpy
modules of this package (scores, attacks, lira, rmia, divergence) and writes ``audit.json``,
``report.md`` (+ ``audit_plots/*.png``) and a self-contained ``report.html`` into the run
directory. Everything is computed before the first file is written, so a failure leaves no
half-written report; every file is written atomically.

`forgetting_score(unlearned_runs, retrained_runs)` is the NeurIPS 2023 competition's per-example
epsilon audit over groups of runs, and `compare(runs)` puts several audited runs in one table
(and report). docs/audit.md defines every metric.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from unlearnkit.errors import UnlearnkitError

from . import attacks, divergence, epsilon, lira, rmia, scores

__all__ = ["AuditResult", "audit", "compare", "forgetting_score", "score_arrays", "AUDIT_FILE", "REPORT_MD", "REPORT_HTML", "PLOTS_DIR"]

AUDIT_FILE = "audit.json"
REPORT_MD = "report.md"
REPORT_HTML = "report.html"
PLOTS_DIR = "audit_plots"
AUDIT_FORMAT = 1
FPRS = (0.01, 0.001)
PARTS = ("retain", "forget", "val", "test")
ROLES = ("original", "unlearned", "retrained")  # column order everywhere
# The original model is context, not the subject: its retain/val outputs are only needed for
# attacks that balance classes anyway, so they are subsampled to keep a CIFAR audit in budget.
ORIGINAL_SUBSAMPLE = {"retain": 5000, "val": 5000, "test": 5000}
# Inference batch on a CPU: ResNet-18 (width 16) on CIFAR-10 ran at 1130 img/s with batches of 256 and
# 660 img/s with 1024 (1 thread; the activations of a 1024 batch overflow the caches). Accelerators use
# the run's eval_batch_size.
CPU_BATCH = 256


# --------------------------------------------------------------------------- small helpers


class _Timer:
    """Seconds per step (summed when a key repeats), and an optional progress bar over the steps."""

    def __init__(self) -> None:
        self.t: dict[str, float] = {}
        self.bar = None

    def start_bar(self, total: int) -> None:
        from unlearnkit.training.loop import progress  # noqa: PLC0415

        self.bar = progress(None, total=total, desc="audit", unit="step")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @contextmanager
    def __call__(self, key: str) -> Iterator[None]:
        if self.bar is not None:
            self.bar.set_description_str(f"audit: {key}", refresh=False)
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.t[key] = round(self.t.get(key, 0.0) + time.perf_counter() - t0, 3)
            if self.bar is not None:
                self.bar.update(1)


def _jsonable(obj: Any) -> Any:
    """Plain JSON types: numpy scalars/arrays converted, NaN/inf -> None, tuple -> list."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        f = float(obj)
        return f if np.isfinite(f) else None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _seconds(info: dict, metrics: dict) -> float | None:
    for src in (info, metrics):
        v = src.get("unlearn_seconds")
        if isinstance(v, (int, float)) and v > 0:
            return float(v)
    return None


def _roc_summary(res: dict, keep_curve: bool = True) -> dict:
    """What audit.json keeps of an attacks.roc_metrics result (the curve downsampled to <= 120 points)."""
    out = {
        "auc": res["auc"],
        "tpr_at_fpr": {f"{f:g}": v for f, v in res["tpr_at_fpr"].items()},
        "best_balanced_accuracy": res["best_balanced_accuracy"],
        "n_members": res["n_members"],
        "n_nonmembers": res["n_nonmembers"],
        "min_resolvable_fpr": res["min_resolvable_fpr"],
    }
    if keep_curve:
        fpr, tpr = np.asarray(res["fpr"]), np.asarray(res["tpr"])
        grid = np.unique(np.concatenate([np.logspace(np.log10(res["min_resolvable_fpr"]), 0, 119), [1.0]]))
        idx = np.searchsorted(fpr, grid + 1e-12, side="right") - 1
        out["roc"] = {"fpr": np.round(grid, 6).tolist(), "tpr": np.round(tpr[np.clip(idx, 0, None)], 6).tolist()}
    return out


# --------------------------------------------------------------------------- loading runs


@dataclass
class _Model:
    """One model's outputs on the parts of the audited split."""

    role: str
    loaded: Any  # LoadedRun
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    n_full: dict[str, int] = field(default_factory=dict)

    @property
    def path(self) -> Path:
        return self.loaded.dir.path

    def lsc(self, part: str) -> np.ndarray:
        return scores.logit_scaled_confidence(self.logits[part], self.labels[part], self.name)

    def prob(self, part: str) -> np.ndarray:
        return scores.true_label_confidence(self.logits[part], self.labels[part], self.name)

    def loss(self, part: str) -> np.ndarray:
        return scores.cross_entropy(self.logits[part], self.labels[part], self.name)

    @property
    def name(self) -> str:
        return f"the {self.role} model (run {self.path})"


def _open_target(run: str | Path, data: str | None):
    from unlearnkit.training.pipeline import load_run  # noqa: PLC0415

    from unlearnkit.importer import require_non_members  # noqa: PLC0415

    loaded = load_run(run, data=data)
    require_non_members(loaded.split, f"run {loaded.dir.path}")
    if len(loaded.split.forget_idx) == 0:
        raise UnlearnkitError(
            f"run {loaded.dir.path} has no forget set (it is an {loaded.info.get('kind', 'original')} run): audit an "
            f"unlearned run, e.g. made by `unlearnkit forget {loaded.dir.path} --method finetune --forget random:0.1 --out DIR`"
        )
    return loaded


def _open_companion(path: str | Path, role: str, target, *, same_forget: bool):
    """A run compared with the target: same data and split (and forget set when `same_forget`).

    Reads only the small JSON files first, so a mismatch is reported before any data or model is loaded;
    the returned LoadedRun shares the target's split (no second dataset load).
    """
    from unlearnkit.config import RunConfig  # noqa: PLC0415
    from unlearnkit.runs import RunDir  # noqa: PLC0415
    from unlearnkit.training.data import Normalizer  # noqa: PLC0415
    from unlearnkit.training.pipeline import LoadedRun  # noqa: PLC0415
    from unlearnkit.training.runtime import Runtime  # noqa: PLC0415

    what = {"retrained": "reference run", "original": "original run"}.get(role, f"{role} run")
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise UnlearnkitError(f"{what} {run.path} does not exist; pass an existing run directory")
    info = run.read_json("run.json", f"{what}'s run record")
    fp, tfp = info.get("dataset", {}).get("fingerprint"), target.split.bundle.fingerprint
    if fp != tfp:
        raise UnlearnkitError(
            f"{what} {run.path} was trained on another dataset (fingerprint {str(fp)[:12]}…) than run "
            f"{target.dir.path} ({tfp[:12]}…); compare runs made from the same data"
        )
    manifest = run.read_json("split.json", f"{what}'s split manifest")
    mine = target.split.manifest()
    for key, label in (("train", "members (train)"), ("val", "validation")):
        if manifest.get(key) != mine[key]:
            raise UnlearnkitError(
                f"{what} {run.path} has another split ({label} set differs; split seed {manifest.get('seed')} vs "
                f"{mine['seed']}) than run {target.dir.path}; use runs descended from the same original run"
            )
    if same_forget and manifest.get("forget") != mine["forget"]:
        raise UnlearnkitError(
            f"{what} {run.path} forgot another set ({len(manifest.get('forget') or [])} samples, "
            f"{manifest.get('forget_spec')!r}) than run {target.dir.path} ({len(mine['forget'])} samples, "
            f"{mine['forget_spec']!r}); retrain with the same --forget"
        )
    if not run.finished:
        raise UnlearnkitError(f"{what} {run.path} has no finished model (model.safetensors + metrics.json); finish that run first")
    cfg = RunConfig.from_dict(run.read_json("config.json", f"{what}'s config"))
    norm = info.get("normalizer") or {}
    if "mean" not in norm or "std" not in norm:
        raise UnlearnkitError(f"{what} {run.path} has no normaliser in run.json; the run directory is damaged")
    metrics = run.read_json("metrics.json")
    return LoadedRun(run, cfg, info, target.split, Normalizer(tuple(norm["mean"]), tuple(norm["std"])),
                     Runtime.from_config(cfg.runtime), metrics)


def _logits_cache(lr, part: str, ids: np.ndarray) -> Path | None:
    """Where one model's logits on these samples are cached, keyed by content.

    A bench audits every method against the same retrained and original models, whose forward
    passes would otherwise be repeated for each method (they dominate an audit's time). The key
    holds the model file's sha256, the architecture options, normaliser, precision and the exact
    sample ids, so another model, split or setting never hits a stale entry.
    UNLEARNKIT_LOGIT_CACHE=0 turns it off.
    """
    import os  # noqa: PLC0415

    from unlearnkit.data.cache import entry_path, file_digest, make_key, resolve_cache_dir  # noqa: PLC0415
    from unlearnkit.training.pipeline import MODEL_FILE  # noqa: PLC0415

    if os.environ.get("UNLEARNKIT_LOGIT_CACHE", "1") == "0":
        return None
    weights = lr.dir.file(MODEL_FILE)
    key = make_key({
        "kind": "logits", "weights": file_digest(weights), "model": dataclasses.asdict(lr.config.model),
        "normalizer": [list(lr.normalizer.mean), list(lr.normalizer.std)],
        "precision": lr.runtime.describe(), "fingerprint": lr.split.bundle.fingerprint, "part": part,
        "ids": hashlib.sha256(np.ascontiguousarray(ids).astype(str).tobytes()).hexdigest(),
    })
    return entry_path(resolve_cache_dir() / "logits", f"logits-{part}", key)


def _forward(model: _Model, parts: Sequence[str], seed: int, subsample: dict[str, int] | None = None) -> None:
    """Fill `model` with logits (float64, checked finite) on each part of the target split."""
    from unlearnkit.data.cache import read_entry, write_entry  # noqa: PLC0415
    from unlearnkit.training.data import TensorSet, stream_seed  # noqa: PLC0415
    from unlearnkit.training.loop import predict_logits  # noqa: PLC0415

    lr = model.loaded
    net = None  # loaded on the first cache miss
    split = lr.split
    for part in parts:
        p = split.part(part)
        n = len(p.labels)
        idx = np.arange(n)
        cap = (subsample or {}).get(part)
        if cap is not None and n > cap:
            rng = np.random.default_rng(stream_seed(seed, "audit-subsample", part))
            idx = np.sort(rng.choice(n, size=cap, replace=False))
        images, labels = p.images[idx], p.labels[idx]
        cached = _logits_cache(lr, part, p.ids[idx])
        entry = read_entry(cached) if cached is not None else None
        if entry is not None and entry["logits"].shape[0] == len(idx):
            logits = entry["logits"].astype(np.float64)
        else:
            batch = lr.config.train.eval_batch_size
            if lr.runtime.device.type == "cpu":
                batch = min(batch, CPU_BATCH)
            net = net if net is not None else lr.load_model()
            raw = predict_logits(net, TensorSet.from_numpy(images, labels, lr.runtime), lr.normalizer, lr.runtime, batch).numpy()
            if cached is not None:
                write_entry(cached, {"logits": raw})
            logits = raw.astype(np.float64)
        model.logits[part] = scores.check_finite(logits, model.name)
        model.labels[part] = np.asarray(labels, dtype=np.int64)
        model.ids[part] = p.ids[idx]
        model.n_full[part] = n


def model_outputs(run: str | Path, parts: Sequence[str] = ("forget", "test")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{part: (logits, labels)}`` of a finished run on whole parts of its own split.

    Goes through the audit's logit cache, so after an audit (or a bench) it costs no forward pass.
    """
    from unlearnkit.training.pipeline import load_run  # noqa: PLC0415

    m = _Model("unlearned", load_run(run))
    _forward(m, parts, seed=0)
    return {part: (m.logits[part], m.labels[part]) for part in parts}


# --------------------------------------------------------------------------- metrics per model


def _accuracy(m: _Model) -> dict:
    out: dict[str, Any] = {}
    for part in PARTS:
        pred = m.logits[part].argmax(1)
        out[f"{part}_acc"] = float(100.0 * (pred == m.labels[part]).mean())
    out["ua"] = 100.0 - out["forget_acc"]
    out["n"] = {p: int(len(m.labels[p])) for p in PARTS}
    sub = {p: m.n_full[p] for p in PARTS if m.n_full[p] != len(m.labels[p])}
    if sub:
        out["subsampled_from"] = sub
    return out


def _per_class(m: _Model, num_classes: int) -> dict:
    out = {}
    for part in ("test", "forget"):
        y, pred = m.labels[part], m.logits[part].argmax(1)
        accs = []
        for c in range(num_classes):
            sel = y == c
            accs.append(float(100.0 * (pred[sel] == c).mean()) if sel.any() else None)
        out[part] = accs
    return out


def _seed_attack(m: _Model, seed: int) -> dict:
    train_logits = np.concatenate([m.logits["retain"], m.logits["forget"]])
    res = attacks.seed_attack(
        m.logits["retain"], m.logits["val"],
        {"train": (train_logits, True), "test": (m.logits["test"], False), "forget": (m.logits["forget"], True)},
        seed=seed,
    )
    res["trained_on"] = "retain (members) vs val (non-members), balanced"
    return res


def _mia_efficacy(m: _Model, seed: int, max_per_class: int) -> dict:
    return attacks.mia_efficacy(
        m.logits["retain"], m.labels["retain"], m.logits["test"], m.labels["test"],
        m.logits["forget"], m.labels["forget"], seed=seed, max_per_class=max_per_class,
    )


def _threshold(m: _Model) -> tuple[dict, dict]:
    out, curves = {}, {}
    for score in ("loss", "confidence"):
        res = attacks.threshold_attack(m.logits["forget"], m.labels["forget"], m.logits["val"], m.labels["val"],
                                       score=score, fprs=FPRS)
        out[score] = _roc_summary(res)
        curves[f"threshold ({score}): forget vs val"] = (res["fpr"], res["tpr"], res["auc"])
    return out, curves


def _ref_attacks(m: _Model, pool, fix_variance: bool, seed: int, timer: _Timer) -> tuple[dict, dict]:
    """Offline LiRA and RMIA (forget vs test, OUT models only), online LiRA (forget vs val)."""
    pf = pool.positions(m.ids["forget"], "forget")
    pv = pool.positions(m.ids["val"], "validation")
    test_index = {str(s): i for i, s in enumerate(pool.test_ids.tolist())}
    try:
        pt = np.array([test_index[str(s)] for s in m.ids["test"].tolist()], dtype=np.int64)
    except KeyError:
        raise UnlearnkitError(f"reference pool {pool.dir} does not cover this run's test set; build a pool for this dataset") from None
    lf, lv, lt = m.lsc("forget"), m.lsc("val"), m.lsc("test")
    nf = len(lf)
    out, curves = {}, {}

    def wrap(fn, *args, **kw):
        try:
            return fn(*args, **kw)
        except UnlearnkitError as exc:
            hint = " (command line: --fix-variance)" if "fix_variance=True" in str(exc) else ""
            raise UnlearnkitError(f"reference pool {pool.dir} (K={pool.k}): {exc}{hint}") from None

    # Test samples are OUT of all K models, forget samples of K/2: test samples use one random model per
    # pair (`test_mask` marks the other as if IN), so both sides get equally noisy OUT estimates.
    test_mask = pool.test_mask(seed)[:, pt]
    with timer(f"lira_offline/{m.role}"):
        target = np.concatenate([lf, lt])
        ref = np.concatenate([pool.pool_lsc[:, pf], pool.test_lsc[:, pt]], axis=1)
        ref_in = np.concatenate([pool.in_mask[:, pf], test_mask], axis=1)
        s = wrap(lira.lira_offline, target, ref, ref_in, fix_variance=fix_variance)
        res = attacks.roc_metrics(s[:nf], s[nf:], fprs=FPRS)
        out["lira_offline"] = {**_roc_summary(res), "pair": "forget vs test", "fix_variance": fix_variance}
        curves["LiRA offline: forget vs test"] = (res["fpr"], res["tpr"], res["auc"])
    with timer(f"lira_online/{m.role}"):
        pos = np.concatenate([pf, pv])
        s = wrap(lira.lira_online, np.concatenate([lf, lv]), pool.pool_lsc[:, pos], pool.in_mask[:, pos],
                 fix_variance=fix_variance)
        res = attacks.roc_metrics(s[:nf], s[nf:], fprs=FPRS)
        out["lira_online"] = {**_roc_summary(res), "pair": "forget vs val", "fix_variance": fix_variance}
        curves["LiRA online: forget vs val"] = (res["fpr"], res["tpr"], res["auc"])
    with timer(f"rmia_offline/{m.role}"):
        tx = np.concatenate([m.prob("forget"), m.prob("test")])
        rx = np.concatenate([pool.out_pairs(pf, pool.pool_prob), pool.out_of_mask(pool.test_prob[:, pt], test_mask)], axis=1)
        s = wrap(rmia.rmia_offline, tx, rx, m.prob("val"), pool.out_pairs(pv, pool.pool_prob))
        res = attacks.roc_metrics(s[:nf], s[nf:], fprs=FPRS)
        out["rmia_offline"] = {**_roc_summary(res), "pair": "forget vs test", "population": "val", "a": 0.3}
        curves["RMIA offline: forget vs test"] = (res["fpr"], res["tpr"], res["auc"])
    return out, curves


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


# --------------------------------------------------------------------------- audit


def audit(
    run: str | Path,
    *,
    reference: str | Path | None = None,
    original: str | Path | None | bool = None,
    refs: str | Path | None = None,
    fix_variance: bool = False,
    seed: int = 0,
    mia_max_per_class: int = 5000,
    data: str | None = None,
    write: bool = True,
    plots: bool = True,
) -> AuditResult:
    """Audit the unlearned run at `run`; write audit.json, report.md and report.html into it.

    Args:
        reference: a run retrained without the forget set (``unlearnkit forget ORIG --method retrain``):
            its values are shown beside the run's, with the gaps, JS divergence and time ratio.
        original: the run before unlearning; default (None): the ``parent`` recorded in run.json when
            that directory exists; False: none.
        refs: a reference-model pool (``unlearnkit refs build``) for LiRA (offline, online) and RMIA.
        fix_variance: LiRA with one global variance (needs half as many reference models).
        seed: seeds every attack's subsampling and classifiers.
        mia_max_per_class: cap on each class of the MIA-efficacy SVC (its fit is O(n^2)).
        data: the dataset path, if it moved since training.
        write: False computes and returns the numbers without writing any file (nor drawing plots).
        plots: False skips the matplotlib figures (and their time).

    Raises:
        UnlearnkitError: a missing/unfinished run, a reference or original from other data or another
            split, a reference that forgot another set, too few reference models, NaN/inf outputs.
    """
    timer = _Timer()
    try:
        return _audit(timer, run, reference=reference, original=original, refs=refs, fix_variance=fix_variance,
                      seed=seed, mia_max_per_class=mia_max_per_class, data=data, write=write, plots=plots and write)
    finally:
        timer.close()


def _audit(timer: _Timer, run, *, reference, original, refs, fix_variance, seed, mia_max_per_class, data, write,
           plots) -> AuditResult:
    t_start = time.perf_counter()
    notes: list[str] = []
    if original is True:
        original = None  # "yes, the recorded parent"
    with timer("load"):
        target = _open_target(run, data)
        ref_run = None
        if reference is not None:
            if Path(reference).resolve() != target.dir.path.resolve():
                ref_run = _open_companion(reference, "retrained", target, same_forget=True)
            else:
                ref_run = target
                notes.append("The reference is the audited run itself: every gap is zero by construction.")
        orig_run = None
        if original is None:
            parent = target.info.get("parent")
            if parent and Path(parent).is_dir():
                orig_run = _open_companion(parent, "original", target, same_forget=False)
            elif parent:
                notes.append(f"The parent run {parent} recorded in run.json was not found; pass --original to include it.")
        elif original is not False:
            orig_run = _open_companion(original, "original", target, same_forget=False)
        pool = None
        if refs is not None:
            from .refs import load_refs  # noqa: PLC0415

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
    timer.start_bar(n_models - (ref_run is target) + n_models * (4 + 3 * (pool is not None))
                    + (ref_run is not None) + plots)
    models: dict[str, _Model] = {"unlearned": _Model("unlearned", target)}
    with timer("forward/unlearned"):
        _forward(models["unlearned"], PARTS, seed)
    if orig_run is not None:
        models["original"] = _Model("original", orig_run)
        with timer("forward/original"):
            _forward(models["original"], PARTS, seed, ORIGINAL_SUBSAMPLE)
    if ref_run is not None:
        if ref_run is target:
            models["retrained"] = dataclasses.replace(models["unlearned"], role="retrained")
        else:
            models["retrained"] = _Model("retrained", ref_run)
            with timer("forward/retrained"):
                _forward(models["retrained"], PARTS, seed)
    roles = [r for r in ROLES if r in models]

    per: dict[str, dict] = {r: {} for r in roles}
    curves: dict[str, dict[str, tuple]] = {}
    num_classes = target.split.num_classes
    for r in roles:
        m = models[r]
        with timer("accuracy"):
            per[r]["accuracy"] = _accuracy(m)
            per[r]["per_class"] = _per_class(m, num_classes)
        with timer(f"seed_attack/{r}"):
            per[r]["seed"] = _seed_attack(m, seed)
        with timer(f"mia_efficacy/{r}"):
            per[r]["mia"] = _mia_efficacy(m, seed, mia_max_per_class)
        with timer(f"threshold_attacks/{r}"):
            per[r]["threshold"], c = _threshold(m)
        for name, curve in c.items():
            curves.setdefault(name, {})[r] = curve
        if pool is not None:
            per[r]["refs"], c = _ref_attacks(m, pool, fix_variance, seed, timer)
            for name, curve in c.items():
                curves.setdefault(name, {})[r] = curve
    against = None
    if "retrained" in models:
        with timer("js_divergence"):
            against = _against(per["unlearned"], per["retrained"], models, models.get("original"))
        if against["reference_method"] != "retrain":
            notes.append(f"The reference run's method is {against['reference_method']!r}, not 'retrain': gaps are to that model.")
    if "original" in models and models["original"].n_full != {p: len(v) for p, v in models["original"].labels.items()}:
        caps = ", ".join(f"{p} {c}" for p, c in ORIGINAL_SUBSAMPLE.items())
        notes.append(f"The original model is evaluated on random subsamples ({caps} samples) of the larger parts.")

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
        from .refs import describe  # noqa: PLC0415

        result.refs = describe(pool)

    images: dict[str, bytes] = {}
    if plots:
        from . import plots as P  # noqa: PLC0415

        with timer("plots"):
            hist = {r: {part: (models[r].lsc(part), models[r].loss(part)) for part in ("forget", "test", "retain")}
                    for r in roles}
            images["histograms"] = P.score_histograms(hist)
            images["roc"] = P.roc_loglog(curves)
            images["per_class"] = P.per_class_accuracy(result.per_class_accuracy)
    result.timings = {**timer.t, "total": round(time.perf_counter() - t_start, 3)}
    if write:
        from .report import audit_document  # noqa: PLC0415

        t0 = time.perf_counter()
        doc = audit_document(result.to_dict(), images)
        md, html = doc.to_markdown(PLOTS_DIR), doc.to_html()
        result.timings["report"] = round(time.perf_counter() - t0, 3)
        result.timings["total"] = round(time.perf_counter() - t_start, 3)
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
    atomic_write_json(out / AUDIT_FILE, result.to_dict())  # last: its presence means "audited"
    files.update(audit=str(out / AUDIT_FILE), report_md=str(out / REPORT_MD), report_html=str(out / REPORT_HTML))
    return files


# --------------------------------------------------------------------------- forgetting score (epsilon)


MIN_SCORE_RUNS = 3


def forgetting_score(
    unlearned_runs: Sequence[str | Path],
    retrained_runs: Sequence[str | Path],
    *,
    seed: int = 0,
    rules: str = "competition",
    data: str | None = None,
) -> dict[str, Any]:
    """NeurIPS 2023 competition forgetting quality of one method, from groups of runs.

    ``unlearned_runs``: N_u runs of the method (different seeds), ``retrained_runs``: N_r runs retrained
    without the same forget set. Each model's logit-scaled confidence on every forget example feeds
    :func:`unlearnkit.audit.epsilon.forgetting_quality`; the final score multiplies F by the retain and
    test accuracy ratios (:func:`~unlearnkit.audit.epsilon.competition_score`, accuracies from each
    run's metrics.json). Shown beside it: the noise floor (F of retrained vs retrained, split in
    halves; needs >= 6 retrained runs) and the epsilon bounds that N sets.

    Raises:
        UnlearnkitError: fewer than 3 runs on a side, runs from other data, another split or forget set.
    """
    unlearned_runs, retrained_runs = list(unlearned_runs), list(retrained_runs)
    if len(unlearned_runs) < MIN_SCORE_RUNS or len(retrained_runs) < MIN_SCORE_RUNS:
        raise UnlearnkitError(
            f"the forgetting score needs at least {MIN_SCORE_RUNS} unlearned and {MIN_SCORE_RUNS} retrained runs "
            f"with the same forget set (different seeds; the competition used 512 of each), got "
            f"{len(unlearned_runs)} unlearned and {len(retrained_runs)} retrained"
        )
    t0 = time.perf_counter()
    first = _open_target(unlearned_runs[0], data)
    opened = [("unlearned", first)]
    for p in unlearned_runs[1:]:
        opened.append(("unlearned", _open_companion(p, "unlearned", first, same_forget=True)))
    for p in retrained_runs:
        if Path(p).resolve() == first.dir.path.resolve():
            raise UnlearnkitError(f"run {p} is given as both unlearned and retrained; pass each run once")
        opened.append(("retrained", _open_companion(p, "retrained", first, same_forget=True)))
    seen: set[Path] = set()
    for _, lr in opened:
        key = lr.dir.path.resolve()
        if key in seen:
            raise UnlearnkitError(f"run {lr.dir.path} is given twice; every model must count once")
        seen.add(key)

    rows: dict[str, list[np.ndarray]] = {"unlearned": [], "retrained": []}
    accs: dict[str, dict[str, list[float]]] = {"unlearned": {"retain": [], "test": []}, "retrained": {"retain": [], "test": []}}
    for role, lr in opened:
        m = _Model(role, lr)
        need = [p for p in ("retain", "test") if not isinstance(lr.metrics.get(f"{p}_acc"), (int, float))]
        _forward(m, ["forget", *need], seed)
        rows[role].append(m.lsc("forget"))
        for p in ("retain", "test"):
            v = lr.metrics.get(f"{p}_acc")
            if p in need:
                v = float(100.0 * (m.logits[p].argmax(1) == m.labels[p]).mean())
            accs[role][p].append(float(v))
    methods = sorted({str(lr.info.get("method")) for role, lr in opened if role == "unlearned"})
    mean = {r: {p: float(np.mean(v)) for p, v in d.items()} for r, d in accs.items()}
    out = score_arrays(np.stack(rows["unlearned"]), np.stack(rows["retrained"]), mean, seed=seed, rules=rules)
    return {
        "method": methods[0] if len(methods) == 1 else methods,
        "unlearned_runs": [str(lr.dir.path) for role, lr in opened if role == "unlearned"],
        "retrained_runs": [str(lr.dir.path) for role, lr in opened if role == "retrained"],
        "forget_spec": first.split.forget_spec,
        **out,
        "seconds": round(time.perf_counter() - t0, 3),
    }


def score_arrays(unlearned: np.ndarray, retrained: np.ndarray, accuracy: dict[str, dict[str, float]], *,
                 seed: int = 0, rules: str = "competition") -> dict[str, Any]:
    """The forgetting-score numbers from ``(N_u, n)`` / ``(N_r, n)`` logit-scaled confidences.

    ``accuracy = {"unlearned": {"retain": RA_u, "test": TA_u}, "retrained": {"retain": RA_r, "test": TA_r}}``
    (mean accuracies in %, for :func:`~unlearnkit.audit.epsilon.competition_score`).
    """
    U, R = np.asarray(unlearned, dtype=np.float64), np.asarray(retrained, dtype=np.float64)
    q = epsilon.forgetting_quality(U, R, rules=rules)
    mean = accuracy
    score = epsilon.competition_score(q["F"], mean["unlearned"]["retain"], mean["retrained"]["retain"],
                                      mean["unlearned"]["test"], mean["retrained"]["test"])
    if R.shape[0] >= 6:
        nf = epsilon.noise_floor(R, seed=seed, rules=rules)
        floor, floor_n = nf["F"], nf["n_per_side"]
        floor_note = f"F of retrained vs retrained ({floor_n} per side): what perfect unlearning scores"
    else:
        floor, floor_n = None, None
        floor_note = f"needs >= 6 retrained runs (two halves of >= 3), got {R.shape[0]}"
    eps = q["eps"]
    finite = eps[np.isfinite(eps)]
    return _jsonable({
        "n_forget": int(U.shape[1]),
        "n_unlearned": int(U.shape[0]),
        "n_retrained": int(R.shape[0]),
        "rules": rules,
        "F": q["F"],
        "competition_score": score,
        "accuracy": mean,
        "noise_floor": floor,
        "noise_floor_n_per_side": floor_n,
        "noise_floor_note": floor_note,
        "n_models": q["n_models"],
        "max_measurable_epsilon": q["max_measurable_epsilon"],
        "scored_epsilon_limit": q["scored_epsilon_limit"],
        "n_capped": q["n_capped"],
        "epsilon": {
            "median": float(np.median(finite)) if finite.size else None,
            "mean": float(np.mean(finite)) if finite.size else None,
            "share_zero": float(np.mean(eps == 0)),
            "share_at_or_above_limit": float(np.mean(eps >= q["scored_epsilon_limit"])),
        },
    })


# --------------------------------------------------------------------------- compare


def _row_from_audit(path: Path) -> dict[str, Any]:
    from unlearnkit.runs import RunDir  # noqa: PLC0415

    run = RunDir(path)
    if not run.path.is_dir():
        raise UnlearnkitError(f"run directory {run.path} does not exist; pass audited run directories")
    if run.file(AUDIT_FILE).is_file():
        a = run.read_json(AUDIT_FILE, "audit record")
        if not isinstance(a, dict) or a.get("format") != AUDIT_FORMAT:
            raise UnlearnkitError(f"{run.file(AUDIT_FILE)} is from another unlearnkit version; audit {run.path} again")
        return {"path": str(run.path), "audit": a}
    info = run.read_json("run.json", "run record")
    metrics = run.read_json("metrics.json", "metrics") if run.file("metrics.json").is_file() else {}
    return {"path": str(run.path), "audit": None, "info": info, "metrics": metrics}


def _compare_row(entry: dict) -> dict[str, Any]:
    a = entry["audit"]
    if a is None:
        info, m = entry["info"], entry["metrics"]
        f = m.get("forget_acc")
        return {"run": Path(entry["path"]).name, "path": entry["path"], "method": info.get("method") or info.get("kind"),
                "forget": info.get("forget_spec"), "audited": False,
                "UA": (100.0 - f) if isinstance(f, (int, float)) else None, "RA": m.get("retain_acc"),
                "TA": m.get("test_acc"), "val acc": m.get("val_acc"), "unlearn s": _seconds(info, m)}
    acc = a["accuracy"]["unlearned"]
    row = {
        "run": a["run"]["name"], "path": entry["path"], "method": a["run"].get("method"), "forget": a["run"].get("forget_spec"),
        "audited": True,
        "UA": acc["ua"], "RA": acc["retain_acc"], "TA": acc["test_acc"], "val acc": acc["val_acc"],
        "MIA-efficacy": 100.0 * a["mia_efficacy"]["unlearned"]["efficacy"],
        "seed FNR (forget)": a["seed_attack"]["unlearned"]["sets"]["forget"]["fnr"],
        "loss AUC (forget vs val)": a["threshold_attacks"]["unlearned"]["loss"]["auc"],
        "unlearn s": a["run"].get("unlearn_seconds"),
    }
    ra = a.get("reference_attacks")
    if ra:
        row["LiRA offline AUC"] = ra["unlearned"]["lira_offline"]["auc"]
        row["RMIA AUC"] = ra["unlearned"]["rmia_offline"]["auc"]
    ag = a.get("against_retraining")
    if ag:
        row["avg gap"] = ag["avg_gap"]
        row["time ratio"] = ag["time_ratio"]
        row["JS forget"] = ag["js_divergence"]["forget"]
    return row


def compare(
    runs: Sequence[str | Path],
    *,
    out: str | Path | None = None,
    score: bool = False,
    seed: int = 0,
    data: str | None = None,
) -> dict[str, Any]:
    """One table (and, with `out`, one report) over several runs.

    Each run's row comes from its audit.json (``unlearnkit audit`` first); a run without one shows only
    the accuracies of its metrics.json. With ``score=True`` the runs are grouped by method: the
    ``retrain`` runs form the retrained group and every other method with >= 3 runs gets the
    competition forgetting score against it (:func:`forgetting_score`).

    Returns ``{"rows": [...], "columns": [...], "forgetting_scores": [...] | None, "files": {...}}``.
    """
    runs = list(runs)
    if not runs:
        raise UnlearnkitError("compare needs at least one run directory")
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise UnlearnkitError(f"--out {out_path} exists and is not a directory; choose another --out")
    if out_path is not None and (out_path / "run.json").is_file():
        raise UnlearnkitError(f"--out {out_path} is a run directory (its own report would be overwritten); choose another --out")
    entries = [_row_from_audit(Path(p)) for p in runs]
    rows = [_compare_row(e) for e in entries]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns and k not in ("path", "audited")]
    fingerprints = {(e["audit"]["run"]["fingerprint"] if e["audit"] else e["info"].get("dataset", {}).get("fingerprint"))
                    for e in entries}
    notes = []
    if len(fingerprints) > 1:
        notes.append("These runs come from different datasets: their numbers are not comparable.")
    if any(not r["audited"] for r in rows):
        notes.append("Runs marked not audited show only metrics.json accuracies; run `unlearnkit audit` on them.")
    scores_out = None
    if score:
        scores_out = _score_groups(entries, seed=seed, data=data)
    result = _jsonable({"rows": rows, "columns": columns, "forgetting_scores": scores_out, "notes": notes,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    files = {}
    if out_path is not None:
        from unlearnkit.runs import atomic_write_bytes, atomic_write_json, atomic_write_text  # noqa: PLC0415

        from . import plots as P  # noqa: PLC0415
        from .report import compare_document  # noqa: PLC0415

        images = {}
        audits = {r["run"]: e["audit"] for r, e in zip(rows, entries) if e["audit"] is not None}
        if audits:
            images["roc"] = P.compare_roc(audits)
            images["tradeoff"] = P.compare_bars(rows)
        doc = compare_document(result, images)
        md, html = doc.to_markdown(PLOTS_DIR), doc.to_html()
        out_path.mkdir(parents=True, exist_ok=True)
        for name, png in images.items():
            atomic_write_bytes(out_path / PLOTS_DIR / f"{name}.png", png)
        atomic_write_text(out_path / REPORT_MD, md)
        atomic_write_text(out_path / REPORT_HTML, html)
        atomic_write_json(out_path / "compare.json", result)
        files = {"compare": str(out_path / "compare.json"), "report_md": str(out_path / REPORT_MD),
                 "report_html": str(out_path / REPORT_HTML)}
    result["files"] = files
    return result


def _score_groups(entries: list[dict], *, seed: int, data: str | None) -> list[dict]:
    groups: dict[str, list[str]] = {}
    for e in entries:
        info = e["audit"]["run"] if e["audit"] else e["info"]
        method = info.get("method")
        if method is None:
            raise UnlearnkitError(f"run {e['path']} is not an unlearned run (no method in run.json); --score takes unlearned and retrain runs")
        groups.setdefault(str(method), []).append(e["path"])
    retrained = groups.pop("retrain", [])
    counts = ", ".join(f"{m}: {len(v)}" for m, v in groups.items()) or "none"
    if len(retrained) < MIN_SCORE_RUNS:
        raise UnlearnkitError(
            f"--score needs at least {MIN_SCORE_RUNS} retrain runs and {MIN_SCORE_RUNS} runs of a method, all with the same "
            f"forget set (different seeds); got {len(retrained)} retrain run(s) and {counts}"
        )
    eligible = {m: v for m, v in groups.items() if len(v) >= MIN_SCORE_RUNS}
    if not eligible:
        raise UnlearnkitError(
            f"--score needs at least {MIN_SCORE_RUNS} runs of a method (different seeds, same forget set) besides the "
            f"retrain runs; got {counts}"
        )
    return [forgetting_score(v, retrained, seed=seed, data=data) for v in eligible.values()]
