"""Known-answer tests for unlearnkit.audit.attacks."""

import numpy as np
import pytest
from scipy.stats import norm

from unlearnkit.audit.attacks import _svc_predict, mia_efficacy, mia_member_positions, roc_metrics, seed_attack, threshold_attack
from unlearnkit.audit.scores import true_label_confidence
from unlearnkit.errors import UnlearnkitError


def test_roc_identical_distributions_auc_half():
    rng = np.random.default_rng(0)
    r = roc_metrics(rng.normal(size=20000), rng.normal(size=20000))
    assert abs(r["auc"] - 0.5) < 0.03
    assert r["tpr_at_fpr"][0.01] < 0.03
    assert r["fpr"][0] == 0.0 and r["tpr"][-1] == 1.0


def test_roc_perfect_separation():
    r = roc_metrics(np.linspace(5, 6, 1000), np.linspace(0, 1, 1000))
    assert r["auc"] == 1.0
    assert r["tpr_at_fpr"][0.01] == 1.0 and r["tpr_at_fpr"][0.001] == 1.0
    assert r["best_balanced_accuracy"] == 1.0


@pytest.mark.parametrize("d", [0.5, 1.0, 2.0])
def test_roc_two_gaussians_auc_matches_analytic(d):
    rng = np.random.default_rng(1)
    n = 40000
    r = roc_metrics(rng.normal(d, 1, n), rng.normal(0, 1, n))
    assert abs(r["auc"] - norm.cdf(d / np.sqrt(2))) < 0.01
    # TPR at FPR=1% of the optimal threshold test: 1 - Phi(z_{0.99} - d)
    assert abs(r["tpr_at_fpr"][0.01] - norm.sf(norm.isf(0.01) - d)) < 0.03


def test_tpr_at_fpr_is_conservative():
    # 10 non-members: FPR moves in steps of 0.1; at target 0.05 only FPR=0 counts.
    members = np.array([10.0, 9.0, 8.0, -1.0])
    nonmembers = np.array([9.5] + [0.0] * 9)
    r = roc_metrics(members, nonmembers, fprs=(0.05, 0.1))
    assert r["tpr_at_fpr"][0.05] == 0.25  # only the 10.0 member above the top non-member
    assert r["tpr_at_fpr"][0.1] == 0.75
    assert r["min_resolvable_fpr"] == 0.1


def _member_nonmember_logits(rng, n, c=10, gap=4.0):
    ym = rng.integers(0, c, n)
    yn = rng.integers(0, c, n)
    zm = rng.normal(size=(n, c))
    zn = rng.normal(size=(n, c))
    zm[np.arange(n), ym] += gap + 2.0
    zn[np.arange(n), yn] += 2.0
    return zm, ym, zn, yn


def test_threshold_attack_loss_and_confidence():
    rng = np.random.default_rng(2)
    zm, ym, zn, yn = _member_nonmember_logits(rng, 3000)
    for score in ("loss", "confidence"):
        r = threshold_attack(zm, ym, zn, yn, score=score)
        assert r["auc"] > 0.9 and r["score"] == score
    same = threshold_attack(zm[:1500], ym[:1500], zm[1500:], ym[1500:], score="loss")
    assert abs(same["auc"] - 0.5) < 0.05


def test_seed_attack_separable_and_identical():
    rng = np.random.default_rng(3)
    zm, _, zn, _ = _member_nonmember_logits(rng, 1000, gap=8.0)
    fm, _, fn, _ = _member_nonmember_logits(rng, 1000, gap=8.0)
    res = seed_attack(zm, zn, {"members": (fm, True), "nonmembers": (fn, False),
                               "mixed": (np.concatenate([fm, fn]), np.r_[np.ones(1000), np.zeros(1000)])}, seed=0)
    assert res["n_train_per_class"] == 1000
    assert res["sets"]["mixed"]["accuracy"] > 0.95
    assert res["sets"]["members"]["fnr"] < 0.05
    assert np.isnan(res["sets"]["nonmembers"]["fnr"])
    assert res["sets"]["nonmembers"]["predicted_member_rate"] < 0.05
    assert res["sets"]["nonmembers"]["precision"] == 0.0  # zero_division=0, no members

    # identical distributions (unbalanced sizes: the larger class is subsampled)
    a = rng.normal(size=(2000, 10)) * 2
    b = rng.normal(size=(1000, 10)) * 2
    e = rng.normal(size=(2000, 10)) * 2
    res2 = seed_attack(a, b, {"mix": (e, np.arange(2000) < 1000)}, seed=1)
    assert res2["n_train_per_class"] == 1000
    assert abs(res2["sets"]["mix"]["accuracy"] - 0.5) < 0.05
    assert res2 == seed_attack(a, b, {"mix": (e, np.arange(2000) < 1000)}, seed=1)  # deterministic


