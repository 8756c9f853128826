"""Divergences between two models' predictive distributions on the same examples.

Used to compare an unlearned model with a retrained one output-by-output (e.g.
the JS-divergence "distance to the retrained model" of Chundawat et al.,
"Can Bad Teaching Induce Forgetting?", AAAI 2023).

Both functions take ``(n, C)`` logits of two models on the same n examples,
work in log space (``log_softmax``), use the natural log, and return the mean
over examples (``reduction="none"`` gives the per-example values).
"""

from __future__ import annotations

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .scores import log_softmax

__all__ = ["js_divergence", "kl_divergence"]


def _pair(p_logits, q_logits, reduction: str):
    if reduction not in ("mean", "none"):
        raise UnlearnkitError(f"reduction must be 'mean' or 'none', got {reduction!r}")
    lp = log_softmax(p_logits, name="the first model (p_logits)")
    lq = log_softmax(q_logits, name="the second model (q_logits)")
    if lp.shape != lq.shape:
        raise UnlearnkitError(
            f"p_logits has shape {lp.shape} but q_logits has {lq.shape}: pass both models' logits on the same "
            "examples and classes"
        )
    return lp, lq


def _reduce(v: np.ndarray, reduction: str):
    v = np.maximum(v, 0.0)  # remove -1e-17 rounding noise
    return float(v.mean()) if reduction == "mean" else v


def kl_divergence(p_logits, q_logits, reduction: str = "mean"):
    """KL(P || Q) = sum_c p_c (log p_c - log q_c) per example, natural log.

    P = softmax(p_logits), Q = softmax(q_logits).  Unbounded; terms with
    p_c = 0 contribute 0.

    Raises:
        UnlearnkitError: NaN/inf logits or shape mismatch.
    """
    lp, lq = _pair(p_logits, q_logits, reduction)
    return _reduce((np.exp(lp) * (lp - lq)).sum(axis=1), reduction)


def js_divergence(p_logits, q_logits, reduction: str = "mean"):
    """Jensen-Shannon divergence per example, natural log, in [0, ln 2].

    JS(P, Q) = 0.5 KL(P || M) + 0.5 KL(Q || M) with M = (P + Q) / 2;
    ``log M`` is computed as ``logaddexp(log P, log Q) - log 2`` so nothing
    underflows.  0 for identical outputs, ln 2 for disjoint one-hot outputs.

    Raises:
        UnlearnkitError: NaN/inf logits or shape mismatch.
    """
    lp, lq = _pair(p_logits, q_logits, reduction)
    lm = np.logaddexp(lp, lq) - np.log(2.0)
    js = 0.5 * (np.exp(lp) * (lp - lm)).sum(axis=1) + 0.5 * (np.exp(lq) * (lq - lm)).sum(axis=1)
    return _reduce(np.minimum(js, np.log(2.0)), reduction)
