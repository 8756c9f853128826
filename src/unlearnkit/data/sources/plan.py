"""What a file-set layout (image-folder tree, Kaggle CSV) decides before any image is decoded."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass
class Plan:
    """What to decode: per sample an id, a label index and a file-set path; test None = carve it."""

    classes: list[str]
    train: list[tuple[str, int, str]]
    test: list[tuple[str, int, str]] | None
    layout: str


@dataclass(frozen=True)
class LayoutContext:
    """What a layout may need besides the file set: the source path and the user's labels CSV."""

    path: Path  # the folder or archive on disk
    csv_path: Path | None  # labels_csv, expanded (None = auto-detect)
    labels_csv: str | None  # labels_csv as given (for messages)
