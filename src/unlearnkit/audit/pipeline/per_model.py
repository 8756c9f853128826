"""The audit of one model: its accuracy and every membership attack on its outputs.

`model_results` computes (or reads from the result cache) what audit.json holds per model; the
pieces are the numpy modules of the package (scores, attacks, lira, rmia).
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .. import attacks, lira, rmia
from .caches import read_results, result_cache_path, write_results
from .common import FPRS, PARTS, _roc_summary, _Timer
from .loading import _Model

# What a model's MIA-efficacy uses by default: SalUn's sizes (|test| retain samples vs the whole test set); the
# members a seeded random subset, since our retain order is sorted by id (class by class): see attacks.mia_efficacy.
MIA_DEFAULTS = {"max_per_class": None, "members": "random"}


def model_steps(with_pool: bool) -> int:
    """Progress-bar steps of one model's numbers (accuracy, three attacks, and three pool attacks)."""
    return 4 + 3 * with_pool


def model_results(m: _Model, num_classes: int, *, seed: int, mia: dict[str, Any], pool, fix_variance: bool,
                  timer: _Timer, cache: bool) -> tuple[dict, dict]:
    """Everything audit.json holds about one model, and its ROC curves (for the plots).

    With ``cache=True`` the numbers come from the result cache when this model's outputs, the options
    and the code that computes them are unchanged (:func:`.caches.result_cache_path`); an audit sets
    it for the original and the retrained reference, the models a bench audits against every method.
    """
    options = {"num_classes": num_classes, "seed": seed, "mia": mia, "fix_variance": fix_variance, "fprs": FPRS}
    if m.retain_ra is not None:  # RA on a retain subsample: which samples is part of the key (full audits keep theirs)
        options["retain_ra"] = hashlib.sha256(np.packbits(m.retain_ra).tobytes()).hexdigest()
    path = result_cache_path(m, options, pool) if cache else None
    if path is not None:
        with timer(f"cached_results/{m.role}", steps=0):
            hit = read_results(path)
        if hit is not None:
            timer.advance(model_steps(pool is not None))
            return hit
    per: dict[str, Any] = {}
    curves: dict[str, tuple] = {}
    with timer("accuracy"):
        per["accuracy"] = _accuracy(m)
        per["per_class"] = _per_class(m, num_classes)
    with timer(f"seed_attack/{m.role}"):
        per["seed"] = _seed_attack(m, seed)
    with timer(f"mia_efficacy/{m.role}"):
        per["mia"] = _mia_efficacy(m, seed, mia)
    with timer(f"threshold_attacks/{m.role}"):
        per["threshold"], c = _threshold(m)
    curves.update(c)
    if pool is not None:
        per["refs"], c = _ref_attacks(m, pool, fix_variance, seed, timer)
        curves.update(c)
    if path is not None:
        write_results(path, per, curves)
    return per, curves


def _accuracy(m: _Model) -> dict:
    out: dict[str, Any] = {}
    n: dict[str, int] = {}
    for part in PARTS:
        correct = m.logits[part].argmax(1) == m.labels[part]
        if part == "retain" and m.retain_ra is not None:  # a trial's audit: RA on its random retain subsample only
            correct = correct[m.retain_ra]
        out[f"{part}_acc"] = float(100.0 * correct.mean())
        n[part] = int(len(correct))
    out["ua"] = 100.0 - out["forget_acc"]
    out["n"] = n
    sub = {p: m.n_full[p] for p in PARTS if m.n_full[p] != n[p]}
    if sub:
        out["subsampled_from"] = sub
    if m.retain_ra is not None:
        out["retain_subsample"] = {"n": n["retain"], "of": m.n_full["retain"], "how": "seeded random subset"}
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


def _mia_efficacy(m: _Model, seed: int, mia: dict[str, Any]) -> dict:
    member_idx = None
    if m.retain_pos is not None:  # only some retain samples were forwarded: the full audit's members are among them
        full = attacks.mia_member_positions(m.n_full["retain"], len(m.labels["test"]), seed, mia["members"], mia["max_per_class"])
        member_idx = np.searchsorted(m.retain_pos, full)
    return attacks.mia_efficacy(
        m.logits["retain"], m.labels["retain"], m.logits["test"], m.labels["test"],
        m.logits["forget"], m.labels["forget"], seed=seed, member_idx=member_idx, **mia,
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

