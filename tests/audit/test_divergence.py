"""Known-answer tests for unlearnkit.audit.divergence."""

import numpy as np
import pytest

from unlearnkit.audit.divergence import js_divergence, kl_divergence
from unlearnkit.audit.scores import softmax
from unlearnkit.errors import UnlearnkitError


def test_identical_outputs_have_zero_divergence():
    z = np.random.default_rng(0).normal(size=(100, 10)) * 5
    assert js_divergence(z, z) == pytest.approx(0.0, abs=1e-12)
    assert kl_divergence(z, z) == pytest.approx(0.0, abs=1e-12)
    assert js_divergence(z, z + 3.0) == pytest.approx(0.0, abs=1e-12)  # softmax is shift-invariant


def test_disjoint_one_hot_is_ln2():
    p = np.array([[100.0, -100.0, -100.0], [-100.0, 100.0, -100.0]])
    q = np.array([[-100.0, 100.0, -100.0], [-100.0, -100.0, 100.0]])
    assert js_divergence(p, q) == pytest.approx(np.log(2.0), abs=1e-9)
    assert js_divergence(p, q) <= np.log(2.0)
    assert kl_divergence(p, q) == pytest.approx(200.0, rel=1e-6)  # finite: computed in log space


def test_matches_direct_formula():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(50, 4)), rng.normal(size=(50, 4))
    p, q = softmax(a), softmax(b)
    m = (p + q) / 2
    kl = lambda x, y: (x * np.log(x / y)).sum(1)  # noqa: E731
    np.testing.assert_allclose(js_divergence(a, b, reduction="none"), 0.5 * kl(p, m) + 0.5 * kl(q, m))
    np.testing.assert_allclose(kl_divergence(a, b, reduction="none"), kl(p, q))
    assert js_divergence(a, b) == pytest.approx(js_divergence(b, a))


def test_bad_inputs():
    z = np.zeros((3, 4))
    with pytest.raises(UnlearnkitError, match="shape"):
        js_divergence(z, np.zeros((3, 5)))
    bad = z.copy()
    bad[0, 0] = np.nan
    with pytest.raises(UnlearnkitError, match="second model.*NaN"):
        js_divergence(z, bad)
    with pytest.raises(UnlearnkitError, match="reduction"):
        kl_divergence(z, z, reduction="sum")
