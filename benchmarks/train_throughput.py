"""Training-loop throughput vs. the model alone, and vs. the seed's DataLoader + PIL style.

Three numbers, same model, batch size and machine, in one process:
  model-only   forward+backward+SGD step on one pre-made batch (the ceiling: no data work)
  unlearnkit   our loop: uint8 tensor in memory, batched crop/flip, on-device normalise
  seed-style   torchvision DataLoader over PIL images, per-sample RandomCrop/Flip/ToTensor/Normalize
Run:  python benchmarks/train_throughput.py [--width 16] [--batch 128] [--steps 30] [--precision bf16]
(defaults = the cifar10-cpu preset; --precision auto = fp32 on CPU, bf16 on CUDA)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.config import RuntimeConfig, TrainConfig
from unlearnkit.models import create_model
from unlearnkit.training import Normalizer, Runtime, TensorSet, Trainer, cross_entropy_loss, run_epoch
from unlearnkit.training.loop import epoch_batches


def images(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


def model_only(rt: Runtime, width: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=width))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=rt.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=rt.device)
    for i in range(steps + 3):
        if i == 3:
            t = time.perf_counter()
        with rt.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def our_loop(rt: Runtime, width: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=width))
    x, y = images(batch * (steps + 3))
    data = TensorSet.from_numpy(x, y, rt)
    cfg = TrainConfig(epochs=1, batch_size=batch)
    trainer = Trainer.from_config(model, cfg, total_steps=steps + 3)
    norm = Normalizer.fit(x)
    it = epoch_batches(data, cfg, norm, rt, 0, "bench", 0)
    warm = [next(it) for _ in range(3)]
    run_epoch(model, trainer, warm, cross_entropy_loss(), rt, total=3, desc="warm-up")
    stats = run_epoch(model, trainer, it, cross_entropy_loss(), rt, total=steps, desc="unlearnkit loop")
    return stats.samples / stats.seconds


def seed_style(rt: Runtime, width: int, batch: int, steps: int, workers: int) -> float:
    from PIL import Image
    from torchvision import transforms

    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=width))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x, y = images(batch * (steps + 3))
    pil = [Image.fromarray(im.transpose(1, 2, 0)) for im in x]
    tf = transforms.Compose([
        transforms.RandomCrop(32, padding=4), transforms.RandomHorizontalFlip(), transforms.ToTensor(),
        transforms.Normalize((0.49, 0.48, 0.45), (0.25, 0.24, 0.26)),
    ])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return tf(pil[i]), int(y[i])

    loader = torch.utils.data.DataLoader(DS(), batch_size=batch, shuffle=True, num_workers=workers, drop_last=True)
    for i, (xb, yb) in enumerate(loader):
        if i == 3:
            t = time.perf_counter()
        xb = xb.to(rt.device).contiguous(memory_format=torch.channels_last)
        yb = yb.to(rt.device)
        with rt.autocast():
            loss = F.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    if rt.device.type == "cuda":
        torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args()
    rt = Runtime.from_config(RuntimeConfig(precision=args.precision))
    ceiling = model_only(rt, args.width, args.batch, args.steps)
    ours = our_loop(rt, args.width, args.batch, args.steps)
    seed = seed_style(rt, args.width, args.batch, args.steps, args.workers)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {rt.describe()}",
        "width": args.width, "batch": args.batch, "steps": args.steps,
        "model_only_img_s": round(ceiling, 1), "unlearnkit_loop_img_s": round(ours, 1),
        "seed_style_img_s": round(seed, 1),
        "loop_vs_model_only": round(ours / ceiling, 3), "loop_vs_seed_style": round(ours / seed, 2),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
