"""Tuned defaults that ship with the package: lookup, provenance, export.

One JSON file per preset in this folder (`digits.json`, ...), each a list of entries written by
`unlearnkit tune ... --export`. An entry applies to a run when the method and scenario kind match
AND the run's preset and recipe hash match the entry's: the hash covers the recipe fields that
determine the trained weights (`recipe_hash`), so a changed recipe (another epoch count,
width, lr, precision, ...) never silently picks up a stale entry; it falls back to the paper
defaults and says so. Nothing here imports Optuna: `forget_run` calls `resolve` on every run.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path
from typing import Any

from unlearnkit.config import drop_late_fields
from unlearnkit.errors import UnlearnkitError
from unlearnkit.tuning.scenarios import kind_of, lookup_kinds

DEFAULTS_DIR = Path(__file__).resolve().parent
FORMAT = 1
# Settings that change speed or reporting but not the trained weights (left out of the hash).
_NOT_WEIGHTS = {"seed", "preset", "data.source", "data.labels_csv", "data.download", "train.eval_batch_size",
                "train.val_probe", "runtime.device", "runtime.channels_last"}


def _config_dict(config: Any) -> dict[str, Any] | None:
    if config is None:
        return None
    if dataclasses.is_dataclass(config):
        return dataclasses.asdict(config)
    return dict(config)


def weight_recipe(config: Any) -> dict[str, Any]:
    """The flat `section.key -> value` settings of a run config that determine its weights.

    The seed is left out (tuned defaults are for a recipe over many seeds), and so is the
    dataset path (a preset names its dataset; paths differ between machines), and so are the
    config.LATE_FIELDS at their default (entries recorded before those fields keep their hash).
    """
    flat: dict[str, Any] = {}

    def walk(d: dict[str, Any], prefix: str) -> None:
        for k, v in d.items():
            if isinstance(v, dict):
                walk(v, f"{prefix}{k}.")
            elif f"{prefix}{k}" not in _NOT_WEIGHTS:
                flat[f"{prefix}{k}"] = v

    walk(_config_dict(config), "")
    # Fields added after entries were first recorded count only when set (config.LATE_FIELDS).
    return dict(sorted(drop_late_fields(flat, flat=True).items()))


def recipe_hash(config: Any) -> str:
    return hashlib.sha256(json.dumps(weight_recipe(config), sort_keys=True, default=str).encode()).hexdigest()[:12]


def _preset_of(config: Any) -> str | None:
    d = _config_dict(config)
    return d.get("preset") if d and "train" in d else None  # a bare TrainConfig names no preset


def entries(preset: str, directory: Path | None = None) -> list[dict[str, Any]]:
    path = (directory or DEFAULTS_DIR) / f"{preset}.json"
    if not path.is_file():
        return []
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UnlearnkitError(f"tuned defaults file {path} is not valid JSON ({exc}); restore it from git") from None
    found = doc.get("entries", []) if isinstance(doc, dict) else None
    if not isinstance(found, list):
        raise UnlearnkitError(f"tuned defaults file {path} has no list of entries ({{\"format\": {FORMAT}, \"entries\": [...]}}); "
                              "restore it from git")
    for i, entry in enumerate(found):
        _check_entry(entry, path, i)
    return found


# Fields every entry needs, with their JSON types: a hand-edited entry that lacks one, or gives it
# the wrong type, is a one-line error naming the file and the entry, not a traceback in a lookup.
_REQUIRED = {"id": str, "method": str, "preset": str, "kind": str, "recipe_hash": str, "values": dict,
             "seeds": list, "command": str}


def _check_entry(entry: Any, path: Path, index: int) -> None:
    where = f"tuned defaults file {path}, entry {index + 1}"
    fix = "restore the file from git or re-export the entry with `unlearnkit tune --export`"
    if not isinstance(entry, dict):
        raise UnlearnkitError(f"{where} is not an object; {fix}")
    where += f" ({entry.get('id', 'no id')})"
    for name, kind in _REQUIRED.items():
        if not isinstance(entry.get(name), kind):
            got = "missing" if name not in entry else f"a {type(entry[name]).__name__}"
            raise UnlearnkitError(f"{where}: field {name!r} must be a {kind.__name__}, got {got}; {fix}")
    rev = entry.get("method_revision", 0)
    # bool is an int subclass: `true` is not a revision.
    if isinstance(rev, bool) or not isinstance(rev, int) or rev < 0:
        raise UnlearnkitError(f"{where}: field 'method_revision' must be a whole number >= 0, got {rev!r}; {fix}")


def all_entries(method: str | None = None, directory: Path | None = None) -> list[dict[str, Any]]:
    out = []
    for path in sorted((directory or DEFAULTS_DIR).glob("*.json")):
        out += [e for e in entries(path.stem, directory) if method is None or e["method"] == method]
    return out


def find(method: str, preset: str, kind: str, rhash: str, directory: Path | None = None) -> dict[str, Any] | None:
    for e in entries(preset, directory):
        if e["method"] == method and e["kind"] == kind and e["recipe_hash"] == rhash:
            return e
    return None


def resolve(method: str, config: Any, forget_spec: str | None, directory: Path | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """(values, source): the tuned values that apply to this run (empty: paper defaults) and why.

    `config` is the original run's RunConfig (or its config.json dict); a bare TrainConfig or None
    names no preset, so the paper defaults apply. `source` is JSON-ready: {"kind": "tuned",
    "entry": id, "command": ..., "seeds": [...], "budget": share of retraining it was tuned within} or {"kind": "paper", "reason": ...}.
    """
    preset = _preset_of(config)
    if preset is None:
        return {}, {"kind": "paper", "reason": "no preset recipe given (tuned defaults match on a run's preset and recipe)"}
    # Only after the no-preset return: without a preset no entry applies, so the spec's kind is not
    # needed, and a call with a bare TrainConfig (the Python API) never parses the spec.
    kind = kind_of(forget_spec)
    if kind is None:
        return {}, {"kind": "paper", "reason": f"forget request {forget_spec!r} has no tuning kind"}
    rhash = recipe_hash(config)
    # The request's own kind first, then its fallbacks (a class share takes the random entry where
    # it has none of its own); the source says when a fallback applied.
    tried = lookup_kinds(kind)
    entry = next((e for k in tried if (e := find(method, preset, k, rhash, directory)) is not None), None)
    if entry is None:
        others = [e for e in entries(preset, directory) if e["method"] == method and e["kind"] in tried]
        why = (f"tuned entry {others[0]['id']} was made for another {preset} recipe (hash {others[0]['recipe_hash']}, "
               f"this run's is {rhash})") if others else f"no tuned entry for {method} on {preset} / {' or '.join(tried)}"
        return {}, {"kind": "paper", "reason": why}
    from unlearnkit.methods.base import make_hparams  # noqa: PLC0415

    try:
        make_hparams(method, entry["values"])
    except UnlearnkitError as exc:  # the method's hyperparameters changed since the entry was made
        return {}, {"kind": "paper", "reason": f"tuned entry {entry['id']} no longer fits {method}: {exc}"}
    source = {"kind": "tuned", "entry": entry["id"], "command": entry["command"],
              "seeds": entry["seeds"], "recipe_hash": rhash, "budget": entry.get("budget"),
              "method_revision": entry.get("method_revision", 0)}
    if entry["kind"] != kind:
        source["fallback"] = f"no {kind} entry for {method} on {preset}: the {entry['kind']} entry applies"
    if (older := revision_note(method, entry)) is not None:
        source["older_revision"] = older
    return dict(entry["values"]), source


def revision_note(method: str, entry: dict[str, Any]) -> str | None:
    """None if `entry` was searched with the method's current code; else what changed since.

    A revision changes what the method computes for some requests (`Method.changes`), so the
    entry's values were scored by an older algorithm. It still applies — its names and ranges are
    the method's, and its setting is usually still the better start than the paper's — but every
    place that shows the entry says so (and its `command` searches it again).
    """
    from unlearnkit.methods import get_method  # noqa: PLC0415

    cls = get_method(method)
    then, now = int(entry.get("method_revision", 0)), cls.revision
    if then == now:
        return None
    if then > now:  # an entry exported by a newer unlearnkit, read by this older install
        return f"tuned with {method} revision {then}, newer than this install's {now}: update unlearnkit to run the code it was tuned with"
    changed = "; ".join(f"{r}: {cls.changes.get(r, '(not recorded)')}" for r in range(then + 1, now + 1))
    return f"tuned with {method} revision {then}, now {now} ({changed})"


def hparams_for(method: str, config: Any, forget_spec: str | None, overrides: dict[str, Any] | None = None):
    """The method's hyperparameters for a run — tuned entry (or paper defaults), then the user's
    `--set` values on top — and the provenance record run.json keeps: which source each field came from."""
    from unlearnkit.methods.base import hparam_defaults, make_hparams  # noqa: PLC0415

    values, source = resolve(method, config, forget_spec)
    overrides = {k.removeprefix("method."): v for k, v in (overrides or {}).items()}
    hp = make_hparams(method, {**values, **overrides})
    fields = {name: "set" if name in overrides else source["kind"] if name in values else "paper"
              for name in hparam_defaults(method)}
    base = (f"tuned entry {source['entry']} ({source['command']})" if source["kind"] == "tuned"
            else f"paper defaults ({source['reason']})")
    if "fallback" in source:
        base += f"; {source['fallback']}"
    if "older_revision" in source:
        base += f"; {source['older_revision']}"
    user = sorted(k for k, v in fields.items() if v == "set")
    summary = base + (f"; --set {', '.join(user)}" if user else "")
    return hp, {**source, "fields": fields, "summary": summary}


def write_entry(entry: dict[str, Any], directory: Path | None = None) -> Path:
    """Add `entry` to its preset's file, replacing the one for the same (method, kind, recipe hash)."""
    from unlearnkit.runs import atomic_write_text  # noqa: PLC0415

    path = (directory or DEFAULTS_DIR) / f"{entry['preset']}.json"
    kept = [e for e in entries(entry["preset"], directory)
            if (e["method"], e["kind"], e["recipe_hash"]) != (entry["method"], entry["kind"], entry["recipe_hash"])]
    kept.append(entry)
    kept.sort(key=lambda e: (e["method"], e["kind"], e["recipe_hash"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, json.dumps({"format": FORMAT, "entries": kept}, indent=2, sort_keys=False) + "\n")
    return path


def entry_id(method: str, preset: str, kind: str, rhash: str) -> str:
    return f"{preset}/{kind}/{method}@{rhash[:8]}"


def provenance_note(methods: list[str], config: Any, scenarios: list[str], eval_seeds: list[int]) -> str:
    """One line for a leaderboard header: which tuned defaults it used and whether their tuning
    seeds are disjoint from the evaluation seeds."""
    used: dict[str, dict[str, Any]] = {}
    for method in methods:
        for scenario in scenarios:
            _, source = resolve(method, config, scenario)
            if source["kind"] == "tuned":
                used[source["entry"]] = source
    if not used:
        return "Hyperparameters: paper defaults (no tuned entry matches this recipe)."
    untuned = sorted({m for m in methods for sc in scenarios if resolve(m, config, sc)[1]["kind"] != "tuned"})
    rest = f"; paper defaults for {', '.join(untuned)}" if untuned else ""
    tuning = sorted({s for src in used.values() for s in src["seeds"]})
    overlap = sorted(set(tuning) & set(eval_seeds))
    names = ", ".join(sorted(used))
    if overlap:
        return (f"WARNING: evaluation seeds {overlap} overlap the tuning seeds of the tuned defaults used ({names}); "
                "these rows are not an honest evaluation.")
    older = sorted(entry for entry, src in used.items() if "older_revision" in src)
    older_note = (f" Searched with an older revision of their method (they still apply; `unlearnkit methods NAME` says "
                  f"what changed): {', '.join(older)}.") if older else ""
    return (f"Tuned defaults used: {names}; their tuning seeds ({', '.join(map(str, tuning))}) are disjoint from "
            f"the evaluation seeds ({', '.join(map(str, eval_seeds))}){rest}.{older_note}")
