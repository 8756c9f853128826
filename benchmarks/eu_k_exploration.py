"""EU-k / CF-k (Goel et al. 2022) as a throwaway method, for the exploration in docs/benchmarks.md
("The gap's noise floor"): not in the package, not tuned, run on an evaluation seed only.

Re-initialise (EU-k; `reset` < 1 mixes the old weights back in) or keep (CF-k, `reinit=false`) the
model's last k parameterised top-level blocks, freeze the rest (BatchNorm statistics too: momentum
0) and train the suffix on retain with the recipe's augmentation and a cosine schedule; or, with
`cache=true` (ResNet, k=2), run the prefix once over retain and train layer4 + fc on its stored
layer3 features.

    python benchmarks/eu_k_exploration.py forget RUN --method eu_k --forget random:0.1 \
        --set method.k=2 --set method.epochs=1.5 --set method.lr=0.05 --out OUT
    unlearnkit audit OUT --reference RETRAIN_RUN --original RUN

(the first argument onwards is unlearnkit's own command line, with `eu_k` registered).
"""

from __future__ import annotations

import copy
import itertools
import math
import sys
import time
from dataclasses import dataclass

import torch
from torch import nn

from unlearnkit.cli.main import main
from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import Method, register_method
from unlearnkit.methods.common import distill_kl, method_recipe, teacher_logits
from unlearnkit.methods.finetune import finetune_steps
from unlearnkit.params import param
from unlearnkit.training.data import batches, steps_per_epoch, stream_seed
from unlearnkit.training.loop import Trainer, cross_entropy_loss, epoch_batches, run_epoch


@dataclass
class EUkHparams:
    k: int = param(2, ge=1)
    reinit: bool = True
    reset: float = param(1.0, ge=0, le=1)  # suffix <- (1 - reset) old + reset fresh (1 = EU-k)
    epochs: float = param(1.0, gt=0)
    lr: float = param(0.05, gt=0)
    batch_size: int = param(256, ge=0)
    weight_decay: float = param(5e-4, ge=0)
    # ce: the retain labels; kd: KL to the original's (eval-mode, no flip TTA) outputs on the same batch
    retain_loss: str = param("ce", choices=("ce", "kd"))
    # ResNet with k=2 only: run the frozen prefix (stem..layer3) once over retain in eval mode and
    # train layer4 + fc on the stored features; `cache_views` 2 adds the mirrored images' features;
    # `feature_shift` > 0 rolls each feature map by up to that many cells (a crop at layer3's scale)
    cache: bool = False
    cache_views: int = param(1, ge=1, le=2)
    feature_shift: int = param(0, ge=0, le=2)
    feature_flip: bool = False
    # Reset only a share of the suffix's weights (with reinit): the `share` with the largest forget
    # gradient magnitude (`saliency`, SalUn's mask applied to a reset), or a random share (the control)
    reset_by: str = param("all", choices=("all", "saliency", "random"))
    share: float = param(0.5, gt=0, le=1)


def _reinitialise(block: nn.Module, reset: float, mask: dict[str, torch.Tensor] | None = None) -> None:
    old = copy.deepcopy(block.state_dict())
    for sub in block.modules():
        if hasattr(sub, "reset_parameters"):
            sub.reset_parameters()
    with torch.no_grad():
        for name, t in block.state_dict().items():
            if t.is_floating_point():
                fresh = (1 - reset) * old[name] + reset * t
                if mask is not None:  # parameters outside the mask, and every buffer, keep their values
                    fresh = torch.where(mask[name], fresh, old[name]) if name in mask else old[name]
                t.copy_(fresh)


def _reset_masks(model, suffix, ctx, hp) -> list[dict[str, torch.Tensor]]:
    """Per suffix block, {parameter name: bool mask} of the `share` of weights to reset."""
    named = [[(n, p) for n, p in block.named_parameters()] for block in suffix]
    if hp.reset_by == "random":
        gen = torch.Generator().manual_seed(stream_seed(ctx.seed, "euk-mask"))
        return [{n: torch.rand(p.shape, generator=gen) < hp.share for n, p in block} for block in named]
    was_training = model.training
    model.eval()
    grads = [{n: torch.zeros_like(p) for n, p in block} for block in named]
    for b in batches(ctx.data("forget"), 256, ctx.normalizer, ctx.runtime):
        model.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(model(b.x), b.y, reduction="sum").backward()
        for block, g in zip(named, grads):
            for n, p in block:
                g[n] += p.grad.abs()  # SalUn: magnitude of the forget-loss gradient, summed over batches
    model.zero_grad(set_to_none=True)
    model.train(was_training)
    flat = torch.cat([g.flatten() for block in grads for g in block.values()])
    cut = flat.kthvalue(max(1, int(len(flat) * (1 - hp.share)))).values
    return [{n: g > cut for n, g in block.items()} for block in grads]


