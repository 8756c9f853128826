"""Why random forgetting stays far from retraining on a barely-memorising original: three probes.

Usage: python benchmarks/random_forget_probes.py ORIGINAL_RUN_DIR PROBE [--forget random:0.1] [--seed 0]

PROBE is one of
  kd-only      distil the original on retain only (0.6 passes, lr 0.05, cosine): does drift alone
               forget the samples it no longer sees?
  reinit-kd    re-initialise layer4 and the head, then the same distillation: is the forget set's
               advantage held in the last stage only?
  match-random loss_match's forget term (per-sample held-out targets, `rank_targets`; weight 3,
               lr 0.01, 2 passes) with each forget batch paired with random retain samples (KD)
  match-knn    the same, paired with same-class nearest retain neighbours (penultimate features,
               5 of a 12,000-sample retain probe): does holding the forget samples' neighbours,
               where the collateral damage should be, keep retain accuracy up?
  knn-labels   (no training) a 20-nearest-neighbour vote over the labels of a 12,000-sample retain
               probe, in the original's penultimate features: its accuracy on forget against val
               says whether retain labels alone predict the forget samples like held-out ones
  match-knnrank loss_match's targets assigned by the kNN vote's support for the label (least
               supported first) instead of the original's loss: the samples retain data does not
               back get the held-out losses of misclassified samples

Prints accuracy on forget, on a 4,000-sample retain subset and on 4,000 val samples, before and
after. Forward passes use the model's eval view (as the audit); one torch thread. The settings are
fixed on purpose (a probe, not a method); results are in docs/methods.md ("loss_match").
"""

from __future__ import annotations

import argparse
import copy
import itertools
import math
import time

import torch
import torch.nn.functional as F

from unlearnkit.config import TrainConfig
from unlearnkit.methods.common import distill_kl
from unlearnkit.methods.loss_match import HUBER_DELTA, rank_targets
from unlearnkit.training.data import TensorSet
from unlearnkit.training.loop import Trainer, epoch_batches, run_epoch
from unlearnkit.training.pipeline import load_run

PROBES = ("kd-only", "reinit-kd", "match-random", "match-knn", "knn-labels", "match-knnrank")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("run_dir")
    ap.add_argument("probe", choices=PROBES)
    ap.add_argument("--forget", default="random:0.1")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(args.seed)
    run = load_run(args.run_dir)
    original = run.load_model().eval()
    split = run.split.with_forget(args.forget)
    parts = {p: TensorSet(torch.as_tensor(split.part(p).images), torch.as_tensor(split.part(p).labels))
             for p in ("forget", "retain", "val")}

    @torch.no_grad()
    def logits(model, x, features=False):
        if features:  # one view: a flip-TTA model would run its head twice per batch
            model = copy.deepcopy(model)
            for m in model.modules():
                if getattr(m, "flip_tta", False):
                    m.flip_tta = False
        model.eval()
        out, feats = [], []
        hook = model.fc.register_forward_hook(lambda m, i, o: feats.append(i[0].float())) if features else None
        with run.runtime.autocast():
            for i in range(0, len(x), 500):
                out.append(model(run.normalizer(x[i:i + 500], False)).float())
        if hook:
            hook.remove()
        return torch.cat(out), (torch.cat(feats) if features else None)

    def accuracy(model, part, n=4000):
        data = parts[part]
        idx = torch.randperm(len(data.labels), generator=torch.Generator().manual_seed(0))[:n]
        out, _ = logits(model, data.images[idx])
        return round(100 * (out.argmax(1) == data.labels[idx]).float().mean().item(), 2)

    before = {p: accuracy(original, p) for p in parts}
    model = copy.deepcopy(original)
    t0 = time.perf_counter()
    if args.probe in ("kd-only", "reinit-kd"):
        if args.probe == "reinit-kd":
            fresh = run.fresh_model()
            with torch.no_grad():
                for (name, p), q in zip(model.state_dict().items(), fresh.state_dict().values()):
                    if name.startswith(("layer4", "fc")):
                        p.copy_(q)
        _distil_on_retain(run, original, model, parts["retain"], epochs=0.6, lr=0.05, seed=args.seed)
    elif args.probe == "knn-labels":
        for part in ("forget", "val"):
            support = _knn_support(original, parts, logits, parts[part].images[:4000], parts[part].labels[:4000], args.seed)
            print(f"knn vote on {part}: {100 * (support > 0.5).float().mean():.2f}% of samples have >half the "
                  f"votes for their label; vote accuracy {100 * support.mean():.2f}")
        return
    else:
        _match(run, original, model, parts, logits, knn=args.probe == "match-knn",
               rank_by_votes=args.probe == "match-knnrank", seed=args.seed)
    seconds = time.perf_counter() - t0
    after = {p: accuracy(model, p) for p in parts}
    print(f"{args.probe}: {seconds:.0f} s; accuracy before -> after: "
          + ", ".join(f"{p} {before[p]:.2f} -> {after[p]:.2f}" for p in parts))


