"""Datasets (one registered source per format, decoded once and cached) and member/validation/forget splits."""

from unlearnkit.data.sources import DatasetBundle, LabeledImages, absolute_source, load_dataset
from unlearnkit.data.splits import SPLIT_NAMES, Split, make_split, select_forget, split_from_manifest

__all__ = [
    "SPLIT_NAMES", "DatasetBundle", "LabeledImages", "Split", "absolute_source", "load_dataset", "make_split", "select_forget",
    "split_from_manifest",
]