@register_method
class EUk(Method):
    name = "eu_k"
    summary = "Exploration: retrain (EU-k) or fine-tune (CF-k) the last k blocks on retain."
    paper = "Goel et al. 2022"
    Hparams = EUkHparams

    def cost(self, hp, sizes, recipe):
        # An upper bound without `cache` (the frozen prefix runs forward only); with it, a lower one:
        # the one forward pass that fills the cache is not counted (measured: docs/benchmarks.md).
        return float(hp.epochs)

    def run(self, model, ctx, hp):
        if hp.cache and (hp.k != 2 or not hasattr(model, "layer4")):  # before the model is touched
            raise UnlearnkitError("method.cache=true needs a ResNet and method.k=2 (layer4 + fc on cached layer3 features)")
        teacher = None
        if hp.retain_loss == "kd":
            teacher = copy.deepcopy(model).eval()
            if hasattr(teacher, "flip_tta"):
                teacher.flip_tta = False  # one forward per batch is enough for a target
        blocks = [m for _, m in model.named_children() if any(True for _ in m.parameters())]
        suffix, prefix = blocks[-hp.k:], blocks[:-hp.k]
        for p in model.parameters():
            p.requires_grad_(False)
        for block in suffix:
            for p in block.parameters():
                p.requires_grad_(True)
        masks = _reset_masks(model, suffix, ctx, hp) if hp.reinit and hp.reset_by != "all" else None
        for i, block in enumerate(suffix):
            if hp.reinit:
                _reinitialise(block, hp.reset, None if masks is None else masks[i])
        for block in prefix:
            for sub in block.modules():
                if isinstance(sub, nn.modules.batchnorm._BatchNorm):
                    sub.momentum = 0.0  # frozen statistics in train mode
        if hp.cache:
            return _train_on_cached_features(model, ctx, hp)
        retain = ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        per_epoch = steps_per_epoch(len(retain), cfg.batch_size)
        total = finetune_steps(hp.epochs, per_epoch)  # finetune's rule for fractional epochs
        trainer = Trainer.from_config(model, cfg, total_steps=total)
        loss = cross_entropy_loss(cfg.label_smoothing) if teacher is None else _kd_loss(teacher, ctx)
        for epoch in range(math.ceil(total / per_epoch)):
            steps = min(per_epoch, total - epoch * per_epoch)
            stream = itertools.islice(epoch_batches(retain, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "euk", epoch), steps)
            run_epoch(model, trainer, stream, loss, ctx.runtime, total=steps, desc=f"eu_k {epoch + 1}")
        for p in model.parameters():
            p.requires_grad_(True)
        return model


def _prefix(model, x):
    x = model.relu(model.bn1(model.conv1(x)))
    return model.layer3(model.layer2(model.layer1(x)))


def _suffix(model, f):
    return model.fc(torch.flatten(model.avgpool(model.layer4(f)), 1))


def _train_on_cached_features(model, ctx, hp):
    retain = ctx.data("retain")
    t0 = time.perf_counter()
    model.eval()
    feats, labels = [], []
    with torch.no_grad():
        for b in batches(retain, 512, ctx.normalizer, ctx.runtime):
            feats.append(_prefix(model, b.x).half())
            labels.append(b.y)
            if hp.cache_views == 2:
                feats.append(_prefix(model, b.x.flip(3)).half())
                labels.append(b.y)
    feats, labels = torch.cat(feats), torch.cat(labels)
    print(f"eu_k cache: {len(labels)} features in {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    n = len(labels)
    bs = hp.batch_size or ctx.recipe.batch_size
    per_epoch = steps_per_epoch(n, bs)
    total = finetune_steps(hp.epochs, per_epoch)
    cfg = method_recipe(ctx, lr=hp.lr, batch_size=bs, weight_decay=hp.weight_decay)
    trainer = Trainer.from_config(model, cfg, total_steps=total)
    gen = torch.Generator().manual_seed(stream_seed(ctx.seed, "euk-cache"))

    def items(steps):
        perm = torch.randperm(n, generator=gen)
        for i in range(steps):
            idx = perm[i * bs:(i + 1) * bs]
            f = feats[idx].float()
            if hp.feature_flip:
                m = torch.rand(len(idx), generator=gen) < 0.5
                f[m] = f[m].flip(3)
            if hp.feature_shift:
                s = hp.feature_shift
                pad = torch.nn.functional.pad(f, (s, s, s, s))
                dx, dy = (int(v) for v in torch.randint(0, 2 * s + 1, (2,), generator=gen))
                f = pad[:, :, dy:dy + f.shape[2], dx:dx + f.shape[3]]
            yield f, labels[idx]

    def loss_fn(m, item):
        f, y = item
        logits = _suffix(m, f)
        loss = nn.functional.cross_entropy(logits, y, label_smoothing=cfg.label_smoothing)
        return loss, {"correct": (logits.argmax(1) == y).sum(), "n": y.numel()}

    for epoch in range(math.ceil(total / per_epoch)):
        steps = min(per_epoch, total - epoch * per_epoch)
        run_epoch(model, trainer, items(steps), loss_fn, ctx.runtime, total=steps, desc=f"eu_k cached {epoch + 1}")
        print(f"eu_k cached epoch {epoch + 1}: {time.perf_counter() - t0:.1f} s", file=sys.stderr)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def _kd_loss(teacher: nn.Module, ctx):
    def loss_fn(model: nn.Module, batch):
        with torch.no_grad():  # run_epoch calls this inside the runtime's autocast
            target = teacher_logits(teacher, batch.x)
        logits = model(batch.x)
        return distill_kl(logits, target), {"correct": (logits.argmax(1) == batch.y).sum(), "n": batch.y.numel()}

    return loss_fn


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
