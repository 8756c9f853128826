"""Fine-tuning: keep training the original on the retain set only (catastrophic forgetting of the rest)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.params import param
from unlearnkit.training.data import steps_per_epoch
from unlearnkit.training.loop import Trainer, cross_entropy_loss, epoch_batches, run_epoch
from unlearnkit.config import TrainConfig


@dataclass
class FinetuneHparams:
    # Golatkar et al. / Jia et al. use 10 epochs at lr 0.01-0.1 on CIFAR-10; one epoch keeps the
    # cost near 10% of retraining a 10-epoch recipe. Fractional epochs (the first steps of the next
    # pass) let a search stay within 5% of a 15-epoch recipe (0.75 REE).
    epochs: float = param(1.0, gt=0, search=(0.2, 2.0), doc="passes over the retain set (fractions allowed)")
    lr: float = param(0.02, gt=0, search=(1e-3, 0.2), log=True)
    # 256 (not 0 = the recipe's, as in the other methods) is the default the shipped entries and
    # leaderboards ran with; 0 is accepted and means the recipe's batch size, as everywhere else.
    batch_size: int = param(256, ge=0, doc="0 = the original recipe's batch size")
    weight_decay: float = param(5e-4, ge=0, search=(1e-5, 5e-3), log=True)


@register_method
class Finetune(Method):
    """Fine-tuning (FT): continue training on the retain set only; the forget set fades by catastrophic forgetting."""

    name = "finetune"
    summary = "Continue training on retain only (FT)."
    paper = "Warnecke et al. 2023; Jia et al., NeurIPS 2023 (FT baseline)"
    Hparams = FinetuneHparams

    def cost(self, hp: FinetuneHparams, sizes, recipe) -> float:
        return float(hp.epochs)  # one forward+backward over retain per epoch

    def run(self, model, ctx: MethodContext, hp: FinetuneHparams):
        retain = ctx.data("retain")
        cfg = TrainConfig(**{**ctx.recipe.__dict__, "epochs": hp.epochs, "lr": hp.lr,
                             "batch_size": hp.batch_size or ctx.recipe.batch_size,
                             "weight_decay": hp.weight_decay, "schedule": "cosine", "warmup_fraction": 0.0})
        per_epoch = steps_per_epoch(len(retain), cfg.batch_size)
        total = finetune_steps(hp.epochs, per_epoch)  # the cosine schedule spans exactly these steps
        trainer = Trainer.from_config(model, cfg, total_steps=total)
        loss = cross_entropy_loss(cfg.label_smoothing)
        passes = math.ceil(total / per_epoch)
        for epoch in range(passes):
            steps = min(per_epoch, total - epoch * per_epoch)  # the last pass may stop early
            batches = itertools.islice(epoch_batches(retain, cfg, ctx.normalizer, ctx.runtime, ctx.seed, "finetune", epoch), steps)
            run_epoch(model, trainer, batches, loss, ctx.runtime, total=steps, desc=f"finetune {epoch + 1}/{passes}")
        return model


def finetune_steps(epochs: float, per_epoch: int) -> int:
    """Optimizer steps of `epochs` passes (fractional: rounded to whole steps, at least one)."""
    return max(1, round(epochs * per_epoch))
