"""Models and methods from other installed packages, found through entry points.

A package adds an architecture or an unlearning method by declaring an entry point whose name
is the registry name, e.g. in its pyproject.toml::

    [project.entry-points."unlearnkit.models"]
    my_net = "my_package.models:my_net"            # a builder(num_classes, in_channels=3, ...)

    [project.entry-points."unlearnkit.methods"]
    my_method = "my_package.unlearning:MyMethod"   # a Method subclass with name = "my_method"

Listing reads only the package metadata; a plugin is imported the first time its name is used,
so a broken plugin costs nothing until then and then fails with one line that names it.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any, Callable, Mapping

from unlearnkit.errors import UnlearnkitError

MODELS_GROUP = "unlearnkit.models"
METHODS_GROUP = "unlearnkit.methods"


def _entry_points(group: str) -> dict[str, metadata.EntryPoint]:
    found: dict[str, metadata.EntryPoint] = {}
    for ep in metadata.entry_points(group=group):
        found.setdefault(ep.name, ep)  # the first distribution on sys.path wins, as for imports
    return found


def plugin_names(group: str) -> list[str]:
    """Names declared under `group` by installed packages (nothing is imported)."""
    return sorted(_entry_points(group))


def load_plugin(group: str, name: str, registered: Mapping[str, Any], register: Callable[[Any], Any]) -> bool:
    """Import the entry point `name` of `group` and make sure it ends up in `registered`.

    The entry point may name the object itself (registered here with `register`) or an object
    whose import already registered it (a decorated function). Returns False when no installed
    package declares `name`.
    """
    ep = _entry_points(group).get(name)
    if ep is None:
        return False
    package = getattr(ep.dist, "name", None) or "an unknown package"
    where = f"plugin {name!r} ({group} entry point {ep.value!r} of package {package!r})"
    try:
        obj = ep.load()
    except Exception as exc:  # noqa: BLE001  (any failure inside a third-party import is reported, not raised raw)
        raise UnlearnkitError(
            f"{where} failed to import: {type(exc).__name__}: {exc}; fix or uninstall {package}"
        ) from None
    if name not in registered:
        try:
            register(obj)
        except (TypeError, ValueError, AttributeError) as exc:
            raise UnlearnkitError(f"{where} is not a valid {group.rsplit('.', 1)[-1][:-1]}: {exc}") from None
    if name not in registered:
        raise UnlearnkitError(f"{where} registered no entry named {name!r}; its name and the entry point's must match")
    return True
