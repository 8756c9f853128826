"""Opening the runs an audit reads, and checking they belong together before any model is loaded.

The audited (unlearned) run is the target; its companions (the original, the retrained reference,
the other runs of a forgetting score) must come from the same data and train/val split, and a
reference must be an exact retrain of the same original without the same forget set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from unlearnkit.errors import UnlearnkitError

from .. import scores


@dataclass
class _Model:
    """One model's outputs on the parts of the audited split."""

    role: str
    loaded: Any  # LoadedRun
    logits: dict[str, np.ndarray] = field(default_factory=dict)
    labels: dict[str, np.ndarray] = field(default_factory=dict)
    ids: dict[str, np.ndarray] = field(default_factory=dict)
    n_full: dict[str, int] = field(default_factory=dict)
    # A trial's cheaper audit (`audit(retain_limit=N)`): which forwarded retain samples RA is computed on
    # (None: all of them, a full audit).
    retain_ra: np.ndarray | None = None
    retain_pos: np.ndarray | None = None  # and those samples' positions in the full retain set (sorted)

    @property
    def path(self) -> Path:
        return self.loaded.dir.path

    def lsc(self, part: str) -> np.ndarray:
        return scores.logit_scaled_confidence(self.logits[part], self.labels[part], self.name)

    def prob(self, part: str) -> np.ndarray:
        return scores.true_label_confidence(self.logits[part], self.labels[part], self.name)

    def loss(self, part: str) -> np.ndarray:
        return scores.cross_entropy(self.logits[part], self.labels[part], self.name)

    @property
    def name(self) -> str:
        return f"the {self.role} model (run {self.path})"


def _open_target(run: str | Path, data: str | None):
    from unlearnkit.training.pipeline import load_run  # noqa: PLC0415

    from unlearnkit.importer import require_non_members  # noqa: PLC0415

    loaded = load_run(run, data=data)
    require_non_members(loaded.split, f"run {loaded.dir.path}")
    if len(loaded.split.forget_idx) == 0:
        raise UnlearnkitError(
            f"run {loaded.dir.path} has no forget set (it is an {loaded.info.get('kind', 'original')} run): audit an "
            f"unlearned run, e.g. made by `unlearnkit forget {loaded.dir.path} --method finetune --forget random:0.1 --out DIR`"
        )
    return loaded


def _same_path(a: Any, b: Any) -> bool:
    return a is not None and b is not None and Path(str(a)).resolve() == Path(str(b)).resolve()


def _check_reference(run, info: dict, target) -> None:
    """A --reference must be an exact retrain of the target's original (its forget set is checked with the split).

    Anything else -- a method run (the audited run itself included), a retrain of another original --
    would give gaps to a model that is not "this original without this forget set". An exact retrain
    may be its own reference (a bench's retrain row: every gap zero by definition).
    """
    fix = (f"make one with `unlearnkit forget {target.info.get('parent') or 'ORIGINAL_RUN'} --method retrain "
           f"--forget {target.split.forget_spec or target.info.get('forget_spec')} --out DIR`")
    if info.get("exact") is not True:
        raise UnlearnkitError(
            f"reference run {run.path} is not an exact retrain (run.json exact: {info.get('exact')!r}, method "
            f"{info.get('method')!r}); {fix}"
        )
    # A chained run's immediate parent is unlearned; its exact reference retrains the lineage's root.
    mine = target.info.get("original") or target.info.get("parent")
    key = "original_model_sha256" if target.info.get("original") else "parent_model_sha256"
    theirs, want = info.get("parent_model_sha256"), target.info.get(key)
    # The recorded model hashes decide where both runs have them: a store copied or moved to another
    # folder (another machine of a cluster, a laptop) records the old paths, and its runs still share
    # one original; and the same path is not the same original when one was retrained in place between
    # the two runs. Runs recorded before the hashes existed keep the path check.
    same_path = _same_path(info.get("parent"), mine) or info.get("parent") == mine
    hashed = bool(theirs and want)
    if hashed and theirs == want or not hashed and same_path:
        return
    if not same_path:
        raise UnlearnkitError(
            f"reference run {run.path} was retrained from another original (run.json parent: {info.get('parent')}) than "
            f"run {target.dir.path} (parent: {mine}); {fix}"
        )
    raise UnlearnkitError(
        f"reference run {run.path} was retrained from another model than run {target.dir.path}'s original "
        f"(run.json parent_model_sha256 {theirs[:12]}… there, {key} {want[:12]}… here: {mine} was retrained or "
        f"replaced in between); retrain the reference from this run's original: {fix}"
    )


