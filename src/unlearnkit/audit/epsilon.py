"""Per-example (epsilon, delta) forgetting quality of the NeurIPS 2023 Machine
Unlearning competition.

Source: Triantafillou et al., "Are we making progress in unlearning? Findings
from the first NeurIPS unlearning competition" (2024), and the competition's
released evaluation code (google-deepmind/unlearning_evaluation, ``metric.py``),
whose handling of edge cases is followed here and stated below.

Setting.  Run an unlearning algorithm N times (N unlearned models) and retrain
from scratch without the forget set N times (N retrained models).  For each
forget example, take its logit-scaled confidence under every model
(:func:`unlearnkit.audit.scores.logit_scaled_confidence`): two samples, of sizes
N_u and N_r.  Perfect unlearning makes the two distributions equal.

Per-example epsilon.  Every decision rule from a family of threshold attacks
tells the two samples apart with some false-positive rate FPR and
false-negative rate FNR; by the hypothesis-testing view of (epsilon, delta)
differential privacy (Kairouz et al., 2015) each attack certifies

    eps >= max( log(1 - delta - FPR) - log(FNR),  log(1 - delta - FNR) - log(FPR) ).

``eps_i`` is the largest such bound over the family (``delta = 1e-5``, the
competition's value).  Competition conventions, all followed here:

* The "positive" class of an example is whichever sample has the larger median
  (ties: the unlearned sample).
* Single-threshold rules: predict positive when ``x >= t``.
* Double-threshold rules: predict the *peakier* sample (smaller range; ties: the
  negative one) when ``t1 <= x <= t2``.  The competition grid restricts these
  intervals to a right end within +-2 of the peaky sample's maximum and a width
  within +-2 of the peaky sample's range; ``rules="competition"`` applies the
  same restriction.
* An attack with FPR = FNR = 0 (perfect separation) gives eps = inf; an attack
  with exactly one of FPR, FNR equal to 0 is discarded (taken as a sign of too
  few samples, not as infinite leakage); a term whose log argument is <= 0 is
  ignored; per-attack values are clipped below at 0.  An example no attack
  bounds gets 0.
* If the smaller of the two samples' ranges is under 1% of the larger, the
  example gets the cap directly (a near-deterministic unlearned output is treated
  as a failure the thresholds might not resolve).
* eps is clipped to [0, ``EPSILON_CAP`` = 50]; perfect separation reads as 50.

Thresholds.  ``rules="competition"`` (the default) uses the competition's grid
of 100 thresholds per unit: single thresholds at ``ceil(100 * range)`` evenly
spaced points from the smallest to the largest pooled value; interval right ends
at ``ceil(100 * (max_ - min_))`` points from ``peaky min + width - 2`` to
``peaky max + 2`` and, for each, 400 left ends from ``r - width - 2`` to
``r - width + 2`` (``width`` = the smaller range).  The grid points are numpy's
``linspace`` values (the reference builds the single-threshold grid in float32
with ``torch.linspace``; a sample within ~1e-7 of such a point may fall on the
other side), and only the outcomes they produce are evaluated, by counting how
many sorted samples lie below each point -- exactly the reference's (FPR, FNR)
pairs, without its 160,000 interval evaluations per example.
``rules="exact"`` places the thresholds exactly at the pooled sample values
(every distinct outcome a rule can produce, intervals within the same +-2
window), so eps can only be equal or larger: two samples separated by a gap
narrower than the grid's 0.01 are separated here (eps = inf) but not by the
reference.  ``rules="exhaustive"`` additionally allows every interval (no +-2
window) and both directions of every rule (``x < t``, and "outside the
interval"); it is symmetric in its two arguments and depends only on ranks.

Score.  With N models per side, the smallest nonzero FPR or FNR is 1/N, so the
largest *finite* epsilon is ``log(N - 1 - N*delta)`` ~ log(N - 1)
(:func:`max_measurable_epsilon`).  The competition scores up to
``ceil(log(N - 1))`` (3 for N = 16, 7 for N = 512): eps is bucketed in widths of
0.5 and example i earns ``2 / 2**k_i`` points, ``k_i = 1 + floor(eps_i / 0.5)``
(1 point below 0.5, 1/2 in [0.5, 1), ...), and 0 points at or above the limit.
The forgetting quality is ``F = mean_i points_i`` in [0, 1], and the final
competition score is ``F * (RA_u / RA_r) * (TA_u / TA_r)`` (retain and test
accuracies of unlearned vs retrained models, :func:`competition_score`).

Noise floor.  With finite N, even two sets of *retrained* models (perfect
unlearning) are separated by chance on some examples, so F < 1; and more
attacks or more models change where that floor sits.  :func:`noise_floor`
measures it from the retrained models themselves by splitting them in two.
F on identical Gaussian populations (5000 examples, seed 0), competition rules:
0.257 at N = 4 per side, 0.188 at N = 8, 0.174 at N = 16 (exact thresholds:
0.256, 0.186, 0.173).  Exhaustive
rules (rank-based, so the same for any continuous distribution) give about 0.12
at N = 16.  So a floor measured with N_r / 2 models per side is higher than the
floor at the method's N whenever N_r / 2 < N.
"""

