"""Decoding image files (from disk or archive bytes) into one uint8 NCHW array, over a few processes when it pays off."""

from __future__ import annotations

import io
import math
import multiprocessing
import os
import sys
import warnings
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np
from PIL import Image, UnidentifiedImageError

from unlearnkit.errors import UnlearnkitError
# Modes Pillow decodes that carry no colour: kept single-channel unless colour images are mixed in.
_GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"})
# 16-bit grayscale (PNG): convert("L") clips every value above 255 to white, so these are scaled
# (value >> 8) instead. "I" is what older Pillow releases open a 16-bit PNG as (no format we read has
# wider integers), so it is scaled the same way, and refused when a value falls outside 0..65535.
_WIDE_GRAY_MODES = frozenset({"I", "I;16", "I;16L", "I;16B", "I;16N"})
# Below this many images a process pool costs more (fork + pickling) than it saves.
_PARALLEL_MIN_IMAGES = 2000
# Measured on CIFAR-10 (2 cores): serial 5.3 s, 2 worker processes 2.9 s; threads were slower
# (11.7 s: the per-image Python work holds the GIL). More workers would help on larger machines,
# but decoding happens once per dataset (then the cache serves it), so stay modest.
_MAX_DECODE_WORKERS = 4


def decode_image(name: str, payload: bytes | str) -> np.ndarray:
    """One image as uint8 (H, W) for grayscale or (H, W, 3) for colour; unreadable -> UnlearnkitError."""
    try:
        with Image.open(io.BytesIO(payload) if isinstance(payload, bytes) else payload) as im:
            im.load()  # decode now, inside the try: a truncated file fails here, not later
            if im.mode in _WIDE_GRAY_MODES:
                return _scale_16bit(name, np.asarray(im))
            if im.mode == "F":
                # Floating-point pixels have no agreed range (0..1? 0..255?): guessing one would be a silent error.
                raise UnlearnkitError(
                    f"image {name} has floating-point pixels (mode F), which have no standard 8-bit scaling: "
                    f"save it as an 8-bit or 16-bit image"
                )
            if im.mode in _GRAY_MODES:
                im = im if im.mode == "L" else im.convert("L")
            elif im.mode != "RGB":
                im = im.convert("RGB")
            return np.asarray(im, dtype=np.uint8)
    except (OSError, ValueError, SyntaxError, EOFError, UnidentifiedImageError, Image.DecompressionBombError) as exc:
        # Pillow reports broken PNG chunks as SyntaxError, truncation as OSError.
        raise UnlearnkitError(
            f"cannot read image {name} ({type(exc).__name__}: {exc}): replace or delete the file"
        ) from None


def _scale_16bit(name: str, arr: np.ndarray) -> np.ndarray:
    """16-bit gray values to 8 bits by their top byte (65535 -> 255, as Pillow's own 16-to-8-bit paths)."""
    if arr.size and (arr.min() < 0 or arr.max() > 0xFFFF):
        raise UnlearnkitError(
            f"image {name} has pixel values outside 0..65535 ({int(arr.min())}..{int(arr.max())}), which have no "
            f"standard 8-bit scaling: save it as an 8-bit or 16-bit image"
        )
    return (arr.astype(np.uint32) >> 8).astype(np.uint8)


def _decode_chunk(items: Sequence[tuple[str, bytes | str]]) -> list[np.ndarray]:
    """Decode in order, grouping runs of same-shape images into blocks (k, H, W) or (k, H, W, 3).

    One array per block pickles back from a worker far faster than thousands of small ones,
    and lets the parent copy whole blocks into place. Module-level so worker processes can
    run it; an UnlearnkitError raised here pickles back to the parent intact.
    """
    blocks: list[np.ndarray] = []
    run: list[np.ndarray] = []
    for name, payload in items:
        arr = decode_image(name, payload)
        if run and arr.shape != run[0].shape:
            blocks.append(np.stack(run))
            run = []
        run.append(arr)
    if run:
        blocks.append(np.stack(run))
    return blocks


def _decode_workers(n_images: int) -> int:
    if n_images < _PARALLEL_MIN_IMAGES or not sys.platform.startswith("linux"):
        # Elsewhere only spawn/forkserver exist, which re-import the user's __main__: a script
        # without an `if __name__ == "__main__"` guard would break. Serial is correct everywhere.
        return 1
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, _MAX_DECODE_WORKERS))


def decode_all(items: Sequence[tuple[str, bytes | str]]) -> list[np.ndarray]:
    """Decode every (name, payload) in order (as blocks, see `_decode_chunk`), over a few forked
    processes when that pays off."""
    workers = _decode_workers(len(items))
    if workers < 2:
        return _decode_chunk(items)
    # ~8 chunks per worker balances load; each chunk is one pickled round trip.
    size = max(1, math.ceil(len(items) / (workers * 8)))
    chunks = [items[i : i + size] for i in range(0, len(items), size)]
    # fork: workers start instantly and import nothing; they only run Pillow/numpy (no torch),
    # which is the same bet torch's own DataLoader makes on Linux.
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r".*fork\(\).*", category=DeprecationWarning)
        executor = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
        try:
            blocks: list[np.ndarray] = []
            for part in executor.map(_decode_chunk, chunks):
                blocks.extend(part)
            return blocks
        except BrokenProcessPool:
            pass  # a worker died (e.g. killed): fall through to the always-works serial path
        finally:
            executor.shutdown(wait=True, cancel_futures=True)  # on an error, skip the remaining chunks
    return _decode_chunk(items)


def stack_blocks(blocks: Sequence[np.ndarray], names: Sequence[str], label: str) -> np.ndarray:
    """(N, C, H, W) uint8 from decoded blocks: all grayscale -> C=1, else gray is expanded to RGB."""
    h, w = blocks[0].shape[1:3]
    offset = 0
    for block in blocks:
        if block.shape[1:3] != (h, w):
            raise UnlearnkitError(
                f"image {names[offset]} in {label} is {block.shape[2]}x{block.shape[1]} pixels but the first "
                f"image ({names[0]}) is {w}x{h}: resize all images to one size"
            )
        offset += len(block)
    channels = 1 if all(b.ndim == 3 for b in blocks) else 3
    out = np.empty((offset, channels, h, w), dtype=np.uint8)
    offset = 0
    for block in blocks:
        # Straight into NCHW (one copy); a gray block broadcasts into R, G and B alike.
        out[offset : offset + len(block)] = block[:, None] if block.ndim == 3 else block.transpose(0, 3, 1, 2)
        offset += len(block)
    return out

