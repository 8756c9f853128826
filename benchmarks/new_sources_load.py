"""Load time of the CIFAR-100, SVHN and Tiny-ImageNet sources on 1,000-image files of their formats.

Run:  python benchmarks/new_sources_load.py [--images 1000] [--repeat 3]
Writes the files (exact formats, via tests/data/data_formats.py) to a temporary folder, then per
source: a first load into an empty cache (read + decode + write the cache entry), cached loads, and
the same first load in a fresh Python process (imports of unlearnkit, numpy, scipy, Pillow included).
Target (issue #12): each first load < 5 s.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "data"))  # the format writers the tests use
from data_formats import tiny_imagenet_files, write_cifar100, write_svhn, write_tree, write_zip  # noqa: E402

from unlearnkit.data import load_dataset  # noqa: E402


def _write_all(root: Path, n: int) -> dict[str, str]:
    """Spec -> description, each source holding n images in all (train + test/val)."""
    n_test = 100  # CIFAR-100's test file must show every fine class once
    write_cifar100(root / "cifar100", n_train=n - n_test, n_test=n_test)
    write_svhn(root / "svhn", n_train=n - n_test, n_test=n_test)
    classes = 10
    files = tiny_imagenet_files(n_classes=classes, per_class=(n - n_test) // classes, n_val=n_test, gray_every=50)
    write_tree(root / "tiny" / "tiny-imagenet-200", files)
    write_zip(root / "tiny-imagenet-200.zip", files, "tiny-imagenet-200")
    return {
        f"cifar100:{root / 'cifar100'}": "CIFAR-100 pickles",
        f"svhn:{root / 'svhn'}": "SVHN .mat files",
        f"tinyimagenet:{root / 'tiny'}": "Tiny-ImageNet folder (64x64 JPEGs)",
        f"tinyimagenet:{root / 'tiny-imagenet-200.zip'}": "Tiny-ImageNet .zip",
    }


def _fresh_process(spec: str, cache: Path) -> float:
    """Wall time of `python -c 'load_dataset(spec)'` with an empty cache: what a user's first command pays."""
    code = f"from unlearnkit.data import load_dataset; load_dataset({spec!r}, cache_dir={str(cache)!r})"
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=1000)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        specs = _write_all(Path(tmp) / "data", args.images)
        for spec, what in specs.items():
            cache = Path(tmp) / f"cache-{len(rows)}"
            t = time.perf_counter()
            bundle = load_dataset(spec, cache_dir=cache)
            first = time.perf_counter() - t
            cached = []
            for _ in range(args.repeat):
                t = time.perf_counter()
                load_dataset(spec, cache_dir=cache)
                cached.append(time.perf_counter() - t)
            rows.append({"source": what, "images": len(bundle.train) + len(bundle.test),
                         "first_load_s": round(first, 3), "cached_load_s": round(min(cached), 3),
                         "fresh_process_first_load_s": round(_fresh_process(spec, Path(tmp) / f"fresh-{len(rows)}"), 3)})
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import unlearnkit"], check=True)
    import_s = time.perf_counter() - t
    print(json.dumps({"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                      "load_average": [round(x, 1) for x in os.getloadavg()],
                      "fresh_process_import_unlearnkit_s": round(import_s, 3), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
