"""CIFAR-10 load time: first load (decode 60k JPEGs, write the cache) and cached loads.

Run:  python benchmarks/cifar10_cache_load.py [--data ../shared/datasets/cifar10-jpeg.tar.gz] [--repeat 5]
Uses a fresh temporary cache folder, so the first load always decodes.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

from unlearnkit.data import load_dataset

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default=str(DEFAULT))
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as cache:
        t = time.perf_counter()
        bundle = load_dataset(args.data, cache_dir=cache)
        first = time.perf_counter() - t
        cached = []
        for _ in range(args.repeat):
            t = time.perf_counter()
            load_dataset(args.data, cache_dir=cache)
            cached.append(time.perf_counter() - t)
    print(json.dumps({
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "images": len(bundle.train) + len(bundle.test),
        "first_load_s": round(first, 2),
        "cached_load_s": {"min": round(min(cached), 3), "max": round(max(cached), 3)},
    }, indent=2))


if __name__ == "__main__":
    main()
