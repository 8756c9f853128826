"""A timm-style model registry: `create_model(name, num_classes, **kw)`.

Every architecture registers a builder under a name; the CLI, presets and tests look
models up here, so adding an entry makes it available (and tested) everywhere.
Names with a `library:` prefix (`torchvision:resnet50`, `timm:vit_tiny_patch16_224`) are
resolved by that library's resolver (models/external.py); names declared by other installed
packages under the `unlearnkit.models` entry point are imported on first use (plugins.py).
"""

from __future__ import annotations

import contextlib
import inspect
from typing import Callable, Iterator

from torch import nn

from unlearnkit.errors import UnlearnkitError
from unlearnkit.plugins import MODELS_GROUP, load_plugin, plugin_names

_MODELS: dict[str, Callable[..., nn.Module]] = {}
# prefix -> resolver(name after the prefix) -> builder: names of a library's own registry.
_RESOLVERS: dict[str, Callable[[str], Callable[..., nn.Module]]] = {}


def register_model(name: str):
    """Decorator: register `builder(num_classes, in_channels, **kw) -> nn.Module` under `name`."""

    def wrap(builder: Callable[..., nn.Module]):
        if name in _MODELS:
            raise ValueError(f"model {name!r} is registered twice")
        _MODELS[name] = builder
        return builder

    return wrap


@contextlib.contextmanager
def temporary_model(name: str, builder: Callable[..., nn.Module]) -> Iterator[str]:
    """Register `builder` under `name` for the duration of a `with` block (the plain API's in-memory models)."""
    register_model(name)(builder)
    try:
        yield name
    finally:
        _MODELS.pop(name, None)


def register_resolver(prefix: str, resolve: Callable[[str], Callable[..., nn.Module]]) -> None:
    """Resolve every `prefix:NAME` that is not registered itself with `resolve(NAME) -> builder`."""
    _RESOLVERS[prefix] = resolve


def list_models() -> list[str]:
    """Registered names and installed plugins' names (a `library:` resolver accepts more, see docs)."""
    return sorted(set(_MODELS) | set(plugin_names(MODELS_GROUP)))


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
    if name in _MODELS:
        return _MODELS[name]
    prefix, colon, rest = name.partition(":")
    if colon and prefix in _RESOLVERS:
        return _RESOLVERS[prefix](rest)
    if load_plugin(MODELS_GROUP, name, _MODELS, lambda builder: register_model(name)(_callable(builder, name))):
        return _MODELS[name]
    raise UnlearnkitError(
        f"unknown model {name!r}; choose one of: {', '.join(list_models())}, or "
        f"{' / '.join(p + ':NAME' for p in sorted(_RESOLVERS))}"
    )


def _callable(builder: object, name: str) -> Callable[..., nn.Module]:
    if not callable(builder):
        raise TypeError(f"{name!r} points to a {type(builder).__name__}, not a builder(num_classes, ...)")
    return builder
