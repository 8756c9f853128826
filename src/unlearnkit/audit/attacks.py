"""Population-level membership-inference attacks and their ROC summaries.

Functions (all numpy/scikit-learn on model outputs, deterministic given ``seed``):

* :func:`roc_metrics` -- AUC, TPR at fixed low FPRs and the ROC curve of a score
  where higher means "more member-like".
* :func:`threshold_attack` -- the loss-threshold attack (Yeom et al., CSF 2018) or
  the logit-scaled-confidence threshold, summarised with :func:`roc_metrics`.
* :func:`seed_attack` -- a learned attack on sorted softmax vectors (the attack
  of Shokri et al., S&P 2017 with a single attack model, as in ML-Leaks,
  Salem et al., NDSS 2019), trained on a balanced member/non-member set and
  reported per evaluation set.
* :func:`mia_efficacy` -- the "MIA-efficacy" of Jia et al., "Model Sparsity Can
  Simplify Machine Unlearning" (NeurIPS 2023) and SalUn (Fan et al., ICLR 2024).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score, roc_curve

from unlearnkit.errors import UnlearnkitError

from .scores import (
    _logits_and_labels,
    cross_entropy,
    logit_scaled_confidence,
    softmax,
    true_label_confidence,
)

__all__ = ["roc_metrics", "threshold_attack", "seed_attack", "mia_efficacy"]


# --------------------------------------------------------------------------- ROC


def _as_scores(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnlearnkitError(f"{name} must be a numeric 1-D array of attack scores") from exc
    if arr.ndim != 1:
        raise UnlearnkitError(f"{name} must be a 1-D array of attack scores, got shape {arr.shape}")
    if arr.size == 0:
        raise UnlearnkitError(f"{name} is empty: pass at least one score")
    if not np.isfinite(arr).all():
        bad = "NaN" if np.isnan(arr).any() else "inf"
        raise UnlearnkitError(
            f"{name} contain {bad}: the model outputs behind them are not finite; "
            "check the model for divergence (see unlearnkit.audit.scores.check_finite)"
        )
    return arr


def roc_metrics(member_scores, nonmember_scores, fprs: Sequence[float] = (0.01, 0.001)) -> dict:
    """ROC summary of a membership score (higher score = more member-like).

    Returns a dict with

    * ``auc`` -- area under the ROC curve (ties count one half), from
      :func:`sklearn.metrics.roc_auc_score`;
    * ``tpr_at_fpr`` -- ``{fpr: tpr}`` for each target FPR in ``fprs``: the
      largest TPR among ROC points (:func:`sklearn.metrics.roc_curve`,
      ``drop_intermediate=False``) whose FPR is ``<=`` the target.  This is the
      conservative reading: no interpolation between ROC points (which would
      assume a randomised threshold).  When the target is below
      ``1 / n_nonmembers`` only the FPR = 0 points qualify, so the value says
      what the attack achieves with zero false positives -- check
      ``min_resolvable_fpr`` before reading it as "TPR at 0.1%".
    * ``fpr``, ``tpr``, ``thresholds`` -- the ROC curve arrays;
    * ``best_balanced_accuracy`` -- max over thresholds of (TPR + 1 - FPR) / 2;
    * ``n_members``, ``n_nonmembers``, ``min_resolvable_fpr`` (= 1 / n_nonmembers).

    Raises:
        UnlearnkitError: empty/non-1-D inputs, NaN/inf scores, or an FPR target
            outside (0, 1).
    """
    m = _as_scores(member_scores, "member_scores")
    nm = _as_scores(nonmember_scores, "nonmember_scores")
    targets = []
    for f in fprs:
        f = float(f)
        if not 0.0 < f < 1.0:
            raise UnlearnkitError(f"fprs must lie strictly between 0 and 1, got {f}: pass e.g. fprs=(0.01, 0.001)")
        targets.append(f)
    y = np.concatenate([np.ones(m.size, dtype=np.int8), np.zeros(nm.size, dtype=np.int8)])
    s = np.concatenate([m, nm])
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    auc = float(roc_auc_score(y, s))
    tpr_at = {f: float(tpr[fpr <= f + 1e-12].max()) for f in targets}
    return {
        "auc": auc,
        "tpr_at_fpr": tpr_at,
        "fpr": fpr,
        "tpr": tpr,
        "thresholds": thr,
        "best_balanced_accuracy": float(np.max((tpr + 1.0 - fpr) / 2.0)),
        "n_members": int(m.size),
        "n_nonmembers": int(nm.size),
        "min_resolvable_fpr": 1.0 / nm.size,
    }


# --------------------------------------------------------------------------- threshold attack


def threshold_attack(
    member_logits,
    member_labels,
    nonmember_logits,
    nonmember_labels,
    score: str = "loss",
    fprs: Sequence[float] = (0.01, 0.001),
) -> dict:
    """Global-threshold membership attack on one model's outputs.

    ``score="loss"``: the loss-threshold attack of Yeom et al., "Privacy Risk in
    Machine Learning" (CSF 2018); the membership score is ``-cross_entropy``
    (low loss = member).  ``score="confidence"``: the score is the logit-scaled
    confidence ``log(p_y / (1 - p_y))`` (Carlini et al., S&P 2022, "global
    threshold" baseline).  Both sweep every threshold, so the result is the ROC of
    the attack, summarised by :func:`roc_metrics` (plus ``"score"``: the name).

    Raises:
        UnlearnkitError: unknown ``score``, NaN/inf logits, label/shape mismatch.
    """
    if score not in ("loss", "confidence"):
        raise UnlearnkitError(f"score must be 'loss' or 'confidence', got {score!r}")
    zm, ym = _logits_and_labels(member_logits, member_labels, "the target model (member_logits)", "member_labels")
    zn, yn = _logits_and_labels(
        nonmember_logits, nonmember_labels, "the target model (nonmember_logits)", "nonmember_labels"
    )
    if zm.shape[1] != zn.shape[1]:
        raise UnlearnkitError(
            f"member_logits have {zm.shape[1]} classes but nonmember_logits have {zn.shape[1]}: "
            "pass outputs of the same model"
        )
    if score == "loss":
        sm, sn = -cross_entropy(zm, ym), -cross_entropy(zn, yn)
    else:
        sm, sn = logit_scaled_confidence(zm, ym), logit_scaled_confidence(zn, yn)
    out = roc_metrics(sm, sn, fprs=fprs)
    out["score"] = score
    return out


# --------------------------------------------------------------------------- seed attack


def _sorted_probs(logits, name: str) -> np.ndarray:
    return -np.sort(-softmax(logits, name=name), axis=1)


def _rate(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


def seed_attack(
    member_logits,
    nonmember_logits,
    eval_sets: Mapping[str, tuple],
    seed: int = 0,
) -> dict:
    """Learned membership attack on sorted softmax vectors (the seed project's attack).

    Definition (after Shokri et al., S&P 2017 / Salem et al. "ML-Leaks", NDSS
    2019, single attack model): each example is represented by its softmax
    probability vector sorted in descending order, which makes the feature
    label-agnostic.  A classifier is trained to separate ``member_logits`` (label 1)
    from ``nonmember_logits`` (label 0) on a *balanced* set: the larger class is
    subsampled without replacement, with ``seed``, to the size of the smaller one.

    Classifier: :class:`sklearn.ensemble.HistGradientBoostingClassifier`
    (100 boosting rounds, 8 leaves, learning rate 0.1, no early stopping,
    ``random_state=seed``, one OpenMP thread).  Chosen over logistic regression because the signal
    lives in tiny differences near p = 1 (0.999 vs 0.99999) that a linear model on
    raw probabilities cannot resolve, and trees are invariant to such monotone
    rescaling; it trains in about a second on 10^4 examples.

    ``eval_sets`` maps a name to ``(logits, is_member)`` where ``is_member`` is a
    bool for the whole set or a per-example bool array (e.g.
    ``{"forget": (forget_logits, True), "test": (test_logits, False)}``).
    Returns::

        {"attack_train_accuracy": float, "n_train_per_class": int,
         "sets": {name: {"accuracy", "precision", "recall", "f1", "fnr", "fpr",
                         "predicted_member_rate", "n", "n_members"}}}

    ``fnr`` = share of true members predicted non-member (NaN when the set has no
    members); ``fpr`` = share of true non-members predicted member (NaN without
    non-members); ``predicted_member_rate`` = share of the set predicted member
    (for an all-non-member set this equals ``fpr``).  precision/recall/F1 use
    ``zero_division=0``.

    Raises:
        UnlearnkitError: NaN/inf logits, mismatched class counts, empty sets,
            bad ``is_member`` shapes.
    """
    from sklearn.ensemble import HistGradientBoostingClassifier
    from threadpoolctl import threadpool_limits

    fm = _sorted_probs(member_logits, "the model (member_logits)")
    fn = _sorted_probs(nonmember_logits, "the model (nonmember_logits)")
    if fm.shape[1] != fn.shape[1]:
        raise UnlearnkitError(
            f"member_logits have {fm.shape[1]} classes but nonmember_logits have {fn.shape[1]}: "
            "pass outputs of the same model"
        )
    if not isinstance(eval_sets, Mapping):
        raise UnlearnkitError("eval_sets must be a dict {name: (logits, is_member)}")
    rng = np.random.default_rng(seed)
    k = min(len(fm), len(fn))
    im = rng.choice(len(fm), size=k, replace=False) if len(fm) > k else np.arange(k)
    inn = rng.choice(len(fn), size=k, replace=False) if len(fn) > k else np.arange(k)
    X = np.concatenate([fm[im], fn[inn]])
    y = np.concatenate([np.ones(k, dtype=np.int64), np.zeros(k, dtype=np.int64)])
    clf = HistGradientBoostingClassifier(
        max_iter=100, learning_rate=0.1, max_leaf_nodes=8, early_stopping=False, random_state=seed
    )
    # One OpenMP thread: with torch loaded, sklearn's and torch's OpenMP runtimes spin against
    # each other (a 0.2 s fit took 40 s on a loaded 2-core machine); single-threaded is fast enough.
    with threadpool_limits(limits=1, user_api="openmp"):
        clf.fit(X, y)
        train_acc = float(accuracy_score(y, clf.predict(X)))

    sets = {}
    for name, pair in eval_sets.items():
        if not isinstance(pair, (tuple, list)) or len(pair) != 2:
            raise UnlearnkitError(f"eval_sets[{name!r}] must be a pair (logits, is_member)")
        logits, is_member = pair
        feats = _sorted_probs(logits, f"the model (eval set {name!r})")
        if feats.shape[1] != fm.shape[1]:
            raise UnlearnkitError(
                f"eval set {name!r} has {feats.shape[1]} classes but the attack was trained on {fm.shape[1]}: "
                "pass outputs of a model with the same classes"
            )
        truth = np.asarray(is_member)
        if truth.ndim == 0:
            truth = np.full(len(feats), bool(truth))
        elif truth.shape != (len(feats),):
            raise UnlearnkitError(
                f"is_member for eval set {name!r} has shape {truth.shape} but the set has {len(feats)} examples: "
                "pass one bool for the whole set or one per example"
            )
        truth = truth.astype(bool).astype(np.int64)
        with threadpool_limits(limits=1, user_api="openmp"):
            pred = clf.predict(feats).astype(np.int64)
        n_mem = int(truth.sum())
        n_non = int(len(truth) - n_mem)
        sets[name] = {
            "accuracy": float(accuracy_score(truth, pred)),
            "precision": float(precision_score(truth, pred, zero_division=0)),
            "recall": float(recall_score(truth, pred, zero_division=0)),
            "f1": float(f1_score(truth, pred, zero_division=0)),
            "fnr": _rate(int(((truth == 1) & (pred == 0)).sum()), n_mem),
            "fpr": _rate(int(((truth == 0) & (pred == 1)).sum()), n_non),
            "predicted_member_rate": float(pred.mean()),
            "n": int(len(truth)),
            "n_members": n_mem,
        }
    return {"attack_train_accuracy": train_acc, "n_train_per_class": int(k), "sets": sets}


# --------------------------------------------------------------------------- MIA-efficacy


MIA_MEMBERS = ("first", "random")


def mia_efficacy(
    retain_logits,
    retain_labels,
    test_logits,
    test_labels,
    forget_logits,
    forget_labels,
    seed: int = 0,
    max_per_class: int | None = None,
    members: str = "random",
    member_idx: np.ndarray | None = None,
) -> dict:
    """MIA-efficacy of Jia et al. (NeurIPS 2023) and SalUn (Fan et al., ICLR 2024).

    Definition (their ``SVC_MIA_forget_efficacy["confidence"]``): the feature of an
    example is its true-label confidence p_y under the model being audited.
    Members = |test| examples of the retain set, non-members = the whole test set; an
    RBF SVM ``sklearn.svm.SVC(C=3, gamma="auto", kernel="rbf")`` is fit on them, and
    the efficacy is the share of forget examples it predicts *non-member*.  Higher =
    more forgotten; a model retrained without the forget set typically scores near
    its test-set rate, not 1.

    Which |test| retain examples: SalUn takes the first ones of torchvision's CIFAR-10,
    whose order is already a random mix of classes. Our retain order is the dataset's
    sorted ids, class by class for an image folder, so its first |test| examples would
    be a few classes only; the default ``members="random"`` takes a seeded random
    subset of the same size (:func:`mia_member_positions`). ``members="first"`` is
    SalUn's rule, right for data in a random order. ``member_idx`` gives the members'
    positions in ``retain_logits`` directly (an audit that forwarded a retain subset).
    ``max_per_class`` caps each side at that many examples (a seeded random subset of
    test), bounding the O(n^2) fit.

    The SVC is fitted by scikit-learn; its predictions (on the forget set and, for
    ``attack_train_acc``, on the training set) are evaluated by :func:`_svc_predict`,
    which gives exactly ``clf.predict`` at a fraction of its cost.

    Returns ``{"efficacy": float, "attack_train_acc": float, "n_members": int,
    "n_nonmembers": int}``.

    Raises:
        UnlearnkitError: NaN/inf logits, label mismatches, empty sets, a bad option.
    """
    from sklearn.svm import SVC

    if members not in MIA_MEMBERS:
        raise UnlearnkitError(f"members must be one of {MIA_MEMBERS}, got {members!r}")
    max_per_class = check_max_per_class(max_per_class)
    c_ret = true_label_confidence(retain_logits, retain_labels, name="the model (retain_logits)")
    c_test = true_label_confidence(test_logits, test_labels, name="the model (test_logits)")
    c_fgt = true_label_confidence(forget_logits, forget_labels, name="the model (forget_logits)")
    rng = np.random.default_rng(seed)
    n_non = len(c_test) if max_per_class is None else min(len(c_test), int(max_per_class))
    test_idx = rng.choice(len(c_test), size=n_non, replace=False) if len(c_test) > n_non else np.arange(n_non)
    if member_idx is None:
        ret_idx = mia_member_positions(len(c_ret), len(c_test), seed, members, max_per_class)
    else:
        ret_idx = np.asarray(member_idx, dtype=np.int64)
        if not 0 < len(ret_idx) <= n_non or ret_idx.min() < 0 or ret_idx.max() >= len(c_ret):
            raise UnlearnkitError(f"member_idx: {len(ret_idx)} positions, want 1-{n_non} positions within the {len(c_ret)} retain logits")
    n_mem = len(ret_idx)
    X = np.concatenate([c_ret[ret_idx], c_test[test_idx]])[:, None]
    y = np.concatenate([np.ones(n_mem, dtype=np.int64), np.zeros(n_non, dtype=np.int64)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(X, y)
    pred_train, pred_forget = np.split(_svc_predict(clf, np.concatenate([X[:, 0], c_fgt])), [len(X)])
    train_acc = float((pred_train == y).mean())
    efficacy = float(1.0 - pred_forget.mean())
    return {"efficacy": efficacy, "attack_train_acc": train_acc, "n_members": int(n_mem), "n_nonmembers": int(n_non)}


def check_max_per_class(max_per_class) -> int | None:
    """MIA-efficacy's cap: None (no cap) or a whole number >= 1; 2.5 is refused, not silently truncated to 2."""
    if max_per_class is not None and (isinstance(max_per_class, bool) or not isinstance(max_per_class, (int, np.integer))
                                      or max_per_class < 1):
        raise UnlearnkitError(f"max_per_class must be a whole number >= 1 or None (no cap), got {max_per_class!r}")
    return None if max_per_class is None else int(max_per_class)


def mia_member_count(n_retain: int, n_test: int, max_per_class: int | None = None) -> int:
    """How many retain examples MIA-efficacy takes as members: as many as non-members (|test|, or the cap)."""
    max_per_class = check_max_per_class(max_per_class)
    n_non = n_test if max_per_class is None else min(n_test, int(max_per_class))
    return min(n_retain, n_non)


def mia_member_positions(n_retain: int, n_test: int, seed: int, members: str = "random",
                         max_per_class: int | None = None) -> np.ndarray:
    """Sorted positions in the retain set of MIA-efficacy's members (see :func:`mia_efficacy`).

    Its own random stream (not the test cap's), so an audit that forwards only some retain
    samples can compute the same members from the sizes alone.
    """
    if members not in MIA_MEMBERS:
        raise UnlearnkitError(f"members must be one of {MIA_MEMBERS}, got {members!r}")
    n_mem = mia_member_count(n_retain, n_test, max_per_class)
    if members == "first" or n_mem == n_retain:
        return np.arange(n_mem)
    return np.sort(np.random.default_rng([seed, 0x4D454D]).choice(n_retain, size=n_mem, replace=False))


# Bound on |numpy - libsvm| decision values, relative to sum|dual_coef| + |intercept|: both evaluate
# the same sum of n_SV terms c_i exp(-gamma (x - s_i)^2) in double precision, differing only in the
# exp implementation (an ulp or two per term) and the summation order (<= n_SV ulps of the total).
# 1e-9 is ~50x that bound at 10^5 support vectors; points inside the band go to libsvm itself.
_SVC_TOLERANCE = 1e-9
_SVC_BLOCK = 1 << 16  # kernel entries per block: 512 KB of float64, stays in cache (4x faster than 32 MB blocks)


def _svc_predict(clf, x: np.ndarray) -> np.ndarray:
    """``clf.predict(x[:, None])`` of a fitted binary RBF SVC on one feature, exactly, fast.

    libsvm predicts one point at a time (as long as the fit itself on the training set). Here
    the decision function ``sum_i dual_coef_i * exp(-gamma * (x - sv_i)^2) + intercept`` is
    evaluated with numpy in blocks, once per distinct value; wherever its magnitude is within
    the rounding bound of zero the sign could differ from libsvm's, so those points (usually
    none) are predicted by ``clf.predict`` itself.  The predictions are therefore exactly
    libsvm's.
    """
    values, inverse = np.unique(np.asarray(x, dtype=np.float64), return_inverse=True)
    sv = clf.support_vectors_[:, 0]
    coef = clf.dual_coef_[0]
    gamma = 1.0 / clf.n_features_in_  # gamma="auto"
    dec = np.empty(len(values))
    rows = max(1, _SVC_BLOCK // max(1, len(sv)))
    buf = np.empty((rows, len(sv)))
    for s in range(0, len(values), rows):
        k = buf[: len(values[s : s + rows])]
        np.subtract(values[s : s + rows, None], sv[None, :], out=k)
        np.multiply(k, k, out=k)
        np.multiply(k, -gamma, out=k)
        np.exp(k, out=k)
        dec[s : s + rows] = k @ coef
    dec += clf.intercept_[0]
    unsure = np.abs(dec) <= _SVC_TOLERANCE * (np.abs(coef).sum() + abs(clf.intercept_[0]))
    pred = clf.classes_[(dec > 0).astype(np.intp)]
    if unsure.any():
        pred[unsure] = clf.predict(values[unsure, None])
    return pred[inverse.reshape(-1)]
