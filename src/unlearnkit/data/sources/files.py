"""The file-set source: a folder or an archive in one of the file layouts (image-folder tree, Kaggle CSV).

The layouts are tried in `_LAYOUTS` order on one listing of the folder or archive, so an
archive is read once whichever layout it holds. This source is the fallback for a bare path
that no other source recognises.
"""

from __future__ import annotations

from pathlib import Path

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources import imagefolder, kaggle
from unlearnkit.data.sources.base import (
    DatasetBundle, Source, SourceRequest, carve_test_split, make_bundle, make_images, register_source, reject_labels_csv,
)
from unlearnkit.data.sources.decode import decode_all, stack_blocks
from unlearnkit.data.sources.filesets import FileIndex, FileSet, find_root, open_file_set, source_name
from unlearnkit.data.sources.plan import LayoutContext, Plan
from unlearnkit.errors import UnlearnkitError

LAYOUTS_EXPECTED = (
    "expected one of: train/<class>/ and test/<class>/ image folders; "
    "a torchvision CIFAR root (cifar-10-batches-py/ or cifar-100-python/); "
    "a folder of <id>.<ext> images with an id,label CSV; or 'digits' (see docs/data.md for every source)"
)
# Tried in order; the tree wins when a train/ folder has class folders.
_LAYOUTS = (imagefolder.plan, kaggle.plan)


@register_source
class ImageFiles(Source):
    name = "folder"
    summary = "an image-folder tree (train/<class>/*, test/<class>/*) or a Kaggle id,label CSV folder; folder or archive"
    example = "folder:../shared/datasets/cifar10-jpeg.tar.gz"
    layout = "train/<class>/ image folders or <id>.<ext> images with an id,label CSV"
    takes_labels_csv = True

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        return path  # the fallback: registered last, it takes any path the others did not claim

    def load(self, request: SourceRequest) -> DatasetBundle:
        path, source, labels_csv = request.root, request.source, request.labels_csv
        csv_path = Path(labels_csv).expanduser() if labels_csv is not None else None
        if csv_path is not None and not csv_path.is_file():
            raise UnlearnkitError(f"labels CSV {labels_csv} does not exist: check the labels_csv path")
        name = source_name(path)
        ctx = LayoutContext(path, csv_path, labels_csv)

        def build() -> DatasetBundle:
            with open_file_set(path, request.argument) as fs:  # messages name the path
                plan = _plan(fs, ctx)
                if labels_csv is not None and plan.layout != "flat":
                    reject_labels_csv(labels_csv, source)
                return decode_plan(fs, plan, name, source, request.test_fraction)

        key = _file_key_parts(path, csv_path, request.test_fraction) if request.store else None
        return request.cached(name, key, build)


def _file_key_parts(path: Path, csv_path: Path | None, test_fraction: float) -> dict:
    # Folders are keyed by a stat digest, archives by their bytes (see cache.py). A labels CSV can
    # live outside the source, so it is keyed too: by content when given, and when auto-detected by
    # the stat of every CSV beside the source (cheap, and an edit there then forces a rebuild).
    content = _cache.tree_digest(path) if path.is_dir() else _cache.file_digest(path)
    parts: dict = {"kind": "files", "content": content, "test_fraction": float(test_fraction)}
    if csv_path is not None:
        parts["labels_csv"] = _cache.file_digest(csv_path)
    else:
        beside = kaggle.csvs_beside(path)
        # Stat them where csvs_beside found them (the resolved parent), not in path.parent: for "." or a
        # symlinked folder those differ, and the unresolved one may not hold the CSVs at all.
        parts["csvs_beside"] = _cache.tree_digest(beside[0].parent, [p.name for p in beside]) if beside else None
    return parts


def _plan(fs: FileSet, ctx: LayoutContext) -> Plan:
    if not fs.files and not fs.other_files:
        raise UnlearnkitError(f"data path {fs.label} is empty: put the dataset's images there ({LAYOUTS_EXPECTED})")
    index = FileIndex(fs)
    root = find_root(index)
    for layout in _LAYOUTS:
        plan = layout(fs, index, root, ctx)
        if plan is not None:
            return plan
    raise UnlearnkitError(f"data path {fs.label} matches no known layout: {LAYOUTS_EXPECTED}")


def decode_plan(fs: FileSet, plan: Plan, name: str, source: str, test_fraction: float) -> DatasetBundle:
    samples = plan.train + (plan.test or [])
    # Decode train and test in one pass: one process pool, one size/colour decision for both.
    shown = [rel for _, _, rel in samples]
    blocks = decode_all([(f"{rel} in {fs.label}", fs.files[rel]) for _, _, rel in samples])
    images = stack_blocks(blocks, shown, fs.label)
    n_train = len(plan.train)
    train = make_images(images[:n_train], [s[1] for s in plan.train], [s[0] for s in plan.train])
    if plan.test is None:
        train, test = carve_test_split(train, test_fraction, fs.label)
    else:
        test = make_images(images[n_train:], [s[1] for s in plan.test], [s[0] for s in plan.test])
    return make_bundle(name, plan.classes, train, test, source)
