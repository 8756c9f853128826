"""Per-example scores computed from a classifier's outputs.

Everything here is plain numpy/scipy on arrays of logits ``(n, C)`` and integer
labels ``(n,)``; nothing touches a torch model.  The audits in this package
(threshold attacks, LiRA, RMIA, the NeurIPS 2023 unlearning-competition
epsilon) all start from one of these scores:

* ``softmax``                  -- class probabilities, computed stably.
* ``true_label_confidence``    -- p_y, the softmax probability of the true label.
* ``cross_entropy``            -- -log p_y per example.
* ``logit_scaled_confidence``  -- log(p_y / (1 - p_y)), the statistic LiRA
  (Carlini et al., 2022) and the competition metric (Triantafillou et al., 2024)
  use because it is close to Gaussian across retrainings.

Input validation lives here as well (``check_finite`` and the private
``_as_logits`` / ``_as_labels`` helpers used by the other audit modules); it
raises :class:`unlearnkit.errors.UnlearnkitError` with one line naming the
input and what to do.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp

from unlearnkit.errors import UnlearnkitError

__all__ = [
    "check_finite",
    "softmax",
    "log_softmax",
    "true_label_confidence",
    "cross_entropy",
    "logit_scaled_confidence",
]


# --------------------------------------------------------------------------- validation


def check_finite(array, name: str) -> np.ndarray:
    """Return ``array`` as a float64 numpy array; raise if it holds NaN or inf.

    ``name`` says whose outputs these are (e.g. ``"the unlearned model"`` or
    ``"the target model (member_logits)"``); it is put in the message::

        outputs of the unlearned model contain NaN (3 of 1000 values): the model
        diverged; retrain it or pick another checkpoint

    Raises:
        UnlearnkitError: the array holds NaN or +-inf.
    """
    try:
        arr = np.asarray(array, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnlearnkitError(
            f"outputs of {name} are not a numeric array ({type(array).__name__}): pass the model's outputs as numbers"
        ) from exc
    finite = np.isfinite(arr)
    if not finite.all():
        n_nan = int(np.isnan(arr).sum())
        n_inf = int((~finite).sum()) - n_nan
        what = "NaN" if n_nan else "inf"
        count = n_nan if n_nan else n_inf
        raise UnlearnkitError(
            f"outputs of {name} contain {what} ({count} of {arr.size} values): the model "
            "diverged; retrain it or pick another checkpoint"
        )
    return arr


def _as_array(x, name: str, ndim: int, owner: str | None = None) -> np.ndarray:
    """float64 array with exactly ``ndim`` dims, non-empty and finite."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise UnlearnkitError(
            f"{name} must be a numeric array (got {type(x).__name__}): pass model outputs as a numpy array"
        ) from exc
    if arr.ndim != ndim:
        shape_word = {1: "(n,)", 2: "(rows, columns)"}.get(ndim, f"{ndim}-D")
        raise UnlearnkitError(
            f"{name} must have shape {shape_word}, got shape {arr.shape}: reshape it before calling"
        )
    if arr.size == 0:
        raise UnlearnkitError(f"{name} is empty (shape {arr.shape}): pass at least one example")
    return check_finite(arr, owner or name)


def _as_logits(logits, name: str) -> np.ndarray:
    """Validate a ``(n, C)`` logit array with C >= 2."""
    arr = _as_array(logits, name, 2)
    if arr.shape[1] < 2:
        raise UnlearnkitError(
            f"{name} has {arr.shape[1]} class column(s): pass the full (n, C) logits with C >= 2 classes"
        )
    return arr


def _as_labels(labels, name: str, n: int, num_classes: int) -> np.ndarray:
    """Validate integer labels of length ``n`` in ``[0, num_classes)``."""
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise UnlearnkitError(f"{name} must be a 1-D array of class indices, got shape {arr.shape}")
    if arr.shape[0] != n:
        raise UnlearnkitError(
            f"{name} has {arr.shape[0]} labels but the logits have {n} rows: pass one label per example"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise UnlearnkitError(f"{name} must hold integer class indices (got dtype {arr.dtype})")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() >= num_classes):
        raise UnlearnkitError(
            f"{name} holds class index {int(arr.min() if arr.min() < 0 else arr.max())} outside "
            f"[0, {num_classes}): the labels do not match the {num_classes}-class logits"
        )
    return arr


def _logits_and_labels(logits, labels, name: str, labels_name: str | None = None):
    z = _as_logits(logits, name)
    y = _as_labels(labels, labels_name or "labels", z.shape[0], z.shape[1])
    return z, y


# --------------------------------------------------------------------------- scores


def log_softmax(logits, name: str = "logits") -> np.ndarray:
    """Row-wise log-softmax ``z - logsumexp(z)`` (float64, never -inf for finite logits)."""
    z = _as_logits(logits, name)
    return z - logsumexp(z, axis=1, keepdims=True)


def softmax(logits, name: str = "logits") -> np.ndarray:
    """Row-wise softmax of ``(n, C)`` logits, computed stably (max subtracted first).

    Returns float64 probabilities that sum to 1 per row.
    """
    z = _as_logits(logits, name)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def true_label_confidence(logits, labels, name: str = "logits") -> np.ndarray:
    """p_y: softmax probability of each example's true label, shape ``(n,)``.

    This is the "confidence" feature of the SVC membership attack used by
    Jia et al. (NeurIPS 2023) and SalUn (Fan et al., ICLR 2024) and the signal
    RMIA (Zarifzadeh et al., ICML 2024) compares across models.
    """
    z, y = _logits_and_labels(logits, labels, name)
    return np.exp(z[np.arange(len(y)), y] - logsumexp(z, axis=1))


def cross_entropy(logits, labels, name: str = "logits") -> np.ndarray:
    """Per-example cross-entropy loss ``-log p_y = logsumexp(z) - z_y``, shape ``(n,)``.

    The score of the loss-threshold attack (Yeom et al., CSF 2018).
    """
    z, y = _logits_and_labels(logits, labels, name)
    return logsumexp(z, axis=1) - z[np.arange(len(y)), y]


def logit_scaled_confidence(logits, labels, name: str = "logits") -> np.ndarray:
    """Logit-scaled confidence ``log(p_y / (1 - p_y))`` per example, shape ``(n,)``.

    Carlini et al., "Membership Inference Attacks From First Principles"
    (IEEE S&P 2022) use this transform of the true-label confidence because across
    retrained models it is approximately Gaussian; the NeurIPS 2023 unlearning
    competition metric uses the same statistic.

    Computed in logit space as ``z_y - logsumexp_{j != y} z_j`` (which equals
    ``log p_y - log sum_{j != y} p_j``), so it neither clips nor saturates:
    logits ``[100, -100]`` with label 0 give exactly 200, where a probability-space
    formula would give ``log(1 / 0) = inf`` (or a clipping artefact).
    """
    z, y = _logits_and_labels(logits, labels, name)
    rows = np.arange(len(y))
    z_true = z[rows, y]
    others = z.copy()
    others[rows, y] = -np.inf
    return z_true - logsumexp(others, axis=1)
