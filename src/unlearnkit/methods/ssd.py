"""SSD: dampen the weights far more important to the forget set than to the training data."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import eval_batch_count, eval_batches, random_subset
from unlearnkit.params import param
from unlearnkit.training.data import TensorSet, stream_seed
from unlearnkit.training.loop import progress


@dataclass
class SSDHparams:
    # Foster et al., AAAI 2024, official code (`ssd_tuning`, CIFAR): selection_weighting alpha = 10,
    # dampening_constant lambda = 1, importances from the whole training set and the forget set,
    # eval mode, squared batch gradients averaged over batches. Budget: I_D from a seeded random
    # subset of at most 10000 training samples (25% of CIFAR-10's 40k = 0.28 REE; the whole set
    # when smaller, e.g. digits) + I_f over the forget set (0.11 REE); no training at all. A
    # count, not a fraction: per-sample gradients are heavy-tailed, and an I_D from a handful of
    # batches underestimates some weights' importance and dampens them wrongly. Both
    # importances use the same batch size, so they are comparable.
    # Search: alpha from the paper's 10 to the 100 small networks need (and below); lambda around 1.
    alpha: float = param(10.0, gt=0, search=(1.0, 100.0), log=True, doc="selection weighting: dampen where I_forget > alpha * I_train")
    dampening: float = param(1.0, gt=0, search=(0.1, 5.0), log=True, doc="lambda: beta = min(lambda * I_train / I_forget, 1)")
    train_samples: int = param(10000, ge=1, doc="training samples (seeded subset) for I_train; the whole set if fewer")
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size")


def fisher_diagonal(model: nn.Module, data: TensorSet, ctx: MethodContext, batch_size: int, desc: str) -> dict[str, torch.Tensor]:
    """Mean over batches of the squared gradient of the batch-mean CE, per parameter element (eval mode)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    imp = {n: torch.zeros_like(p) for n, p in named}
    n_batches = 0
    for b in progress(eval_batches(data, ctx, batch_size), eval_batch_count(len(data), batch_size), desc, unit="batch"):
        model.zero_grad(set_to_none=True)
        with ctx.runtime.autocast():
            loss = F.cross_entropy(model(b.x).float(), b.y)
        loss.backward()
        for n, p in named:
            if p.grad is not None:
                imp[n] += p.grad.float().pow(2)
        n_batches += 1
    model.zero_grad(set_to_none=True)
    return {n: v / max(1, n_batches) for n, v in imp.items()}


@register_method
class SSD(Method):
    """Selective Synaptic Dampening (Foster et al., AAAI 2024). No training.

    Diagonal Fisher importances (mean squared CE gradients) on the forget set, I_f, and on the
    training data, I_D. Every weight with I_f > alpha * I_D is specialised to the forget set
    and is multiplied by beta = min(lambda * I_D / I_f, 1) <= 1; all others stay. Parameters
    only: BatchNorm running statistics are left alone.
    """

    name = "ssd"
    summary = "Dampen weights much more important to forget than to train data (SSD, no training)."
    paper = "Foster et al., AAAI 2024 (Selective Synaptic Dampening)"
    Hparams = SSDHparams

    def cost(self, hp: SSDHparams, sizes, recipe) -> float:
        # One gradient per sample of forget and of the train subset (train = retain + forget); no update.
        return (sizes["forget"] + min(hp.train_samples, sizes["retain"] + sizes["forget"])) / sizes["retain"]

    def run(self, model, ctx: MethodContext, hp: SSDHparams):
        bs = hp.batch_size or ctx.recipe.batch_size
        train = ctx.data("train")
        # Whole batches of training data (at most bs - 1 samples fewer): then the forget pass's ragged
        # last batch is the only other input shape, so a GPU tunes two shapes, not three.
        count = min(hp.train_samples, len(train))
        train = random_subset(train, max(bs, count - count % bs), stream_seed(ctx.seed, "ssd/train"))
        was_training = model.training
        model.eval()
        i_forget = fisher_diagonal(model, ctx.data("forget"), ctx, bs, "ssd importance on forget")
        i_train = fisher_diagonal(model, train, ctx, bs, "ssd importance on train")
        with torch.no_grad():
            for n, p in model.named_parameters():
                if n not in i_forget:
                    continue
                f, d = i_forget[n], i_train[n]
                selected = f > hp.alpha * d
                beta = (hp.dampening * d / f.clamp_min(torch.finfo(f.dtype).tiny)).clamp(max=1.0)
                p.mul_(torch.where(selected, beta, torch.ones_like(beta)).to(p.dtype))
        model.train(was_training)
        return model
