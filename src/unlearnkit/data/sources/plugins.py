"""Dataset sources from other installed packages, through the ``unlearnkit.datasets`` entry-point group.

A package declares, e.g. in its pyproject.toml::

    [project.entry-points."unlearnkit.datasets"]
    mydata = "mypackage.unlearn:MyDataSource"

where ``MyDataSource`` subclasses `unlearnkit.data.sources.Source` and returns a bundle built
with `make_bundle`; then ``--data mydata:ROOT`` (or just ``mydata`` when its ``takes_path`` is
False) loads it. The entry-point name is the spec prefix. A plugin is imported only when a spec
names it, so a broken plugin cannot break any other source; built-in names take precedence.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points

from unlearnkit.data.sources.base import DatasetBundle, Source, SourceRequest
from unlearnkit.errors import UnlearnkitError

ENTRY_POINT_GROUP = "unlearnkit.datasets"

_LOADED: dict[str, type[Source]] = {}


def _entry_points() -> list[EntryPoint]:
    return list(entry_points(group=ENTRY_POINT_GROUP))


def plugin_names() -> list[str]:
    """The names of the installed dataset plugins (without importing any of them)."""
    return sorted({ep.name.lower() for ep in _entry_points()})


def _where(ep: EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{ep.value}, from package {dist.name}" if dist is not None else ep.value


def plugin_source(name: str) -> type[Source] | None:
    """The `Source` class the plugin `name` provides, or None when no plugin has that name."""
    name = name.lower()
    if name in _LOADED:
        return _LOADED[name]
    matches = [ep for ep in _entry_points() if ep.name.lower() == name]
    if not matches:
        return None
    ep = matches[0]
    try:
        obj = ep.load()
    # A plugin's import may raise anything; what the user needs is its name and the first line, not a traceback.
    except Exception as exc:  # noqa: BLE001
        raise UnlearnkitError(
            f"dataset plugin {ep.name!r} ({_where(ep)}) failed to import ({_one_line(exc)}): "
            f"fix or uninstall the package that provides it"
        ) from None
    if not (isinstance(obj, type) and issubclass(obj, Source)):
        raise UnlearnkitError(
            f"dataset plugin {ep.name!r} ({_where(ep)}) is a {type(obj).__name__}, not a subclass of "
            f"unlearnkit.data.sources.Source: the package that provides it must point the entry point at one"
        )
    _LOADED[name] = obj
    return obj


def load_with_plugin(cls: type[Source], kind: str, request: SourceRequest) -> DatasetBundle:
    """`cls().load(request)` for a plugin's source: its own errors are reported with its name."""
    try:
        return cls().load(request)
    except UnlearnkitError:
        raise
    # A plugin is third-party code: name it, rather than show its traceback as if it were ours.
    except Exception as exc:  # noqa: BLE001
        raise UnlearnkitError(
            f"dataset plugin {kind!r} failed to load {request.source!r} ({_one_line(exc)}): "
            f"check the data, or report it to the plugin's authors"
        ) from None


def _one_line(exc: BaseException) -> str:
    first = (str(exc).strip().splitlines() or [""])[0]
    return f"{type(exc).__name__}: {first}"
