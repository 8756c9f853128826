"""Batched augmentation as tensor ops on uint8 images (no per-sample PIL work in the loop).

Random crop with zero padding and random horizontal flip, for a whole batch at once,
driven by an explicit `torch.Generator` so one seed fixes the augmentation order. With the
generator on the images' device (as `batches` makes it) every op runs there, host-sync free.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


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


def augment(images: torch.Tensor, padding: int, flip: bool, gen: torch.Generator) -> torch.Tensor:
    images = random_crop(images, padding, gen)
    return random_flip(images, gen) if flip else images
