"""SCRUB: a student moves away from the original teacher on forget and stays with it on retain."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch.nn.functional as F

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import (
    check_nonnegative, check_positive, check_unit, distill_kl, method_recipe, pass_steps, teacher_logits,
)
from unlearnkit.training.data import steps_per_epoch
from unlearnkit.training.loop import Trainer, epoch_batches, run_epoch


@dataclass
class ScrubHparams:
    # Kurmanji et al., NeurIPS 2023, official code (large-scale CIFAR-10 notebook): sgda_epochs 3,
    # msteps 2, kd_T 4, gamma 0.99, alpha 0.001, SGD lr 5e-4 (momentum 0.9, wd 5e-4), min-steps
    # over the whole retain set every epoch. Budget: each epoch's min-steps see a fresh random
    # 10% of retain, so 3 epochs cost 3 x 0.1 x 4/3 + 2 max passes x 0.11 x 4/3 = 0.7 REE on
    # CIFAR-10 (the teacher forward adds 1/3; measured 0.85 with overheads, 15% measured 1.08);
    # with ~10x fewer steps the lr is 10x larger.
    epochs: int = 3  # SCRUB epochs (sgda_epochs)
    max_epochs: int = 2  # first epochs that also run a max-pass over forget (msteps)
    retain_fraction: float = 0.1  # share of retain each epoch's min-steps see
    temperature: float = 4.0  # kd_T
    gamma: float = 0.99  # weight of CE(retain) in the min-step
    alpha: float = 0.001  # weight of KL(teacher || student) on retain in the min-step
    lr: float = 0.005
    batch_size: int = 0  # 0 = the original recipe's batch size (retain and forget)
    weight_decay: float = 5e-4
    # Per-sample cap on the max-step KL (0 = unbounded, as in the paper). Unbounded, the max
    # steps on a whole class all push the same way and the KL grows until the network collapses
    # (cifar10-cpu, class:cat: retain accuracy 15.5%, 3 seeds); capped at 4 the class is removed
    # (forget acc 0%) with retain 92.2%. On a random 10% set the mean KL stays below 0.25, so the
    # cap does not bind there (same accuracies to 0.03 points). The right size depends on the
    # model: on the small digits CNN 4 is too tight to forget a class (docs/methods.md).
    kl_cap: float = 4.0

    def validate(self) -> None:
        check_positive(self, "epochs", "temperature", "lr")
        check_nonnegative(self, "max_epochs", "gamma", "alpha", "batch_size", "weight_decay", "kl_cap")
        check_unit(self, "retain_fraction", open_low=True)


@register_method
class Scrub(Method):
    """SCRUB (Kurmanji et al., NeurIPS 2023, "Towards Unbounded Machine Unlearning").

    Student = the model, teacher = the frozen original. Each epoch: if epoch < max_epochs, a
    max-pass over forget maximising KL(teacher || student) at temperature T, each sample's
    KL capped at `kl_cap` (the student moves away from what it knew of the forget set, but
    not without bound); then min-steps on retain minimising
    gamma * CE + alpha * KL (stay close to the teacher on retain). The last epochs are
    min-only, which repairs retain accuracy the max-steps cost.
    """

    name = "scrub"
    summary = "Alternate max-KL steps on forget and min (CE + KL) steps on retain vs the original (SCRUB)."
    paper = "Kurmanji et al., NeurIPS 2023 (SCRUB)"
    Hparams = ScrubHparams

    def run(self, model, ctx: MethodContext, hp: ScrubHparams):
        forget, retain = ctx.data("forget"), ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        max_steps = steps_per_epoch(len(forget), cfg.batch_size)
        min_steps = pass_steps(len(retain), cfg.batch_size, hp.retain_fraction)
        n_max = min(hp.max_epochs, hp.epochs)
        trainer = Trainer.from_config(model, cfg, total_steps=n_max * max_steps + hp.epochs * min_steps)
        teacher = ctx.original

        def maximise(model, batch):
            kl = distill_kl(model(batch.x), teacher_logits(teacher, batch.x), hp.temperature, per_sample=True)
            if hp.kl_cap:
                kl = kl.clamp(max=hp.kl_cap)
            return -kl.mean()  # run_epoch already reports it: the mean capped KL is -loss

        def minimise(model, batch):
            logits = model(batch.x)
            loss = hp.gamma * F.cross_entropy(logits, batch.y)
            if hp.alpha:
                loss = loss + hp.alpha * distill_kl(logits, teacher_logits(teacher, batch.x), hp.temperature)
            return loss, {"correct": (logits.argmax(1) == batch.y).sum().item(), "n": len(batch.y)}

        for epoch in range(hp.epochs):
            desc = f"scrub {epoch + 1}/{hp.epochs}"
            if epoch < n_max:
                run_epoch(model, trainer, epoch_batches(forget, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "scrub/max", epoch),
                          maximise, ctx.runtime, total=max_steps, desc=f"{desc} max")
            # A shuffled pass cut short = a fresh random subset of retain every epoch.
            subset = itertools.islice(epoch_batches(retain, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "scrub/min", epoch), min_steps)
            run_epoch(model, trainer, subset, minimise, ctx.runtime, total=min_steps, desc=f"{desc} min")
        return model
