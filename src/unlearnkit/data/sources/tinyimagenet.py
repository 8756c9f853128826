"""Tiny-ImageNet's ``tiny-imagenet-200`` layout, as a folder or as its .zip; its val set is the test split.

    tiny-imagenet-200/wnids.txt                      the class ids (WordNet ids), one a line
    tiny-imagenet-200/train/<wnid>/images/*.JPEG     500 64x64 training images per class
    tiny-imagenet-200/val/images/*.JPEG              10,000 labelled images ...
    tiny-imagenet-200/val/val_annotations.txt        ... labelled here: file <TAB> wnid <TAB> box

Classes are the wnids in sorted order (as torchvision's ImageFolder orders them); `words.txt`
maps them to names for a person and is not needed. The unlabelled ``test/`` folder is ignored.
Sample ids are the file stems (``n01443537_0``, ``val_0``), unique in this format.
"""

from __future__ import annotations

import posixpath
from pathlib import Path

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest, make_bundle, make_images, register_source
from unlearnkit.data.sources.decode import decode_all, stack_blocks
from unlearnkit.data.sources.filesets import IMAGE_EXTENSIONS, FileIndex, FileSet, join, open_file_set
from unlearnkit.errors import UnlearnkitError

_FOLDER = "tiny-imagenet-200"


def _text(fs: FileSet, rel: str) -> str:
    payload = fs.files[rel]
    data = payload if isinstance(payload, bytes) else Path(payload).read_bytes()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UnlearnkitError(f"Tiny-ImageNet file {rel} in {fs.label} is not UTF-8 text ({exc}): download the dataset again") from None


def _find_root(fs: FileSet) -> str:
    """The folder that holds wnids.txt (the top, or one or two wrapping folders down)."""
    found = sorted((rel for rel in fs.files if posixpath.basename(rel) == "wnids.txt"), key=lambda r: (r.count("/"), r))
    if not found:
        raise UnlearnkitError(
            f"data path {fs.label} has no wnids.txt: point tinyimagenet:ROOT at the {_FOLDER} folder (or its .zip, "
            f"or the folder that contains it)"
        )
    return posixpath.dirname(found[0])


def _images_under(fs: FileSet, folder: str) -> list[str]:
    prefix = join(folder, "")
    return sorted(rel for rel in fs.files if rel.startswith(prefix) and rel.lower().endswith(IMAGE_EXTENSIONS))


def _stem(rel: str) -> str:
    return posixpath.splitext(posixpath.basename(rel))[0]


