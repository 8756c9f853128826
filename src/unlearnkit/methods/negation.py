"""NoT: negate the weights of the first layer(s), then fine-tune on retain (Khalil et al., CVPR 2025)."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import endless_batches, method_recipe, pass_samples, pass_steps
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
        return pass_samples(retain, hp.batch_size or recipe.batch_size, hp.epochs) / retain

    def run(self, model, ctx: MethodContext, hp: NoTHparams):
        negate_layers(model, hp.layers)
        retain = ctx.data("retain")
        cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
        total = pass_steps(len(retain), cfg.batch_size, hp.epochs)
        trainer = Trainer.from_config(model, cfg, total_steps=total)

        def loss_fn(model, batch):
            logits = model(batch.x)
            return F.cross_entropy(logits, batch.y), {"correct": (logits.argmax(1) == batch.y).sum(), "n": len(batch.y)}

        stream = itertools.islice(endless_batches(retain, cfg, ctx, "not"), total)
        run_epoch(model, trainer, stream, loss_fn, ctx.runtime, total=total, desc="not")
        return model
