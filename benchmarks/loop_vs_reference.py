"""Control experiment: does `fit` train as well as a plain torchvision loop with the same recipe?

Same model (ResNet-18 at --width), same data (a seeded subset of CIFAR-10's training split),
same hyperparameters (Nesterov SGD, one-cycle schedule, label smoothing, crop 4 + flip, weight
decay on every parameter); one side is unlearnkit's `fit` (uint8 tensors, batched on-device
augmentation, decay folded into the gradient), the other a DataLoader over PIL images with
torchvision transforms and torch SGD's own `weight_decay`. Prints one JSON line with the last
epoch's train accuracy and the test accuracy.

Run:  OMP_NUM_THREADS=1 python benchmarks/loop_vs_reference.py {ours,ref} --data ../shared/datasets/cifar10-jpeg.tar.gz \
          [--n 5000] [--epochs 8] [--batch 128] [--lr 0.1] [--width 16] [--precision bf16]
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
import torch.nn.functional as F

from unlearnkit.config import RuntimeConfig, TrainConfig
from unlearnkit.data import load_dataset, make_split
from unlearnkit.models import create_model
from unlearnkit.training import Normalizer, Runtime, TensorSet, evaluate, fit
from unlearnkit.training.loop import lr_factor


def reference(model, x, y, norm, rt, cfg: TrainConfig) -> float:
    """The textbook loop; returns the last epoch's (augmented) train accuracy in %."""
    from PIL import Image
    from torchvision import transforms

    pil = [Image.fromarray(im.transpose(1, 2, 0)) for im in x]
    tf = transforms.Compose([transforms.RandomCrop(32, padding=cfg.crop_padding), transforms.RandomHorizontalFlip(),
                             transforms.ToTensor(), transforms.Normalize(norm.mean, norm.std)])

    class DS(torch.utils.data.Dataset):
        def __len__(self):
            return len(pil)

        def __getitem__(self, i):
            return tf(pil[i]), int(y[i])

    loader = torch.utils.data.DataLoader(DS(), batch_size=cfg.batch_size, shuffle=True, drop_last=True)
    total = cfg.epochs * len(loader)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda k: lr_factor(k, total, cfg.schedule, cfg.warmup_fraction))
    for _ in range(cfg.epochs):
        model.train()
        correct = seen = 0
        for xb, yb in loader:
            xb, yb = xb.to(rt.device).contiguous(memory_format=torch.channels_last), yb.to(rt.device)
            with rt.autocast():
                out = model(xb)
                loss = F.cross_entropy(out, yb, label_smoothing=cfg.label_smoothing)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            correct += (out.argmax(1) == yb).sum().item()
            seen += len(yb)
    return 100 * correct / seen


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("which", choices=["ours", "ref"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--n", type=int, default=5000)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--lr", type=float, default=0.1)
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--label-smoothing", type=float, default=0.1)
    ap.add_argument("--precision", default="bf16", choices=["auto", "fp32", "bf16"])
    args = ap.parse_args()
    split = make_split(load_dataset(args.data), 0.2, 0)
    train, test = split.part("train"), split.part("test")
    pick = np.sort(np.random.default_rng(0).choice(len(train.labels), args.n, replace=False))
    x, y = train.images[pick], train.labels[pick]
    rt = Runtime.from_config(RuntimeConfig(precision=args.precision))
    norm = Normalizer.fit(x)
    cfg = TrainConfig(epochs=args.epochs, batch_size=args.batch, lr=args.lr, label_smoothing=args.label_smoothing)
    torch.manual_seed(0)
    model = rt.model(create_model("resnet18", 10, width=args.width))
    t0 = time.perf_counter()
    if args.which == "ours":
        train_acc = fit(model, TensorSet.from_numpy(x, y, rt), cfg, rt, norm, seed=0)[-1]["train_acc"]
    else:
        train_acc = reference(model, x, y, norm, rt, cfg)
    test_acc = evaluate(model, TensorSet.from_numpy(test.images, test.labels, rt), norm, rt)["acc"]
    print(json.dumps({**vars(args), "runtime": rt.describe(), "train_acc_last": round(train_acc, 2),
                      "test_acc": round(test_acc, 2), "seconds": round(time.perf_counter() - t0, 1)}))


if __name__ == "__main__":
    main()
