"""Known-answer tests for the NeurIPS 2023 unlearning-competition epsilon / F."""

import math

import numpy as np
import pytest

from unlearnkit.audit.epsilon import (
    DELTA,
    EPSILON_CAP,
    competition_score,
    epsilon_points,
    forgetting_quality,
    max_measurable_epsilon,
    noise_floor,
    per_example_epsilon,
    scored_epsilon_limit,
)
from unlearnkit.errors import UnlearnkitError


def test_identical_populations_sit_at_the_noise_floor():
    rng = np.random.default_rng(0)
    U, R = rng.normal(size=(16, 3000)), rng.normal(size=(16, 3000))
    comp = forgetting_quality(U, R)
    exh = forgetting_quality(U, R, rules="exhaustive")
    # measured (20000 examples): 0.173 competition rules, 0.121 exhaustive
    assert 0.14 < comp["F"] < 0.21
    assert 0.09 < exh["F"] < 0.15
    assert exh["F"] < comp["F"]  # more attacks -> larger epsilons -> lower floor
    assert comp["n_capped"] == 0 and np.all(comp["eps"] <= comp["max_measurable_epsilon"] + 1e-12)
    assert comp["scored_epsilon_limit"] == 3.0 and comp["n_models"] == 16


def test_noise_floor_matches_identical_population_value():
    rng = np.random.default_rng(1)
    R = rng.normal(size=(32, 3000))
    nf = noise_floor(R, seed=0)
    assert nf["n_per_side"] == 16
    assert 0.14 < nf["F"] < 0.21
    again = noise_floor(R, seed=0)
    assert again["F"] == nf["F"] and np.array_equal(again["eps"], nf["eps"])
    assert len(noise_floor(R, seed=0, n_splits=3, n_per_side=8)["F_splits"]) == 3


def test_complete_separation_is_capped_and_scores_zero():
    rng = np.random.default_rng(2)
    U = rng.normal(10.0, 1.0, size=(16, 200))
    R = rng.normal(0.0, 1.0, size=(16, 200))
    q = forgetting_quality(U, R)
    assert np.all(q["eps"] == EPSILON_CAP) and q["F"] == 0.0 and q["n_capped"] == 200


def test_one_crossing_each_side_gives_max_measurable_epsilon():
    # FPR = FNR = 1/16 is the strongest finite attack: eps = log(16 - 1 - 16 delta)
    R = np.r_[np.arange(15.0), 100.0][:, None]
    U = np.r_[np.arange(50.0, 65.0), -100.0][:, None]
    for rules in ("competition", "exact", "exhaustive"):
        eps = per_example_epsilon(U, R, rules=rules)
        np.testing.assert_allclose(eps, [max_measurable_epsilon(16)])
    assert math.isclose(max_measurable_epsilon(16), math.log(15 - 16 * DELTA))


def test_swapping_arguments_keeps_epsilon():
    rng = np.random.default_rng(3)
    U = rng.normal(0.5, 1.3, size=(16, 500))
    R = rng.normal(0.0, 1.0, size=(16, 500))
    for rules in ("competition", "exact", "exhaustive"):
        np.testing.assert_allclose(per_example_epsilon(U, R, rules=rules), per_example_epsilon(R, U, rules=rules))


def test_better_unlearning_scores_higher():
    rng = np.random.default_rng(4)
    R = rng.normal(size=(16, 1000))
    F = [forgetting_quality(rng.normal(shift, 1.0, size=(16, 1000)), R)["F"] for shift in (0.0, 1.0, 3.0)]
    assert F[0] > F[1] > F[2]


def test_near_deterministic_unlearning_gets_the_cap_under_competition_rules():
    rng = np.random.default_rng(5)
    R = rng.normal(size=(16, 50))
    # every unlearning run gives (almost) the same output, right next to one retrained value:
    # the interval around the cluster also holds that retrained value, so no attack separates perfectly
    U = R[0] + rng.uniform(-1e-3, 1e-3, size=(16, 50))
    assert np.all(per_example_epsilon(U, R) == EPSILON_CAP)  # range ratio < 1%: capped
    exh = per_example_epsilon(U, R, rules="exhaustive")
    assert np.all(exh < EPSILON_CAP) and np.all(exh > 2.0)
    # an exactly constant output away from every retrained value is perfectly separable anyway
    U0 = np.tile(np.median(R, axis=0) + 1e-6, (16, 1))
    assert np.all(per_example_epsilon(U0, R, rules="exhaustive") == EPSILON_CAP)


def test_epsilon_points_buckets():
    eps = np.array([0.0, 0.49, 0.5, 0.99, 2.6, 2.99, 3.0, EPSILON_CAP])
    np.testing.assert_allclose(epsilon_points(eps, 16), [1, 1, 0.5, 0.5, 1 / 32, 1 / 32, 0, 0])
    assert scored_epsilon_limit(16) == 3.0 and scored_epsilon_limit(512) == 7.0
    assert np.all(epsilon_points(eps, 2) == 0)


def test_max_measurable_epsilon_monotone_in_n():
    vals = [max_measurable_epsilon(n) for n in (2, 3, 4, 8, 16, 64, 512)]
    assert all(a < b for a, b in zip(vals, vals[1:]))
    assert abs(max_measurable_epsilon(512) - math.log(511)) < 0.01
    with pytest.raises(UnlearnkitError):
        max_measurable_epsilon(1)


def test_competition_score():
    assert competition_score(0.5, 0.9, 1.0, 0.8, 0.85) == pytest.approx(0.5 * 0.9 * 0.8 / 0.85)
    assert competition_score(0.3, 1.0, 1.0, 1.0, 1.0) == pytest.approx(0.3)
    with pytest.raises(UnlearnkitError, match="ra_r"):
        competition_score(0.5, 0.9, 0.0, 0.8, 0.85)
    with pytest.raises(UnlearnkitError, match="F must"):
        competition_score(float("nan"), 0.9, 1.0, 0.8, 0.85)


