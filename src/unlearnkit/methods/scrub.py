"""SCRUB: a student moves away from the original teacher on forget and stays with it on retain."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch.nn.functional as F

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import FORWARD, distill_kl, full_batch_mean, method_recipe, pass_steps, teacher_logits
from unlearnkit.methods.dualoptim import OptimizerParams, SplitLoss, make_trainer
from unlearnkit.params import param
from unlearnkit.training.data import steps_per_epoch
from unlearnkit.training.loop import epoch_batches, run_epoch


@dataclass
class ScrubHparams(OptimizerParams):
    # Kurmanji et al., NeurIPS 2023, official code (large-scale CIFAR-10 notebook): sgda_epochs 3,
    # msteps 2, kd_T 4, gamma 0.99, alpha 0.001, SGD lr 5e-4 (momentum 0.9, wd 5e-4), min-steps
    # over the whole retain set every epoch. Budget: each epoch's min-steps see a fresh random
    # 10% of retain, so 3 epochs cost 3 x 0.1 x 4/3 + 2 max passes x 0.11 x 4/3 = 0.7 REE on
    # CIFAR-10 (the teacher forward adds 1/3; measured 0.85 with overheads, 15% measured 1.08);
    # with ~10x fewer steps the lr is 10x larger.
    # Search: around the paper's settings (their notebooks use sgda_epochs 3-10, msteps 2-5, alpha
    # 1e-3 .. 0.5, kd_T 2-4); kl_cap as a list because 0 (= unbounded) must stay reachable.
    epochs: int = param(3, ge=1, search=(2, 6), doc="SCRUB epochs (sgda_epochs)")
    max_epochs: int = param(2, ge=0, search=(1, 4), doc="first epochs that also run a max-pass over forget (msteps)")
    retain_fraction: float = param(0.1, gt=0, le=1, search=(0.05, 0.3), doc="share of retain each epoch's min-steps see")
    temperature: float = param(4.0, gt=0, search=(1.0, 8.0), log=True, doc="kd_T")
    gamma: float = param(0.99, ge=0, search=(0.1, 1.0), doc="weight of CE(retain) in the min-step")
    alpha: float = param(0.001, ge=0, search=(1e-4, 1.0), log=True, doc="weight of KL(teacher || student) on retain")
    lr: float = param(0.005, gt=0, search=(1e-4, 0.05), log=True)
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size (retain and forget)")
    weight_decay: float = param(5e-4, ge=0)
    # Per-sample cap on the max-step KL (0 = unbounded, as in the paper). Unbounded, the max
    # steps on a whole class all push the same way and the KL grows until the network collapses
    # (cifar10-cpu, class:cat: retain accuracy 15.5%, 3 seeds); capped at 4 the class is removed
    # (forget acc 0%) with retain 92.2%. On a random 10% set the mean KL stays below 0.25, so the
    # cap does not bind there (same accuracies to 0.03 points). The right size depends on the
    # model: on the small digits CNN 4 is too tight to forget a class (docs/methods.md).
    kl_cap: float = param(4.0, ge=0, search=[0.0, 1.0, 2.0, 4.0, 8.0, 16.0], doc="per-sample cap on the max-step KL; 0 = unbounded")


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
    revision = 1
    changes = {1: "a forget set smaller than one batch ascends with a full batch's share"}

    def cost(self, hp: ScrubHparams, sizes, recipe) -> float:
        bs = hp.batch_size or recipe.batch_size
        forget, retain = sizes["forget"], sizes["retain"]
        max_samples = min(hp.max_epochs, hp.epochs) * steps_per_epoch(forget, bs) * min(bs, forget)
        min_samples = hp.epochs * pass_steps(retain, bs, hp.retain_fraction) * min(bs, retain)
        # Every max-step and (with alpha > 0) every min-step runs the teacher forward too.
        return ((1 + FORWARD) * max_samples + (1 + (FORWARD if hp.alpha else 0)) * min_samples) / retain

    def run(self, model, ctx: MethodContext, hp: ScrubHparams):
        forget, retain = ctx.data("forget"), ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        max_steps = steps_per_epoch(len(forget), cfg.batch_size)
        min_steps = pass_steps(len(retain), cfg.batch_size, hp.retain_fraction)
        n_max = min(hp.max_epochs, hp.epochs)
        trainer = make_trainer(model, cfg, n_max * max_steps + hp.epochs * min_steps, hp)
        teacher = ctx.original

        def maximise(model, batch):
            kl = distill_kl(model(batch.x), teacher_logits(teacher, batch.x), hp.temperature, per_sample=True)
            if hp.kl_cap:
                kl = kl.clamp(max=hp.kl_cap)
            # A forget set smaller than one batch is one batch of its own size: its mean pushed each
            # sample bs/n times harder than a full batch does (digits, five samples at the paper
            # defaults: up to 2.5 test points lost); `full_batch_mean` is exactly the mean on full batches.
            return SplitLoss(forget=-full_batch_mean(kl, cfg.batch_size))  # run_epoch reports -loss

        def minimise(model, batch):
            logits = model(batch.x)
            loss = hp.gamma * F.cross_entropy(logits, batch.y)
            if hp.alpha:
                loss = loss + hp.alpha * distill_kl(logits, teacher_logits(teacher, batch.x), hp.temperature)
            return SplitLoss(retain=loss), {"correct": (logits.argmax(1) == batch.y).sum(), "n": len(batch.y)}

        for epoch in range(hp.epochs):
            desc = f"scrub {epoch + 1}/{hp.epochs}"
            if epoch < n_max:
                run_epoch(model, trainer, epoch_batches(forget, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "scrub/max", epoch),
                          maximise, ctx.runtime, total=max_steps, desc=f"{desc} max")
            # A shuffled pass cut short = a fresh random subset of retain every epoch.
            subset = itertools.islice(epoch_batches(retain, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "scrub/min", epoch), min_steps)
            run_epoch(model, trainer, subset, minimise, ctx.runtime, total=min_steps, desc=f"{desc} min")
        return model