from __future__ import annotations

import math

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .scores import _as_array

__all__ = [
    "DELTA",
    "EPSILON_CAP",
    "per_example_epsilon",
    "epsilon_points",
    "forgetting_quality",
    "competition_score",
    "noise_floor",
    "max_measurable_epsilon",
    "scored_epsilon_limit",
]

DELTA = 1e-5
EPSILON_CAP = 50.0
BUCKET_WIDTH = 0.5
_PEAKY_RATIO = 0.01
_WINDOW = 2.0
_GRID_PER_UNIT = 100  # the competition's thresholds: 100 per unit of logit-scaled confidence
_GRID_CHUNK_ELEMS = 1 << 18  # (~400 right ends) x samples x examples per block: 2 MB per float64 temporary
RULES = ("competition", "exact", "exhaustive")
_CHUNK_ELEMS = 1_000_000  # elements per (M, M, examples) block: ~100 MB of temporaries


# --------------------------------------------------------------------------- limits


def max_measurable_epsilon(n_models: int, delta: float = DELTA) -> float:
    """Largest *finite* per-example epsilon with ``n_models`` samples on each side.

    FPR and FNR are multiples of 1/N, and attacks with exactly one of them 0 are
    discarded, so the strongest finite bound comes from FPR = FNR = 1/N:
    ``log(1 - delta - 1/N) - log(1/N) = log(N - 1 - N*delta)``, about log(N - 1)
    (2.71 for N = 16, 6.24 for N = 512).  Anything larger can only be the
    perfect-separation value (inf, reported as ``EPSILON_CAP``).  Monotone
    increasing in N.

    Raises:
        UnlearnkitError: ``n_models < 2``.
    """
    n = int(n_models)
    if n < 2:
        raise UnlearnkitError(f"n_models must be >= 2 to measure any epsilon, got {n_models}")
    return float(np.log(n - 1 - n * delta))


def scored_epsilon_limit(n_models: int) -> float:
    """``ceil(log(N - 1))``: epsilons at or above it earn 0 points (competition rule)."""
    n = int(n_models)
    if n < 2:
        raise UnlearnkitError(f"n_models must be >= 2, got {n_models}")
    return float(math.ceil(math.log(n - 1))) if n > 2 else 0.0


# --------------------------------------------------------------------------- epsilon


def _eps_from_rates(fp, fn, n_neg, n_pos, valid, delta):
    """Per-attack epsilon; NaN where the attack is discarded.  fp/fn are counts."""
    with np.errstate(divide="ignore", invalid="ignore"):
        fpr = fp / n_neg
        fnr = fn / n_pos
        a1 = 1.0 - delta - fpr
        a2 = 1.0 - delta - fnr
        e1 = np.where(a1 > 0, np.log(np.where(a1 > 0, a1, 1.0)) - np.log(fnr), np.nan)
        e2 = np.where(a2 > 0, np.log(np.where(a2 > 0, a2, 1.0)) - np.log(fpr), np.nan)
        e = np.fmax(e1, e2)
    e = np.where(np.isnan(e), np.nan, np.maximum(e, 0.0))
    both0 = (fp == 0) & (fn == 0)
    one0 = ((fp == 0) | (fn == 0)) & ~both0
    e = np.where(both0, np.inf, np.where(one0, np.nan, e))
    return np.where(valid, e, np.nan)


