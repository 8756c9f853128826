"""Members, held-out non-members, and the forget/retain partition, all by sample id.

The training pool divides into `train` (members: what the model is trained on) and
`val` (non-members the audit and some methods use); `test` stays untouched for the final
evaluation. A forget request selects a subset of `train`; retain = train minus forget.
Positions index `bundle.train`; manifests store sample ids so they survive re-ordering.
"""

from __future__ import annotations

import csv
import hashlib
import io
import numbers
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from unlearnkit.data.sources import DatasetBundle, LabeledImages
from unlearnkit.errors import UnlearnkitError

SPLIT_NAMES = ("train", "val", "forget", "retain", "test")


@dataclass(frozen=True)
class Split:
    bundle: DatasetBundle
    train_idx: np.ndarray  # positions in bundle.train: members
    val_idx: np.ndarray  # positions in bundle.train: held-out non-members
    forget_idx: np.ndarray  # positions in bundle.train, a subset of train_idx (empty before a request)
    seed: int
    forget_spec: str | None = None

    @property
    def retain_idx(self) -> np.ndarray:
        return np.setdiff1d(self.train_idx, self.forget_idx, assume_unique=True)

    @property
    def classes(self) -> tuple[str, ...]:
        return self.bundle.classes

    @property
    def num_classes(self) -> int:
        return len(self.bundle.classes)

    def part(self, name: str) -> LabeledImages:
        """The images/labels/ids of one part: train, val, forget, retain or test."""
        if name == "test":
            return self.bundle.test
        if name not in SPLIT_NAMES:
            raise UnlearnkitError(f"unknown split part {name!r}; choose one of: {', '.join(SPLIT_NAMES)}")
        idx = {"train": self.train_idx, "val": self.val_idx, "forget": self.forget_idx, "retain": self.retain_idx}[name]
        pool = self.bundle.train
        return LabeledImages(pool.images[idx], pool.labels[idx], pool.ids[idx])

    def superclass_labels(self, name: str) -> np.ndarray:
        """The super-class (CIFAR-100 coarse) label of each sample of a part, for evaluating sub-class
        forgetting on the coarse task; a one-line error for a dataset without super-classes."""
        if not self.bundle.superclasses:
            raise UnlearnkitError(f"dataset {self.bundle.name!r} has no super-classes; coarse labels exist only for sources such as cifar100")
        return np.asarray(self.bundle.superclass_of, dtype=np.int64)[self.part(name).labels]

    def with_forget(self, spec: str) -> "Split":
        """This split with `spec` forgotten too: the forget set is the union of every request.

        Forgetting is cumulative (a data-deletion request is never undone): on a split that has
        already forgotten samples (an unlearned run's), the new request is added to them and
        retain never regains one. `forget_spec` records the requests joined with " + ".
        """
        chosen = select_forget(self, spec)
        if len(self.forget_idx) == 0:
            return replace(self, forget_idx=chosen, forget_spec=spec)
        union = np.union1d(self.forget_idx, chosen).astype(np.int64)
        if len(union) == len(self.forget_idx):
            raise UnlearnkitError(
                f"forget spec {spec!r} selects only samples this run has already forgotten ({self.forget_spec}); "
                "nothing new to forget — choose other samples"
            )
        if len(union) >= len(self.train_idx):
            raise UnlearnkitError(
                f"forget spec {spec!r} together with the samples already forgotten ({self.forget_spec}) covers the "
                f"whole training set ({len(union)} samples); nothing would remain to retain"
            )
        return replace(self, forget_idx=union, forget_spec=f"{self.forget_spec} + {spec}")

    def manifest(self) -> dict:
        ids = self.bundle.train.ids
        return {
            "dataset_fingerprint": self.bundle.fingerprint,
            "seed": self.seed,
            "forget_spec": self.forget_spec,
            "counts": {name: int(len(self.part(name).labels)) for name in SPLIT_NAMES},
            "train": ids[np.sort(self.train_idx)].tolist(),
            "val": ids[np.sort(self.val_idx)].tolist(),
            "forget": ids[np.sort(self.forget_idx)].tolist(),
            # Only for datasets with super-classes (so every other split.json is as before): the audit
            # can score sub-class forgetting on the coarse labels from the run directory alone.
            **({"superclasses": {"names": list(self.bundle.superclasses), "of_class": list(self.bundle.superclass_of)}}
               if self.bundle.superclasses else {}),
        }


