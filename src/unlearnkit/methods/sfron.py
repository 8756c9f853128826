"""SFR-on: saliency forgetting in the remain-preserving manifold, online (Huang et al., NeurIPS 2024)."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import endless_batches, full_batch_share, method_recipe, pass_samples, pass_steps, random_subset
from unlearnkit.methods.dualoptim import OptimizerParams, SplitLoss, make_trainer
from unlearnkit.methods.ssd import fisher_diagonal
from unlearnkit.params import param
from unlearnkit.training.data import stream_seed
from unlearnkit.training.loop import run_epoch


@dataclass
class SFRonHparams(OptimizerParams):
    # Official code (K1nght/Unified-Unlearning-w-Remain-Geometry, `unlearn/sfron.py`, CIFAR-10 10%):
    # SGD lr 0.01 (momentum 0.9, wd 5e-4), 1500 iterations of batch 128, one forget step every
    # 5 retain steps (forget_freq 5), forget_alpha 25 decayed by the cosine schedule, adaptive
    # weights lambda 0.5, forget-gradient norm clipped at 7, saliency threshold gamma 1 on the
    # Fisher ratio forget/remain (Fisher over all of forget and all of retain), EMA beta 1 (a
    # no-op). That is ~7.5 REE on CIFAR-10 (half of retraining cifar10-cpu). Kept: every rule
    # and weight above. Adapted to the budget: the forget steps make 0.75 pass over forget (their
    # 9.6), the same 5 retain steps per forget step (0.43 REE), and the remain Fisher comes from a
    # seeded subset of 4000 retain samples (0.11 REE) — 0.73 REE in all. lr kept at 0.01 (not
    # re-tuned for ~10x fewer steps: unmeasured on CIFAR-10, the search range covers 10x above).
    # Search: alpha up to their TinyImageNet value 500; forget_freq around their 5.
    forget_passes: float = param(0.75, gt=0, search=(0.5, 4.0), doc="passes the forget (ascent) steps make over forget")
    forget_freq: int = param(5, ge=1, search=(1, 8), doc="retain steps per forget step (their forget_freq)")
    alpha: float = param(25.0, gt=0, search=(1.0, 500.0), log=True,
                         doc="forget-loss weight (their forget_alpha), decayed to 0 by the cosine schedule")
    adaptive_lambda: float = param(0.5, ge=0, search=(0.0, 2.0),
                                   doc="sample weight 1/CE^lambda on the forget loss (temperature; 0 = plain ascent)")
    max_norm: float = param(7.0, gt=0, search=(1.0, 20.0), log=True, doc="clip of the forget-step gradient norm")
    threshold: float = param(1.0, ge=0, search=(0.1, 10.0), log=True,
                             doc="gamma: a weight moves on forget steps where Fisher(forget)/Fisher(remain) >= this (0 = every weight)")
    remain_samples: int = param(4000, ge=1, doc="retain samples (seeded subset) for the remain Fisher; all of retain if fewer")
    lr: float = param(0.01, gt=0, search=(1e-3, 0.1), log=True, doc="SGD lr of both step kinds (sgd) / of retain steps (dualoptim)")
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size (both streams)")
    weight_decay: float = param(5e-4, ge=0)


def adaptive_ascent(logits: torch.Tensor, labels: torch.Tensor, lam: float) -> torch.Tensor:
    """SFR-on's adaptive forget loss: the mean of CE_i weighted by 1/CE_i^lambda (normalised to sum 1).

    Samples the model still fits (small CE) get the largest weights, so the ascent concentrates
    on what is not forgotten yet instead of pushing already-forgotten samples further.
    """
    ce = F.cross_entropy(logits.float(), labels, reduction="none")
    coef = 1.0 / (ce.detach().pow(lam) + 1e-15)
    return (coef / coef.sum() * ce).sum()


def fisher_ratio_mask(model, ctx: MethodContext, hp: SFRonHparams, batch_size: int) -> dict[str, torch.Tensor]:
    """1 where Fisher(forget) >= threshold x Fisher(remain) (their `(f + 1e-15) / (r + 1e-15) >= gamma`)."""
    was_training = model.training
    model.eval()
    retain = ctx.data("retain")
    # Whole batches only (like ssd's training-data sample): a ragged last batch would be a third
    # input shape beside the training batches and forget's own last batch (cudnn re-tunes each shape).
    count = max(batch_size, min(hp.remain_samples, len(retain)) // batch_size * batch_size)
    remain = random_subset(retain, count, stream_seed(ctx.seed, "sfron/remain"))
    i_forget = fisher_diagonal(model, ctx.data("forget"), ctx, batch_size, "sfron fisher on forget")
    # At the forget set's batch size when it is smaller than one batch (see `fisher_diagonal`).
    i_remain = fisher_diagonal(model, remain, ctx, batch_size, "sfron fisher on remain",
                               as_batch_size=min(batch_size, len(ctx.data("forget"))))
    model.train(was_training)
    return {n: ((i_forget[n] + 1e-15) / (i_remain[n] + 1e-15) >= hp.threshold).float() for n in i_forget}


@register_method
class SFRon(Method):
    """SFR-on (Huang et al., NeurIPS 2024, "Unified Gradient-Based Machine Unlearning with Remain Geometry Enhancement").

    1. Saliency in the remain geometry: diagonal Fisher information on forget and on (a subset
       of) retain; a weight is salient where the forget Fisher is at least `threshold` times the
       remain Fisher. Only salient weights move on forget steps.
    2. Fast-slow updates: every `forget_freq`-th step first takes one *forget* step — gradient
       ascent on the adaptive (1/CE^lambda-weighted) forget CE, times alpha_t (alpha decayed by
       the cosine schedule), masked, its gradient norm clipped at `max_norm` — then every step
       takes a plain retain CE step. The retain steps between forget steps implicitly apply the
       remain Hessian to the ascent direction (the paper's approximation of steepest descent
       in the remain-preserving manifold). With `sgd` both step kinds share one SGD (the paper);
       with `dualoptim` the forget steps get their own Adam.
    """

    name = "sfron"
    summary = "Masked adaptive ascent on forget interleaved with retain fine-tuning (SFR-on)."
    paper = "Huang et al., NeurIPS 2024 (SFR-on, Unified Gradient-Based MU with Remain Geometry Enhancement)"
    Hparams = SFRonHparams
    revision = 1
    changes = {1: "a forget set smaller than one batch pushes with a full batch's share"}

    def cost(self, hp: SFRonHparams, sizes, recipe) -> float:
        bs = hp.batch_size or recipe.batch_size
        forget, retain = sizes["forget"], sizes["retain"]
        f_steps = pass_steps(forget, bs, hp.forget_passes)
        fisher = forget + min(hp.remain_samples, retain)
        return (fisher + pass_samples(forget, bs, hp.forget_passes) + f_steps * hp.forget_freq * min(bs, retain)) / retain

    def run(self, model, ctx: MethodContext, hp: SFRonHparams):
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        mask = fisher_ratio_mask(model, ctx, hp, cfg.batch_size)
        forget, retain = ctx.data("forget"), ctx.data("retain")
        f_steps = pass_steps(len(forget), cfg.batch_size, hp.forget_passes)
        iters = f_steps * hp.forget_freq
        trainer = make_trainer(model, cfg, iters + f_steps, hp, forget_mask=mask, forget_clip=hp.max_norm)
        forget_stream = endless_batches(forget, cfg, ctx, "sfron/forget")
        retain_stream = endless_batches(retain, cfg, ctx, "sfron/retain")

        def steps():  # ("forget", batch, alpha_t) before every forget_freq-th retain step
            for i in range(iters):
                if i % hp.forget_freq == 0:
                    yield "forget", next(forget_stream), hp.alpha * 0.5 * (1 + math.cos(math.pi * i / iters))
                yield "retain", next(retain_stream), 0.0

        def loss_fn(model, item):
            kind, b, alpha_t = item
            logits = model(b.x)
            if kind == "forget":
                ce = adaptive_ascent(logits, b.y, hp.adaptive_lambda)
                # The weighted mean over a forget set smaller than one batch pushed each sample bs/n
                # times harder than a full batch (digits, `random:5` at the paper defaults: up to 2.2
                # test points lost, one of five samples misclassified where retraining keeps all).
                push = ce * full_batch_share(len(b.y), cfg.batch_size)
                return SplitLoss(forget=-alpha_t * push), {"forget_ce": ce.detach()}
            return SplitLoss(retain=F.cross_entropy(logits, b.y)), {"correct": (logits.argmax(1) == b.y).sum(),
                                                                    "n": len(b.y)}

        run_epoch(model, trainer, itertools.islice(steps(), iters + f_steps), loss_fn, ctx.runtime,
                  total=iters + f_steps, desc="sfron")
        return model
