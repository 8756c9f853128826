"""`load_dataset`: a source spec -> the registered `Source` that reads it -> a checked `DatasetBundle`.

A spec is ``kind:ROOT`` (``cifar100:~/data``; ``kind`` a registered source or a plugin), a bare
kind that takes no path (``digits``: a built-in one even where a folder of that name exists), or a
bare path, which each source's `detect` is asked about in registration order (the file-set
source, last, takes any path).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from unlearnkit.data import cache as _cache
from unlearnkit.data.sources.base import (
    DatasetBundle, Source, SourceRequest, check_bundle, check_fraction, registered_sources, reject_labels_csv,
)
from unlearnkit.data.sources.plugins import load_with_plugin, plugin_names, plugin_source
from unlearnkit.data.sources.store import Store
from unlearnkit.errors import UnlearnkitError

# Two or more characters before the colon, so a Windows drive ("C:\data") stays a path.
_SPEC = re.compile(r"([A-Za-z][A-Za-z0-9_]+):(.+)", re.DOTALL)


def _find(kind: str) -> type[Source] | None:
    return registered_sources().get(kind) or plugin_source(kind)


def _kinds() -> str:
    names = list(registered_sources()) + [n for n in plugin_names() if n not in registered_sources()]
    return ", ".join(names)


def parse_spec(source: str) -> tuple[type[Source] | None, str, str]:
    """(source class, kind, argument) of a spec; (None, "", path) for a bare path."""
    text = source.strip()
    bare = text.lower()
    # A built-in source that takes no path is its name wherever the command runs: a folder of the
    # same name in the working directory (`train --preset digits --out digits` creates one before
    # the data are read) must not turn `digits` into a path. Such a folder is `./digits`.
    builtin = registered_sources().get(bare)
    if builtin is not None and not builtin.takes_path:
        return builtin, bare, ""
    if re.fullmatch(r"[a-z][a-z0-9_]+", bare) and not Path(text).expanduser().exists():
        cls = _find(bare)
        if cls is not None:
            return cls, bare, ""
    match = _SPEC.fullmatch(text)
    if match is not None:
        kind = match.group(1).lower()
        cls = _find(kind)
        if cls is not None:
            return cls, kind, match.group(2).strip()
        if not Path(text).expanduser().exists():
            raise UnlearnkitError(
                f"data source {source!r}: unknown kind {kind!r}; choose one of: {_kinds()} (as KIND:ROOT), or give a path"
            )
    return None, "", text


def _detect(path: Path) -> tuple[type[Source], Path]:
    for cls in registered_sources().values():
        root = cls.detect(path)
        if root is not None:
            return cls, root
    raise AssertionError("the file-set source detects every path")  # registered last; never reached


def load_dataset(
    source: str,
    *,
    labels_csv: str | None = None,
    download: bool = False,
    test_fraction: float = 0.2,
    cache_dir: str | os.PathLike | None = None,
    use_cache: bool = True,
) -> DatasetBundle:
    """Load `source` (see the module docstring and docs/data.md) as a `DatasetBundle`.

    labels_csv: the ``id,label`` CSV of a flat image folder (auto-detected when None).
    download: let torchvision download a CIFAR/SVHN root that is missing (needs internet).
    test_fraction: share of each class carved off as test where the source has no test split.
    cache_dir / use_cache: where decoded arrays are cached (default $UNLEARNKIT_CACHE, else
    ~/.cache/unlearnkit), or skip the cache entirely.
    """
    source = os.fspath(source)
    check_fraction(test_fraction)
    cls, kind, argument = parse_spec(source)
    if cls is None:
        path = Path(argument).expanduser()
        if not path.exists():
            raise UnlearnkitError(
                f"data path {source} does not exist: check the path (or use 'digits', "
                f"or 'cifar10:ROOT' with download=True)"
            )
        cls, root = _detect(path)
    elif cls.takes_path:
        root = Path(argument).expanduser()
        if not root.exists() and not (download and cls.can_download):
            fetch = ", or pass download=True to fetch it there" if cls.can_download else ""
            raise UnlearnkitError(
                f"data path {root} does not exist: point {kind}:ROOT at the folder that contains {cls.layout}{fetch}"
            )
    elif argument:
        raise UnlearnkitError(f"data source {kind!r} takes no path, but {source!r} gives one: write just {kind}")
    else:
        root = None
    if not cls.takes_labels_csv:
        reject_labels_csv(labels_csv, source)
    store = Store(_cache.resolve_cache_dir(cache_dir)) if use_cache else None
    request = SourceRequest(source, argument, root, labels_csv, download, test_fraction, store)
    if cls in registered_sources().values():
        return check_bundle(cls().load(request), source)
    return check_bundle(load_with_plugin(cls, kind, request), f"{source} (dataset plugin {kind!r})")


def absolute_source(source: str) -> str:
    """`source` with its local path made absolute: a run directory records it, and later commands
    (forget, audit, bench jobs) must find the data from whatever folder they are started in."""
    if not source:
        return source
    cls, kind, argument = parse_spec(source)
    if cls is None:
        return str(Path(argument).expanduser().resolve())
    if not cls.takes_path:
        return source
    return f"{kind}:{Path(argument).expanduser().resolve()}"
