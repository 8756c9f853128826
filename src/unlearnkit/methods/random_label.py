"""Random labels: train on the forget set with random wrong labels, alongside the retain set."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.methods.common import (
    check_nonnegative, check_positive, forget_and_retain, method_recipe, relabel_wrong,
)
from unlearnkit.training.loop import Trainer, run_epoch


@dataclass
class RandomLabelHparams:
    # SalUn's RL baseline (Fan et al. 2024, after Golatkar et al. 2020 / Hayase et al.): 10 epochs
    # on CIFAR-10 (forget pass with random labels, then a retain pass) at lr ~0.01. Budget: 2
    # passes over the forget set, each relabelled forget batch paired with a retain batch of the
    # same size (0.44 REE on CIFAR-10 with 10% forget). Wrong labels are redrawn every pass so
    # the model unlearns the true label without memorising one fixed wrong one. lr 0.003: at
    # 0.01 half-wrong batches flatten every output (CIFAR-10 confidence 70% -> 37%, -1.8 test
    # points); at 0.003 test accuracy is unchanged.
    forget_passes: float = 2.0  # passes over the forget set, each batch paired with a retain batch
    lr: float = 0.003
    batch_size: int = 0  # 0 = the original recipe's batch size (both streams)
    weight_decay: float = 5e-4

    def validate(self) -> None:
        check_positive(self, "forget_passes", "lr")
        check_nonnegative(self, "batch_size", "weight_decay")


def relabel_unlearn(model: nn.Module, ctx: MethodContext, hp: RandomLabelHparams, tag: str,
                    grad_mask: dict[str, torch.Tensor] | None = None) -> nn.Module:
    """CE on (forget batch with random wrong labels + retain batch), optionally on masked weights only.

    The two batches go through the model as one batch (one BatchNorm statistic, one step), so a
    step weighs forget and retain samples equally, as training on their union does.
    """
    cfg = method_recipe(ctx, lr=hp.lr, batch_size=hp.batch_size, weight_decay=hp.weight_decay)
    stream, steps = forget_and_retain(ctx, cfg, hp.forget_passes, tag, relabel=relabel_wrong(ctx, tag))
    trainer = Trainer.from_config(model, cfg, total_steps=steps, grad_mask=grad_mask)

    def loss_fn(model, pair):
        fb, rb = pair
        logits = model(torch.cat([fb.x, rb.x]))
        y = torch.cat([fb.y, rb.y])
        r_logits = logits[len(fb.y):]
        return F.cross_entropy(logits, y), {"correct": (r_logits.argmax(1) == rb.y).sum().item(), "n": len(rb.y)}

    run_epoch(model, trainer, stream, loss_fn, ctx.runtime, total=steps, desc=tag)
    return model


@register_method
class RandomLabel(Method):
    """Random labels (Golatkar et al., CVPR 2020; Hayase et al.; the RL baseline of SalUn, ICLR 2024).

    Each step: a forget batch whose labels are replaced by random *wrong* labels (uniform over
    the other classes, redrawn every pass from the method's seed) and a retain batch with true
    labels, trained together with CE. The forget samples lose their learned label while the
    retain batch keeps the rest of the function in place.
    """

    name = "random_label"
    summary = "Train forget samples toward random wrong labels, together with retain (RL)."
    paper = "Golatkar et al., CVPR 2020; Fan et al., ICLR 2024 (SalUn's RL baseline)"
    Hparams = RandomLabelHparams

    def run(self, model, ctx: MethodContext, hp: RandomLabelHparams):
        return relabel_unlearn(model, ctx, hp, "random_label")