def make_split(bundle: DatasetBundle, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Stratified members/validation split of the training pool, fixed by `seed`."""
    from sklearn.model_selection import train_test_split  # lazy: importing sklearn costs seconds, a split needs it once

    _check_seed(seed)
    _check_val_fraction(val_fraction)
    n = len(bundle.train.labels)
    positions = np.arange(n)
    labels = bundle.train.labels
    stratify = labels if np.bincount(labels).min(initial=n) >= 2 else None
    try:
        train_idx, val_idx = train_test_split(positions, test_size=val_fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise UnlearnkitError(f"cannot hold out data.val_fraction={val_fraction} of {n} training samples: {exc}") from None
    return Split(bundle, np.sort(train_idx), np.sort(val_idx), np.empty(0, dtype=np.int64), seed)


def _check_seed(seed: object) -> None:
    # The split's random_state (sklearn/numpy) takes 0 .. 2**32 - 1; anything else would surface as a
    # confusing message about val_fraction, or (negative) not at all in the forget draws.
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or not 0 <= seed < 2**32:
        raise UnlearnkitError(f"seed must be a whole number from 0 to {2**32 - 1}, got {seed!r}: pass e.g. --seed 0")


def _check_val_fraction(val_fraction: object) -> None:
    # sklearn reads an int test_size as a count: val_fraction=20 (meant as 20%) would hold out 20 samples.
    # (No whole number lies strictly between 0 and 1, and NaN fails the comparison, so the range check covers both.)
    if isinstance(val_fraction, bool) or not isinstance(val_fraction, numbers.Real) or not 0.0 < val_fraction < 1.0:
        raise UnlearnkitError(
            f"val_fraction must be a fraction between 0 and 1 (exclusive), got {val_fraction!r}: pass e.g. 0.2 for 20%"
        )


def split_from_manifest(bundle: DatasetBundle, manifest: dict, where: str = "split manifest") -> Split:
    """Rebuild a Split saved with `Split.manifest()`, refusing one made for other data."""
    if manifest.get("dataset_fingerprint") != bundle.fingerprint:
        raise UnlearnkitError(
            f"{where} was made for dataset {str(manifest.get('dataset_fingerprint'))[:12]}…, "
            f"but the data given is {bundle.fingerprint[:12]}…; pass the same --data as the original run"
        )
    pos = _positions_by_id(bundle)
    take = lambda key: np.array(sorted(pos[i] for i in manifest[key]), dtype=np.int64)  # noqa: E731
    return Split(bundle, take("train"), take("val"), take("forget"), int(manifest["seed"]), manifest.get("forget_spec"))


def _positions_by_id(bundle: DatasetBundle) -> dict[str, int]:
    return {str(sid): i for i, sid in enumerate(bundle.train.ids)}


def select_forget(split: Split, spec: str) -> np.ndarray:
    """Positions (in bundle.train) that a forget spec selects; always a proper, non-empty subset of train.

    Specs (`FORGET_SPECS`): `random:<count>` or `random:<fraction>`, `class:<name|index>[,...][:<fraction>]`,
    `subclass:<fine class>[,...][:<fraction>]` (datasets with super-classes), `ids:<file>`.
    """
    kind, _, arg = spec.partition(":")
    if kind not in FORGET_SPECS:
        syntax = ", ".join(usage for _, usage in FORGET_SPECS.values())
        raise UnlearnkitError(f"forget spec {spec!r} is not understood; use one of: {syntax}")
    chosen = FORGET_SPECS[kind][0](split, arg, spec)
    if len(chosen) == 0:
        raise UnlearnkitError(f"forget spec {spec!r} selects no training sample; choose a non-empty forget set")
    if len(chosen) >= len(split.train_idx):
        raise UnlearnkitError(
            f"forget spec {spec!r} selects the whole training set ({len(chosen)} samples); nothing would remain to retain"
        )
    return np.sort(chosen).astype(np.int64)


def _spec_rng(split: Split, spec: str) -> np.random.Generator:
    # Each forget draw has its own stream: the same spec + seed always picks the same samples.
    seed = int.from_bytes(hashlib.sha256(f"{split.seed}/{spec}".encode()).digest()[:4], "little")
    return np.random.default_rng(seed)


def _random(split: Split, arg: str, spec: str) -> np.ndarray:
    n = len(split.train_idx)
    try:
        # "0.1" is a fraction of the training split, "128" a count.
        count = int(arg) if arg.strip().isdigit() else int(round(float(arg) * n)) if 0 < float(arg) < 1 else -1
    except ValueError:
        count = -1
    if count < 0:
        raise UnlearnkitError(f"forget spec {spec!r}: random needs a whole count or a fraction in (0, 1), e.g. random:128 or random:0.1")
    if count >= n:
        raise UnlearnkitError(f"forget spec {spec!r} asks for {count} samples but the training split has {n}; choose fewer")
    return _spec_rng(split, spec).choice(split.train_idx, size=count, replace=False)


def _classes(split: Split, arg: str, spec: str) -> np.ndarray:
    """Every member of the named classes, or with `:<fraction>` that share of each class (seeded)."""
    for name in split.classes:
        # ',' separates classes and ':' the fraction, so such a name cannot be written in a spec.
        if any(c in name for c in _SPEC_SEPARATORS) and (arg == name or arg.startswith(name + ":") or name in arg.split(",")):
            raise UnlearnkitError(_separator_hint(split.classes, name, spec))
    names, fraction = class_fraction(arg, spec)
    wanted = [_class_label(split.classes, token, spec) for token in [t.strip() for t in names.split(",") if t.strip()]]
    if not wanted:  # "class:" or "class::0.5": say what is missing, not that the set came out empty
        kind = spec.partition(":")[0]
        raise UnlearnkitError(f"forget spec {spec!r} names no class; write {kind}:NAME or {kind}:NAME,NAME "
                              f"(classes: {', '.join(split.classes[:12])}{', ...' if len(split.classes) > 12 else ''})")
    labels = split.bundle.train.labels[split.train_idx]
    # A named class without members would silently shrink the request ("class:a,c" forgetting only a).
    empty = [split.classes[w] for w in sorted(set(wanted)) if not np.any(labels == w)]
    if empty:
        raise UnlearnkitError(
            f"forget spec {spec!r}: class {', '.join(repr(c) for c in empty)} has no member in the training split "
            f"(its images are all held out for validation, or it has no training images): drop it from the spec"
        )
    if fraction is None:
        return split.train_idx[np.isin(labels, wanted)]
    rng = _spec_rng(split, spec)
    chosen = []
    for label in sorted(set(wanted)):
        members = split.train_idx[labels == label]
        # At least one per class: "class:cat:0.01" of a small class still forgets something of it.
        count = min(len(members), max(1, round(fraction * len(members)))) if len(members) else 0
        chosen.append(rng.choice(members, size=count, replace=False))
    return np.concatenate(chosen) if chosen else np.empty(0, dtype=np.int64)


def class_token(classes: tuple[str, ...], index: int, *, by: str) -> str:
    """How a `class:` spec names class `index` so that `_class_label` reads it back as that class.

    by="index": `3`, or `#3` where a class is *named* "3" but is another class; by="name": the name,
    or `=NAME` where NAME is also another class's index (numeric labels such as Kaggle's 1..4). The
    plain forms stay wherever they are unambiguous, so specs (and keys made from them) keep their text.
    """
    if by == "index":
        plain = str(index)
        return f"#{index}" if plain in classes and classes.index(plain) != index else plain
    name = classes[index]
    if any(c in name for c in _SPEC_SEPARATORS) or name.startswith(("#", "=")) or name != name.strip() or not name:
        return f"#{index}"  # a name the parser would split or read otherwise: the index always reads back
    ambiguous = name.isascii() and name.isdigit() and int(name) != index and int(name) < len(classes)
    return f"={name}" if ambiguous else name


def _class_label(classes: tuple[str, ...], token: str, spec: str) -> int:
    """The label a `class:` token names: a class name or an index; `#N` forces the index, `=NAME` the name."""
    # isascii: str.isdigit() also accepts '²' and other scripts' digits, which int() then rejects or misreads.
    is_index = lambda text: text.isascii() and text.isdigit()  # noqa: E731
    if token.startswith("#") and is_index(token[1:]):
        if int(token[1:]) < len(classes):
            return int(token[1:])
    elif token.startswith("=") and token[1:] in classes:
        return classes.index(token[1:])
    else:
        by_name = classes.index(token) if token in classes else None
        by_index = int(token) if is_index(token) and int(token) < len(classes) else None
        if by_name is not None and by_index is not None and by_name != by_index:
            # Numeric class names (Kaggle labels 1..4) make "1" both a name and another class's index.
            raise UnlearnkitError(
                f"forget spec {spec!r}: class {token!r} is ambiguous: it is the name of class #{by_name} and the index of "
                f"class {classes[by_index]!r}; write ={token} for the class named {token!r} or #{token} for index {token}"
            )
        if by_name is not None or by_index is not None:
            return by_name if by_name is not None else by_index
    raise UnlearnkitError(
        f"forget spec {spec!r}: unknown class {token!r}; classes are: {', '.join(classes)} "
        f"(or an index 0..{len(classes) - 1})"
        + ("; a class whose name holds ',' or ':' is named by its index, class:#N"
           if any(c in name for name in classes for c in _SPEC_SEPARATORS) else "")
    )


# A `class:` spec separates classes with ',' and the fraction with ':'.
_SPEC_SEPARATORS = (",", ":")


def _separator_hint(classes: tuple[str, ...], name: str, spec: str) -> str:
    return (f"forget spec {spec!r}: the class name {name!r} holds ',' or ':', which a class: spec uses as separators; "
            f"name it by its index: class:#{classes.index(name)}")


def class_fraction(arg: str, spec: str) -> tuple[str, float | None]:
    """("cat,dog", 0.5) from "cat,dog:0.5"; (arg, None) without a fraction."""
    names, sep, tail = arg.rpartition(":")
    if not sep:
        return arg, None
    try:
        fraction = float(tail)
    except ValueError:
        fraction = -1.0
    if not 0 < fraction <= 1:
        kind = spec.partition(":")[0]
        raise UnlearnkitError(
            f"forget spec {spec!r}: the part after the last ':' must be a fraction in (0, 1] of each class, "
            f"e.g. {kind}:{names or 'NAME'}:0.5"
        )
    return names, fraction


def _subclasses(split: Split, arg: str, spec: str) -> np.ndarray:
    """Sub-class forgetting (as the SUPREME benchmark): forget fine classes of a dataset with super-classes.

    The selection is that of `class:`; what differs is the scenario. Retain keeps the other fine
    classes of the same super-class, so the super-class itself must stay recognisable, and the
    audit can score the model on the coarse labels (`Split.superclass_labels`, split.json).
    """
    if not split.bundle.superclasses:
        raise UnlearnkitError(
            f"forget spec {spec!r} needs a dataset with super-classes (e.g. cifar100:ROOT), but {split.bundle.name!r} "
            f"has none; use class:<name> to forget a class"
        )
    return _classes(split, arg, spec)


def _ids(split: Split, path_text: str, spec: str) -> np.ndarray:
    path = Path(path_text).expanduser()
    if path.is_dir():
        raise UnlearnkitError(f"forget id file {path} is a folder; give ids:<file> with one sample id per line or an `id` CSV column")
    if not path.is_file():
        raise UnlearnkitError(f"forget id file {path} does not exist; give ids:<file> with one sample id per line or an `id` CSV column")
    ids = read_id_file(path)
    seen: set[str] = set()
    for sid in ids:
        if sid in seen:
            raise UnlearnkitError(f"forget id {sid!r} appears twice in {path}; list each sample once")
        seen.add(sid)
    pos = _positions_by_id(split.bundle)
    members = set(split.train_idx.tolist())
    out = []
    for sid in ids:
        p = pos.get(sid)
        if p is None:
            raise UnlearnkitError(f"forget id {sid!r} from {path} is not a training sample of this dataset; check the id")
        if p not in members:
            raise UnlearnkitError(
                f"forget id {sid!r} from {path} is in the validation split, not in the training split; only members can be forgotten"
            )
        out.append(p)
    return np.array(out, dtype=np.int64)


def read_id_file(path: Path) -> list[str]:
    """One id per line, or a CSV with an `id` column (the seed's trainLabels.csv works as is)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(
            f"forget id file {path} is not UTF-8 text (byte {exc.start} cannot be decoded): save it as UTF-8"
        ) from None
    except OSError as exc:
        raise UnlearnkitError(f"cannot read forget id file {path} ({exc.strerror or exc}): check its permissions") from None
    if path.suffix.lower() == ".csv":
        return _csv_ids(text, path)
    return [ln.strip() for ln in text.splitlines() if ln.strip()]


