"""The comparison of many runs: `compare` (one table and report over audited runs) and the NeurIPS
2023 competition's forgetting score over groups of runs (`forgetting_score`, `score_arrays`).
"""

from __future__ import annotations

import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .. import epsilon
from .caches import _forward
from .common import AUDIT_FILE, AUDIT_FORMAT, PLOTS_DIR, REPORT_HTML, REPORT_MD, _jsonable, _seconds, check_seed
from .loading import _Model, _open_companion, _open_target

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
    run's metrics.json). Shown beside it: the noise floor (F of retrained vs retrained: at the method's
    N = min(N_u, N_r) when there are 2N retrained runs, else in halves, with a note saying at which N;
    needs >= 6 retrained runs) and the epsilon bounds that N sets. ``rules``: see
    :mod:`unlearnkit.audit.epsilon` (default: the competition's 0.01 grid). Unequal N_u and N_r (the
    competition requires equal ones) are scored with each side's own rates and said in ``notes``.

    Raises:
        UnlearnkitError: fewer than 3 runs on a side, runs from other data, another split or forget set.
    """
    unlearned_runs, retrained_runs = list(unlearned_runs), list(retrained_runs)
    check_seed(seed)
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
    n = min(U.shape[0], R.shape[0])  # the N of F's limits
    if R.shape[0] >= 6:
        # At the method's N when there are 2N retrained runs; else at N_r // 2, and the label says so.
        nf = epsilon.noise_floor(R, seed=seed, rules=rules, n_per_side=n if R.shape[0] >= 2 * n else None)
        floor, floor_n = nf["F"], nf["n_per_side"]
        at = (f"at the method's N = {n}" if floor_n == n else
              f"at N = {floor_n}, not the method's N = {n} (needs {2 * n} retrained runs)")
        floor_note = f"F of retrained vs retrained, {floor_n} vs {floor_n} runs: what perfect unlearning scores {at}"
    else:
        floor, floor_n = None, None
        floor_note = f"needs >= 6 retrained runs (two halves of >= 3), got {R.shape[0]}"
    notes = []
    if U.shape[0] != R.shape[0]:
        notes.append(f"{U.shape[0]} unlearned vs {R.shape[0]} retrained models (the competition requires equal numbers): "
                     f"each side's rates use its own count and the limits use N = {n}")
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
        "notes": notes,
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


def _forget_sets(entries: list[dict], labels: list[str]) -> dict[str, list[str]]:
    """Distinct forget sets among the runs (by the forget ids' digest in run.json): description -> run labels.

    Originals (no forget set) and runs recorded before the digest are left out: nothing to tell apart.
    """
    by_digest: dict[str, tuple[str, list[str]]] = {}
    for e, label in zip(entries, labels):
        info = e["audit"]["run"] if e["audit"] else e["info"]
        digest = info.get("forget_sha256")
        if digest:
            spec = str(info.get("forget_spec") or "?")
            by_digest.setdefault(digest, (spec, []))[1].append(label)
    specs = [spec for spec, _ in by_digest.values()]
    # Two different sets can share a spec (random:0.1 of two seeds): the digest's head tells them apart.
    return {(spec if specs.count(spec) == 1 else f"{spec} [{digest[:8]}]"): runs for digest, (spec, runs) in by_digest.items()}


def _labels(paths: Sequence[Path]) -> list[str]:
    """Each run's shortest trailing path that no other run shares: a/ft and b/ft are "a/ft" and "b/ft".

    The table's columns and the plots' curves are keyed by it, so two runs with one directory name
    must not share a label (one would hide the other). Labels of different lengths never collide.
    """
    parts = [p.resolve().parts for p in paths]
    labels = []
    for i, mine in enumerate(parts):
        k = 1
        while k < len(mine) and any(other[-k:] == mine[-k:] for j, other in enumerate(parts) if j != i):
            k += 1
        labels.append(str(Path(*mine[-k:])))
    return labels


def _compare_row(entry: dict, label: str) -> dict[str, Any]:
    a = entry["audit"]
    if a is None:
        info, m = entry["info"], entry["metrics"]
        f = m.get("forget_acc")
        return {"run": label, "path": entry["path"], "method": info.get("method") or info.get("kind"),
                "forget": info.get("forget_spec"), "audited": False,
                "UA": (100.0 - f) if isinstance(f, (int, float)) else None, "RA": m.get("retain_acc"),
                "TA": m.get("test_acc"), "val acc": m.get("val_acc"), "unlearn s": _seconds(info, m)}
    acc = a["accuracy"]["unlearned"]
    row = {
        "run": label, "path": entry["path"], "method": a["run"].get("method"), "forget": a["run"].get("forget_spec"),
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


COMPARE_PLOTS = ("roc", "tradeoff")  # the figures a comparison of audited runs draws


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
    check_seed(seed)
    seen: set[Path] = set()
    for p in runs:
        if Path(p).resolve() in seen:
            raise UnlearnkitError(f"run {p} is given twice; pass each run once")
        seen.add(Path(p).resolve())
    out_path = Path(out) if out is not None else None
    if out_path is not None and out_path.exists() and not out_path.is_dir():
        raise UnlearnkitError(f"--out {out_path} exists and is not a directory; choose another --out")
    if out_path is not None and (out_path / "run.json").is_file():
        raise UnlearnkitError(f"--out {out_path} is a run directory (its own report would be overwritten); choose another --out")
    entries = [_row_from_audit(Path(p)) for p in runs]
    labels = _labels([Path(e["path"]) for e in entries])
    rows = [_compare_row(e, label) for e, label in zip(entries, labels)]
    columns: list[str] = []
    for r in rows:
        columns += [k for k in r if k not in columns and k not in ("path", "audited")]
    fingerprints = {(e["audit"]["run"]["fingerprint"] if e["audit"] else e["info"].get("dataset", {}).get("fingerprint"))
                    for e in entries}
    notes = []
    if len(fingerprints) > 1:
        notes.append("These runs come from different datasets: their numbers are not comparable.")
    forget_sets = _forget_sets(entries, labels)
    if len(forget_sets) > 1:
        # UA and MIA-efficacy are measured on each run's own forget set: side by side they look comparable, but are not.
        shown = "; ".join(f"{spec} ({', '.join(labels)})" for spec, labels in forget_sets.items())
        notes.append(f"These runs forgot different sets, so their forget-set numbers (UA, MIA-efficacy) are not comparable: {shown}.")
    if any(not r["audited"] for r in rows):
        notes.append("Runs marked not audited show only metrics.json accuracies; run `unlearnkit audit` on them.")
    scores_out = None
    if score:
        scores_out = _score_groups(entries, seed=seed, data=data)
        for sc in scores_out:
            notes += [f"{sc['method']}: noise floor = {sc['noise_floor_note']}" if sc["noise_floor"] is not None else None,
                      *(f"{sc['method']}: {n}" for n in sc["notes"])]
        notes = [n for n in notes if n]
    result = _jsonable({"rows": rows, "columns": columns, "forgetting_scores": scores_out, "notes": notes,
                        "created": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    files = {}
    if out_path is not None:
        from unlearnkit.files import json_text  # noqa: PLC0415
        from unlearnkit.outputs import check_outputs, remove_outputs, write_outputs  # noqa: PLC0415

        from .. import plots as P  # noqa: PLC0415
        from ..report import compare_document  # noqa: PLC0415

        images = {}
        audits = {r["run"]: e["audit"] for r, e in zip(rows, entries) if e["audit"] is not None}
        if audits:
            images["roc"] = P.compare_roc(audits)
            images["tradeoff"] = P.compare_bars(rows)
        doc = compare_document(result, images)
        md, html = doc.to_markdown(PLOTS_DIR), doc.to_html()
        # Never replace a report the user wrote (or edited) there: only files this tool wrote.
        outputs = {**{f"{PLOTS_DIR}/{n}.png": p for n, p in images.items()}, REPORT_MD: md, REPORT_HTML: html,
                   "compare.json": json_text(result)}
        check_outputs(out_path, outputs)
        write_outputs(out_path, outputs)
        # A figure an earlier comparison drew into this folder and this one did not (no audited run).
        remove_outputs(out_path, [f"{PLOTS_DIR}/{n}.png" for n in COMPARE_PLOTS if n not in images])
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
