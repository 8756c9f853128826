"""Batched augmentation as tensor ops on uint8 images (no per-sample PIL work in the loop).

Random crop with zero padding, random horizontal flip and Cutout, for a whole batch at once,
driven by an explicit `torch.Generator` so one seed fixes the augmentation order. With the
generator on the images' device (as `batches` makes it) every op runs there, host-sync free.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from unlearnkit.errors import UnlearnkitError


def random_crop(images: torch.Tensor, padding: int, gen: torch.Generator) -> torch.Tensor:
    """Pad by `padding` and cut a random HxW window per image, via one gather."""
    if padding <= 0:
        return images
    b, c, h, w = images.shape
    padded = F.pad(images, (padding, padding, padding, padding))
    dy = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=gen.device).to(images.device)
    dx = torch.randint(0, 2 * padding + 1, (b,), generator=gen, device=gen.device).to(images.device)
    rows = (dy[:, None] + torch.arange(h, device=images.device))[:, :, None]  # (b, h, 1)
    cols = (dx[:, None] + torch.arange(w, device=images.device))[:, None, :]  # (b, 1, w)
    batch = torch.arange(b, device=images.device)[:, None, None]
    # Advanced indexing puts the indexed dims first: (b, h, w, c) -> back to (b, c, h, w).
    return padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2)


def random_flip(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    mask = torch.rand(images.shape[0], generator=gen, device=gen.device).to(images.device) < 0.5
    return torch.where(mask[:, None, None, None], images.flip(3), images)


def random_cutout(images: torch.Tensor, size: int, gen: torch.Generator,
                  fill: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Cutout (DeVries & Taylor 2017): one `size` x `size` square per image set to `fill`.

    The square's centre is drawn uniformly over the image (row, then column: two draws of `b`
    from `gen`) and the square is clipped at the border, so near an edge less is covered. Its
    rows are [cy - size // 2, cy - size // 2 + size), columns likewise. `fill` is one uint8 value
    per channel (a tensor already on the images' device costs no copy per batch); `batches` passes
    the training split's rounded mean colour, which is what a zero square on normalised inputs (the
    paper's form) amounts to. None fills with 0 (black).
    A square larger than the image's smaller side is refused (one line naming train.cutout).
    """
    if size <= 0:
        return images
    b, c, h, w = images.shape
    if size > min(h, w):
        raise UnlearnkitError(f"train.cutout={size} is larger than the {h}x{w} training images; use at most {min(h, w)} (0 = off)")
    cy = torch.randint(0, h, (b,), generator=gen, device=gen.device).to(images.device)
    cx = torch.randint(0, w, (b,), generator=gen, device=gen.device).to(images.device)
    y0, x0 = cy - size // 2, cx - size // 2
    rows = torch.arange(h, device=images.device)[None, :]  # (1, h): clipping falls out of the comparisons
    cols = torch.arange(w, device=images.device)[None, :]
    in_rows = (rows >= y0[:, None]) & (rows < (y0 + size)[:, None])  # (b, h)
    in_cols = (cols >= x0[:, None]) & (cols < (x0 + size)[:, None])  # (b, w)
    mask = (in_rows[:, :, None] & in_cols[:, None, :])[:, None]  # (b, 1, h, w)
    if fill is None:
        values = torch.zeros(c, dtype=images.dtype, device=images.device)
    else:
        values = torch.as_tensor(fill, dtype=images.dtype, device=images.device)
    if values.numel() != c:
        raise ValueError(f"cutout fill has {values.numel()} values for {c} channels")
    out = torch.where(mask, values.view(1, c, 1, 1), images)
    if images.is_contiguous(memory_format=torch.channels_last) and not images.is_contiguous():
        out = out.contiguous(memory_format=torch.channels_last)  # keep the input's layout
    return out


def augment(images: torch.Tensor, padding: int, flip: bool, gen: torch.Generator, cutout: int = 0,
            fill: Sequence[int] | torch.Tensor | None = None) -> torch.Tensor:
    """Crop, flip, then Cutout. Cutout draws from `gen` only when `cutout` > 0, so runs without it
    consume the generator exactly as before (bit-identical batches)."""
    images = random_crop(images, padding, gen)
    if flip:
        images = random_flip(images, gen)
    return random_cutout(images, cutout, gen, fill) if cutout > 0 else images