def test_mia_efficacy_high_when_forget_looks_like_test_and_low_when_like_retain():
    rng = np.random.default_rng(4)
    zr, yr, zt, yt = _member_nonmember_logits(rng, 2000, gap=5.0)
    zf_mem, yf_mem, zf_non, yf_non = _member_nonmember_logits(rng, 500, gap=5.0)
    forgotten = mia_efficacy(zr, yr, zt, yt, zf_non, yf_non, seed=0)
    remembered = mia_efficacy(zr, yr, zt, yt, zf_mem, yf_mem, seed=0)
    assert forgotten["efficacy"] > 0.8
    assert remembered["efficacy"] < 0.2
    assert forgotten["attack_train_acc"] > 0.8
    assert forgotten == mia_efficacy(zr, yr, zt, yt, zf_non, yf_non, seed=0)


def test_mia_efficacy_caps_class_sizes():
    rng = np.random.default_rng(5)
    zr, yr, zt, yt = _member_nonmember_logits(rng, 800)
    r = mia_efficacy(zr, yr, zt, yt, zt[:10], yt[:10], seed=0, max_per_class=300)
    assert r["n_members"] == 300 and r["n_nonmembers"] == 300


# The reference for the speed-up: the implementation before it, copied verbatim (libsvm's own predict).
def _mia_efficacy_before(
    retain_logits,
    retain_labels,
    test_logits,
    test_labels,
    forget_logits,
    forget_labels,
    seed: int = 0,
    max_per_class: int = 5000,
) -> dict:
    """attacks.mia_efficacy as it was before its predictions were sped up (random members, capped sides)."""
    from sklearn.svm import SVC

    if int(max_per_class) < 1:
        raise UnlearnkitError(f"max_per_class must be >= 1, got {max_per_class}")
    c_ret = true_label_confidence(retain_logits, retain_labels, name="the model (retain_logits)")
    c_test = true_label_confidence(test_logits, test_labels, name="the model (test_logits)")
    c_fgt = true_label_confidence(forget_logits, forget_labels, name="the model (forget_logits)")
    rng = np.random.default_rng(seed)
    n_non = min(len(c_test), int(max_per_class))
    n_mem = min(len(c_ret), n_non)
    test_idx = rng.choice(len(c_test), size=n_non, replace=False) if len(c_test) > n_non else np.arange(n_non)
    ret_idx = rng.choice(len(c_ret), size=n_mem, replace=False)
    X = np.concatenate([c_ret[ret_idx], c_test[test_idx]])[:, None]
    y = np.concatenate([np.ones(n_mem, dtype=np.int64), np.zeros(n_non, dtype=np.int64)])
    clf = SVC(C=3, gamma="auto", kernel="rbf")
    clf.fit(X, y)
    train_acc = float((clf.predict(X) == y).mean())
    efficacy = float(1.0 - clf.predict(c_fgt[:, None]).mean())
    return {"efficacy": efficacy, "attack_train_acc": train_acc, "n_members": int(n_mem), "n_nonmembers": int(n_non)}


@pytest.mark.parametrize("gap,seed", [(0.5, 0), (2.0, 1), (5.0, 2)])
def test_mia_efficacy_gives_the_numbers_of_the_implementation_before_the_speed_up(gap, seed):
    rng = np.random.default_rng(10 + seed)
    zr, yr, zt, yt = _member_nonmember_logits(rng, 1500, gap=gap)
    zf, yf, _, _ = _member_nonmember_logits(rng, 400, gap=gap / 2)
    zr, zt = np.round(zr, 1), np.round(zt, 1)  # repeated confidences, as bf16 logits give
    before = _mia_efficacy_before(zr, yr, zt, yt, zf, yf, seed=seed, max_per_class=1000)
    rng = np.random.default_rng(seed)  # the members the implementation before drew (after the test cap's draw)
    rng.choice(len(zt), size=1000, replace=False)
    members = rng.choice(len(zr), size=1000, replace=False)
    assert mia_efficacy(zr, yr, zt, yt, zf, yf, seed=seed, max_per_class=1000, member_idx=members) == before


