"""Helpers shared by the CLI tests (importable because pytest puts tests/ on sys.path)."""

import os
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from unlearnkit.cli.main import main


def run_cli(capsys, *argv):
    """Run `unlearnkit ARGV` in-process; returns (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, pattern):
    """The bad-input contract: exit status 2 and exactly one `error: ...` line matching `pattern`."""
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert re.search(pattern, lines[0]), lines[0]


def audit_numbers(result) -> dict:
    """An audit result's numbers: everything but its timings and creation time (which differ between runs)."""
    return {k: v for k, v in result.to_dict().items() if k not in ("timings", "created")}


# A symlink test needs POSIX symlinks (Windows needs privileges for them).
needs_symlinks = pytest.mark.skipif(not hasattr(os, "symlink") or os.name == "nt", reason="needs POSIX symlinks")


def write_images(folder: Path, n: int, seed: int) -> None:
    """n distinct random 4x4 RGB PNGs named 0.png .. in `folder` (an image-folder class)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)).save(folder / f"{i}.png")


def method_context(digits, spec: str):
    """A MethodContext for `spec` on the (run, model) pair of the methods' `digits` fixture."""
    from unlearnkit.methods.base import MethodContext  # noqa: PLC0415

    run, model = digits
    return MethodContext(run.split.with_forget(spec), run.normalizer, run.runtime, model, run.config.train, run.fresh_model)
