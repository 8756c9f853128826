"""What a run is, recorded with content hashes, and checked before a run is continued or reused.

run.json of every run says what it is:
  trained     kind "original"; its forget set is empty; it is the root of its lineage.
  unlearned   kind "unlearned"; `method`, `exact`, `hparams` (+ `hparams_sha256`), `seed`;
              `parent` (+ `parent_model_sha256`: sha256 of the parent's model file when the run started);
              `original` (+ `original_model_sha256`): the trained run at the root of the lineage;
              `forget_specs`: every forget request along the lineage, oldest first (`forget_spec`
              joins them with " + "); `forget_sha256`: sha256 of the forgotten ids, i.e. the union
              of those requests (split.json lists them); `request_sha256`: the ids of this request.
An exact retrain depends only on the root's recipe and the forget union, so its `parent` is the
root original (`parent == original`, what an audit compares a reference on) and
`requested_from` (+ `requested_from_model_sha256`) names the run the request was made on.

`same_job` is what `forget --resume` and the demo's reuse check: the recorded job must be the
requested one, field by field, or the run directory is refused with the first difference.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Iterable

from unlearnkit.data.cache import file_digest
from unlearnkit.errors import UnlearnkitError
from unlearnkit.runs import MODEL_FILE

# The fields that make two unlearning jobs the same job (same output up to nondeterminism). The
# parent is identified by its model's content, not its path: a moved or copied run (a bench store)
# is the same parent, and a parent retrained in place is not.
JOB_FIELDS = ("parent_model_sha256", "method", "method_revision", "forget_sha256", "hparams_sha256", "seed")


def sha256_json(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def sha256_ids(ids: Iterable[Any]) -> str:
    """Order-free digest of a set of sample ids (the same set always gives the same digest)."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in ids)).encode()).hexdigest()


def model_sha256(run_path: str | Path) -> str:
    path = Path(run_path) / MODEL_FILE
    if not path.is_file():
        raise UnlearnkitError(f"run {run_path} has no {MODEL_FILE}; finish that run first")
    return file_digest(path)


def lineage_root(parent_path: Path, parent_info: dict[str, Any], parent_hash: str) -> tuple[str, str | None, list[str]]:
    """(root original path, its model sha256, forget requests so far) of a run used as a parent."""
    if parent_info.get("kind") != "unlearned":  # a trained run is its own root
        return str(parent_path), parent_hash, []
    specs = parent_info.get("forget_specs") or [parent_info.get("forget_spec")]
    root = parent_info.get("original") or parent_info.get("parent")
    root_hash = parent_info.get("original_model_sha256")
    if root_hash is None and root and (Path(root) / MODEL_FILE).is_file():  # a run recorded before lineages
        root_hash = file_digest(Path(root) / MODEL_FILE)
    return str(root), root_hash, [s for s in specs if s]


def describe(record: dict[str, Any]) -> str:
    """One phrase: "trained run", "exact retrain of class:3 from original /runs/base",
    "finetune on random:0.1 + class:3 from parent /runs/u1"."""
    if record.get("kind") != "unlearned":
        return "a trained run"
    if record.get("exact"):
        return f"an exact retrain of {record.get('forget_spec')} from original {record.get('parent')}"
    return f"{record.get('method')} on {record.get('forget_spec')} from parent {record.get('parent')}"


def first_difference(recorded: dict[str, Any], wanted: dict[str, Any]) -> str | None:
    """'method: finetune there, neggrad now' for the first job field that differs, else None."""
    for key in JOB_FIELDS:
        a, b = recorded.get(key), wanted.get(key)
        if a != b:
            if key == "forget_sha256":
                return f"forget set: {recorded.get('forget_spec')!r} there, {wanted.get('forget_spec')!r} now"
            if key == "hparams_sha256":
                return f"hyperparameters: {recorded.get('hparams')} there, {wanted.get('hparams')} now"
            if key == "parent_model_sha256":
                return (f"parent model: {recorded.get('parent')} ({str(a)[:12]}) there, "
                        f"{wanted.get('parent')} ({str(b)[:12]}) now")
            return f"{key}: {a!r} there, {b!r} now"
    return None


def check_same_job(out: Path, wanted: dict[str, Any], *, action: str) -> dict[str, Any]:
    """The record in `out`, refused with one line unless it is the job `wanted` describes.

    `action` opens the message ("--resume", "demo") so the user sees which command refused.
    """
    path = Path(out) / "run.json"
    if not path.is_file():
        raise UnlearnkitError(f"{action}: {out} holds no started unlearning run (no run.json); drop --resume to start one")
    try:
        recorded = json.loads(path.read_text())
    except json.JSONDecodeError:
        raise UnlearnkitError(f"{action}: {path} is not valid JSON; the run directory is damaged — choose a new --out") from None
    if recorded.get("kind") != "unlearned" or "forget_sha256" not in recorded:
        raise UnlearnkitError(
            f"{action}: {out} holds {describe(recorded)} without an unlearning job record (made by another command "
            "or an older unlearnkit); choose a new --out"
        )
    diff = first_difference(recorded, wanted)
    if diff is not None:
        raise UnlearnkitError(
            f"{action}: {out} holds {describe(recorded)}, not {describe(wanted)} ({diff}); "
            "run the same job again or choose a new --out"
        )
    return recorded