def _linspace_count_le(v, start, stop, num):
    """How many points of ``np.linspace(start, stop, num)`` are <= ``v`` (elementwise, broadcast, exact).

    ``floor((v - start) / step) + 1`` is the count unless ``v`` lies within rounding of a grid point;
    those few entries (the index estimate within 1e-6 of an integer) are settled against the grid's
    own float values, numpy's ``j * step + start`` (the last point exactly ``stop``).
    """
    v, start, stop, num = np.broadcast_arrays(v, start, stop, np.asarray(num))
    step = (stop - start) / np.maximum(num - 1, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        q = (v - start) / np.where(step > 0, step, 1.0)
    q = np.where(num > 1, q, 0.0)
    count = np.clip(np.floor(q) + 1, 0, num)
    near = np.nonzero((np.abs(q - np.round(q)) < 1e-6) & (num > 1))
    if near[0].size:
        vn, sn, en, nn, stn = v[near], start[near], stop[near], num[near], step[near]
        j = np.round(q[near])
        c = np.zeros(len(j))
        for k in (j - 1, j, j + 1):  # the grid points around v, exactly as numpy computes them
            inside = (k >= 0) & (k <= nn - 1)
            point = np.where(k >= nn - 1, en, k * stn + sn)
            c = np.where(inside & (point <= vn), k + 1, c)
        count[near] = np.maximum(c, np.clip(j - 1, 0, nn))  # points below j - 1 are below v too
    return np.where(num > 1, count, np.where(num == 1, start <= v, 0)).astype(np.int64)


def _grid_cuts(Xs, start, stop, num):
    """``cut[k]``: some grid point t has exactly k sorted samples below it (``Xs[k-1] < t <= Xs[k]``).

    ``Xs`` (M, ...) sorted along axis 0; the grid ``np.linspace(start, stop, num)`` broadcasts over
    the trailing axes.  k runs over 0..M-1 (no sample at or above t is never a useful cut).
    """
    cnt = _linspace_count_le(Xs, start[None], stop[None], np.asarray(num)[None])
    below = np.concatenate([np.zeros_like(cnt[:1]), cnt[:-1]], axis=0)
    return cnt > below


def _grid_single(Xs):
    """(M, c): the single thresholds the competition's grid reaches: ``ceil(100 * range)`` evenly spaced
    points from the smallest to the largest value (both samples pooled)."""
    lo, hi = Xs[0], Xs[-1]
    num = np.ceil((hi - lo) * _GRID_PER_UNIT).astype(np.int64)
    return _grid_cuts(Xs, lo, hi, num)


def _grid_double(Xs, peaky_min, peaky_max, width):
    """(M, M, c) [a, b]: intervals the competition's grid reaches, as first/last sorted index inside.

    Right ends: ``ceil(100 * (max_ - min_))`` points from ``min_ = peaky min + width - 2`` to
    ``max_ = peaky max + 2``; for each right end r, 400 left ends from ``r - width - 2`` to
    ``r - width + 2`` (``width``: the smaller of the two samples' ranges).
    """
    M, c = Xs.shape
    lo = (peaky_min + width) - _WINDOW
    hi = peaky_max + _WINDOW
    n_right = np.ceil((hi - lo) * _GRID_PER_UNIT).astype(np.int64)  # (c,)
    i = np.arange(int(n_right.max()))[:, None]
    right = np.where((i >= n_right[None] - 1) & (n_right[None] > 1), hi[None],
                     i * ((hi - lo) / np.maximum(n_right - 1, 1))[None] + lo[None])  # (R, c): numpy's linspace
    active = i < n_right[None]
    last = (Xs[None, :, :] <= right[:, None, :]).sum(axis=1) - 1  # (R, c): last sorted index inside
    n_left = int(np.ceil(2 * _WINDOW * _GRID_PER_UNIT))
    left = _grid_cuts(Xs[None].transpose(1, 0, 2), (right - width) - _WINDOW, (right - width) + _WINDOW, n_left)
    first = left.transpose(1, 0, 2) & active[:, None, :]  # (R, M, c): first sorted index inside
    ends = (last[:, None, :] == np.arange(M)[None, :, None]) & active[:, None, :]  # (R, M, c)
    hit = np.matmul(first.transpose(2, 1, 0).astype(np.float32), ends.transpose(2, 0, 1).astype(np.float32))
    return hit.transpose(1, 2, 0) > 0


def _chunk_eps(U, R, delta, rules):
    """Epsilon for a block of examples: U (Nu, c), R (Nr, c)."""
    Nu, c = U.shape
    Nr = R.shape[0]
    M = Nu + Nr
    X = np.concatenate([U, R], axis=0)
    from_r = np.concatenate([np.zeros(Nu, bool), np.ones(Nr, bool)])
    order = np.argsort(X, axis=0, kind="stable")
    Xs = np.take_along_axis(X, order, axis=0)
    Rs = from_r[order]

    med_u, med_r = np.median(U, axis=0), np.median(R, axis=0)
    pos_is_r = med_r > med_u  # competition: larger median is positive (ties: unlearned)
    n_pos = np.where(pos_is_r, Nr, Nu).astype(np.float64)
    n_neg = np.where(pos_is_r, Nu, Nr).astype(np.float64)
    pos = Rs == pos_is_r[None, :]

    zero_row = np.zeros((1, c))
    cum_pos = np.concatenate([zero_row, np.cumsum(pos, axis=0)], axis=0)  # (M+1, c), exclusive prefix
    k = np.arange(M + 1, dtype=np.float64)[:, None]
    cum_neg = k - cum_pos
    first = np.ones((M, c), bool)
    first[1:] = Xs[1:] != Xs[:-1]
    last = np.ones((M, c), bool)
    last[:-1] = Xs[:-1] != Xs[1:]

    exhaustive = rules == "exhaustive"

    # Single threshold: predict positive iff x >= Xs[k] (k first of its value group).
    fn = cum_pos[:-1]
    fp = n_neg[None, :] - cum_neg[:-1]
    eps = _eps_from_rates(fp, fn, n_neg, n_pos, _grid_single(Xs) if rules == "competition" else first, delta)
    best = np.nanmax(np.where(np.isnan(eps), -1.0, eps), axis=0)
    if exhaustive:  # reversed direction: predict positive iff x < Xs[k]
        e_rev = _eps_from_rates(n_neg - fp, n_pos - fn, n_neg, n_pos, first, delta)
        best = np.maximum(best, np.max(np.where(np.isnan(e_rev), -1.0, e_rev), axis=0))

    # Double threshold: predict the peakier sample iff Xs[a] <= x <= Xs[b].
    range_u = U.max(axis=0) - U.min(axis=0)
    range_r = R.max(axis=0) - R.min(axis=0)
    range_pos = np.where(pos_is_r, range_r, range_u)
    range_neg = np.where(pos_is_r, range_u, range_r)
    peaky_is_pos = range_pos < range_neg  # competition: ties -> the negative sample is "peaky"
    peaky = np.where(peaky_is_pos[None, :], pos, ~pos)
    n_peaky = np.where(peaky_is_pos, n_pos, n_neg)
    n_other = np.where(peaky_is_pos, n_neg, n_pos)
    cum_pk = np.concatenate([zero_row, np.cumsum(peaky, axis=0)], axis=0)
    in_pk = cum_pk[1:][None, :, :] - cum_pk[:-1][:, None, :]  # [a, b, example]
    size = (np.arange(M)[None, :] - np.arange(M)[:, None] + 1).astype(np.float64)[:, :, None]
    in_other = size - in_pk
    valid = (size > 0) & first[:, None, :] & last[None, :, :]
    w = np.minimum(range_pos, range_neg)
    peaky_r = peaky_is_pos == pos_is_r  # the peaky sample is R iff (peaky is pos) == (pos is R)
    pmax = np.where(peaky_r, R.max(axis=0), U.max(axis=0))
    if rules == "competition":
        valid &= _grid_double(Xs, np.where(peaky_r, R.min(axis=0), U.min(axis=0)), pmax, w)
    elif rules == "exact":
        x_a = Xs[:, None, :]
        x_b = Xs[None, :, :]
        prev_a = np.concatenate([np.full((1, c), -np.inf), Xs[:-1]], axis=0)[:, None, :]
        next_b = np.concatenate([Xs[1:], np.full((1, c), np.inf)], axis=0)[None, :, :]
        r_lo = np.maximum(x_b, pmax - _WINDOW)
        r_hi = np.minimum(next_b, pmax + _WINDOW)
        with np.errstate(invalid="ignore"):
            valid &= (r_lo < r_hi) & (r_lo - x_a <= w + _WINDOW) & (r_hi - prev_a > w - _WINDOW)
    fn_d = n_peaky - in_pk  # peaky examples left outside
    fp_d = in_other
    e_d = _eps_from_rates(fp_d, fn_d, n_other, n_peaky, valid, delta)
    best = np.maximum(best, np.max(np.where(np.isnan(e_d), -1.0, e_d), axis=(0, 1)))
    if exhaustive:  # complement: predict the peakier sample outside [Xs[a], Xs[b]]
        e_c = _eps_from_rates(n_other - fp_d, n_peaky - fn_d, n_other, n_peaky, valid, delta)
        best = np.maximum(best, np.max(np.where(np.isnan(e_c), -1.0, e_c), axis=(0, 1)))

    best = np.where(best < 0, 0.0, best)  # no attack gave a bound

    if not exhaustive:
        largest = np.maximum(range_u, range_r)
        smallest = np.minimum(range_u, range_r)
        with np.errstate(divide="ignore", invalid="ignore"):
            peaky_fail = (largest > 0) & (smallest / np.where(largest > 0, largest, 1.0) < _PEAKY_RATIO)
        best = np.where(peaky_fail, np.inf, best)
    return np.clip(best, 0.0, EPSILON_CAP)


def _validate_pair(unlearned, retrained, min_models: int):
    u = _as_array(unlearned, "unlearned", 2, owner="the unlearned models (unlearned)")
    r = _as_array(retrained, "retrained", 2, owner="the retrained models (retrained)")
    if u.shape[1] != r.shape[1]:
        raise UnlearnkitError(
            f"unlearned covers {u.shape[1]} forget examples but retrained covers {r.shape[1]}: pass both as "
            "(models, forget examples) on the same examples in the same order"
        )
    for name, arr in (("unlearned", u), ("retrained", r)):
        if arr.shape[0] < min_models:
            raise UnlearnkitError(
                f"{name} holds {arr.shape[0]} model(s) but the epsilon audit needs at least {min_models} "
                f"per side (rows are models): run {min_models}+ seeds (the competition used 512)"
            )
    return u, r


def per_example_epsilon(unlearned, retrained, delta: float = DELTA, rules: str = "competition") -> np.ndarray:
    """Per-example epsilon, shape ``(n,)``, from ``(N_u, n)`` and ``(N_r, n)`` confidences.

    See the module docstring for the definition and the ``rules``
    (``"competition"``, ``"exact"`` or ``"exhaustive"``).  Vectorised over examples; the
    double-threshold family costs O((N_u + N_r)^2) per example, plus O(400 (N_u + N_r))
    for the competition grid: n = 4000 examples at N = 16 per side took 2.6 s of CPU
    with the grid and 0.4 s with exact thresholds (2-core AMD EPYC CPU, shared);
    the competition's N = 512 would take tens of minutes.

    Raises:
        UnlearnkitError: NaN/inf, fewer than 2 models per side, mismatched
            example counts, bad ``delta`` or ``rules``.
    """
    if rules not in RULES:
        raise UnlearnkitError(f"rules must be one of {', '.join(RULES)}, got {rules!r}")
    if not 0.0 <= float(delta) < 1.0:
        raise UnlearnkitError(f"delta must be in [0, 1), got {delta}")
    u, r = _validate_pair(unlearned, retrained, 2)
    M = u.shape[0] + r.shape[0]
    chunk = max(1, _CHUNK_ELEMS // (M * M))
    if rules == "competition":  # the grid's (right ends, samples, examples) blocks: small enough to stay in cache
        chunk = max(1, min(chunk, _GRID_CHUNK_ELEMS // (M * int(4 * _WINDOW * _GRID_PER_UNIT))))
    out = np.empty(u.shape[1])
    for s in range(0, u.shape[1], chunk):
        out[s : s + chunk] = _chunk_eps(u[:, s : s + chunk], r[:, s : s + chunk], float(delta), rules)
    return out


def epsilon_points(eps, n_models: int) -> np.ndarray:
    """Competition points per example: ``2 / 2**(1 + floor(eps / 0.5))`` below
    ``ceil(log(n_models - 1))``, else 0."""
    e = np.asarray(eps, dtype=np.float64)
    limit = scored_epsilon_limit(n_models)
    k = np.floor(np.clip(e, 0.0, None) / BUCKET_WIDTH)
    return np.where(e < limit, 0.5 ** np.minimum(k, 1000), 0.0)


def forgetting_quality(unlearned, retrained, delta: float = DELTA, rules: str = "competition") -> dict:
    """Competition forgetting quality F of one unlearning algorithm.

    Args:
        unlearned: ``(N_u, n)`` logit-scaled confidences of the n forget examples
            under N_u unlearned models (one row per model).
        retrained: ``(N_r, n)`` the same under N_r models retrained without them.
        delta: the delta of (epsilon, delta); 1e-5 in the competition.
        rules: ``"competition"`` (default) or ``"exhaustive"``, see module docstring.

    Returns a dict with ``eps`` (n,), ``points`` (n,), ``F`` (mean points),
    ``n_models`` (min(N_u, N_r), the N used for the limits),
    ``max_measurable_epsilon``, ``scored_epsilon_limit`` and ``n_capped``
    (examples at ``EPSILON_CAP``: perfectly separated or near-deterministic).

    Needs N >= 3 models per side (with 2, ``ceil(log(1)) = 0`` and F is 0 for
    every algorithm).

    Raises:
        UnlearnkitError: see :func:`per_example_epsilon`; fewer than 3 models per side.
    """
    _validate_pair(unlearned, retrained, 3)
    eps = per_example_epsilon(unlearned, retrained, delta=delta, rules=rules)
    n_models = min(np.shape(unlearned)[0], np.shape(retrained)[0])
    pts = epsilon_points(eps, n_models)
    return {
        "eps": eps,
        "points": pts,
        "F": float(pts.mean()),
        "n_models": int(n_models),
        "max_measurable_epsilon": max_measurable_epsilon(n_models, delta),
        "scored_epsilon_limit": scored_epsilon_limit(n_models),
        "n_capped": int((eps >= EPSILON_CAP).sum()),
    }


def competition_score(F: float, ra_u: float, ra_r: float, ta_u: float, ta_r: float) -> float:
    """Final NeurIPS 2023 competition score ``F * (RA_u / RA_r) * (TA_u / TA_r)``.

    ``ra_*`` / ``ta_*``: mean retain / test accuracy of the unlearned (u) and
    retrained (r) models.  Accuracy ratios above 1 are not capped (as in the
    competition code).

    Raises:
        UnlearnkitError: non-finite inputs, negative values, or a zero retrained accuracy.
    """
    vals = {"F": F, "ra_u": ra_u, "ra_r": ra_r, "ta_u": ta_u, "ta_r": ta_r}
    for k, v in vals.items():
        try:
            fv = float(v)
        except (TypeError, ValueError) as exc:
            raise UnlearnkitError(f"{k} must be a number, got {v!r}") from exc
        if not math.isfinite(fv) or fv < 0:
            raise UnlearnkitError(f"{k} must be a finite non-negative number, got {v!r}")
    if float(ra_r) == 0 or float(ta_r) == 0:
        raise UnlearnkitError("ra_r and ta_r (retrained accuracies) must be > 0: the retrained models did not learn")
    return float(F) * (float(ra_u) / float(ra_r)) * (float(ta_u) / float(ta_r))


def noise_floor(
    retrained,
    seed: int = 0,
    n_per_side: int | None = None,
    n_splits: int = 1,
    delta: float = DELTA,
    rules: str = "competition",
) -> dict:
    """F that *perfect* unlearning would get: F between two halves of the retrained models.

    Splits the N_r retrained models at random (``seed``) into two disjoint groups
    of ``n_per_side`` (default ``N_r // 2``) and scores one against the other with
    :func:`forgetting_quality`; repeated ``n_splits`` times.  Compare an algorithm's
    F with this, not with 1.  Note the floor is measured at ``n_per_side`` models
    per side: to know it at N per side, supply 2N retrained models.

    Returns ``{"F": mean F, "F_splits": [...], "n_per_side": int, "eps": eps of the first split}``.

    Raises:
        UnlearnkitError: fewer than 6 retrained models, or ``n_per_side`` too large.
    """
    r = _as_array(retrained, "retrained", 2, owner="the retrained models (retrained)")
    n = r.shape[0]
    h = n // 2 if n_per_side is None else int(n_per_side)
    if n < 6 or h < 3:
        raise UnlearnkitError(
            f"noise_floor needs at least 6 retrained models (two halves of >= 3), got {n}: retrain more seeds"
        )
    if 2 * h > n:
        raise UnlearnkitError(f"n_per_side={h} needs {2 * h} retrained models but only {n} were given")
    if int(n_splits) < 1:
        raise UnlearnkitError(f"n_splits must be >= 1, got {n_splits}")
    rng = np.random.default_rng(seed)
    fs, eps0 = [], None
    for _ in range(int(n_splits)):
        perm = rng.permutation(n)
        q = forgetting_quality(r[perm[:h]], r[perm[h : 2 * h]], delta=delta, rules=rules)
        fs.append(q["F"])
        if eps0 is None:
            eps0 = q["eps"]
    return {"F": float(np.mean(fs)), "F_splits": fs, "n_per_side": h, "eps": eps0}
