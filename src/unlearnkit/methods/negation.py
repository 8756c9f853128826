"""NoT: negate the weights of the first layer(s), then fine-tune on retain (Khalil et al., CVPR 2025)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import (
    FORWARD, distill_kl, endless_batches, forgotten_classes, method_recipe, pass_samples, pass_steps, teacher_logits,
    without_classes,
)
from unlearnkit.params import param
from unlearnkit.training.loop import Trainer, run_epoch


@dataclass
class NoTHparams:
    # Khalil et al., CVPR 2025 ("NoT: Federated Unlearning via Weight Negation"; no public code):
    # multiply the parameters of a layer by -1 — which breaks the co-adaptation between that
    # layer and the next while keeping the network close to an optimum ("approximate
    # optimality"), so it recovers fast — then fine-tune on the retained data; the forget
    # data are never used. Kept: negation of the first layer (weights and bias), then plain
    # fine-tuning on retain. Adapted: the federated fine-tuning rounds become one centralised
    # fine-tuning of 0.7 retain passes (0.7 REE on CIFAR-10, the budget) with the finetune
    # method's lr 0.02 and the recipe's SGD + cosine schedule.
    layers: int = param(1, ge=1, search=(1, 3), doc="how many of the first weight layers (conv/linear) to negate")
    epochs: float = param(0.7, gt=0, search=(0.3, 1.5), doc="passes over retain after the negation (fractions allowed)")
    lr: float = param(0.02, gt=0, search=(1e-3, 0.2), log=True)
    batch_size: int = param(0, ge=0, doc="0 = the original recipe's batch size")
    weight_decay: float = param(5e-4, ge=0)
    # Our addition, not the paper's. On a class request the recovery is the bottleneck: within the
    # 5% budget, cross-entropy on hard labels brought retain accuracy back to 83-84% where retraining
    # has 91.6 (cifar10-cpu, class:truck, 3 seeds; a class search found no setting within 2 points).
    # `kd` recovers by distilling the original on the same retain batches instead — a dense target
    # per sample, so the co-adaptation the negation broke is restored in fewer steps — with the
    # forgotten classes removed from its targets (as bad_teacher's and gan's class targets), so
    # the original's knowledge of them is not distilled back. It still never reads the forget set.
    # Measured (class tuning set): the RA of the best `ce` setting (85.65) with 0.45 instead of 0.61
    # retain passes — still not within the margin, so the default stays the paper's (docs/methods.md).
    recovery: str = param("ce", choices=("ce", "kd"), search=["ce", "kd"],
                          doc="ce: fine-tune on retain labels (the paper); kd: distil the original on retain")
    temperature: float = param(2.0, gt=0, search=(1.0, 8.0), log=True, search_if=("recovery", "kd"),
                               doc="kd recovery: the KL temperature")


def weight_layers(model: nn.Module) -> list[nn.Module]:
    """The model's convolution and linear layers in definition order (the first is the input layer)."""
    return [m for m in model.modules() if isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.Linear))]


@torch.no_grad()
def negate_layers(model: nn.Module, count: int) -> list[nn.Module]:
    """Multiply the weight (and bias) of the first `count` weight layers by -1; returns those layers."""
    layers = weight_layers(model)
    if count > len(layers):
        raise UnlearnkitError(f"method.layers={count} is more than the model's {len(layers)} conv/linear layers; choose fewer")
    chosen = layers[:count]
    for layer in chosen:
        for p in layer.parameters(recurse=False):
            p.neg_()
    return chosen


@register_method
class NoT(Method):
    """NoT, weight negation (Khalil et al., CVPR 2025).

    1. Negate the parameters of the first `layers` convolution/linear layers (x -1). The
       following layers were co-adapted to their outputs, so the network's function — and what
       it memorised about any sample — is disrupted, yet a negated layer is as trainable as before.
    2. Fine-tune on the retain set (the forget set is never read), which restores what the
       retain data support and leaves the rest forgotten.
    """

    name = "not"
    summary = "Negate the first layer's weights, then fine-tune on retain (NoT)."
    paper = "Khalil et al., CVPR 2025 (NoT: Federated Unlearning via Weight Negation)"
    Hparams = NoTHparams

    def cost(self, hp: NoTHparams, sizes, recipe) -> float:
        retain = sizes["retain"]
        teacher = FORWARD if hp.recovery == "kd" else 0.0  # the original's forward on each retain batch
        return (1 + teacher) * pass_samples(retain, hp.batch_size or recipe.batch_size, hp.epochs) / retain

    def run(self, model, ctx: MethodContext, hp: NoTHparams):
        negate_layers(model, hp.layers)
        retain = ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        total = pass_steps(len(retain), cfg.batch_size, hp.epochs)
        trainer = Trainer.from_config(model, cfg, total_steps=total)
        gone = torch.tensor(forgotten_classes(ctx), dtype=torch.long, device=retain.labels.device)

        def loss_fn(model, batch):
            logits = model(batch.x)
            if hp.recovery == "kd":  # run_epoch already calls this inside the runtime's autocast
                loss = distill_kl(logits, without_classes(teacher_logits(ctx.original, batch.x), gone), hp.temperature)
            else:
                loss = F.cross_entropy(logits, batch.y)
            return loss, {"correct": (logits.argmax(1) == batch.y).sum(), "n": len(batch.y)}

        stream = itertools.islice(endless_batches(retain, cfg, ctx, "not"), total)
        run_epoch(model, trainer, stream, loss_fn, ctx.runtime, total=total, desc="not")
        return model