def test_mia_members_are_a_random_subset_of_a_class_sorted_retain_set():
    # Our retain order is sorted ids: an image folder's is class by class. SalUn's "first |test|"
    # would take a few classes only; the default takes a seeded random subset of the same size.
    n_ret, n_test, classes = 4000, 1000, 10
    pos = mia_member_positions(n_ret, n_test, seed=3)
    labels = np.repeat(np.arange(classes), n_ret // classes)  # class-sorted
    assert len(pos) == n_test and len(np.unique(pos)) == n_test and np.all(np.diff(pos) > 0)
    assert np.bincount(labels[pos], minlength=classes).min() > 50  # every class present
    assert np.array_equal(pos, mia_member_positions(n_ret, n_test, seed=3))  # seeded
    assert not np.array_equal(pos, mia_member_positions(n_ret, n_test, seed=4))
    assert np.array_equal(mia_member_positions(n_ret, n_test, 3, members="first"), np.arange(n_test))
    assert np.array_equal(mia_member_positions(500, n_test, 3), np.arange(500))  # fewer retain than test: all of it


def test_mia_efficacy_members_option_and_explicit_positions_agree():
    rng = np.random.default_rng(5)
    zr, yr, zt, yt = _member_nonmember_logits(rng, 1200, gap=2.0)
    zf, yf, _, _ = _member_nonmember_logits(rng, 300, gap=1.0)
    default = mia_efficacy(zr, yr, zt, yt, zf, yf, seed=2)
    explicit = mia_efficacy(zr, yr, zt, yt, zf, yf, seed=2, member_idx=mia_member_positions(len(zr), len(zt), 2))
    assert default == explicit
    # a retain subset that holds the members gives the same numbers (what a trial's cheaper audit runs)
    pos = mia_member_positions(len(zr), len(zt), 2)
    keep = np.union1d(pos, np.arange(0, len(zr), 7))
    sub = mia_efficacy(zr[keep], yr[keep], zt, yt, zf, yf, seed=2, member_idx=np.searchsorted(keep, pos))
    assert sub == default
    with pytest.raises(UnlearnkitError, match="member_idx"):
        mia_efficacy(zr, yr, zt, yt, zf, yf, seed=2, member_idx=np.array([len(zr) + 5]))


def test_svc_predict_is_libsvm_predict():
    from sklearn.svm import SVC

    rng = np.random.default_rng(7)
    for n, spread in ((300, 0.3), (1500, 3.0), (800, 8.0)):
        x = 1 / (1 + np.exp(-rng.normal(3, spread, 2 * n)))
        x[: n // 4] = 1.0  # ties at the top
        y = np.r_[np.ones(n, int), np.zeros(n, int)]
        clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x[:, None], y)
        grid = np.concatenate([x, np.linspace(0, 1, 5001), clf.support_vectors_[:, 0]])
        assert np.array_equal(_svc_predict(clf, grid), clf.predict(grid[:, None]))


def test_mia_efficacy_uses_salun_sizes_by_default():
    rng = np.random.default_rng(8)
    zr, yr, zt, yt = _member_nonmember_logits(rng, 700, gap=3.0)
    zf, yf = zr[:50], yr[:50]
    r = mia_efficacy(zr, yr, zt[:400], yt[:400], zf, yf)
    assert r["n_members"] == 400 and r["n_nonmembers"] == 400  # |test| retain samples, all of test
    # members="first" (SalUn's rule): the FIRST 400 retain samples, the rest of retain changes nothing
    r = mia_efficacy(zr, yr, zt[:400], yt[:400], zf, yf, members="first")
    assert r["n_members"] == 400 and r["n_nonmembers"] == 400
    shuffled = np.r_[np.arange(400), 400 + rng.permutation(300)]
    assert mia_efficacy(zr[shuffled], yr[shuffled], zt[:400], yt[:400], zf, yf, members="first") == r
    first = true_label_confidence(zr[:400], yr[:400])
    assert len(np.unique(first)) == 400  # (so a different member set would give different inputs)
    with pytest.raises(UnlearnkitError, match="members must be one of"):
        mia_efficacy(zr, yr, zt, yt, zf, yf, members="last")


def test_bad_inputs():
    rng = np.random.default_rng(6)
    zm, ym, zn, yn = _member_nonmember_logits(rng, 20)
    bad = zm.copy()
    bad[3, 2] = np.nan
    with pytest.raises(UnlearnkitError, match="member_logits.*NaN"):
        threshold_attack(bad, ym, zn, yn)
    with pytest.raises(UnlearnkitError, match="one label per example"):
        threshold_attack(zm, ym[:5], zn, yn)
    with pytest.raises(UnlearnkitError, match="score must be"):
        threshold_attack(zm, ym, zn, yn, score="entropy")
    with pytest.raises(UnlearnkitError, match="classes"):
        threshold_attack(zm, ym, zn[:, :5], yn % 5)
    with pytest.raises(UnlearnkitError, match="member_scores.*NaN"):
        roc_metrics(np.array([np.nan, 1.0]), np.array([0.0]))
    with pytest.raises(UnlearnkitError, match="empty"):
        roc_metrics(np.array([]), np.array([0.0]))
    with pytest.raises(UnlearnkitError, match="fprs"):
        roc_metrics(np.array([1.0]), np.array([0.0]), fprs=(0.0,))
    with pytest.raises(UnlearnkitError, match="forget_logits.*NaN"):
        mia_efficacy(zm, ym, zn, yn, bad, ym, seed=0)
    with pytest.raises(UnlearnkitError, match="is_member"):
        seed_attack(zm, zn, {"x": (zn, np.ones(3, bool))})
    with pytest.raises(UnlearnkitError, match="eval set 'x'.*NaN"):
        seed_attack(zm, zn, {"x": (bad, True)})
