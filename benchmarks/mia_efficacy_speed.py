"""MIA-efficacy at SalUn's CIFAR-10 sizes (10,000 retain vs 10,000 test confidences, 5,000 forget):
the SVC fit, libsvm's own predictions (what audits used before) and `attacks._svc_predict` (now).

Usage: python benchmarks/mia_efficacy_speed.py [N_TEST]

The confidences are drawn like a trained CIFAR-10 model's (true-label logit margins ~ N(6, 3) for
members, N(4, 3) for non-members); both prediction paths must agree exactly.
"""

import sys
import time

import numpy as np
from sklearn.svm import SVC

from unlearnkit.audit.attacks import _svc_predict

n = int(sys.argv[1]) if len(sys.argv) > 1 else 10_000
rng = np.random.default_rng(0)
conf = lambda mean, k: 1 / (1 + np.exp(-rng.normal(mean, 3, k)))  # noqa: E731
X = np.concatenate([conf(6, n), conf(4, n)])[:, None]
y = np.r_[np.ones(n, int), np.zeros(n, int)]
queries = np.concatenate([X[:, 0], conf(5, n // 2)])  # the training set (attack accuracy) and the forget set


def timed(fn):
    w, c = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - w, time.process_time() - c


clf, w, c = timed(lambda: SVC(C=3, gamma="auto", kernel="rbf").fit(X, y))
print(f"fit on {2 * n}: {w:.1f} s wall, {c:.1f} s CPU ({clf.n_support_.sum()} support vectors)")
before, w, c = timed(lambda: clf.predict(queries[:, None]))
print(f"libsvm predict on {len(queries)}: {w:.1f} s wall, {c:.1f} s CPU")
now, w, c = timed(lambda: _svc_predict(clf, queries))
print(f"_svc_predict on {len(queries)}: {w:.1f} s wall, {c:.1f} s CPU; identical: {np.array_equal(before, now)}")
