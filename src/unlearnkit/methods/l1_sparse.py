"""l1-sparse: fine-tune on retain with an L1 penalty that decays linearly to zero."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import endless_batches, method_recipe, pass_samples, pass_steps
from unlearnkit.params import param
from unlearnkit.training.loop import Trainer, run_epoch


@dataclass
class L1SparseHparams:
    # Jia et al., NeurIPS 2023 ("Model Sparsity Can Simplify Machine Unlearning", `FT_l1`):
    # 10 epochs of fine-tuning on retain at lr 0.01-0.1 with loss CE + alpha_t * ||w||_1,
    # alpha_t = alpha0 * (1 - t/T), alpha0 = 5e-4. Budget: 0.8 of one pass over retain (0.8
    # REE plus the L1 term's per-step cost: 0.9 measured 0.95 of a finetune epoch); alpha
    # decays per step (their code decays per epoch, which over one epoch would not decay).
    # Search: alpha0 over the range their sweeps use (1e-5 .. 1e-3); lr as finetune.
    epochs: float = param(0.8, gt=0, search=(0.3, 1.5), doc="passes over the retain set (fractions allowed)")
    alpha: float = param(5e-4, ge=0, search=(1e-5, 1e-3), log=True, doc="alpha0, the initial L1 weight")
    lr: float = param(0.02, gt=0, search=(1e-3, 0.2), log=True, doc="as finetune")
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size")
    weight_decay: float = param(5e-4, ge=0)


L1_OVERHEAD = 0.95 / 0.9  # measured: 0.9 retain passes with the L1 term took 0.95 of a finetune epoch


@register_method
class L1Sparse(Method):
    """l1-sparse unlearning (Jia et al., NeurIPS 2023).

    Fine-tune on the retain set with loss CE + alpha_t * sum(|w|) over all weights, where
    alpha_t = alpha0 * (1 - t/T) falls linearly to zero over the T steps: the penalty first
    prunes weights toward a sparse model (which forgets more readily), then lets fine-tuning
    recover accuracy.
    """

    name = "l1_sparse"
    summary = "Fine-tune on retain with a linearly decaying L1 penalty (l1-sparse)."
    paper = "Jia et al., NeurIPS 2023 (Model Sparsity Can Simplify Machine Unlearning)"
    Hparams = L1SparseHparams

    def cost(self, hp: L1SparseHparams, sizes, recipe) -> float:
        retain = sizes["retain"]
        return L1_OVERHEAD * pass_samples(retain, hp.batch_size or recipe.batch_size, hp.epochs) / retain

    def run(self, model, ctx: MethodContext, hp: L1SparseHparams):
        retain = ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        total = pass_steps(len(retain), cfg.batch_size, hp.epochs)
        trainer = Trainer.from_config(model, cfg, total_steps=total)
        params = [p for p in model.parameters() if p.requires_grad]
        step = itertools.count()

        def loss_fn(model, batch):
            alpha_t = hp.alpha * (1 - next(step) / total)
            logits = model(batch.x)
            loss = F.cross_entropy(logits, batch.y)
            if alpha_t > 0:
                loss = loss + alpha_t * torch.stack([p.abs().sum() for p in params]).sum()
            return loss, {"correct": (logits.argmax(1) == batch.y).sum(), "n": len(batch.y)}

        run_epoch(model, trainer, itertools.islice(endless_batches(retain, cfg, ctx, "l1_sparse"), total), loss_fn, ctx.runtime, total=total, desc="l1_sparse")
        return model
