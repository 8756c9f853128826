"""Known-answer tests for unlearnkit.audit.scores."""

import numpy as np
import pytest

from unlearnkit.audit.scores import (
    check_finite,
    cross_entropy,
    logit_scaled_confidence,
    softmax,
    true_label_confidence,
)
from unlearnkit.errors import UnlearnkitError


def test_softmax_stable_and_normalised():
    z = np.array([[1000.0, 1000.0, -1000.0], [0.0, np.log(3.0), 0.0]])
    p = softmax(z)
    assert np.all(np.isfinite(p))
    np.testing.assert_allclose(p.sum(axis=1), 1.0)
    np.testing.assert_allclose(p[0], [0.5, 0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(p[1], [0.2, 0.6, 0.2])


def test_confidence_and_cross_entropy_agree():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(50, 10)) * 3
    y = rng.integers(0, 10, size=50)
    p = softmax(z)[np.arange(50), y]
    np.testing.assert_allclose(true_label_confidence(z, y), p)
    np.testing.assert_allclose(cross_entropy(z, y), -np.log(p))


def test_logit_scaled_confidence_matches_definition_for_moderate_p():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(200, 5))
    y = rng.integers(0, 5, size=200)
    p = softmax(z)[np.arange(200), y]
    np.testing.assert_allclose(logit_scaled_confidence(z, y), np.log(p / (1 - p)), rtol=1e-10, atol=1e-10)


def test_logit_scaled_confidence_finite_at_saturation():
    z2 = np.array([[100.0, -100.0], [100.0, -100.0]])
    out = logit_scaled_confidence(z2, np.array([0, 1]))
    np.testing.assert_allclose(out, [200.0, -200.0])
    out3 = logit_scaled_confidence(np.array([[800.0, 0.0, 0.0]]), np.array([0]))
    np.testing.assert_allclose(out3, [800.0 - np.log(2.0)])


def test_check_finite_names_the_model():
    with pytest.raises(UnlearnkitError, match="outputs of the unlearned model contain NaN.*diverged"):
        check_finite(np.array([1.0, np.nan]), "the unlearned model")
    with pytest.raises(UnlearnkitError, match="contain inf"):
        check_finite(np.array([1.0, np.inf]), "model 3")
    np.testing.assert_array_equal(check_finite([1, 2], "m"), [1.0, 2.0])


@pytest.mark.parametrize(
    "logits, labels, pattern",
    [
        (np.array([[0.0, np.nan]]), np.array([0]), "NaN"),
        (np.zeros((2, 3)), np.array([0]), "one label per example"),
        (np.zeros((2, 3)), np.array([0, 3]), "outside"),
        (np.zeros((0, 3)), np.zeros(0, dtype=int), "empty"),
        (np.zeros(3), np.array([0]), "shape"),
        (np.zeros((2, 1)), np.array([0, 0]), "C >= 2"),
        (np.zeros((2, 3)), np.array([0.5, 1.0]), "integer"),
    ],
)
def test_bad_inputs_raise_one_line(logits, labels, pattern):
    with pytest.raises(UnlearnkitError, match=pattern) as info:
        logit_scaled_confidence(logits, labels)
    assert "\n" not in str(info.value)