def _distil_on_retain(run, original, model, retain, *, epochs, lr, seed):
    cfg = TrainConfig(**{**run.config.train.__dict__, "epochs": epochs, "lr": lr, "schedule": "cosine",
                         "warmup_fraction": 0.0})
    per_epoch = math.ceil(len(retain.labels) / cfg.batch_size)
    total = round(epochs * per_epoch)
    trainer = Trainer.from_config(model, cfg, total_steps=total)

    def loss_fn(m, batch):
        out = m(batch.x)
        with torch.no_grad():
            teacher = original(batch.x).float()
        return distill_kl(out, teacher), {"correct": (out.argmax(1) == batch.y).sum(), "n": batch.y.numel()}

    for epoch in range(math.ceil(epochs)):
        steps = min(per_epoch, total - epoch * per_epoch)
        batches = itertools.islice(epoch_batches(retain, cfg, run.normalizer, run.runtime, seed, "probe", epoch), steps)
        run_epoch(model, trainer, batches, loss_fn, run.runtime, total=steps, desc="distil")


def _knn_support(original, parts, logits, images, labels, seed, k=20, probe=12000):
    """Per sample: the share of its k nearest retain samples (original's penultimate features) with its label."""
    retain = parts["retain"]
    pool = torch.randperm(len(retain.labels), generator=torch.Generator().manual_seed(seed + 1))[:probe]
    _, r_feat = logits(original, retain.images[pool], features=True)
    _, feat = logits(original, images, features=True)
    sim = F.normalize(feat, dim=1) @ F.normalize(r_feat, dim=1).T
    votes = retain.labels[pool][sim.topk(k, dim=1).indices]
    return (votes == labels[:, None]).float().mean(1)


def _match(run, original, model, parts, logits, *, knn, seed, rank_by_votes=False, weight=3.0, lr=0.01, passes=2,
           batch=128):
    forget, retain, val = parts["forget"], parts["retain"], parts["val"]
    held = TensorSet(val.images[:5000], val.labels[:5000])
    f_out, _ = logits(original, forget.images)
    f_feat = logits(original, forget.images, features=True)[1] if knn else None
    h_out, _ = logits(original, held.images)
    f_loss = F.cross_entropy(f_out, forget.labels, reduction="none")
    # Ranked by the kNN vote: least support first gets the highest held-out loss (the loss breaks ties).
    order_key = (1 - _knn_support(original, parts, logits, forget.images, forget.labels, seed)) * 100 + f_loss.clamp(max=50) / 100 \
        if rank_by_votes else f_loss
    targets = rank_targets(order_key, forget.labels, F.cross_entropy(h_out, held.labels, reduction="none"), held.labels)
    gen = torch.Generator().manual_seed(seed)
    if knn:
        pool = torch.randperm(len(retain.labels), generator=gen)[:12000]
        _, r_feat = logits(original, retain.images[pool], features=True)
        f_n, r_n = F.normalize(f_feat, dim=1), F.normalize(r_feat, dim=1)
        neighbours = torch.empty(len(forget.labels), 5, dtype=torch.long)
        for c in forget.labels.unique():
            fi = (forget.labels == c).nonzero().squeeze(1)
            ri = (retain.labels[pool] == c).nonzero().squeeze(1)
            neighbours[fi] = pool[ri[(f_n[fi] @ r_n[ri].T).topk(5, dim=1).indices]]
    steps = math.ceil(len(forget.labels) / batch) * passes
    cfg = TrainConfig(**{**run.config.train.__dict__, "lr": lr, "schedule": "cosine", "warmup_fraction": 0.0,
                         "batch_size": batch})
    trainer = Trainer.from_config(model, cfg, total_steps=steps)
    for _ in range(passes):
        order = torch.randperm(len(forget.labels), generator=gen)
        for i in range(0, len(order), batch):
            fb = order[i:i + batch]
            rb = (neighbours[fb, torch.randint(0, 5, (len(fb),), generator=gen)] if knn
                  else torch.randint(0, len(retain.labels), (len(fb),), generator=gen))
            xr = run.normalizer(retain.images[rb], True)
            model.train()
            with run.runtime.autocast():
                out = model(torch.cat([run.normalizer(forget.images[fb], False), xr])).float()
                ce = F.cross_entropy(out[:len(fb)], forget.labels[fb], reduction="none")
                match = F.huber_loss(ce, targets[fb], reduction="none", delta=HUBER_DELTA).mean()
                with torch.no_grad():
                    teacher = original(xr).float()
                loss = weight * match + distill_kl(out[len(fb):], teacher)
            trainer.step(loss)


if __name__ == "__main__":
    main()
