"""Training-loop throughput vs. the model alone, and vs. the seed's DataLoader + PIL style.

Three numbers, same model, batch size and machine, in one process:
  model-only   forward+backward+SGD step on one pre-made batch (the ceiling: no data work)
  unlearnkit   our loop: uint8 tensor in memory, batched crop/flip, on-device normalise
  seed-style   torchvision DataLoader over PIL images, per-sample RandomCrop/Flip/ToTensor/Normalize
With --compile, model-only and the loop are measured again with torch.compile (runtime.compile=true),
after the eager numbers, in the same process; compile time is reported apart from the rate.
Run:  python benchmarks/train_throughput.py [--width 16] [--batch 128] [--steps 30] [--precision bf16]
      python benchmarks/train_throughput.py --width 64 --batch 512 --steps 100 --precision auto --compile --no-seed-style   (GPU)
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
from unlearnkit.methods.api import peak_memory_mb
from unlearnkit.models import create_model
from unlearnkit.training import Normalizer, Runtime, TensorSet, Trainer, cross_entropy_loss, run_epoch
from unlearnkit.training.loop import epoch_batches


def images(n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (n, 3, 32, 32), dtype=np.uint8), rng.integers(0, 10, n).astype(np.int64)


WARMUP = 3  # steps before the clock starts (cudnn autotuning; with --compile, the compilation)


def sync(rt: Runtime) -> None:
    if rt.device.type == "cuda":
        torch.cuda.synchronize()


def model_only(rt: Runtime, width: int, batch: int, steps: int) -> float:
    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=width))
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.randn(batch, 3, 32, 32, device=rt.device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,), device=rt.device)
    for i in range(steps + WARMUP):
        if i == WARMUP:
            sync(rt)
            t = time.perf_counter()
        with rt.autocast():
            loss = F.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    sync(rt)
    return steps * batch / (time.perf_counter() - t)


def our_loop(rt: Runtime, width: int, batch: int, steps: int) -> tuple[float, float]:
    """(img/s, seconds of the warm-up steps): `fit`'s pieces on random uint8 images."""
    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=width))
    x, y = images(batch * (steps + WARMUP))
    data = TensorSet.from_numpy(x, y, rt)
    cfg = TrainConfig(epochs=1, batch_size=batch)
    trainer = Trainer.from_config(model, cfg, total_steps=steps + WARMUP)
    norm = Normalizer.fit(x)
    it = epoch_batches(data, cfg, norm, rt, 0, "bench", 0)
    warm = [next(it) for _ in range(WARMUP)]
    warm_s = run_epoch(model, trainer, warm, cross_entropy_loss(), rt, total=WARMUP, desc="warm-up").seconds
    stats = run_epoch(model, trainer, it, cross_entropy_loss(), rt, total=steps, desc="unlearnkit loop")
    return stats.samples / stats.seconds, warm_s


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
    sync(rt)
    return steps * batch / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--compile", action="store_true", help="also measure model-only and the loop with torch.compile")
    ap.add_argument("--no-seed-style", action="store_true", help="skip the DataLoader + PIL comparison")
    ap.add_argument("--json", help="also write the result to this file")
    args = ap.parse_args()
    rt = Runtime.from_config(RuntimeConfig(precision=args.precision))
    ceiling = model_only(rt, args.width, args.batch, args.steps)
    ours, _ = our_loop(rt, args.width, args.batch, args.steps)
    result = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {rt.describe()}",
        "torch": torch.__version__,
        "width": args.width, "batch": args.batch, "steps": args.steps,
        "model_only_img_s": round(ceiling, 1), "unlearnkit_loop_img_s": round(ours, 1),
        "loop_vs_model_only": round(ours / ceiling, 3),
    }
    if not args.no_seed_style:
        seed = seed_style(rt, args.width, args.batch, args.steps, args.workers)
        result.update({"seed_style_img_s": round(seed, 1), "loop_vs_seed_style": round(ours / seed, 2)})
    if args.compile:
        crt = Runtime.from_config(RuntimeConfig(precision=args.precision, compile=True))
        t = time.perf_counter()
        c_ceiling = model_only(crt, args.width, args.batch, args.steps)
        c_model_s = time.perf_counter() - t
        c_ours, c_warm = our_loop(crt, args.width, args.batch, args.steps)
        result.update({
            "compiled_model_only_img_s": round(c_ceiling, 1), "compiled_loop_img_s": round(c_ours, 1),
            "compiled_loop_vs_compiled_model_only": round(c_ours / c_ceiling, 3),
            "compiled_loop_vs_eager_loop": round(c_ours / ours, 3),
            "compiled_model_only_total_s": round(c_model_s, 1),  # compile + warm-up + the timed steps
            "compiled_loop_warmup_s": round(c_warm, 1),  # the loop's first steps (its model is compiled anew)
        })
    result["peak_memory_mb"] = round(peak_memory_mb(rt), 1)
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            f.write(text + "\n")


if __name__ == "__main__":
    main()
