"""Unlearning methods: one small registered module each, all behind `unlearn(...)`."""

# Registration, in the order `unlearnkit methods` lists them: exact, fine-tuning, gradient ascent,
# relabelling (RL, SalUn), distillation (bad teacher, SCRUB), sparsity, dampening (no training), adversarial,
# saliency ascent in the remain geometry (SFR-on), weight negation (NoT), loss matching to held-out data.
from unlearnkit.methods import retrain, finetune  # noqa: F401, I001
from unlearnkit.methods import neggrad, random_label, salun, bad_teacher, scrub, l1_sparse, ssd, gan  # noqa: F401, I001
from unlearnkit.methods import sfron, negation, loss_match  # noqa: F401, I001
from unlearnkit.methods.api import forget_run, unlearn
from unlearnkit.methods.base import (
    Method, MethodContext, get_method, hparam_defaults, list_methods, make_hparams, register_method,
)

__all__ = [
    "Method", "MethodContext", "forget_run", "get_method", "hparam_defaults", "list_methods", "make_hparams",
    "register_method", "unlearn",
]