def _csv_ids(text: str, path: Path) -> list[str]:
    """The `id` column of a CSV; the header is matched ignoring case and spaces, as in labels CSVs."""
    try:
        reader = csv.reader(io.StringIO(text))
        header = next((row for row in reader if any(cell.strip() for cell in row)), None)
        columns = [h.strip().lower() for h in header or []]
        if header is not None and "id" not in columns:
            raise UnlearnkitError(f"forget id file {path} has no `id` column; add a header line with `id`")
        ids = []
        for row in reader:
            if not any(cell.strip() for cell in row):
                continue  # blank lines (a trailing newline or two) are harmless
            i = columns.index("id")
            if len(row) <= i or not row[i].strip():
                # A short or empty row would otherwise become the id 'None' or '' and fail far from its cause.
                raise UnlearnkitError(f"forget id file {path} line {reader.line_num} has no id: fix or delete the line")
            ids.append(row[i].strip())
    except csv.Error as exc:
        raise UnlearnkitError(f"forget id file {path} is not valid CSV ({exc}): fix the file") from None
    if not ids:
        raise UnlearnkitError(f"forget id file {path} has no ids; list one sample id per row under the `id` header")
    return ids


# Forget-spec kind -> (selector(split, argument, spec), syntax shown in errors). The order is the order of the help.
FORGET_SPECS: dict[str, tuple[Callable[[Split, str, str], np.ndarray], str]] = {
    "random": (_random, "random:<count|fraction>"),
    "class": (_classes, "class:<name|index>[,...][:<fraction>]"),
    "subclass": (_subclasses, "subclass:<fine class>[,...][:<fraction>]"),
    "ids": (_ids, "ids:<file>"),
}
