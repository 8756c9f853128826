"""A timm-style model registry: `create_model(name, num_classes, **kw)`.

Every architecture registers a builder under a name; the CLI, presets and tests look
models up here, so adding an entry makes it available (and tested) everywhere.
"""

from __future__ import annotations

import inspect
from typing import Callable

from torch import nn

from unlearnkit.errors import UnlearnkitError

_MODELS: dict[str, Callable[..., nn.Module]] = {}


def register_model(name: str):
    """Decorator: register `builder(num_classes, in_channels, **kw) -> nn.Module` under `name`."""

    def wrap(builder: Callable[..., nn.Module]):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        return builder

    return wrap


def list_models() -> list[str]:
    return sorted(_MODELS)


def model_kwargs(name: str) -> dict[str, object]:
    """The keyword arguments a model accepts, with their defaults."""
    builder = _get(name)
    return {
        p.name: p.default
        for p in inspect.signature(builder).parameters.values()
        if p.default is not inspect.Parameter.empty
    }


def create_model(name: str, num_classes: int, **kwargs) -> nn.Module:
    """Build a registered model. Unknown names or keyword arguments are user errors."""
    builder = _get(name)
    accepted = model_kwargs(name)
    unknown = sorted(set(kwargs) - set(accepted))
    if unknown:
        raise UnlearnkitError(
            f"model {name!r} has no option {unknown[0]!r}; valid options: {', '.join(sorted(accepted))}"
        )
    return builder(num_classes=num_classes, **kwargs)


def _get(name: str) -> Callable[..., nn.Module]:
    if name not in _MODELS:
        raise UnlearnkitError(f"unknown model {name!r}; choose one of: {', '.join(list_models())}")
    return _MODELS[name]
