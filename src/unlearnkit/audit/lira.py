"""LiRA: the Likelihood Ratio Attack of Carlini et al., "Membership Inference
Attacks From First Principles" (IEEE S&P 2022).

Inputs, for ``n`` candidate examples and ``K`` reference ("shadow") models:

* ``target_scores`` ``(n,)`` -- logit-scaled confidences
  (:func:`unlearnkit.audit.scores.logit_scaled_confidence`) of the examples under
  the model being attacked;
* ``ref_scores`` ``(K, n)`` -- the same statistic under each reference model;
* ``ref_in`` ``(K, n)`` bool -- ``ref_in[k, i]`` is True when example ``i`` was in
  reference model ``k``'s training set (IN), False when it was not (OUT).

For each example, LiRA fits a Gaussian to its OUT scores (offline) or to both its
IN and its OUT scores (online) and scores the target's observation against them.
Per-example means use the sample mean (the reference code uses the median; for
Gaussian scores the mean is the more efficient estimate), per-example spreads the
sample standard deviation (ddof=1), floored at ``min_sigma``.

``fix_variance=True`` is the paper's variant for few reference models: one global
sigma shared by every example and by the IN and OUT fits -- the pooled
within-example standard deviation of all reference scores around their own
example's IN/OUT mean, or, when no example has two scores on one side (e.g.
K = 2 with one IN and one OUT each), the standard deviation of all reference
scores together (what the reference code computes).  With one shared sigma the
*ranking* of the scores does not depend on its value, only their scale.

Every function returns one score per example, higher = more member-like, ready
for :func:`unlearnkit.audit.attacks.roc_metrics`.
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .scores import _as_array

__all__ = ["lira_offline", "lira_online", "lira_requirements"]


def lira_requirements(online: bool, fix_variance: bool) -> tuple[int, int]:
    """(min IN, min OUT) reference models each example needs.

    Offline: 0 IN and 2 OUT (1 OUT with ``fix_variance``).  Online: 2 IN and 2 OUT
    (1 and 1 with ``fix_variance``).  With the usual half/half splits where each
    example is IN exactly half the reference models, that is K >= 4 for offline
    (K >= 2 with ``fix_variance``) and K >= 4 online (K >= 2 with ``fix_variance``);
    the paper's strong results use K = 64-256.
    """
    per_side = 1 if fix_variance else 2
    return (per_side if online else 0), per_side


def _validate(target_scores, ref_scores, ref_in):
    t = _as_array(target_scores, "target_scores", 1, owner="the target model (target_scores)")
    r = _as_array(ref_scores, "ref_scores", 2, owner="the reference models (ref_scores)")
    m = np.asarray(ref_in)
    if m.shape != r.shape:
        raise UnlearnkitError(
            f"ref_in has shape {m.shape} but ref_scores has shape {r.shape}: pass one IN/OUT flag per "
            "reference model and example"
        )
    if m.dtype != bool:
        if not np.isin(m, (0, 1)).all():
            raise UnlearnkitError("ref_in must be boolean (True = example was in that model's training set)")
        m = m.astype(bool)
    if r.shape[1] != t.shape[0]:
        raise UnlearnkitError(
            f"ref_scores covers {r.shape[1]} examples but target_scores has {t.shape[0]}: pass ref_scores as "
            "(K reference models, n examples) on the same examples"
        )
    return t, r, m


def _check_counts(n_side, need: int, side: str, attack: str, fix_variance: bool, online: bool, K: int):
    short = n_side < need
    if short.any():
        i = int(np.argmax(short))
        n_short = int(short.sum())
        need_in, need_out = lira_requirements(online, fix_variance)
        if online:
            reqs = f"IN of at least {need_in} and OUT of at least {need_out}"
            build = f"build K>={2 * need_out} references with each example IN exactly half of them"
        else:
            reqs = f"OUT of at least {need_out}"
            build = (
                f"build K>={2 * need_out} references with each example IN half of them, or "
                f"K>={need_out} trained without these examples"
            )
        hint = "" if fix_variance else ", or pass fix_variance=True (needs only 1 per side)"
        raise UnlearnkitError(
            f"LiRA {attack} needs each example {reqs} reference models, but {n_short} example(s) "
            f"(first: index {i}) are {side} of only {int(n_side[i])} of the K={K}: {build}{hint}"
        )


def _side_stats(r: np.ndarray, mask: np.ndarray):
    """Per-example count, mean and sum of squared deviations over the masked models."""
    cnt = mask.sum(axis=0)
    s = np.where(mask, r, 0.0).sum(axis=0)
    mu = s / np.maximum(cnt, 1)
    ss = np.where(mask, (r - mu) ** 2, 0.0).sum(axis=0)
    return cnt, mu, ss


def _global_sigma(r, groups) -> float:
    """Pooled within-group sd; falls back to the sd of all reference scores."""
    ss_tot = 0.0
    dof = 0
    for cnt, _, ss in groups:
        use = cnt >= 2
        ss_tot += float(ss[use].sum())
        dof += int((cnt[use] - 1).sum())
    if dof > 0:
        return float(np.sqrt(ss_tot / dof))
    return float(np.std(r))


def _log_normal_pdf(x, mu, sigma):
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2.0 * np.pi)


def lira_offline(
    target_scores,
    ref_scores,
    ref_in,
    fix_variance: bool = False,
    test: str = "one-sided",
    min_sigma: float = 1e-6,
) -> np.ndarray:
    """Offline LiRA: score each example against its OUT Gaussian only.

    Fits ``N(mu_out_i, sigma_out_i^2)`` to example i's scores under the reference
    models that did NOT train on it.

    ``test="one-sided"`` (default, the paper's offline test, Sec. IV-C): members
    have *higher* confidence than the OUT distribution, so the paper's statistic
    is ``Lambda_i = Pr[Z < x_i] = Phi((x_i - mu_out_i) / sigma_out_i)``.  We return
    the z-score ``(x_i - mu_out_i) / sigma_out_i`` itself: it orders examples
    exactly like ``Phi(z)`` but does not round to 1.0 for strong members, which
    would create ties at the low-FPR end of the ROC.  Apply
    ``scipy.stats.norm.cdf`` to get the paper's value.

    ``test="two-sided"`` returns ``-log N(x_i; mu_out_i, sigma_out_i)``, the score
    of the authors' released code (``generate_ours_offline``): "unlikely under OUT"
    in either direction.

    Needs each example OUT of >= 2 reference models (>= 1 with ``fix_variance``).

    Raises:
        UnlearnkitError: too few OUT references, shape mismatch, NaN/inf scores.
    """
    if test not in ("one-sided", "two-sided"):
        raise UnlearnkitError(f"test must be 'one-sided' or 'two-sided', got {test!r}")
    t, r, m = _validate(target_scores, ref_scores, ref_in)
    out = ~m
    cnt, mu, ss = _side_stats(r, out)
    _, need = lira_requirements(False, fix_variance)
    _check_counts(cnt, need, "OUT", "offline", fix_variance, False, r.shape[0])
    if fix_variance:
        cin, muin, ssin = _side_stats(r, m)
        sigma = np.full_like(mu, max(_global_sigma(r, [(cnt, mu, ss), (cin, muin, ssin)]), min_sigma))
    else:
        sigma = np.maximum(np.sqrt(ss / (cnt - 1)), min_sigma)
    if test == "one-sided":
        return (t - mu) / sigma
    return -_log_normal_pdf(t, mu, sigma)


def lira_online(
    target_scores,
    ref_scores,
    ref_in,
    fix_variance: bool = False,
    min_sigma: float = 1e-6,
) -> np.ndarray:
    """Online LiRA: log-likelihood ratio of the IN and OUT Gaussians.

    ``score_i = log N(x_i; mu_in_i, sigma_in_i^2) - log N(x_i; mu_out_i, sigma_out_i^2)``
    (the paper's Algorithm 1 with Gaussian fits; higher = member).  Needs each
    example IN of >= 2 and OUT of >= 2 reference models (>= 1 each with
    ``fix_variance``, then sigma_in = sigma_out = one global sigma).

    Raises:
        UnlearnkitError: too few IN/OUT references, shape mismatch, NaN/inf scores.
    """
    t, r, m = _validate(target_scores, ref_scores, ref_in)
    need_in, need_out = lira_requirements(True, fix_variance)
    cin, muin, ssin = _side_stats(r, m)
    cout, muout, ssout = _side_stats(r, ~m)
    K = r.shape[0]
    _check_counts(cin, need_in, "IN", "online", fix_variance, True, K)
    _check_counts(cout, need_out, "OUT", "online", fix_variance, True, K)
    if fix_variance:
        g = max(_global_sigma(r, [(cin, muin, ssin), (cout, muout, ssout)]), min_sigma)
        s_in = s_out = np.full_like(muin, g)
    else:
        s_in = np.maximum(np.sqrt(ssin / (cin - 1)), min_sigma)
        s_out = np.maximum(np.sqrt(ssout / (cout - 1)), min_sigma)
    return _log_normal_pdf(t, muin, s_in) - _log_normal_pdf(t, muout, s_out)
