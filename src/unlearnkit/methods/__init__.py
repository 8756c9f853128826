"""Unlearning methods: one small registered module each, all behind `unlearn(...)`."""

from unlearnkit.methods import finetune, retrain  # noqa: F401  (registration)
from unlearnkit.methods.api import forget_run, unlearn
from unlearnkit.methods.base import (
    Method, MethodContext, get_method, hparam_defaults, list_methods, make_hparams, register_method,
)

__all__ = [
    "Method", "MethodContext", "forget_run", "get_method", "hparam_defaults", "list_methods", "make_hparams",
    "register_method", "unlearn",
]
