"""Members, held-out non-members, and the forget/retain partition, all by sample id.

The training pool divides into `train` (members: what the model is trained on) and
`val` (non-members the audit and some methods use); `test` stays untouched for the final
evaluation. A forget request selects a subset of `train`; retain = train minus forget.
Positions index `bundle.train`; manifests store sample ids so they survive re-ordering.
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from sklearn.model_selection import train_test_split

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
        }


def make_split(bundle: DatasetBundle, val_fraction: float = 0.2, seed: int = 0) -> Split:
    """Stratified members/validation split of the training pool, fixed by `seed`."""
    n = len(bundle.train.labels)
    positions = np.arange(n)
    labels = bundle.train.labels
    stratify = labels if np.bincount(labels).min(initial=n) >= 2 else None
    try:
        train_idx, val_idx = train_test_split(positions, test_size=val_fraction, random_state=seed, stratify=stratify)
    except ValueError as exc:
        raise UnlearnkitError(f"cannot hold out data.val_fraction={val_fraction} of {n} training samples: {exc}") from None
    return Split(bundle, np.sort(train_idx), np.sort(val_idx), np.empty(0, dtype=np.int64), seed)


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

    Specs: `random:<count>` or `random:<fraction>`, `class:<name|index>[,...]`, `ids:<file>`.
    """
    kind, _, arg = spec.partition(":")
    if kind == "random":
        chosen = _random(split, arg, spec)
    elif kind == "class":
        chosen = _classes(split, arg, spec)
    elif kind == "ids":
        chosen = _ids(split, arg)
    else:
        raise UnlearnkitError(
            f"forget spec {spec!r} is not understood; use random:<count|fraction>, class:<name|index>[,...] or ids:<file>"
        )
    if len(chosen) == 0:
        raise UnlearnkitError(f"forget spec {spec!r} selects no training sample; choose a non-empty forget set")
    if len(chosen) >= len(split.train_idx):
        raise UnlearnkitError(
            f"forget spec {spec!r} selects the whole training set ({len(chosen)} samples); nothing would remain to retain"
        )
    return np.sort(chosen).astype(np.int64)


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
    # The forget draw has its own stream: the same spec + seed always picks the same samples.
    seed = int.from_bytes(hashlib.sha256(f"{split.seed}/{spec}".encode()).digest()[:4], "little")
    rng = np.random.default_rng(seed)
    return rng.choice(split.train_idx, size=count, replace=False)


def _classes(split: Split, arg: str, spec: str) -> np.ndarray:
    wanted = []
    for token in [t.strip() for t in arg.split(",") if t.strip()]:
        if token in split.classes:
            wanted.append(split.classes.index(token))
        elif token.isdigit() and int(token) < split.num_classes:
            wanted.append(int(token))
        else:
            raise UnlearnkitError(
                f"forget spec {spec!r}: unknown class {token!r}; classes are: {', '.join(split.classes)}"
            )
    labels = split.bundle.train.labels[split.train_idx]
    return split.train_idx[np.isin(labels, wanted)]


def _ids(split: Split, path_text: str) -> np.ndarray:
    path = Path(path_text)
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
    text = path.read_text(encoding="utf-8-sig")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(lines))
        if not rows or "id" not in rows[0]:
            raise UnlearnkitError(f"forget id file {path} has no `id` column; add a header line with `id`")
        return [str(r["id"]).strip() for r in rows]
    return [ln.strip() for ln in lines]
