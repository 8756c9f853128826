"""A pool of reference ("shadow") models for LiRA and RMIA, built once and reused.

`build_refs(run, k)` trains ``k`` models with the run's own recipe (its ``config.json``), each on
a seeded random half of the *training pool* -- the split's ``train`` and ``val`` parts together --
and stores, per model, only small per-example arrays: its membership mask over the pool and the
logit-scaled confidence and true-label probability of every pool sample and every test sample.
The weights are not kept.

Models come in complementary pairs: model ``2j`` trains on a random half ``H_j`` of the pool and
model ``2j + 1`` on the other half. So every pool sample is IN exactly ``k / 2`` models and OUT of
the other ``k / 2`` (what LiRA's per-example Gaussians need), and adding models later (a larger
``--k``) only adds pairs; finished pairs stay valid.

Layout of a pool directory (default ``RUN/refs``)::

    refs.json      what the pool is for: dataset fingerprint, recipe, seed, pool/test sizes
    pool.npz       sample ids of the pool (in the order of every array) and of the test set
    ref-000.npz    in_mask (pool,) bool, pool_lsc, pool_prob (pool,), test_lsc, test_prob (test,)
    ref-000.ckpt   per-epoch training state while model 0 trains (removed when it finishes)

Every file is written atomically; a build killed at any point continues where it stopped when
run again with the same arguments (finished models are reused, the model in training resumes
from its last epoch).
"""

from __future__ import annotations

import hashlib
import io
import json
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import UnlearnkitError
from unlearnkit.runs import atomic_write_bytes, atomic_write_json, read_json

from .scores import check_finite, logit_scaled_confidence, true_label_confidence

__all__ = ["RefPool", "build_refs", "load_refs", "REFS_FORMAT"]

REFS_FORMAT = 1
MANIFEST = "refs.json"
POOL_FILE = "pool.npz"


def _model_file(k: int) -> str:
    return f"ref-{k:03d}.npz"


def _ids_digest(ids: np.ndarray) -> str:
    h = hashlib.sha256()
    for s in ids.tolist():
        h.update(str(s).encode())
        h.update(b"\0")
    return h.hexdigest()


