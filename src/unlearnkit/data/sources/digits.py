"""scikit-learn's bundled 8x8 digits: no file, no download, no cache (it is tiny)."""

from __future__ import annotations

import numpy as np

from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest, carve_test_split, make_bundle, make_images, register_source


@register_source
class Digits(Source):
    name = "digits"
    summary = "scikit-learn's embedded 8x8 digits (no file)"
    example = "digits"
    takes_path = False

    def load(self, request: SourceRequest) -> DatasetBundle:
        from sklearn.datasets import load_digits  # lazy: importing sklearn costs ~1 s

        digits = load_digits()
        # 0..16 intensities to 0..255; np.round is round-half-even like Python's round().
        images = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)[:, None, :, :]
        ids = [f"digits-{i:04d}" for i in range(len(images))]
        pool = make_images(images, digits.target, ids)
        train, test = carve_test_split(pool, request.test_fraction, "digits")
        return make_bundle("digits", [str(d) for d in range(10)], train, test, request.source)
