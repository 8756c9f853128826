"""Known-answer tests for offline RMIA."""

import numpy as np
import pytest
from scipy.special import expit

from unlearnkit.audit.attacks import roc_metrics
from unlearnkit.audit.rmia import rmia_offline
from unlearnkit.errors import UnlearnkitError


def _world(shift, K=4, n=3000, m=2000, seed=0):
    """True-label probabilities: per-example difficulty b, members' target logit raised by `shift`."""
    rng = np.random.default_rng(seed)
    bx = rng.normal(1.0, 2.0, size=n)
    bz = rng.normal(1.0, 2.0, size=m)
    member = rng.random(n) < 0.5
    noise = 0.5
    tx = expit(bx + shift * member + noise * rng.normal(size=n))
    rx = expit(bx + noise * rng.normal(size=(K, n)))
    tz = expit(bz + noise * rng.normal(size=m))
    rz = expit(bz + noise * rng.normal(size=(K, m)))
    return tx, rx, tz, rz, member


def _auc(s, member):
    return roc_metrics(s[member], s[~member])["auc"]


def test_members_shifted_up_are_detected():
    tx, rx, tz, rz, member = _world(shift=2.0)
    s = rmia_offline(tx, rx, tz, rz)
    assert s.min() >= 0 and s.max() <= 1
    assert _auc(s, member) > 0.8
    # beats the plain confidence threshold, which ignores per-example difficulty
    assert _auc(s, member) > _auc(tx, member) + 0.1


def test_no_signal_gives_chance():
    tx, rx, tz, rz, member = _world(shift=0.0, seed=1)
    assert abs(_auc(rmia_offline(tx, rx, tz, rz), member) - 0.5) < 0.03


def test_single_reference_model_is_enough():
    tx, rx, tz, rz, member = _world(shift=2.0, K=1, seed=2)
    assert _auc(rmia_offline(tx, rx, tz, rz), member) > 0.75


def test_score_is_share_of_population_dominated():
    # One reference, a=1 (Pr = mean_out): ratio_x = 2, population ratios 1, 3, 0.5 -> LR > 1 for 2 of 3.
    s = rmia_offline(np.array([0.4]), np.array([[0.2]]), np.array([0.3, 0.6, 0.1]), np.array([[0.3, 0.2, 0.2]]), a=1.0)
    np.testing.assert_allclose(s, [2 / 3])
    # gamma = 2.5: only the z with ratio 0.5 (LR = 4) counts
    s = rmia_offline(np.array([0.4]), np.array([[0.2]]), np.array([0.3, 0.6, 0.1]), np.array([[0.3, 0.2, 0.2]]),
                     a=1.0, gamma=2.5)
    np.testing.assert_allclose(s, [1 / 3])
    # a = 0.3: Pr(x) = 0.5 * (1.3 * 0.2 + 0.7) = 0.48
    s = rmia_offline(np.array([0.48]), np.array([[0.2]]), np.array([0.48]), np.array([[0.2]]), a=0.3)
    np.testing.assert_allclose(s, [0.0])  # LR exactly 1 is not > gamma


def test_bad_inputs():
    tx, rx, tz, rz, _ = _world(shift=1.0, n=20, m=10)
    with pytest.raises(UnlearnkitError, match="K>=1"):
        rmia_offline(tx, rx[:0], tz, rz[:0])
    with pytest.raises(UnlearnkitError, match="probabilities"):
        rmia_offline(np.log(tx), rx, tz, rz)
    with pytest.raises(UnlearnkitError, match="reference models.*NaN"):
        bad = rx.copy()
        bad[0, 0] = np.nan
        rmia_offline(tx, bad, tz, rz)
    with pytest.raises(UnlearnkitError, match="same reference models"):
        rmia_offline(tx, rx, tz, rz[:2])
    with pytest.raises(UnlearnkitError, match="covers 20 candidates"):
        rmia_offline(tx[:5], rx, tz, rz)
    with pytest.raises(UnlearnkitError, match="a must be"):
        rmia_offline(tx, rx, tz, rz, a=1.5)