def pair_mask(n_pool: int, k: int, seed: int) -> np.ndarray:
    """Membership mask of reference model ``k`` over a pool of ``n_pool`` samples.

    Pair ``j = k // 2`` draws a random half from its own seeded stream; the even model takes
    that half, the odd one its complement.
    """
    from unlearnkit.training.data import stream_seed  # noqa: PLC0415

    rng = np.random.default_rng(stream_seed(seed, "refs-pair", k // 2))
    half = rng.permutation(n_pool)[: n_pool // 2]
    mask = np.zeros(n_pool, dtype=bool)
    mask[half] = True
    return mask if k % 2 == 0 else ~mask


def _model_seed(seed: int, k: int) -> int:
    from unlearnkit.training.data import stream_seed  # noqa: PLC0415

    return stream_seed(seed, "refs-model", k) % (2**31)


@dataclass
class RefPool:
    """A loaded pool: ``K`` finished reference models (complete pairs only), as arrays.

    ``in_mask``, ``pool_lsc``, ``pool_prob`` have shape ``(K, n_pool)``; ``test_lsc`` and
    ``test_prob`` ``(K, n_test)``; model ``i`` belongs to pair ``i // 2`` (rows are in order).
    """

    dir: Path
    manifest: dict[str, Any]
    pool_ids: np.ndarray
    test_ids: np.ndarray
    in_mask: np.ndarray
    pool_lsc: np.ndarray
    pool_prob: np.ndarray
    test_lsc: np.ndarray
    test_prob: np.ndarray
    n_finished: int  # finished model files, including an unpaired last one (not used)

    @property
    def k(self) -> int:
        return int(self.in_mask.shape[0])

    @property
    def fingerprint(self) -> str:
        return str(self.manifest["dataset_fingerprint"])

    def positions(self, ids: np.ndarray, what: str) -> np.ndarray:
        """Indices into the pool arrays of the samples with these ids."""
        index = {str(s): i for i, s in enumerate(self.pool_ids.tolist())}
        out = np.empty(len(ids), dtype=np.int64)
        for j, sid in enumerate(np.asarray(ids).tolist()):
            pos = index.get(str(sid))
            if pos is None:
                raise UnlearnkitError(
                    f"reference pool {self.dir} does not cover {what} sample {sid!r}: it was built from another "
                    "split of this dataset; build a pool from this run (unlearnkit refs build RUN)"
                )
            out[j] = pos
        return out

    def out_pairs(self, pos: np.ndarray, values: np.ndarray) -> np.ndarray:
        """``(K/2, n)``: for each pair, the value under the model of that pair that is OUT of each pool sample."""
        return self.out_of_mask(values[:, pos], self.in_mask[:, pos])

    def test_mask(self, seed: int = 0) -> np.ndarray:
        """``(K, n_test)`` pseudo-IN mask: per pair, one of its two models chosen at random per test sample.

        Test samples are OUT of every reference model, forget/val samples of only K/2. Masking one model
        per pair gives test samples the same number (K/2) of OUT models, so per-example Gaussian fits
        (and RMIA's OUT means) are equally noisy on both sides of a forget-vs-test comparison; otherwise
        the noisier side gets more extreme scores and the ROC is biased.
        """
        from unlearnkit.training.data import stream_seed  # noqa: PLC0415

        rng = np.random.default_rng(stream_seed(seed, "refs-test-mask"))
        even = rng.random((self.k // 2, len(self.test_ids))) < 0.5
        mask = np.empty((self.k, len(self.test_ids)), dtype=bool)
        mask[0::2], mask[1::2] = even, ~even
        return mask

    def out_of_mask(self, values: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """``(K/2, n)``: per pair, the value of the model that ``mask`` marks OUT (``values``, ``mask``: (K, n))."""
        return np.where(mask[0::2], values[1::2], values[0::2])


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    atomic_write_bytes(path, buf.getvalue())


def _read_npz(path: Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray] | None:
    """The arrays of a finished npz file, or None when it is unreadable or incomplete."""
    try:
        with np.load(path, allow_pickle=False) as z:
            if any(k not in z.files for k in keys):
                return None
            return {k: z[k] for k in keys}
    except (OSError, ValueError, EOFError) as exc:
        raise UnlearnkitError(f"{what} {path} is damaged ({exc}); delete it and run `unlearnkit refs build` again") from None


_MODEL_KEYS = ("in_mask", "pool_lsc", "pool_prob", "test_lsc", "test_prob")


def _expected_manifest(loaded, seed: int) -> dict[str, Any]:
    bundle = loaded.split.bundle
    return {
        "format": REFS_FORMAT,
        "dataset_fingerprint": bundle.fingerprint,
        "dataset": bundle.name,
        "seed": int(seed),
        "recipe": loaded.config.recipe(),
        "normalizer": loaded.info["normalizer"],
        "n_pool": int(len(bundle.train.labels)),
        "n_test": int(len(bundle.test.labels)),
        "pool_ids_sha256": _ids_digest(bundle.train.ids),
        "test_ids_sha256": _ids_digest(bundle.test.ids),
    }


def _check_same_pool(out: Path, saved: dict, expected: dict) -> None:
    for key in ("format", "dataset_fingerprint", "seed", "recipe", "pool_ids_sha256", "test_ids_sha256", "normalizer"):
        if saved.get(key) != expected.get(key):
            what = {
                "dataset_fingerprint": "another dataset", "seed": f"seed {saved.get('seed')} (now {expected['seed']})",
                "recipe": "another training recipe", "format": "another unlearnkit version",
            }.get(key, f"another {key}")
            raise UnlearnkitError(
                f"reference pool {out} was built for {what}; pass the same run and --seed to continue it, "
                "or choose a new --out"
            )


def build_refs(run: str | Path, k: int, out: str | Path | None = None, *, seed: int = 0,
               data: str | None = None) -> RefPool:
    """Train (or finish training) ``k`` reference models for the run at ``run``; return the pool.

    ``k`` must be even (complementary pairs).  ``out`` defaults to ``RUN/refs``.  Models already
    finished in ``out`` are reused; so is the partial state of one that was killed mid-training.
    """
    from unlearnkit.training.data import TensorSet  # noqa: PLC0415
    from unlearnkit.training.loop import fit, predict_logits, progress  # noqa: PLC0415
    from unlearnkit.training.pipeline import build_model, load_run  # noqa: PLC0415

    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 2 or k % 2:
        raise UnlearnkitError(
            f"--k must be an even number >= 2 (reference models come in complementary pairs so every sample "
            f"is IN exactly half of them), got {k}"
        )
    loaded = load_run(run, data=data)
    from unlearnkit.importer import require_recipe  # noqa: PLC0415

    require_recipe(loaded.info, f"run {loaded.dir.path}")  # reference models are trained with the run's recipe
    out = Path(out) if out is not None else loaded.dir.path / "refs"
    if out.exists() and not out.is_dir():
        raise UnlearnkitError(f"--out {out} exists and is not a directory; choose another --out")
    expected = _expected_manifest(loaded, seed)
    if (out / MANIFEST).is_file():
        saved = read_json(out / MANIFEST, "reference pool manifest")
        _check_same_pool(out, saved, expected)
        manifest = saved
    elif out.is_dir() and any(out.iterdir()):
        raise UnlearnkitError(f"--out {out} is not empty and holds no reference pool ({MANIFEST}); choose a new --out")
    else:
        manifest = {**expected, "source_run": str(loaded.dir.path.resolve()),
                    "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
    manifest["k"] = max(int(k), int(manifest.get("k", 0)))
    bundle = loaded.split.bundle
    out.mkdir(parents=True, exist_ok=True)
    if not (out / POOL_FILE).is_file():
        _save_npz(out / POOL_FILE, pool_ids=bundle.train.ids, test_ids=bundle.test.ids)
    atomic_write_json(out / MANIFEST, manifest)

    rt, norm, cfg = loaded.runtime, loaded.normalizer, loaded.config
    pool_labels = bundle.train.labels
    test_set = TensorSet.from_numpy(bundle.test.images, bundle.test.labels, rt)
    todo = [i for i in range(k) if not (out / _model_file(i)).is_file()]
    for i in set(range(k)) - set(todo):  # killed between saving the scores and removing the checkpoint
        (out / f"ref-{i:03d}.ckpt").unlink(missing_ok=True)
    bar = progress(todo, total=k, desc="reference models", initial=k - len(todo), unit="model")
    for i in bar:
        t0 = time.perf_counter()
        mask = pair_mask(len(pool_labels), i, seed)
        model_seed = _model_seed(seed, i)
        model = loaded.runtime.model(build_model(cfg, loaded.split, seed=model_seed))
        members = TensorSet.from_numpy(bundle.train.images[mask], pool_labels[mask], rt)
        ckpt = out / f"ref-{i:03d}.ckpt"
        fit(model, members, cfg.train, rt, norm, seed=model_seed, checkpoint=ckpt, desc=f"ref {i + 1}/{k}")
        pool_logits = predict_logits(model, TensorSet.from_numpy(bundle.train.images, pool_labels, rt), norm, rt,
                                     cfg.train.eval_batch_size).numpy()
        test_logits = predict_logits(model, test_set, norm, rt, cfg.train.eval_batch_size).numpy()
        name = f"reference model {i} in {out}"
        check_finite(pool_logits, name)
        check_finite(test_logits, name)
        _save_npz(
            out / _model_file(i),
            in_mask=mask,
            pool_lsc=logit_scaled_confidence(pool_logits, pool_labels, name),
            pool_prob=true_label_confidence(pool_logits, pool_labels, name),
            test_lsc=logit_scaled_confidence(test_logits, bundle.test.labels, name),
            test_prob=true_label_confidence(test_logits, bundle.test.labels, name),
            seed=np.asarray(model_seed),
            seconds=np.asarray(time.perf_counter() - t0),
        )
        ckpt.unlink(missing_ok=True)
    bar.close()
    return load_refs(out)


def load_refs(path: str | Path) -> RefPool:
    """Read a pool directory; only complete pairs of finished models are used."""
    path = Path(path)
    if not path.is_dir():
        raise UnlearnkitError(f"reference pool {path} does not exist; build one with `unlearnkit refs build RUN --k 8`")
    manifest = read_json(path / MANIFEST, "reference pool manifest")
    if manifest.get("format") != REFS_FORMAT:
        raise UnlearnkitError(f"reference pool {path} has format {manifest.get('format')!r}; rebuild it with this version")
    ids = _read_npz(path / POOL_FILE, ("pool_ids", "test_ids"), "reference pool file")
    if ids is None:
        raise UnlearnkitError(f"reference pool file {path / POOL_FILE} is incomplete; delete {path} and rebuild it")
    finished = []
    i = 0
    while (path / _model_file(i)).is_file():
        arrays = _read_npz(path / _model_file(i), _MODEL_KEYS, "reference model file")
        if arrays is None:
            raise UnlearnkitError(f"reference model file {path / _model_file(i)} is incomplete; delete it and rebuild")
        finished.append(arrays)
        i += 1
    usable = len(finished) - len(finished) % 2
    if usable < 2:
        raise UnlearnkitError(
            f"reference pool {path} has {len(finished)} finished model(s); it needs at least one complete pair (2): "
            "finish it with `unlearnkit refs build RUN --k K --out " + str(path) + "`"
        )
    stack = {key: np.stack([a[key] for a in finished[:usable]]) for key in _MODEL_KEYS}
    n_pool, n_test = len(ids["pool_ids"]), len(ids["test_ids"])
    if stack["in_mask"].shape != (usable, n_pool) or stack["test_lsc"].shape != (usable, n_test):
        raise UnlearnkitError(f"reference pool {path} holds arrays of inconsistent sizes; delete it and rebuild")
    return RefPool(path, manifest, ids["pool_ids"], ids["test_ids"], stack["in_mask"].astype(bool),
                   stack["pool_lsc"], stack["pool_prob"], stack["test_lsc"], stack["test_prob"], len(finished))


def describe(pool: RefPool) -> dict[str, Any]:
    """What audit.json records about the pool used."""
    return {
        "path": str(pool.dir.resolve()),
        "k": pool.k,
        "k_finished": pool.n_finished,
        "k_requested": int(pool.manifest.get("k", pool.k)),
        "seed": pool.manifest.get("seed"),
        "n_pool": int(len(pool.pool_ids)),
        "recipe": json.loads(json.dumps(pool.manifest.get("recipe"))),
    }
