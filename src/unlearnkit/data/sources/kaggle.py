"""Kaggle's CIFAR-10 layout: a flat folder of ``<id>.<ext>`` images labelled by an ``id,label`` CSV."""

from __future__ import annotations

import csv
import io
import posixpath
import re
from pathlib import Path

from unlearnkit.data.sources.filesets import IMAGE_EXTENSIONS, FileIndex, FileSet, join
from unlearnkit.data.sources.plan import LayoutContext, Plan
from unlearnkit.errors import UnlearnkitError


def plan(fs: FileSet, index: FileIndex, root: str, ctx: LayoutContext) -> Plan | None:
    """Images directly in ROOT (or ROOT/train/), labelled by a CSV; None when neither holds images."""
    for folder in (root, join(root, "train")):
        if index.images_in(folder):
            return _plan_flat(fs, index, folder, ctx.path, ctx.csv_path, ctx.labels_csv)
    return None


def _plan_flat(fs: FileSet, index: FileIndex, folder: str, path: Path, csv_path: Path | None,
               labels_csv: str | None) -> Plan:
    """Kaggle layout: <folder>/<id>.<ext> images labelled by an id,label CSV (CSV row order kept)."""
    where = join(fs.label, folder) if folder else fs.label
    csv_name, csv_text = _labels_csv_text(fs, index, folder, path, csv_path, labels_csv)
    rows = _parse_labels_csv(csv_text, csv_name)

    by_id: dict[str, str] = {}
    for rel in index.images_in(folder):
        stem = posixpath.splitext(posixpath.basename(rel))[0]
        if stem in by_id:
            raise UnlearnkitError(
                f"images {by_id[stem]} and {rel} in {fs.label} share the id {stem!r}: keep one of them"
            )
        by_id[stem] = rel
    labelled = {sample_id for sample_id, _ in rows}
    for sample_id, _ in rows:
        if sample_id not in by_id:
            raise UnlearnkitError(
                f"labels CSV {csv_name} lists id {sample_id!r} but folder {where} has no image "
                f"{sample_id}.<ext> ({', '.join(IMAGE_EXTENSIONS)}): add the image or remove the row"
            )
    unlabelled = sorted(rel for stem, rel in by_id.items() if stem not in labelled)
    if unlabelled:
        raise UnlearnkitError(
            f"image {unlabelled[0]} in {fs.label} has no row in labels CSV {csv_name} "
            f"({len(unlabelled)} unlabelled images): add id,label rows for them or remove the files"
        )
    classes = _sort_labels({lab for _, lab in rows})
    label_index = {c: i for i, c in enumerate(classes)}
    train = [(sample_id, label_index[lab], by_id[sample_id]) for sample_id, lab in rows]
    return Plan(classes, train, None, "flat")


def _sort_labels(labels: set[str]) -> list[str]:
    # All-integer labels sort numerically ("2" before "10"); anything else sorts as text.
    if all(re.fullmatch(r"-?\d+", lab) for lab in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def _labels_csv_text(fs: FileSet, index: FileIndex, folder: str, path: Path, csv_path: Path | None,
                     labels_csv: str | None) -> tuple[str, str]:
    """(name for messages, text) of the labels CSV: the given one, else the nearest single CSV."""
    if csv_path is not None:
        return str(labels_csv), _decode_csv_bytes(csv_path.read_bytes(), str(labels_csv))
    # Nearest first: beside the images, each enclosing folder inside the source, then beside the source.
    levels: list[list[tuple[str, bytes | str]]] = []
    level = folder
    while True:
        levels.append([(f"{fs.label}/{rel}", fs.files[rel]) for rel in index.csvs_in(level)])
        if not level:
            break
        level = posixpath.dirname(level)
    levels.append([(str(p), str(p)) for p in csvs_beside(path)])
    for candidates in levels:
        if not candidates:
            continue
        if len(candidates) > 1:
            # Kaggle ships trainLabels.csv next to sampleSubmission.csv: prefer the one named for labels.
            named = [c for c in candidates if "label" in posixpath.basename(c[0]).lower()]
            if len(named) != 1:
                raise UnlearnkitError(
                    f"several CSV files could label {fs.label} ({', '.join(c[0] for c in candidates)}): "
                    f"pass labels_csv to choose one"
                )
            candidates = named
        name, payload = candidates[0]
        data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
        return name, _decode_csv_bytes(data, name)
    raise UnlearnkitError(
        f"no labels CSV found for the images in {fs.label}: pass labels_csv with id,label columns "
        f"(or put one CSV beside the images)"
    )


def _decode_csv_bytes(data: bytes, name: str) -> str:
    try:
        return data.decode("utf-8-sig")  # -sig: Excel writes a byte-order mark
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(f"labels CSV {name} is not UTF-8 text ({exc}): save it as UTF-8 CSV") from exc


def _parse_labels_csv(text: str, name: str) -> list[tuple[str, str]]:
    """[(id, label)] in file order; header names are matched ignoring case and spaces."""
    try:
        reader = csv.reader(io.StringIO(text))
        header = next(reader, None)
        if header is None:
            raise UnlearnkitError(f"labels CSV {name} is empty: it needs a header row id,label and one row per image")
        columns = [h.strip().lower() for h in header]
        for needed in ("id", "label"):
            if needed not in columns:
                raise UnlearnkitError(
                    f"labels CSV {name} has no {needed!r} column (columns: {', '.join(header) or 'none'}): "
                    f"the header row must name an id column and a label column"
                )
        i_id, i_label = columns.index("id"), columns.index("label")
        rows: list[tuple[str, str]] = []
        seen: set[str] = set()
        for line, row in enumerate(reader, start=2):
            if not any(cell.strip() for cell in row):
                continue  # blank lines (a trailing newline or two) are harmless
            if len(row) <= max(i_id, i_label) or not row[i_id].strip() or not row[i_label].strip():
                raise UnlearnkitError(f"labels CSV {name} line {line} lacks an id or a label: fix or delete the line")
            sample_id, lab = row[i_id].strip(), row[i_label].strip()
            if sample_id in seen:
                raise UnlearnkitError(f"labels CSV {name} lists id {sample_id!r} twice (line {line}): keep one row per image")
            seen.add(sample_id)
            rows.append((sample_id, lab))
    except csv.Error as exc:
        raise UnlearnkitError(f"labels CSV {name} is not valid CSV ({exc}): fix the file") from exc
    if not rows:
        raise UnlearnkitError(f"labels CSV {name} has a header but no rows: add one id,label row per image")
    return rows



def csvs_beside(path: Path) -> list[Path]:
    """The CSV files in the folder that holds `path` (where Kaggle's trainLabels.csv sits)."""
    parent = path.resolve().parent  # resolved: for '.' or a linked folder, path.parent is elsewhere
    try:
        return sorted(p for p in parent.iterdir() if p.suffix.lower() == ".csv" and p.is_file())
    except OSError:
        return []  # an unreadable parent folder just means no CSV beside
