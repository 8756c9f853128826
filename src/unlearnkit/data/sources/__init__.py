"""Load an image-classification dataset from wherever the user keeps it, as uint8 arrays.

`load_dataset(source)` hands the spec to the registered source that reads it (one module each):

- ``digits``: scikit-learn's bundled 8x8 digits (no download, no cache: it is tiny).
- ``cifar10:ROOT`` / ``cifar100:ROOT``: a torchvision CIFAR root (``cifar-10-batches-py/``,
  ``cifar-100-python/``); CIFAR-100 also records its 20 super-classes.
- ``svhn:ROOT``: torchvision's ``train_32x32.mat`` / ``test_32x32.mat``.
- ``tinyimagenet:ROOT``: the ``tiny-imagenet-200`` folder (or its .zip); val is the test split.
- a path: an image-folder tree ``train/<class>/*`` + ``test/<class>/*`` or a flat folder of
  ``<id>.<ext>`` images with an ``id,label`` CSV (Kaggle's CIFAR-10 layout), as a folder or as a
  ``.tar``/``.tar.gz``/``.tgz``/``.zip``/``.7z`` archive; a bare path to any of the roots above
  is recognised too.
- ``NAME:ROOT`` for a source another package installs (entry-point group ``unlearnkit.datasets``).

Sources without their own test split get a stratified test split carved with a FIXED seed, so
the test set is a property of the dataset and not of a run's seed. Decoded datasets are cached
by content (see `unlearnkit.data.cache`). Everything a user can get wrong raises
`UnlearnkitError` with one line naming the input. docs/data.md documents every source.
"""

# Registration order is auto-detection order for bare paths: the file-set source must stay last.
from unlearnkit.data.sources import digits, cifar10, cifar100, svhn, tinyimagenet, files  # noqa: F401, I001
from unlearnkit.data.sources.base import (
    TEST_SPLIT_SEED, DatasetBundle, LabeledImages, Source, SourceRequest, carve_test_split, compute_fingerprint,
    make_bundle, make_images, register_source, registered_sources,
)
from unlearnkit.data.sources.filesets import ARCHIVE_SUFFIXES, IMAGE_EXTENSIONS
from unlearnkit.data.sources.plugins import ENTRY_POINT_GROUP, plugin_names
from unlearnkit.data.sources.resolve import absolute_source, load_dataset, parse_spec

__all__ = [
    "ARCHIVE_SUFFIXES", "ENTRY_POINT_GROUP", "IMAGE_EXTENSIONS", "TEST_SPLIT_SEED", "DatasetBundle", "LabeledImages",
    "Source", "SourceRequest", "absolute_source", "carve_test_split", "compute_fingerprint", "load_dataset",
    "make_bundle", "make_images", "parse_spec", "plugin_names", "register_source", "registered_sources",
]
