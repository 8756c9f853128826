"""Render an audit's report.html in a real headless browser and check the screenshot is not blank.

    python benchmarks/check_report_html.py RUN_DIR/report.html [--out shot.png]
    python benchmarks/check_report_html.py --demo            # builds a digits audit in a temp dir first

Needs Chromium (Debian: `apt-get install -y chromium`). The page is opened from disk
(file://...) with no network, so this also proves the report is self-contained. Checks:

* the screenshot is mostly but not entirely white (text and tables were laid out);
* it holds a good number of saturated pixels (the base64-embedded PNG plots decoded and drew:
  a broken image shows only a small grey icon).

Exit status 0 when the checks pass, 1 when they fail, 2 when Chromium is missing.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")


def find_browser() -> str | None:
    for name in BROWSERS:
        path = shutil.which(name)
        if path:
            return path
    return None


def screenshot(html: Path, out: Path, width: int = 1200, height: int = 3000, timeout: float = 120.0) -> Path:
    browser = find_browser()
    if browser is None:
        raise FileNotFoundError("no Chromium found (apt-get install -y chromium)")
    out.unlink(missing_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        cmd = [
            browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
            "--disable-extensions", "--disable-dev-shm-usage", f"--user-data-dir={profile}",
            f"--screenshot={out}", f"--window-size={width},{height}", html.resolve().as_uri(),
        ]
        subprocess.run(cmd, check=False, capture_output=True, timeout=timeout)
    if not out.is_file():
        raise RuntimeError(f"{browser} wrote no screenshot for {html}")
    return out


def analyse(png: Path) -> dict[str, float]:
    """Share of non-white pixels, share of saturated (coloured) pixels, grey-level spread."""
    import numpy as np
    from PIL import Image

    img = np.asarray(Image.open(png).convert("RGB")).astype(np.int16)
    grey = img.mean(axis=2)
    sat = img.max(axis=2) - img.min(axis=2)
    return {
        "width": float(img.shape[1]),
        "height": float(img.shape[0]),
        "non_white": float((grey < 245).mean()),
        "coloured": float((sat > 60).mean()),
        "grey_std": float(grey.std()),
    }


def check(stats: dict[str, float]) -> list[str]:
    problems = []
    if stats["grey_std"] < 5:
        problems.append(f"screenshot is uniform (grey-level sd {stats['grey_std']:.1f}): nothing rendered")
    if not 0.01 < stats["non_white"] < 0.9:
        problems.append(f"non-white share {stats['non_white']:.3f} is outside (0.01, 0.9)")
    if stats["coloured"] < 0.002:
        problems.append(f"coloured share {stats['coloured']:.4f}: the embedded plots did not draw")
    return problems


def _demo(tmp: Path) -> Path:
    os.environ.setdefault("UNLEARNKIT_QUIET", "1")
    os.environ.setdefault("UNLEARNKIT_CACHE", str(tmp / "cache"))
    import torch

    torch.set_num_threads(1)
    from unlearnkit.audit import audit
    from unlearnkit.config import resolve_config
    from unlearnkit.methods import forget_run
    from unlearnkit.training.pipeline import train

    train(resolve_config("digits", {"train.epochs": 8}), tmp / "orig")
    forget_run(tmp / "orig", "finetune", "random:0.1", tmp / "ft")
    forget_run(tmp / "orig", "retrain", "random:0.1", tmp / "rt")
    audit(tmp / "ft", reference=tmp / "rt")
    return tmp / "ft" / "report.html"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("html", nargs="?", type=Path, help="a report.html (from `unlearnkit audit` or `compare --out`)")
    ap.add_argument("--demo", action="store_true", help="make a digits audit in a temp dir and check its report")
    ap.add_argument("--out", type=Path, help="where to keep the screenshot (default: beside the report)")
    args = ap.parse_args(argv)
    if find_browser() is None:
        print("chromium not found: apt-get install -y chromium", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory() as tmp:
        html = _demo(Path(tmp)) if args.demo else args.html
        if html is None or not Path(html).is_file():
            ap.error("pass a report.html or --demo")
        default = Path(tempfile.gettempdir()) / "unlearnkit_report_screenshot.png" if args.demo else \
            Path(html).with_name("report_screenshot.png")
        out = args.out or default
        screenshot(Path(html), out)
        stats = analyse(out)
        problems = check(stats)
        print(f"screenshot {out}: " + ", ".join(f"{k} {v:.4g}" for k, v in stats.items()))
    for p in problems:
        print(f"FAIL: {p}", file=sys.stderr)
    print("OK" if not problems else "FAILED")
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
