"""Images on the device as one uint8 tensor, batched, augmented and normalised there.

Normalisation happens per batch (after augmentation, on the device) with the training
split's own per-channel mean/std, so models take standard float input and stay plain.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import dataclass
from typing import Iterator, NamedTuple

import numpy as np
import torch

from unlearnkit.training.augment import augment
from unlearnkit.training.runtime import Runtime


# float64 values per chunk in Normalizer.fit (32 MiB): bounds its extra memory whatever the dataset's size.
_FIT_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class Normalizer:
    mean: tuple[float, ...]  # per channel, in [0, 1] units
    std: tuple[float, ...]

    @classmethod
    def fit(cls, images: np.ndarray | torch.Tensor) -> "Normalizer":
        """Per-channel mean/std (unbiased) of uint8 NCHW images (computed from data, never hard-coded).

        In chunks of images, merged with Chan et al.'s pairwise update: a float64 copy of the whole set
        would take 8x its uint8 bytes (CIFAR-10: 1.2 GB), and the chunked sums agree with it to ~1e-12.
        """
        x = images.detach().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images)
        c = x.shape[1]
        step = max(1, _FIT_CHUNK_VALUES // max(1, int(np.prod(x.shape[1:]))))
        count, mean, m2 = 0, np.zeros(c), np.zeros(c)
        for start in range(0, x.shape[0], step):
            flat = np.moveaxis(x[start : start + step], 1, 0).reshape(c, -1).astype(np.float64)
            flat /= 255.0
            k = flat.shape[1]
            if k == 0:
                continue
            chunk_mean = flat.mean(axis=1)
            flat -= chunk_mean[:, None]  # squared deviations about the chunk's own mean: no cancellation
            chunk_m2 = np.einsum("ij,ij->i", flat, flat)
            delta, total = chunk_mean - mean, count + k
            mean = mean + delta * (k / total)
            m2 = m2 + chunk_m2 + delta**2 * (count * k / total)
            count = total
        std = np.maximum(np.sqrt(m2 / max(count - 1, 1)), 1e-3)  # a constant channel must not divide by zero
        return cls(tuple(float(v) for v in mean), tuple(float(v) for v in std))

    def __call__(self, images: torch.Tensor, channels_last: bool = False) -> torch.Tensor:
        if channels_last:  # reorder the uint8 batch (a quarter of the bytes); the float ops keep the layout
            images = images.contiguous(memory_format=torch.channels_last)
        mean, std = _channel_tensor(self.mean, images.device), _channel_tensor(self.std, images.device)
        return images.float().mul_(1.0 / 255.0).sub_(mean).div_(std)


@functools.lru_cache(maxsize=64)
def _channel_tensor(values: tuple[float, ...], device: torch.device) -> torch.Tensor:
    """(1, C, 1, 1) on `device`, made once: no host-to-device copy per batch."""
    return torch.tensor(values, device=device).view(1, -1, 1, 1)


@dataclass(frozen=True)
class TensorSet:
    """A labelled set of uint8 images held on the runtime's device."""

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,)

    @classmethod
    def from_numpy(cls, images: np.ndarray, labels: np.ndarray, runtime: Runtime) -> "TensorSet":
        return cls(
            runtime.tensor(torch.from_numpy(np.ascontiguousarray(images))),
            runtime.tensor(torch.from_numpy(np.asarray(labels, dtype=np.int64))),
        )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor | np.ndarray) -> "TensorSet":
        idx = torch.as_tensor(index, device=self.labels.device, dtype=torch.long)
        return TensorSet(self.images[idx], self.labels[idx])

    def with_labels(self, labels: torch.Tensor) -> "TensorSet":
        return TensorSet(self.images, labels.to(self.labels.device))


class Batch(NamedTuple):
    x: torch.Tensor  # float, normalised, augmented
    y: torch.Tensor  # int64
    index: torch.Tensor  # positions in the TensorSet (methods that relabel per sample need them)


def stream_seed(seed: int, *parts: object) -> int:
    """A stable 63-bit seed for one (run seed, stream name, epoch): independent streams, resumable."""
    text = "/".join(str(p) for p in (seed, *parts))
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little") >> 1


def batches(
    data: TensorSet,
    batch_size: int,
    normalizer: Normalizer,
    runtime: Runtime,
    *,
    seed: int | None = None,
    crop_padding: int = 0,
    flip: bool = False,
    cutout: int = 0,
) -> Iterator[Batch]:
    """One pass over `data`. With a seed: shuffled, augmented, last partial batch dropped.

    Without a seed: in order, no augmentation, every sample (evaluation).
    Dropping the ragged last batch in training avoids BatchNorm on a handful of samples;
    a set smaller than one batch is used whole (so training sees one batch shape per set).
    `cutout` > 0 blanks one square per image with the split's mean colour (`augment.random_cutout`;
    larger than the images is a one-line error).
    On CUDA the random numbers (order, crops, flips, cutout squares) are drawn on the GPU: no host work or
    host-device copy per batch. The same seed gives the same stream on the same device type.
    """
    n = len(data)
    device = data.labels.device
    if seed is None:
        for start in range(0, n, batch_size):
            end = min(start + batch_size, n)
            idx = torch.arange(start, end, device=device)
            yield Batch(normalizer(data.images[start:end], runtime.channels_last), data.labels[start:end], idx)
        return
    gen = torch.Generator(device=device if device.type == "cuda" else "cpu").manual_seed(seed)
    order = torch.randperm(n, generator=gen, device=gen.device).to(device)
    size = min(batch_size, n)
    # The mean colour as uint8, made once: the normalised square is then ~0, as in Cutout on
    # normalised data. (A cutout larger than the images is refused by random_cutout.)
    fill = cutout_fill(normalizer, device) if cutout > 0 else None
    for start in range(0, n - size + 1, size):
        idx = order[start : start + size]
        images = data.images[idx]
        if crop_padding or flip or cutout > 0:
            images = augment(images, crop_padding, flip, gen, cutout, fill)
        yield Batch(normalizer(images, runtime.channels_last), data.labels[idx], idx)


def cutout_fill(normalizer: Normalizer, device: torch.device) -> torch.Tensor:
    """The training split's per-channel mean as uint8 (0-255, rounded) on `device`: Cutout's fill."""
    return torch.tensor([min(255, max(0, round(m * 255.0))) for m in normalizer.mean], dtype=torch.uint8, device=device)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return max(1, n // min(batch_size, n)) if n else 0
