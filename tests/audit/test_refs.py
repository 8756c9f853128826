"""The reference-model pool: complementary halves, resumable after a kill, used by LiRA and RMIA."""

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from unlearnkit.audit import audit, build_refs, load_refs
from unlearnkit.cli.main import main
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods import forget_run


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="module")
def pool(digits_run, tmp_path_factory):
    """K=4 pool built through a simulated kill: model 1 is interrupted, then the build is re-run."""
    torch.set_num_threads(1)
    base = tmp_path_factory.mktemp("refs")
    out = base / "pool"
    import unlearnkit.training.loop as loop  # build_refs imports fit from here at call time

    calls = {"n": 0}
    original_fit = loop.fit

    def flaky_fit(*args, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C while model 1 trained
        return original_fit(*args, **kw)

    mp = pytest.MonkeyPatch()
    mp.setattr(loop, "fit", flaky_fit)
    with pytest.raises(KeyboardInterrupt):
        build_refs(digits_run, 2, out)
    mp.undo()
    assert (out / "ref-000.npz").is_file() and not (out / "ref-001.npz").exists()
    first_mtime = (out / "ref-000.npz").stat().st_mtime_ns
    built = build_refs(digits_run, 4, out)
    return SimpleNamespace(dir=out, pool=built, first_mtime=first_mtime, base=base)


def test_pool_is_complementary_halves_and_resumed_after_a_kill(pool, digits_run):
    p = pool.pool
    assert p.k == 4 and p.n_finished == 4
    assert (pool.dir / "ref-000.npz").stat().st_mtime_ns == pool.first_mtime  # reused, not retrained
    assert not list(pool.dir.glob("*.ckpt")) and not list(pool.dir.glob(".*tmp"))
    n_pool = len(p.pool_ids)
    assert p.in_mask.shape == (4, n_pool) == p.pool_lsc.shape == p.pool_prob.shape
    assert (p.in_mask.sum(axis=0) == 2).all()  # every sample IN exactly K/2 models
    assert (p.in_mask[0] == ~p.in_mask[1]).all() and (p.in_mask[2] == ~p.in_mask[3]).all()
    assert abs(p.in_mask[0].sum() - n_pool / 2) <= 1
    assert not (p.in_mask[0] == p.in_mask[2]).all()  # pairs draw different halves
    assert ((p.pool_prob >= 0) & (p.pool_prob <= 1)).all() and np.isfinite(p.test_lsc).all()
    # members are fitted better than non-members by each reference model
    for k in range(4):
        assert p.pool_lsc[k, p.in_mask[k]].mean() > p.pool_lsc[k, ~p.in_mask[k]].mean()
    manifest = json.loads((pool.dir / "refs.json").read_text())
    assert manifest["k"] == 4 and manifest["n_pool"] == n_pool and manifest["recipe"]["train"]["epochs"] == 8
    # the pool covers the whole training pool: train + val of the run's split
    from unlearnkit.training.pipeline import load_run

    split = load_run(digits_run).split
    assert n_pool == len(split.train_idx) + len(split.val_idx)
    # building again with the same K does nothing
    again = build_refs(digits_run, 4, pool.dir)
    assert (again.in_mask == p.in_mask).all()


def test_audit_with_refs_reports_lira_and_rmia(pool, digits_run, tmp_path):
    forget_run(digits_run, "finetune", "random:0.1", tmp_path / "ft")
    forget_run(digits_run, "retrain", "random:0.1", tmp_path / "rt", hparams={"epochs": 4})
    result = audit(tmp_path / "ft", reference=tmp_path / "rt", refs=pool.dir, write=False, plots=False)
    ra = result.to_dict()["reference_attacks"]
    assert set(ra) == {"original", "unlearned", "retrained"}
    # a model that never saw the forget set: forget and test look alike to every attack (no estimator bias
    # from test samples having more OUT models than forget samples)
    for name in ("lira_offline", "lira_online", "rmia_offline"):
        assert abs(ra["retrained"][name]["auc"] - 0.5) < 0.1, (name, ra["retrained"][name]["auc"])
    n_forget = result.run["n_forget"]
    for role, attacks in ra.items():
        assert set(attacks) == {"lira_offline", "lira_online", "rmia_offline"}
        for name, res in attacks.items():
            assert 0 <= res["auc"] <= 1 and set(res["tpr_at_fpr"]) == {"0.01", "0.001"}
            assert res["n_members"] == n_forget
        assert attacks["lira_offline"]["pair"] == "forget vs test" and attacks["lira_online"]["pair"] == "forget vs val"
        assert attacks["rmia_offline"]["n_nonmembers"] == result.accuracy[role]["n"]["test"]
        assert attacks["lira_online"]["n_nonmembers"] == result.accuracy[role]["n"]["val"]
    assert result.refs["k"] == 4
    for key in ("lira_offline/unlearned", "lira_online/original", "rmia_offline/unlearned"):
        assert key in result.timings


def test_too_few_reference_models_is_one_line_saying_how_many(pool, digits_run, tmp_path, capsys):
    two = tmp_path / "two"
    two.mkdir()
    for name in ("refs.json", "pool.npz", "ref-000.npz", "ref-001.npz"):
        shutil.copy(pool.dir / name, two / name)
    run = tmp_path / "ft"
    forget_run(digits_run, "finetune", "random:0.1", run)
    code = main(["audit", str(run), "--refs", str(two), "--no-plots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("error: ")
    assert "K=2" in err[0] and "needs each example OUT of at least 2" in err[0] and "K>=4" in err[0]
    assert "--fix-variance" in err[0]
    assert not (run / "audit.json").exists() and not (run / "report.html").exists()
    # one global variance needs one IN and one OUT model per sample: a single pair is enough
    result = audit(run, refs=two, fix_variance=True, original=False, write=False, plots=False)
    assert result.reference_attacks["unlearned"]["lira_online"]["fix_variance"] is True


def test_pool_mismatches_and_bad_k(pool, digits_run, tmp_path, capsys):
    with pytest.raises(UnlearnkitError, match="was built for seed 0 \\(now 1\\)"):
        build_refs(digits_run, 4, pool.dir, seed=1)
    code = main(["refs", "build", str(digits_run), "--k", "3", "--out", str(tmp_path / "odd")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--k must be an even number >= 2" in err[0]
    assert not (tmp_path / "odd").exists()
    # a pool from another dataset is refused by the audit
    other = tmp_path / "other"
    shutil.copytree(pool.dir, other)
    manifest = json.loads((other / "refs.json").read_text())
    manifest["dataset_fingerprint"] = "f" * 64
    (other / "refs.json").write_text(json.dumps(manifest))
    run = tmp_path / "ft"
    forget_run(digits_run, "finetune", "random:0.1", run)
    with pytest.raises(UnlearnkitError, match="was built on another dataset"):
        audit(run, refs=other, write=False, plots=False)
    with pytest.raises(UnlearnkitError, match="does not exist"):
        load_refs(tmp_path / "nope")
