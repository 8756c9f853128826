"""The audit's on-disk caches, both keyed by content and both safe to delete.

* logits: one model's outputs on the exact samples of one part (`_forward`), so the original and
  the retrained reference run their forward passes once per bench, not once per audited method;
* results: one model's audit numbers (`cached_results`), so their attacks (the MIA-efficacy SVC
  above all) are not refitted for every method audited against them either.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .. import scores
from .common import CPU_BATCH
from .loading import _Model

def _logits_cache(lr, part: str, ids: np.ndarray) -> Path | None:
    """Where one model's logits on these samples are cached, keyed by content.

    A bench audits every method against the same retrained and original models, whose forward
    passes would otherwise be repeated for each method (they dominate an audit's time). The key
    holds the model file's sha256, the architecture options, normaliser, precision and the exact
    sample ids, so another model, split or setting never hits a stale entry.
    UNLEARNKIT_LOGIT_CACHE=0 turns it off.
    """
    from unlearnkit.data.cache import entry_path, file_digest, make_key, resolve_cache_dir  # noqa: PLC0415
    from unlearnkit.training.pipeline import MODEL_FILE  # noqa: PLC0415

    if os.environ.get("UNLEARNKIT_LOGIT_CACHE", "1") == "0":
        return None
    weights = lr.dir.file(MODEL_FILE)
    key = make_key({
        "kind": "logits", "weights": file_digest(weights), "model": dataclasses.asdict(lr.config.model),
        "normalizer": [list(lr.normalizer.mean), list(lr.normalizer.std)],
        "precision": lr.runtime.describe(), "fingerprint": lr.split.bundle.fingerprint, "part": part,
        "ids": hashlib.sha256(np.ascontiguousarray(ids).astype(str).tobytes()).hexdigest(),
    })
    return entry_path(resolve_cache_dir() / "logits", f"logits-{part}", key)


def eval_batch(lr) -> int:
    """The inference batch of a run's forward passes: its eval_batch_size, capped on a CPU (`CPU_BATCH`)."""
    batch = lr.config.train.eval_batch_size
    return min(batch, CPU_BATCH) if lr.runtime.device.type == "cpu" else batch


def part_logits(lr, net, images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Raw (float32) logits of `net` on these images: the one forward pass the logit cache holds."""
    from unlearnkit.training.data import TensorSet  # noqa: PLC0415
    from unlearnkit.training.loop import predict_logits  # noqa: PLC0415

    return predict_logits(net, TensorSet.from_numpy(images, labels, lr.runtime), lr.normalizer, lr.runtime,
                          eval_batch(lr)).numpy()


def store_logits(lr, logits: dict[str, np.ndarray]) -> None:
    """Put a finished run's raw logits on whole parts of its split into the logit cache.

    `unlearnkit forget` evaluates the unlearned model on every part with `part_logits`, the
    audit's own forward; storing them spares the audit of that run a second pass over 60k images.
    """
    from unlearnkit.data.cache import write_entry  # noqa: PLC0415

    for part, raw in logits.items():
        cached = _logits_cache(lr, part, lr.split.part(part).ids)
        if cached is not None:
            write_entry(cached, {"logits": np.asarray(raw)})


def _forward(model: _Model, parts: Sequence[str], seed: int, subsample: dict[str, int] | None = None,
             take: dict[str, np.ndarray] | None = None) -> None:
    """Fill `model` with logits (float64, checked finite) on each part of the target split.

    `subsample` caps a part at a seeded random subset of that size; `take` gives a part's exact
    positions (sorted) instead.
    """
    from unlearnkit.data.cache import read_entry, write_entry  # noqa: PLC0415
    from unlearnkit.training.data import stream_seed  # noqa: PLC0415

    lr = model.loaded
    net = None  # loaded on the first cache miss
    split = lr.split
    for part in parts:
        p = split.part(part)
        n = len(p.labels)
        idx = np.arange(n)
        cap = (subsample or {}).get(part)
        if cap is not None and n > cap:
            rng = np.random.default_rng(stream_seed(seed, "audit-subsample", part))
            idx = np.sort(rng.choice(n, size=cap, replace=False))
        if (take or {}).get(part) is not None:
            idx = np.asarray(take[part], dtype=np.int64)
        images, labels = p.images[idx], p.labels[idx]
        cached = _logits_cache(lr, part, p.ids[idx])
        entry = read_entry(cached) if cached is not None else None
        if entry is None and len(idx) < n:  # a subset: the whole part's logits (e.g. stored by `forget`) hold it
            whole = _logits_cache(lr, part, p.ids)
            full = read_entry(whole) if whole is not None else None
            if full is not None and full["logits"].shape[0] == n:
                entry = {"logits": full["logits"][idx]}
        if entry is not None and entry["logits"].shape[0] == len(idx):
            logits = entry["logits"].astype(np.float64)
        else:
            net = net if net is not None else lr.load_model()
            raw = part_logits(lr, net, images, labels)
            if cached is not None:
                write_entry(cached, {"logits": raw})
            logits = raw.astype(np.float64)
        model.logits[part] = scores.check_finite(logits, model.name)
        model.labels[part] = np.asarray(labels, dtype=np.int64)
        model.ids[part] = p.ids[idx]
        model.n_full[part] = n


def model_outputs(run: str | Path, parts: Sequence[str] = ("forget", "test")) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """``{part: (logits, labels)}`` of a finished run on whole parts of its own split.

    Goes through the audit's logit cache, so after an audit (or a bench) it costs no forward pass.
    """
    from unlearnkit.training.pipeline import load_run  # noqa: PLC0415

    m = _Model("unlearned", load_run(run))
    _forward(m, parts, seed=0)
    return {part: (m.logits[part], m.labels[part]) for part in parts}



# --------------------------------------------------------------------------- result cache

RESULT_CACHE_ENV = "UNLEARNKIT_RESULT_CACHE"
# The modules whose code determines a model's numbers: any edit to them changes the key. Besides the
# attacks: refs.py (the pool's OUT selections and test mask), loading.py (a model's confidences and
# losses) and this module (how the numbers are stored and read back).
_RESULT_CODE = ("attacks.py", "scores.py", "lira.py", "rmia.py", "refs.py", "pipeline/per_model.py", "pipeline/common.py",
                "pipeline/loading.py", "pipeline/caches.py")


@functools.lru_cache(maxsize=1)
def _code_digest() -> str:
    root = Path(__file__).resolve().parents[1]
    h = hashlib.sha256()
    for name in _RESULT_CODE:
        h.update(name.encode())
        h.update((root / name).read_bytes())
    return h.hexdigest()


def _outputs_digest(m: _Model) -> str:
    """sha256 of what the numbers are computed from: per part, the sample ids, labels and logits."""
    h = hashlib.sha256()
    for part in sorted(m.logits):
        h.update(part.encode())
        h.update(np.ascontiguousarray(m.ids[part]).astype(str).tobytes())
        h.update(np.ascontiguousarray(m.labels[part], dtype=np.int64).tobytes())
        h.update(np.ascontiguousarray(m.logits[part], dtype=np.float64).tobytes())
    return h.hexdigest()


def _pool_digest(pool, seed: int) -> str | None:
    if pool is None:
        return None
    h = hashlib.sha256()
    for arr in (pool.pool_ids.astype(str), pool.test_ids.astype(str), pool.in_mask, pool.pool_lsc, pool.pool_prob,
                pool.test_lsc, pool.test_prob, pool.test_mask(seed)):
        h.update(np.ascontiguousarray(arr).tobytes())
    return h.hexdigest()


def result_cache_path(m: _Model, options: dict[str, Any], pool) -> Path | None:
    """Where one model's audit numbers are cached, keyed by content; None when the cache is off.

    The key holds the sha256 of the model's outputs on the exact samples audited (its logits, which
    the logit cache keys by the model file's sha256, architecture, normaliser and precision; the
    sample ids; the labels), every option that changes a number (seed, MIA-efficacy sizes, classes,
    LiRA variance, FPR targets), the reference pool's contents, the library versions and a digest
    of the code that computes the numbers: another model, forget set, split, option or code never
    hits a stale entry. UNLEARNKIT_RESULT_CACHE=0 turns it off.
    """
    import scipy  # noqa: PLC0415
    import sklearn  # noqa: PLC0415

    from unlearnkit import __version__  # noqa: PLC0415
    from unlearnkit.data.cache import entry_path, make_key, resolve_cache_dir  # noqa: PLC0415

    if os.environ.get(RESULT_CACHE_ENV, "1") == "0":
        return None
    # scipy: scores.py's logsumexp computes every confidence and loss.
    versions = {"unlearnkit": __version__, "numpy": np.__version__, "sklearn": sklearn.__version__, "scipy": scipy.__version__}
    key = make_key({
        "kind": "audit-results", "outputs": _outputs_digest(m), "options": options, "pool": _pool_digest(pool, options["seed"]),
        "code": _code_digest(), "versions": versions,
    })
    return entry_path(resolve_cache_dir() / "results", "results", key)


def _to_json(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)


def write_results(path: Path, per: dict[str, Any], curves: dict[str, tuple]) -> None:
    """Store one model's numbers (JSON, NaN kept) and ROC curves; a cache that cannot be written only warns."""
    from unlearnkit.data.cache import write_entry  # noqa: PLC0415

    names = list(curves)
    doc = json.dumps({"per": per, "curves": [[n, float(curves[n][2])] for n in names]}, default=_to_json)
    arrays = {"json": np.frombuffer(doc.encode("utf-8"), dtype=np.uint8)}
    for i, n in enumerate(names):
        arrays[f"fpr{i}"], arrays[f"tpr{i}"] = np.asarray(curves[n][0]), np.asarray(curves[n][1])
    write_entry(path, arrays)


def read_results(path: Path) -> tuple[dict[str, Any], dict[str, tuple]] | None:
    """What :func:`write_results` stored, or None (absent; a damaged entry is deleted)."""
    from unlearnkit.data.cache import discard_entry, read_entry  # noqa: PLC0415

    entry = read_entry(path)
    if entry is None:
        return None
    try:
        doc = json.loads(entry["json"].tobytes().decode("utf-8"))
        curves = {n: (entry[f"fpr{i}"], entry[f"tpr{i}"], auc) for i, (n, auc) in enumerate(doc["curves"])}
        return doc["per"], curves
    except (KeyError, ValueError, TypeError) as exc:
        discard_entry(path, f"not an audit result ({type(exc).__name__}: {exc})")
        return None
