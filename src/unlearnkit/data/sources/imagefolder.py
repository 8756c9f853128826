"""Image-folder trees (``ROOT/train/<class>/*``, ``ROOT/test/<class>/*``) as a folder or an archive."""

from __future__ import annotations

from collections import defaultdict

from unlearnkit.data.sources.filesets import IMAGE_EXTENSIONS, FileIndex, FileSet, join
from unlearnkit.data.sources.plan import LayoutContext, Plan
from unlearnkit.errors import UnlearnkitError


def plan(fs: FileSet, index: FileIndex, root: str, ctx: LayoutContext) -> Plan | None:
    """ROOT/train/<class>/** and ROOT/test/<class>/** (nested folders inside a class are included);
    None when there is no train/<class>/ folder."""
    if not index.subdirs.get(join(root, "train")):
        return None
    by_folder: dict[tuple[str, str], list[str]] = defaultdict(list)
    prefix = join(root, "")
    for rel in fs.files:
        if not rel.lower().endswith(IMAGE_EXTENSIONS) or not rel.startswith(prefix):
            continue
        parts = rel[len(prefix):].split("/")
        if parts[0] not in ("train", "test"):
            continue  # e.g. a val/ folder: not part of this layout
        if len(parts) == 2:
            raise UnlearnkitError(
                f"image {rel} in {fs.label} is not inside a class folder: move it into {parts[0]}/<class>/"
            )
        by_folder[(parts[0], parts[1])].append(rel)

    classes = sorted(index.subdirs[join(root, "train")])
    for cls in classes:
        if not by_folder.get(("train", cls)):
            raise _empty_class_folder(fs, join(root, f"train/{cls}"))
    test_dir = join(root, "test")
    test: list[tuple[str, int, str]] | None = None
    if test_dir in fs.dirs:
        test_classes = sorted(index.subdirs.get(test_dir, ()))
        if not test_classes:
            raise UnlearnkitError(
                f"folder {test_dir} in {fs.label} has no class folders: put test images in test/<class>/ "
                f"(or remove test/ to carve a test split from train)"
            )
        for cls in test_classes:
            if cls not in classes:
                raise UnlearnkitError(
                    f"test class folder {join(test_dir, cls)} in {fs.label} has no matching train/{cls}/ "
                    f"(train classes: {', '.join(classes)}): rename or remove it"
                )
            if not by_folder.get(("test", cls)):
                raise _empty_class_folder(fs, join(test_dir, cls))
        test = _tree_samples(by_folder, classes, "test", prefix)
    return Plan(classes, _tree_samples(by_folder, classes, "train", prefix), test, "tree")


def _empty_class_folder(fs: FileSet, folder: str) -> UnlearnkitError:
    return UnlearnkitError(
        f"class folder {folder} in {fs.label} has no images ({', '.join(IMAGE_EXTENSIONS)}): "
        f"add images or remove the folder"
    )


def _tree_samples(by_folder: dict, classes: list[str], split: str, prefix: str) -> list[tuple[str, int, str]]:
    samples = [
        (rel[len(prefix):], label, rel)
        for label, cls in enumerate(classes)
        for rel in by_folder.get((split, cls), ())
    ]
    return sorted(samples)  # sorted by id: independent of archive member or directory listing order

