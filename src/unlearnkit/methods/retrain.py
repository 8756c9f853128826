"""Exact unlearning: train from scratch on the retain set with the original run's recipe.

The gold standard every audit compares against (its cost is what approximate methods save).
"""

from __future__ import annotations

from dataclasses import dataclass

from unlearnkit.methods.base import Method, MethodContext, register_method
from unlearnkit.params import param
from unlearnkit.training.loop import fit


@dataclass
class RetrainHparams:
    # ge=0: a negative count used to slip through and return an untrained "reference".
    epochs: int = param(0, ge=0, doc="0 = the original recipe's epoch count (the honest reference)")


@register_method
class Retrain(Method):
    """Exact unlearning: a fresh model (same initial seed) trained on retain with the original recipe."""

    name = "retrain"
    summary = "Exact unlearning: retrain from scratch on retain with the original recipe (the reference)."
    paper = "Baseline in every unlearning paper, e.g. Bourtoule et al. 2021 (SISA)"
    exact = True
    Hparams = RetrainHparams

    def cost(self, hp: RetrainHparams, sizes, recipe) -> float:
        return float(hp.epochs or recipe.epochs)

    def run(self, model, ctx: MethodContext, hp: RetrainHparams):
        recipe = ctx.recipe if hp.epochs == 0 else type(ctx.recipe)(**{**ctx.recipe.__dict__, "epochs": hp.epochs})
        # Same seed as the original: identical initial weights and augmentation order, so the
        # only difference between the two models is the forgotten data.
        fresh = ctx.model_factory(ctx.seed)
        fit(fresh, ctx.data("retain"), recipe, ctx.runtime, ctx.normalizer, seed=ctx.seed,
            checkpoint=ctx.checkpoint, desc="retrain")
        return fresh