def _grid_epsilon(pos, neg, delta=DELTA, per_unit=100, buffer=2.0):
    """Independent re-implementation of the competition's 0.01-grid evaluation (one example)."""
    pd, nd = np.ptp(pos), np.ptp(neg)
    if min(pd, nd) / max(pd, nd) < 0.01:
        return EPSILON_CAP

    def eps_of(tpr, fpr):
        fnr, tnr = 1 - tpr, 1 - fpr
        with np.errstate(all="ignore"):
            e = np.fmax(np.log(1 - delta - fpr) - np.log(fnr), np.log(1 - delta - fnr) - np.log(fpr))
        e = np.maximum(e, 0)
        e = np.where((fpr == 0) & (fnr == 0) & (tpr + tnr == 2), np.inf, e)
        return e[~(((fpr == 0) ^ (fnr == 0))) & ~np.isnan(e)]

    peak, other = (neg, pos) if pd >= nd else (pos, neg)
    w = min(pd, nd)
    right = np.linspace(peak.min() + w - buffer, peak.max() + buffer,
                        int(np.ceil((peak.max() + buffer - (peak.min() + w - buffer)) * per_unit)))
    k = int(np.ceil(2 * buffer * per_unit))
    left = np.concatenate([np.linspace(r - w - buffer, r - w + buffer, k) for r in right])
    right = np.repeat(right, k)
    inside = lambda x: ((left <= x[:, None]) & (x[:, None] <= right)).mean(0)  # noqa: E731
    ed = eps_of(inside(peak), inside(other))
    both = np.concatenate([pos, neg])
    t = np.linspace(both.min(), both.max(), int(np.ceil(np.ptp(both) * per_unit)))
    es = eps_of((pos[:, None] >= t).mean(0), (neg[:, None] >= t).mean(0))
    return min(np.max(np.concatenate([ed, es])), EPSILON_CAP)


def test_default_is_the_competition_grid_and_exact_thresholds_only_add_attacks():
    rng = np.random.default_rng(6)
    U = rng.normal(0.3, 1.2, size=(16, 25))
    R = rng.normal(size=(16, 25))
    U[:, :5], R[:, :5] = np.round(U[:, :5], 2), np.round(R[:, :5], 2)  # values on the grid's own spacing
    grid = np.array([
        _grid_epsilon(*((R[:, i], U[:, i]) if np.median(R[:, i]) > np.median(U[:, i]) else (U[:, i], R[:, i])))
        for i in range(U.shape[1])
    ])
    assert np.allclose(per_example_epsilon(U, R), grid, rtol=0, atol=1e-12)  # the default reproduces the grid
    exact = per_example_epsilon(U, R, rules="exact")
    assert np.all(exact >= grid - 1e-9)  # exact thresholds include every grid attack's outcome


def test_a_gap_narrower_than_the_grid_separates_only_with_exact_thresholds():
    # 8 unlearned values 0.0 .. 0.7; the retrained ones lie outside [0, 0.7], the nearest 0.002 above it.
    U = np.array([0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7])[:, None]
    R = np.array([-0.5, -0.1, 0.702, 0.71, 0.72, 0.73, 0.74, 0.75])[:, None]
    # exact thresholds: the interval [0, 0.7] separates the samples perfectly -> eps = inf (capped), 0 points
    exact = per_example_epsilon(U, R, rules="exact")
    assert exact[0] == EPSILON_CAP and epsilon_points(exact, 8)[0] == 0.0
    # the 0.01 grid has no right end in [0.7, 0.702): its best attack errs once on each side,
    # eps = log(8 - 1 - 8 delta) in [1.5, 2) -> 0.125 points (what the reference scores)
    comp = per_example_epsilon(U, R)
    assert comp[0] == pytest.approx(math.log(7 - 8 * DELTA)) and epsilon_points(comp, 8)[0] == 0.125
    assert comp[0] == pytest.approx(_grid_epsilon(R[:, 0], U[:, 0]))


def test_large_input_runs():
    rng = np.random.default_rng(7)
    q = forgetting_quality(rng.normal(size=(16, 5000)), rng.normal(size=(16, 5000)))
    assert q["eps"].shape == (5000,)


def test_unequal_model_counts():
    rng = np.random.default_rng(8)
    q = forgetting_quality(rng.normal(size=(8, 300)), rng.normal(size=(12, 300)))
    assert q["n_models"] == 8 and 0 < q["F"] < 1


def test_bad_inputs():
    rng = np.random.default_rng(9)
    U, R = rng.normal(size=(16, 10)), rng.normal(size=(16, 10))
    bad = U.copy()
    bad[2, 2] = np.nan
    with pytest.raises(UnlearnkitError, match="outputs of the unlearned models.*NaN"):
        forgetting_quality(bad, R)
    with pytest.raises(UnlearnkitError, match="covers 10 forget examples but retrained covers 9"):
        forgetting_quality(U, R[:, :9])
    with pytest.raises(UnlearnkitError, match="at least 3 per side"):
        forgetting_quality(U[:2], R)
    with pytest.raises(UnlearnkitError, match="at least 6 retrained"):
        noise_floor(R[:5])
    with pytest.raises(UnlearnkitError, match="rules"):
        per_example_epsilon(U, R, rules="fast")
    with pytest.raises(UnlearnkitError, match="empty"):
        forgetting_quality(np.zeros((16, 0)), np.zeros((16, 0)))