def _plan(fs: FileSet) -> tuple[list[str], list[tuple[str, int, str]], list[tuple[str, int, str]]]:
    """(classes, train samples, test samples), each sample (id, label, file-set path)."""
    root = _find_root(fs)
    wnids_rel = join(root, "wnids.txt")
    wnids = [line.strip() for line in _text(fs, wnids_rel).splitlines() if line.strip()]
    if len(set(wnids)) != len(wnids):
        raise UnlearnkitError(f"Tiny-ImageNet file {wnids_rel} in {fs.label} lists a class twice: keep each wnid once")
    classes = sorted(wnids)
    label_of = {w: i for i, w in enumerate(classes)}

    train: list[tuple[str, int, str]] = []
    for wnid in classes:
        images = _images_under(fs, join(root, f"train/{wnid}/images"))
        if not images:
            raise UnlearnkitError(
                f"Tiny-ImageNet class {wnid} (from wnids.txt) has no images in {join(root, f'train/{wnid}/images')} "
                f"of {fs.label}: the dataset is incomplete; download or extract it again"
            )
        train += [(_stem(rel), label_of[wnid], rel) for rel in images]
    extra = sorted(FileIndex(fs).subdirs.get(join(root, "train"), set()) - set(classes))
    if extra:
        raise UnlearnkitError(
            f"Tiny-ImageNet folder {join(root, 'train/' + extra[0])} in {fs.label} is not a class in wnids.txt: "
            f"add its wnid to wnids.txt or remove the folder"
        )

    ann_rel = join(root, "val/val_annotations.txt")
    if ann_rel not in fs.files:
        raise UnlearnkitError(f"data path {fs.label} has no {ann_rel}: the Tiny-ImageNet val labels are missing; extract the dataset again")
    val_dir = join(root, "val/images")
    by_name = {posixpath.basename(rel): rel for rel in _images_under(fs, val_dir)}
    test: list[tuple[str, int, str]] = []
    for number, line in enumerate(_text(fs, ann_rel).splitlines(), start=1):
        if not line.strip():
            continue
        cells = line.split("\t")
        if len(cells) < 2 or cells[1].strip() not in label_of:
            what = f"class {cells[1].strip()!r} is not in wnids.txt" if len(cells) >= 2 else "it has no file<TAB>wnid"
            raise UnlearnkitError(f"Tiny-ImageNet file {ann_rel} line {number} is not usable ({what}): fix or delete the line")
        name, wnid = cells[0].strip(), cells[1].strip()
        rel = by_name.pop(name, None)
        if rel is None:
            raise UnlearnkitError(
                f"Tiny-ImageNet file {ann_rel} line {number} labels {name}, which is not in {val_dir} "
                f"(or is listed twice): add the image or remove the line"
            )
        test.append((_stem(rel), label_of[wnid], rel))
    if by_name:
        first = sorted(by_name)[0]
        raise UnlearnkitError(
            f"Tiny-ImageNet image {by_name[first]} in {fs.label} has no line in {ann_rel} ({len(by_name)} unlabelled): "
            f"add file<TAB>wnid lines or remove the images"
        )
    if not test:
        raise UnlearnkitError(f"Tiny-ImageNet folder {val_dir} in {fs.label} has no images: extract the dataset again")
    test.sort()
    ids = [s[0] for s in train + test]
    if len(set(ids)) != len(ids):
        raise UnlearnkitError(f"Tiny-ImageNet files in {fs.label} reuse an image file name: keep file names unique")
    return classes, train, test


@register_source
class TinyImageNet(Source):
    name = "tinyimagenet"
    summary = "Tiny-ImageNet (tiny-imagenet-200/ folder or .zip: wnids.txt, train/<wnid>/images, val/); val is the test split"
    example = "tinyimagenet:~/data/tiny-imagenet-200"
    layout = f"{_FOLDER}/ (or {_FOLDER}.zip)"

    @classmethod
    def detect(cls, path: Path) -> Path | None:
        if path.is_file() and path.name.lower() == f"{_FOLDER}.zip":  # as downloaded
            return path
        if path.is_dir() and (path / _FOLDER / "wnids.txt").is_file():
            return path / _FOLDER
        if path.is_dir() and (path / "wnids.txt").is_file() and (path / "val" / "val_annotations.txt").is_file():
            return path
        return None

    def load(self, request: SourceRequest) -> DatasetBundle:
        path = request.root
        if path.is_dir() and (path / _FOLDER).is_dir():
            path = path / _FOLDER  # pointed at the folder that contains it

        def build() -> DatasetBundle:
            with open_file_set(path, str(path)) as fs:
                classes, train, test = _plan(fs)
                samples = train + test
                blocks = decode_all([(f"{rel} in {fs.label}", fs.files[rel]) for _, _, rel in samples])
                images = stack_blocks(blocks, [rel for _, _, rel in samples], fs.label)
            n = len(train)
            parts = [make_images(images[:n], [s[1] for s in train], [s[0] for s in train]),
                     make_images(images[n:], [s[1] for s in test], [s[0] for s in test])]
            return make_bundle(self.name, classes, parts[0], parts[1], request.source)

        content = _cache.tree_digest(path) if path.is_dir() else _cache.file_digest(path)
        return request.cached(self.name, {"kind": "tinyimagenet", "content": content}, build)
