"""RMIA: Zarifzadeh, Liu, Loh and Shokri, "Low-Cost High-Power Membership
Inference Attacks" (ICML 2024), offline variant.

Signal: the true-label probability ``p(y | x)`` of each example
(:func:`unlearnkit.audit.scores.true_label_confidence`) under the target model
and under ``K`` OUT reference models (models that did not train on the
candidates nor on the population).

For a candidate x, the likelihood ratio against a population example z is

    LR(x, z) = [p_target(x) / Pr(x)] / [p_target(z) / Pr(z)]

where ``Pr(.)`` is the probability averaged over reference models.  Offline,
only OUT models exist, so the paper approximates the IN/OUT average from the
OUT mean with a linear map (their Appendix on offline RMIA; ``offline_a`` in the
authors' ml_privacy_meter code):

    Pr(x) = 0.5 * ((1 + a) * mean_out(x) + (1 - a))

i.e. ``mean_in`` is taken to be ``a * mean_out + (1 - a)``.  The score is the
share of population examples that x dominates:

    score(x) = (1/m) * #{ z : LR(x, z) > gamma }.

Defaults: ``a = 0.3`` and ``gamma = 1`` are the defaults of the authors' code
(ml_privacy_meter ``modules/mia/attacks/rmia.py``), which tunes ``a`` over
{0, 0.1, ..., 1} by attacking a paired reference model; the paper reports ``a``
near 0.3 for CIFAR-10 with few references.  ``a = 1`` means "trust the OUT mean
as Pr(x)", ``a = 0`` means "Pr(x) halfway between the OUT mean and 1".

Needs K >= 1 reference model.  Returns one score in [0, 1] per candidate,
higher = more member-like.
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .scores import _as_array

__all__ = ["rmia_offline"]


def _probs(x, name: str, ndim: int, owner: str) -> np.ndarray:
    arr = _as_array(x, name, ndim, owner=owner)
    if arr.min() < 0.0 or arr.max() > 1.0:
        raise UnlearnkitError(
            f"{name} must hold probabilities in [0, 1] (got values in [{arr.min():.3g}, {arr.max():.3g}]): "
            "pass true_label_confidence(...), not logits or logit-scaled confidences"
        )
    return arr


def rmia_offline(
    target_probs_x,
    ref_probs_x,
    target_probs_z,
    ref_probs_z,
    a: float = 0.3,
    gamma: float = 1.0,
) -> np.ndarray:
    """Offline RMIA scores for ``n`` candidates against ``m`` population examples.

    Args:
        target_probs_x: ``(n,)`` p(y|x) of the candidates under the target model.
        ref_probs_x: ``(K, n)`` p(y|x) of the candidates under K OUT reference models.
        target_probs_z: ``(m,)`` p(y|z) of population examples under the target.
        ref_probs_z: ``(K, m)`` p(y|z) under the same K reference models.
        a: offline scaling coefficient (see module docstring), in [0, 1].
        gamma: likelihood-ratio threshold, > 0.

    Returns:
        ``(n,)`` array: fraction of population z with ``LR(x, z) > gamma``.

    Raises:
        UnlearnkitError: K < 1, shape mismatch, NaN/inf, values outside [0, 1],
            ``a`` outside [0, 1] or ``gamma <= 0``.
    """
    if not 0.0 <= float(a) <= 1.0:
        raise UnlearnkitError(f"a must be in [0, 1], got {a}: the paper's code searches 0, 0.1, ..., 1")
    if not float(gamma) > 0.0:
        raise UnlearnkitError(f"gamma must be > 0, got {gamma}")
    tx = _probs(target_probs_x, "target_probs_x", 1, "the target model (target_probs_x)")
    tz = _probs(target_probs_z, "target_probs_z", 1, "the target model (target_probs_z)")
    for name, arr in (("ref_probs_x", ref_probs_x), ("ref_probs_z", ref_probs_z)):
        shape = np.shape(arr)
        if len(shape) == 2 and shape[0] < 1:
            raise UnlearnkitError(
                f"{name} has no reference models: RMIA offline needs K>=1 OUT reference model; train one "
                "on data disjoint from the candidates and the population"
            )
    rx = _probs(ref_probs_x, "ref_probs_x", 2, "the reference models (ref_probs_x)")
    rz = _probs(ref_probs_z, "ref_probs_z", 2, "the reference models (ref_probs_z)")
    if rx.shape[1] != tx.shape[0]:
        raise UnlearnkitError(
            f"ref_probs_x covers {rx.shape[1]} candidates but target_probs_x has {tx.shape[0]}: pass "
            "(K reference models, n candidates)"
        )
    if rz.shape[1] != tz.shape[0]:
        raise UnlearnkitError(
            f"ref_probs_z covers {rz.shape[1]} population examples but target_probs_z has {tz.shape[0]}: "
            "pass (K reference models, m population examples)"
        )
    if rx.shape[0] != rz.shape[0]:
        raise UnlearnkitError(
            f"ref_probs_x comes from {rx.shape[0]} reference models but ref_probs_z from {rz.shape[0]}: "
            "use the same reference models for candidates and population"
        )
    a = float(a)
    pr_x = 0.5 * ((1.0 + a) * rx.mean(axis=0) + (1.0 - a))
    pr_z = 0.5 * ((1.0 + a) * rz.mean(axis=0) + (1.0 - a))
    # Pr(.) > 0 unless a == 1 and every reference gives probability 0.
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio_x = np.where(pr_x > 0, tx / pr_x, np.where(tx > 0, np.inf, 1.0))
        ratio_z = np.where(pr_z > 0, tz / pr_z, np.where(tz > 0, np.inf, 1.0))
        # LR(x, z) > gamma  <=>  ratio_z < ratio_x / gamma  (all ratios >= 0)
        cut = ratio_x / float(gamma)
    ratio_z = np.sort(ratio_z)
    return np.searchsorted(ratio_z, cut, side="left") / ratio_z.size