def _check_original(lr, target) -> str | None:
    """Why the original run `lr` is not the model the target was unlearned from, or None when it is.

    The target's run.json records its parent's and its lineage root's model sha256: either is a
    right original (a chained run's parent, or the root a bench or a user passes). A path alone
    proves nothing -- the run there may have been retrained in place since. Runs recorded before
    the hashes existed (neither field) are not checked.
    """
    from unlearnkit.provenance import model_sha256  # noqa: PLC0415

    recorded = {k: target.info.get(k) for k in ("parent_model_sha256", "original_model_sha256") if target.info.get(k)}
    if not recorded:
        return None
    have = model_sha256(lr.dir.path)
    if have in recorded.values():
        return None
    said = ", ".join(f"{k} {v[:12]}…" for k, v in recorded.items())
    return (f"original run {lr.dir.path} holds another model (sha256 {have[:12]}…) than the one run {target.dir.path} "
            f"was unlearned from (run.json {said}): it was retrained or replaced since")


def _open_companion(path: str | Path, role: str, target, *, same_forget: bool, reference: bool = False):
    """A run compared with the target: same data and split (and forget set when `same_forget`).

    ``reference=True`` (audit's --reference) also requires an exact retrain of the same original
    (:func:`_check_reference`). Reads only the small JSON files first, so a mismatch is reported
    before any data or model is loaded; the returned LoadedRun shares the target's split (no second
    dataset load).
    """
    from unlearnkit.config import RunConfig  # noqa: PLC0415
    from unlearnkit.runs import RunDir  # noqa: PLC0415
    from unlearnkit.training.data import Normalizer  # noqa: PLC0415
    from unlearnkit.training.pipeline import LoadedRun  # noqa: PLC0415
    from unlearnkit.training.runtime import Runtime  # noqa: PLC0415

    what = {"retrained": "reference run", "original": "original run"}.get(role, f"{role} run")
    run = RunDir(Path(path))
    if not run.path.is_dir():
        raise UnlearnkitError(f"{what} {run.path} does not exist; pass an existing run directory")
    info = run.read_json("run.json", f"{what}'s run record")
    if reference:
        _check_reference(run, info, target)
    fp, tfp = info.get("dataset", {}).get("fingerprint"), target.split.bundle.fingerprint
    if fp != tfp:
        raise UnlearnkitError(
            f"{what} {run.path} was trained on another dataset (fingerprint {str(fp)[:12]}…) than run "
            f"{target.dir.path} ({tfp[:12]}…); compare runs made from the same data"
        )
    manifest = run.read_json("split.json", f"{what}'s split manifest")
    mine = target.split.manifest()
    for key, label in (("train", "members (train)"), ("val", "validation")):
        if manifest.get(key) != mine[key]:
            raise UnlearnkitError(
                f"{what} {run.path} has another split ({label} set differs; split seed {manifest.get('seed')} vs "
                f"{mine['seed']}) than run {target.dir.path}; use runs descended from the same original run"
            )
    if same_forget and manifest.get("forget") != mine["forget"]:
        raise UnlearnkitError(
            f"{what} {run.path} forgot another set (split.json forget: {len(manifest.get('forget') or [])} samples, "
            f"{manifest.get('forget_spec')!r}) than run {target.dir.path} ({len(mine['forget'])} samples, "
            f"{mine['forget_spec']!r}); retrain with the same --forget"
        )
    if not run.finished:
        raise UnlearnkitError(f"{what} {run.path} has no finished model (model.safetensors + metrics.json); finish that run first")
    cfg = RunConfig.from_dict(run.read_json("config.json", f"{what}'s config"))
    norm = info.get("normalizer") or {}
    if "mean" not in norm or "std" not in norm:
        raise UnlearnkitError(f"{what} {run.path} has no normaliser in run.json; the run directory is damaged")
    metrics = run.read_json("metrics.json")
    return LoadedRun(run, cfg, info, target.split, Normalizer(tuple(norm["mean"]), tuple(norm["std"])),
                     Runtime.from_config(cfg.runtime), metrics)

