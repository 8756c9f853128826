"""Shared fixtures: a trained digits run (seconds on CPU) and the path to the shared CIFAR-10 archive."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("UNLEARNKIT_QUIET", "1")  # no progress bars in test logs

REPO = Path(__file__).resolve().parents[1]
CIFAR10_ARCHIVE = REPO.parent / "shared" / "datasets" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _deterministic_threads():
    # Fewer threads = bit-stable results across runs on the 2-core CI machine.
    torch.set_num_threads(min(2, torch.get_num_threads()))
    yield


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory) -> Path:
    """A private dataset cache: tests never write into the user's ~/.cache."""
    path = tmp_path_factory.mktemp("cache")
    os.environ["UNLEARNKIT_CACHE"] = str(path)
    return path


@pytest.fixture(scope="session")
def digits_run(tmp_path_factory, cache_dir) -> Path:
    """The digits preset trained once for the whole session (a few seconds)."""
    from unlearnkit.config import resolve_config
    from unlearnkit.training.pipeline import train

    out = tmp_path_factory.mktemp("runs") / "digits"
    train(resolve_config("digits", {"train.epochs": 8}), out)
    return out


@pytest.fixture()
def cifar10_archive() -> Path:
    if not CIFAR10_ARCHIVE.is_file():
        pytest.skip(f"CIFAR-10 archive not found at {CIFAR10_ARCHIVE} (../shared/datasets is absent)")
    return CIFAR10_ARCHIVE
